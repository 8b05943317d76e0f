//! Platform code, behind one small interface: byte-range locks that the kernel releases when the
//! process dies, a wait/wake primitive on a word of shared memory, and a count of the `fork`s that
//! made this process (see [`fork_generation`]).
//!
//! Only Linux is implemented today (open-file-description locks, `F_OFD_SETLK[W]`). A port adds a
//! sibling module with the same functions: on macOS, per-range `flock`-style emulation or
//! a lock file per entry; on Windows, `LockFileEx` on the byte range.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{
    allocate, current_uid, fork_generation, futex_wait, futex_wake, keep_description, lock_range, process_exists,
    range_is_locked, unlock_range, watch_forks,
};

/// Opening store files without blocking, and checking that a path still names an open file.
pub(crate) mod file;

/// Rewriting store files offline: hole-preserving copies, and who holds a file's `flock`.
mod rewrite;
pub(crate) use rewrite::{copy_sparse, flock_holders};

/// Robust, process-shared mutexes in a shared mapping, the lock-ABI tag and the PID namespace.
#[cfg(target_os = "linux")]
pub(crate) mod robust_mutex;

/// Durability calls (`fsync`, `fdatasync`, directory `fsync`, file extension) and their test hook.
pub(crate) mod sync;

#[cfg(not(target_os = "linux"))]
compile_error!("shmstore supports Linux only for now: its locks are Linux open-file-description byte-range locks");

/// The two kinds of byte-range lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}
