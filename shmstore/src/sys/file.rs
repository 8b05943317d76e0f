//! Opening store files: never blocking on something that is not a regular file, and telling
//! whether a path still names the file a descriptor is open on.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why [`open_regular`] refused a path.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The `open` or `fstat` call failed.
    Io(io::Error),
    /// The path names something other than a regular file: what it is (`a FIFO (named pipe)`,
    /// `a directory`, ...).
    NotRegular(&'static str),
}

/// What a file type is, in words, for an error message; `None` for a regular file.
pub(crate) fn not_regular(ty: fs::FileType) -> Option<&'static str> {
    if ty.is_file() {
        None
    } else if ty.is_dir() {
        Some("a directory")
    } else if ty.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ty.is_socket() {
        Some("a socket")
    } else if ty.is_char_device() {
        Some("a character device")
    } else if ty.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// Opens `path` for reading (and writing, with `write`), without ever blocking on it: with
/// `O_NONBLOCK`, so that a FIFO at the path does not wait for a writer, then `fstat`, refusing
/// anything that is not a regular file before it is used, then clearing `O_NONBLOCK` again (it has
/// no effect on regular files today, but nothing later should depend on that). `extra` adds
/// `open` flags (`O_NOFOLLOW`). The descriptor is close-on-exec, as every descriptor std opens.
pub(crate) fn open_regular(path: &Path, write: bool, extra: i32) -> Result<File, OpenError> {
    // A directory cannot be opened for writing (EISDIR), which would hide what it is: open it
    // read-only first to say so.
    let file = fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | extra)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => OpenError::NotRegular("a directory"),
            _ => OpenError::Io(e),
        })?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(OpenError::NotRegular(what));
    }
    clear_nonblock(&file).map_err(OpenError::Io)?;
    Ok(file)
}

/// Clears `O_NONBLOCK` on `file`'s open file description.
fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `F_GETFL` only reads the descriptor's status flags; `file` keeps the descriptor open
    // for the call, and no user memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above; `F_SETFL` with an integer argument changes only the status flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What became of the name of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// `path` still names the file.
    Linked,
    /// Nothing is at `path`: the file was unlinked (or renamed away).
    Unlinked,
    /// Another file is at `path` now (renamed over the store, or put there after an unlink).
    Replaced,
}

/// Whether `path` still names the file `file` is open on: same device and inode, and the file
/// still has a link.
pub(crate) fn link_state(path: &Path, file: &File) -> io::Result<Link> {
    let open = file.metadata()?;
    let named = match fs::metadata(path) {
        Ok(named) => Some(named),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(match named {
        Some(named) if named.dev() == open.dev() && named.ino() == open.ino() => Link::Linked,
        Some(_) => Link::Replaced,
        None => Link::Unlinked,
    })
}

/// Whether `path` (not followed if it is a symbolic link) still names the file `file` is open on.
pub(crate) fn still_linked(path: &Path, file: &File) -> io::Result<bool> {
    let open = file.metadata()?;
    if open.nlink() == 0 {
        return Ok(false);
    }
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the description's `flock` shared, if no other description holds it exclusively:
/// `Ok(false)` if one does.
pub(crate) fn try_lock_shared(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}
