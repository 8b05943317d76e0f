//! Linux open-file-description (OFD) byte-range locks.
//!
//! OFD locks belong to the open file description, not to the process (unlike classic POSIX
//! `F_SETLK` locks, which a process loses when it closes *any* descriptor of the file). They are
//! released by the kernel when the last descriptor of the description closes, which includes the
//! process being killed. They do not exclude threads that share the description: `lock.rs` adds
//! that exclusion in-process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::LockKind;

fn set(file: &File, offset: u64, kind: libc::c_short, wait: bool) -> io::Result<bool> {
    let start = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `struct flock` is a plain C struct of integers (plus padding on some targets), for
    // which all-zero bytes are a valid value; OFD locks require `l_pid` to be 0, which this gives.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    let cmd = if wait { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK };
    loop {
        // SAFETY: `fcntl` with F_OFD_SETLK[W] reads one `struct flock` through the pointer, which
        // points to a live, initialised local for the whole call. The descriptor is owned by `file`,
        // which outlives the call. No memory is shared with the kernel beyond the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) if !wait => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// How many times this process is a `fork` away from the process that started the program: bumped
/// by the `pthread_atfork` child handler that [`watch_forks`] installs.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Runs in the child of every `fork`, in its only thread, before `fork` returns there. It must be
/// async-signal-safe: one lock-free atomic increment is.
extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the `fork` child handler that [`fork_generation`] counts with, once per process; later
/// calls return the first call's outcome.
///
/// libc runs `pthread_atfork` handlers for `fork()` (and so for everything built on it), but not
/// for `vfork()`, `posix_spawn()` (whose child only `exec`s), glibc's `_Fork()`, or a raw
/// `clone`/`syscall(SYS_fork)`: a child made by those last two, and then used without `exec`, is
/// not detected.
pub(crate) fn watch_forks() -> io::Result<()> {
    static WATCHING: OnceLock<i32> = OnceLock::new();
    // SAFETY: `pthread_atfork` only records the three function pointers (two null); `forked_child`
    // is an `extern "C" fn()` that lives for the whole program and is async-signal-safe, as a
    // child handler of a multi-threaded process must be.
    let rc = *WATCHING.get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(forked_child)) });
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// How many `fork`s separate this process from the one that started the program, counted since
/// [`watch_forks`] first ran: a value read before a `fork` differs from every value read in the
/// child. One relaxed load (a plain load on x86-64 and AArch64), cheap enough for every lock.
///
/// Relaxed suffices: the handler runs in the child's only thread before `fork` returns there, so
/// that thread sees the increment by program order, and threads it starts later see it through
/// the thread spawn.
#[inline(always)]
pub(crate) fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// Takes the one-byte lock at `offset`. With `wait`, blocks until it is granted and returns
/// `Ok(true)`; without, returns `Ok(false)` at once if another description holds a conflicting lock.
pub(crate) fn lock_range(file: &File, offset: u64, kind: LockKind, wait: bool) -> io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    set(file, offset, ty as libc::c_short, wait)
}

/// Whether another open file description holds a lock on the byte at `offset` that would conflict
/// with an exclusive one (`F_OFD_GETLK`): a question only, nothing is taken. Works through a
/// read-only descriptor too.
pub(crate) fn range_is_locked(file: &File, offset: u64) -> io::Result<bool> {
    let start = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: as in `set`: all-zero bytes are a valid `struct flock`, and OFD requires `l_pid` 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    // SAFETY: `fcntl(F_OFD_GETLK)` reads and writes one `struct flock` through the pointer, a
    // live local for the whole call; `file` keeps the descriptor open.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl as *mut libc::flock) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Keeps the open file description of `file`, and so every OFD lock taken through it, for the
/// rest of the process's life: a duplicate of its descriptor is never closed. `false` if `dup`
/// failed.
pub(crate) fn keep_description(file: &File) -> bool {
    // SAFETY: `dup` only reads the descriptor number, which `file` keeps open for the call; the
    // new descriptor is deliberately never closed.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) >= 0 }
}

/// Releases the one-byte lock at `offset`.
pub(crate) fn unlock_range(file: &File, offset: u64) -> io::Result<()> {
    set(file, offset, libc::F_UNLCK as libc::c_short, false).map(|_| ())
}

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`] from any process mapping
/// the same file, until `timeout`, or spuriously. Returns `Ok(false)` if the timeout passed.
///
/// The futex is not private (`FUTEX_WAIT` without `FUTEX_PRIVATE_FLAG`), so the kernel keys it by
/// the file page, and processes sharing the mapping wake each other.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the 4-byte word at `word` (a live, aligned `AtomicU32` borrowed for
    // the whole call) and the optional timespec (a live local or null); it writes nothing to
    // user memory.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The word had already changed, or a signal interrupted the sleep: let the caller re-check.
        Some(libc::EAGAIN | libc::EINTR) => Ok(true),
        Some(libc::ETIMEDOUT) => Ok(false),
        _ => Err(err),
    }
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of `word` as a key; it reads and writes no user
    // memory. A failure (impossible for a valid, aligned address) would only mean nobody is woken,
    // and waiters re-check on their timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            0usize,
            0u32,
        );
    }
}

/// Reserves disk blocks for `len` bytes at `offset`, extending the file if needed.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: `posix_fallocate` only acts on the descriptor, which `file` keeps open for the call;
    // it touches no user memory.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), offset, len) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// The effective user id of this process.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a process `pid` exists (possibly of another user).
pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
