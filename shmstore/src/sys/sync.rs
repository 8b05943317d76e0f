//! Making store files durable: `fsync`, `fdatasync`, directory `fsync` and file extension, each
//! reported to an optional test hook before and after the call.
//!
//! Mapping flushes (`msync`) live in `file/map.rs` and report to the same hook through [`around`].
//!
//! The hook exists for the power-loss simulator (`tests/power_loss.rs`), which rebuilds, at every
//! point where the library makes something durable, every disk image a power loss could leave. It
//! is set through [`crate::__private::set_sync_hook`]; when unset, each call costs one relaxed
//! atomic load next to a system call.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One call that changes what a power loss keeps, as reported to a sync hook.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SyncEvent<'a> {
    /// The file the call acts on; for [`SyncOp::DirFsync`], the directory.
    pub path: &'a Path,
    /// What the call does.
    pub op: SyncOp,
    /// Whether the call is about to be made, or has returned successfully.
    pub phase: SyncPhase,
}

/// The kinds of call a sync hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncOp {
    /// `msync(MS_SYNC)` of the file's bytes `offset..offset + len` through a shared mapping (the
    /// kernel widens it to whole pages). Makes those pages durable; not the file's length.
    Msync {
        /// First byte of the range.
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
    },
    /// `fsync`: every byte and the length of the file are durable afterwards.
    Fsync,
    /// `fdatasync`: every byte and the length of the file are durable afterwards (the length is
    /// metadata needed to read the data back, which `fdatasync` covers).
    Fdatasync,
    /// `fsync` of a directory: the names it holds, and the files they name, are durable
    /// afterwards (not the files' contents).
    DirFsync,
    /// `ftruncate` to `len` bytes (the store only ever extends its file). Nothing is durable.
    SetLen {
        /// The new length.
        len: u64,
    },
    /// `posix_fallocate` of `offset..offset + len`, extending the file if needed. Nothing is
    /// durable.
    Allocate {
        /// First byte of the range.
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
    },
}

/// When a sync hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPhase {
    /// Right before the call.
    Before,
    /// Right after the call returned successfully (a failed call reports no `After`).
    After,
}

/// A function observing every [`SyncEvent`] of every store in the process.
pub type SyncHook = Box<dyn Fn(&SyncEvent<'_>) + Send + Sync>;

type SharedHook = Arc<dyn Fn(&SyncEvent<'_>) + Send + Sync>;

/// Whether a hook is set: the only thing the common path reads.
static HOOK_SET: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<SharedHook>> = RwLock::new(None);

/// Installs `hook` (or removes it, with `None`) for every store in the process.
pub fn set_sync_hook(hook: Option<SyncHook>) {
    let mut slot = HOOK.write().unwrap_or_else(|e| e.into_inner());
    HOOK_SET.store(hook.is_some(), Ordering::Release);
    *slot = hook.map(SharedHook::from);
}

fn notify(path: &Path, op: SyncOp, phase: SyncPhase) {
    // The hook is cloned out of the lock before it runs, so that it may itself open stores (whose
    // syncs report here again) or replace the hook.
    let hook = HOOK.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(hook) = hook {
        hook(&SyncEvent { path, op, phase });
    }
}

/// Runs `call`, the system call that `op` describes on `path`, between the hook's `Before` and
/// `After` (the latter only if it succeeded).
#[inline]
pub(crate) fn around<R>(path: &Path, op: SyncOp, call: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
    if !HOOK_SET.load(Ordering::Relaxed) {
        return call();
    }
    notify(path, op, SyncPhase::Before);
    let result = call()?;
    notify(path, op, SyncPhase::After);
    Ok(result)
}

/// `fsync`: the file `file` (found at `path`), data and metadata, reaches the disk.
pub(crate) fn fsync(path: &Path, file: &File) -> io::Result<()> {
    around(path, SyncOp::Fsync, || file.sync_all())
}

/// `fdatasync`: the file's data and its length reach the disk.
pub(crate) fn fdatasync(path: &Path, file: &File) -> io::Result<()> {
    around(path, SyncOp::Fdatasync, || file.sync_data())
}

/// `fsync` of the directory `dir`: the names in it (a new link, say) reach the disk.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    around(dir, SyncOp::DirFsync, || File::open(dir)?.sync_all())
}

/// Sets the length of `file` (found at `path`) to `len` bytes.
pub(crate) fn set_len(path: &Path, file: &File, len: u64) -> io::Result<()> {
    around(path, SyncOp::SetLen { len }, || file.set_len(len))
}

/// Reserves disk blocks for `offset..offset + len` of `file`, extending it if needed.
pub(crate) fn allocate(path: &Path, file: &File, offset: u64, len: u64) -> io::Result<()> {
    around(path, SyncOp::Allocate { offset, len }, || super::allocate(file, offset, len))
}
