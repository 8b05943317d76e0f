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

/// Takes the one-byte lock at `offset`. With `wait`, blocks until it is granted and returns
/// `Ok(true)`; without, returns `Ok(false)` at once if another description holds a conflicting lock.
pub(crate) fn lock_range(file: &File, offset: u64, kind: LockKind, wait: bool) -> io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    set(file, offset, ty as libc::c_short, wait)
}

/// Releases the one-byte lock at `offset`.
pub(crate) fn unlock_range(file: &File, offset: u64) -> io::Result<()> {
    set(file, offset, libc::F_UNLCK as libc::c_short, false).map(|_| ())
}
