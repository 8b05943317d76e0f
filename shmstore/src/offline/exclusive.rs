//! Holding a store file exclusively, and replacing it crash-atomically: the machinery that
//! `compact` and `upgrade` share.
//!
//! A rewrite
//!
//! 1. takes the store file's `flock` exclusively, without waiting ([`Exclusive::take`]): every
//!    process that has the store open holds it shared, so getting it proves nobody has the store
//!    open, and holding it keeps new openers out ([`Error::Busy`]) until the rewrite is done. It
//!    also takes the open byte of format version 2 (an OFD lock every opener holds) exclusively;
//! 2. removes the temporary files of rewrites that died ([`remove_leftovers`]);
//! 3. writes the complete new store into `.NAME.PID.NANOS.upgrading` beside the original
//!    ([`Exclusive::replace`]), `fsync`s it, renames it over the original and `fsync`s the
//!    directory.
//!
//! A crash at any point leaves the old file or the new one at the path, never a mix: the new file
//! is complete and durable before the rename, and the rename is atomic. A crash before the rename
//! leaves a temporary file that the next rewrite of the same store removes (and that nothing else
//! ever opens). An opener that was waiting for the `flock` of the old file finds, once it gets it,
//! that the path names another file, and opens that one.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::v2::header::OPEN_BYTE;
use crate::sys::file::{Link, OpenError};
use crate::sys::sync;
use crate::sys::{self, LockKind};

/// The suffix of a rewrite's temporary file.
const TEMP_SUFFIX: &str = ".upgrading";

/// How many bytes of the store's file name a temporary name keeps, so that the whole name stays
/// within the 255 bytes a file name may have.
const TEMP_NAME_KEEP: usize = 200;

/// How many times [`Exclusive::take`] opens the path again when it was replaced meanwhile.
const MAX_ATTEMPTS: usize = 16;

/// A store file held exclusively: no other process has it open, and none can open it while this
/// lives.
#[derive(Debug)]
pub(crate) struct Exclusive {
    /// The path as the caller gave it, for messages.
    path: PathBuf,
    /// The file's real path (symbolic links resolved): the rewrite replaces the file, not a link
    /// to it.
    real: PathBuf,
    /// The open file, whose description holds the exclusive `flock`.
    file: File,
}

impl Exclusive {
    /// Opens `path` read-write and takes its `flock` exclusively, without waiting:
    /// [`Error::InUse`] (naming the processes that hold it, when the kernel says) if any process
    /// has the store open. `action` names the operation for that message. A file with other hard
    /// links is [`Error::HardLinked`]: replacing it under one name would leave the old store
    /// under the others.
    pub(crate) fn take(path: &Path, action: &'static str) -> Result<Exclusive> {
        let io = |op, source| Error::Io { op, path: path.to_owned(), source };
        for _ in 0..MAX_ATTEMPTS {
            let real = fs::canonicalize(path).map_err(|e| Error::open_failed(path, OpenError::Io(e)))?;
            let file =
                sys::file::open_regular(&real, true, libc::O_NOFOLLOW).map_err(|e| Error::open_failed(path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::InUse { path: path.to_owned(), action, holders: sys::flock_holders(&file) })
                }
                Err(fs::TryLockError::Error(e)) => return Err(io("lock", e)),
            }
            // Every opener of a version-2 store also holds the open byte; an opener that does
            // not hold the `flock` (none should) is caught here.
            if !sys::lock_range(&file, OPEN_BYTE, LockKind::Exclusive, false).map_err(|e| io("lock", e))? {
                return Err(Error::InUse { path: path.to_owned(), action, holders: sys::flock_holders(&file) });
            }
            // The path may have been renamed over (by another rewrite that held the lock until
            // just now): then take what it names now.
            if sys::file::link_state(&real, &file).map_err(|e| io("stat", e))? == Link::Linked {
                let links = file.metadata().map_err(|e| io("stat", e))?.nlink();
                if links > 1 {
                    return Err(Error::HardLinked { path: path.to_owned(), action, links });
                }
                return Ok(Exclusive { path: path.to_owned(), real, file });
            }
        }
        Err(io(
            "open",
            io::Error::other(format!(
                "the file kept being replaced while it was opened; gave up after {MAX_ATTEMPTS} attempts"
            )),
        ))
    }

    /// The file, open read-write.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The path the caller named the store by.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the store with a new file that `build` writes: `build` gets the temporary file
    /// (empty, open read-write) and its path, and fills it completely. Then the temporary file
    /// gets the original's owner and group (as far as this process may give them: see
    /// [`keep_owner`]) and permission bits, is `fsync`ed and renamed over the original, and the
    /// directory is `fsync`ed. Extended attributes and ACLs are not carried over. If `build` or
    /// any step before the rename fails, the temporary file is removed and the original is left
    /// as it was.
    ///
    /// The lock is kept until `self` is dropped; it then goes with the old file's last
    /// descriptor.
    pub(crate) fn replace<T>(&self, build: impl FnOnce(&Path, &File) -> Result<T>) -> Result<T> {
        let io = |op, source| Error::Io { op, path: self.path.clone(), source };
        let dir = parent_dir(&self.real);
        let temp_path = dir.join(temp_name(file_name(&self.real)?, std::process::id(), now_nanos()));
        let temp = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&temp_path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EROFS) => Error::ReadOnlyFileSystem { path: self.path.clone() },
                Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: self.path.clone(), requested: 0 },
                _ => Error::Io { op: "create a file in", path: dir.to_owned(), source: e },
            })?;
        let staged = Staged { path: temp_path };
        let value = build(&staged.path, &temp)?;
        let meta = self.file.metadata().map_err(|e| io("stat", e))?;
        keep_owner(&temp, meta.uid(), meta.gid()).map_err(|e| io("chown", e))?;
        temp.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(|e| io("chmod", e))?;
        sync::fsync(&staged.path, &temp).map_err(|e| io("fsync", e))?;
        fs::rename(&staged.path, &self.real).map_err(|e| io("rename", e))?;
        staged.keep();
        sync::fsync_dir(dir).map_err(|e| io("fsync", e))?;
        Ok(value)
    }
}

/// Gives `file` (which this process just created) the owner `uid` and group `gid` of the file it
/// replaces, so that a rewrite run by root does not lock the store's owner out. A process that
/// may not give the file away (not root) keeps it, and gives it the group if it may (one of its
/// own groups); otherwise the file keeps this process's group. Either way, the permission bits
/// are copied afterwards (`chown` may clear set-id bits).
fn keep_owner(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    let meta = file.metadata()?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(uid), Some(gid)) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => match std::os::unix::fs::fchown(file, None, Some(gid)) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            other => other,
        },
        other => other,
    }
}

/// A temporary file that is removed on drop unless [`kept`](Staged::keep).
struct Staged {
    path: PathBuf,
}

impl Staged {
    fn keep(mut self) {
        // An empty path tells `drop` to leave the file. (Not `mem::forget`, which leaked the
        // path's buffer: AddressSanitizer's leak check found it.)
        self.path = PathBuf::new();
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// The name of a rewrite's temporary file for the store file named `name`:
/// `.NAME.PID.NANOS.upgrading`, with `NAME` cut to [`TEMP_NAME_KEEP`] bytes.
fn temp_name(name: &[u8], pid: u32, nanos: u128) -> OsString {
    let mut out = b".".to_vec();
    out.extend_from_slice(&name[..name.len().min(TEMP_NAME_KEEP)]);
    out.extend_from_slice(format!(".{pid}.{nanos}{TEMP_SUFFIX}").as_bytes());
    OsString::from_vec(out)
}

/// The pid in a temporary file name `candidate` of the store file named `name`, if it is one.
fn temp_pid(candidate: &[u8], name: &[u8]) -> Option<u32> {
    let kept = &name[..name.len().min(TEMP_NAME_KEEP)];
    let rest = candidate.strip_prefix(b".")?.strip_prefix(kept)?.strip_prefix(b".")?;
    let rest = rest.strip_suffix(TEMP_SUFFIX.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (pid, nanos) = rest.split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (all_digits(pid) && all_digits(nanos)).then(|| pid.parse().ok()).flatten()
}

/// Removes the temporary files that rewrites of the store at `ex` left behind when they died:
/// those whose process no longer exists. Files of a live process are left alone (a rewrite in
/// progress can only be one that holds another file's lock, which then was at the path). Returns
/// the paths it removed; errors removing them are ignored (the files stay, and harm nothing).
pub(crate) fn remove_leftovers(ex: &Exclusive) -> Vec<PathBuf> {
    let Ok(name) = file_name(&ex.real) else { return Vec::new() };
    let dir = parent_dir(&ex.real);
    let Ok(listing) = fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in listing.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = temp_pid(file_name.as_bytes(), name) else { continue };
        if pid == std::process::id() || i32::try_from(pid).is_ok_and(sys::process_exists) {
            continue;
        }
        let path = entry.path();
        if fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed.sort();
    removed
}

/// The last component of `real` (a canonical path, which has one).
fn file_name(real: &Path) -> Result<&[u8]> {
    real.file_name()
        .map(|n| n.as_bytes())
        .ok_or_else(|| Error::NotRegularFile { path: real.to_owned(), what: "a directory" })
}

/// The directory that holds `path`.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn temp_names_round_trip_and_nothing_else_matches() {
        let name = temp_name(b"app.shm", 4242, 17);
        assert_eq!(name, ".app.shm.4242.17.upgrading");
        assert_eq!(temp_pid(name.as_bytes(), b"app.shm"), Some(4242));
        for other in [
            "app.shm",
            ".app.shm.4242.upgrading",
            ".app.shm.x.17.upgrading",
            ".app.shm.4242.17.upgrading~",
            ".app.shmx.4242.17.upgrading",
            ".other.shm.4242.17.upgrading",
            ".app.shm..17.upgrading",
        ] {
            assert_eq!(temp_pid(other.as_bytes(), b"app.shm"), None, "{other}");
        }
        // A long name is cut, and still recognised.
        let long = vec![b'n'; 255];
        let name = temp_name(&long, 1, 2);
        assert!(name.len() <= 255, "{}", name.len());
        assert_eq!(temp_pid(name.as_bytes(), &long), Some(1));
    }

    fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn replace_swaps_in_the_new_file_with_the_old_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"old contents");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let ex = Exclusive::take(&path, "compact").unwrap();
        let old_ino = ex.file().metadata().unwrap().ino();
        let got = ex
            .replace(|temp, file| {
                assert!(temp.file_name().unwrap().to_str().unwrap().starts_with(".s."));
                file.write_all_at(b"new", 0).map_err(|e| Error::Io {
                    op: "write",
                    path: temp.to_owned(),
                    source: e,
                })?;
                Ok(7)
            })
            .unwrap();
        assert_eq!(got, 7);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let meta = fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), old_ino);
        assert_eq!(meta.mode() & 0o7777, 0o640);
        // Only the store is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_keeps_the_owner_when_run_by_root() {
        if sys::current_uid() != 0 {
            eprintln!("skipped: only root may give a file away");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"old");
        std::os::unix::fs::chown(&path, Some(4321), Some(8765)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        Exclusive::take(&path, "compact").unwrap().replace(|_, _| Ok(())).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (4321, 8765, 0o600));
    }

    #[test]
    fn a_failed_build_leaves_the_original_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"old");
        let err = Exclusive::take(&path, "compact")
            .unwrap()
            .replace(|temp, file| -> Result<()> {
                file.write_all_at(b"half", 0).unwrap();
                Err(Error::Corrupt { path: temp.to_owned(), detail: "made up".into() })
            })
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn take_refuses_a_file_whose_flock_another_description_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"x");
        let other = File::open(&path).unwrap();
        other.lock_shared().unwrap();
        let err = Exclusive::take(&path, "upgrade").unwrap_err();
        // This process holds it (through another descriptor), and is named.
        let me = std::process::id();
        assert!(
            matches!(&err, Error::InUse { action: "upgrade", holders, .. } if holders.iter().any(|h| h.0 == me)),
            "{err:?}"
        );
        drop(other);
        // And while the rewrite holds it, openers are kept out.
        let ex = Exclusive::take(&path, "upgrade").unwrap();
        assert!(File::open(&path).unwrap().try_lock_shared().is_err());
        drop(ex);
    }

    #[test]
    fn take_rewrites_the_target_of_a_symbolic_link_not_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "real", b"old");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        Exclusive::take(&link, "compact")
            .unwrap()
            .replace(|_, f| {
                f.write_all_at(b"new", 0).unwrap();
                Ok(())
            })
            .unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_file_with_other_hard_links_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"x");
        fs::hard_link(&path, dir.path().join("other")).unwrap();
        let err = Exclusive::take(&path, "compact").unwrap_err();
        assert!(matches!(err, Error::HardLinked { links: 2, action: "compact", .. }), "{err:?}");
        fs::remove_file(dir.path().join("other")).unwrap();
        Exclusive::take(&path, "compact").unwrap();
    }

    #[test]
    fn errors_name_what_is_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(Exclusive::take(&missing, "compact"), Err(Error::FileNotFound { .. })));
        assert!(matches!(
            Exclusive::take(dir.path(), "compact"),
            Err(Error::NotRegularFile { what: "a directory", .. })
        ));
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s", b"x");
        // A pid that no process has: above the largest pid Linux hands out (2^22).
        let dead = temp_name(b"s", (1 << 22) + 5, 1);
        let mine = temp_name(b"s", std::process::id(), 2);
        let init = temp_name(b"s", 1, 3);
        let other_store = temp_name(b"t", (1 << 22) + 5, 4);
        for name in [&dead, &mine, &init, &other_store] {
            fs::write(dir.path().join(name), b"partial").unwrap();
        }
        let ex = Exclusive::take(&path, "compact").unwrap();
        assert_eq!(remove_leftovers(&ex), [dir.path().canonicalize().unwrap().join(&dead)]);
        let mut left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        let mut want = vec![mine, init, other_store, OsString::from("s")];
        want.sort();
        assert_eq!(left, want);
    }
}
