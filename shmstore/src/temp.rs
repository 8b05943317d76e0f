//! Temporary named stores: the type-safe counterpart of .NET's
//! `MemoryMappedFile.CreateOrOpen(name, size)` / `OpenExisting(name)`.
//!
//! A temporary store is found by a name instead of a path, and disappears by itself: it is
//! removed when the last process that has it open closes it, or dies, even by `SIGKILL`.
//!
//! # Where it lives
//!
//! The store is an ordinary store file named `shmstore.NAME` in the temporary-store directory:
//! `/dev/shm` (a tmpfs, so its pages live in memory and never reach a disk), or the directory named
//! by the environment variable [`SHMSTORE_TEMP_DIR`](TEMP_DIR_VAR) (for tests, and for systems
//! without `/dev/shm`). A file, rather than a `memfd` or a POSIX `shm_open` object, because a
//! `memfd` has no name another process can find, and because store creation publishes a complete
//! store with a hard link (which `/dev/shm` files support, and which `shm_open` offers no way to
//! do). Regions are created with mode `0600`, opened without following symbolic links
//! (`O_NOFOLLOW`), and refused unless they are regular files owned by the current user.
//!
//! # How it is removed
//!
//! Every process that has the store open holds a shared `flock` on the file for as long as it has
//! it open (every [`Store`] does; the kernel drops the lock when the process dies). The rules:
//!
//! 1. **Removal**: the file at `shmstore.NAME` is unlinked only by a process that holds the
//!    *exclusive* `flock` on that very file, after checking, while it holds the lock, that the
//!    name still refers to it (same device and inode). Nobody else can hold any lock on the file
//!    meanwhile, so nobody is attached to it when it goes.
//! 2. **Close**: when a process closes the store (its last [`Store`] clone and handle are dropped),
//!    it tries to turn its shared lock into an exclusive one without waiting. That succeeds only if
//!    no other process holds the file; the process then removes it (rule 1). A failed attempt drops
//!    the shared lock (Linux `flock` conversions are not atomic), so when several processes close
//!    at once, the last attempt finds no other holder and succeeds: the store never outlives its
//!    last user, and never disappears under one.
//! 3. **Open**: an opener opens the file, takes its shared lock, and then checks that the name
//!    still refers to the file it opened (device, inode, and a link count above zero). If a closer
//!    removed it between the `open` and the lock, the check fails and the opener starts over, so
//!    it never ends up attached to a removed store. Once the check passes, the file cannot be
//!    removed until the opener lets go (rule 1).
//! 4. **Create**: a new store is built in a private (0700) staging directory beside the name, with
//!    `store::create`, given mode 0600 there, and then hard-linked to its name, so it is never
//!    seen half-written or with wider permissions. The creator takes its shared lock on the new
//!    file *before* the link, so the store is never visible without a holder (see rule 5). It then
//!    reopens the file by its name (and locks that descriptor before letting go of the first), so
//!    that `/proc/PID/maps` and `lsof` show the store's name rather than the removed staging one.
//!    If the link fails because another process linked its store first, the creator opens that
//!    one instead.
//! 5. **Leftovers**: a store whose processes all died is a file nobody holds. Before taking its
//!    shared lock, an opener tries the exclusive lock without waiting on its freshly opened file;
//!    if that succeeds, nobody holds the file, and it is a leftover: the opener removes it (rule 1)
//!    and then reports it missing ([`Store::open_temp`]) or creates a fresh store
//!    ([`Store::open_or_create_temp`], [`Store::create_temp`]). [`Store::clean_temp`] removes every
//!    leftover in the directory at once.
//!
//! `flock` locks belong to an open file description, not to a process: every open of a temporary
//! store (even two in one process) has its own descriptor, and so behaves like a separate process.
//!
//! Tools that open the file by its path ([`Store::open`], the `shmstore` CLI) hold the shared lock
//! too, so the store is not removed under them, but they do not remove it when they close it; a
//! store they were the last to hold is a leftover for the next opener or `clean_temp`.
//!
//! A child made by `fork` shares its parent's open file description, and with it the parent's
//! `flock`: a [`Store`] it inherits fails with [`Error::Forked`] (see "Processes and fork" on
//! [`Store`]), and dropping it in the child does *not* close the store as rule 2 says, since taking
//! the shared description's lock exclusively would remove the store under the parent. The child
//! opens the store by name again to use it, with a description (and a shared `flock`) of its own.

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::file::create::{self, Creation};
use crate::file::state::{Release, StoreInner};
use crate::options::OpenOptions;
use crate::store::Store;
use crate::sys;

/// The environment variable naming the directory temporary stores live in (default:
/// [`DEFAULT_TEMP_DIR`]).
pub const TEMP_DIR_VAR: &str = "SHMSTORE_TEMP_DIR";

/// Where temporary stores live unless [`TEMP_DIR_VAR`] says otherwise: the Linux shared-memory
/// tmpfs.
pub const DEFAULT_TEMP_DIR: &str = "/dev/shm";

/// The longest temporary store name, in bytes. With the `shmstore.` prefix, the file name stays
/// well below the 255 bytes file systems allow.
pub const MAX_TEMP_NAME_LEN: usize = 200;

/// The file name of a temporary store is this prefix followed by its name.
const PREFIX: &str = "shmstore.";

/// A new store is built in a private directory named with this prefix (then the process id), so
/// that no other user can open it before it has its final permissions.
const STAGING_PREFIX: &str = ".shmstore-staging.";

/// How many times an open starts over because the store was removed or replaced under it before
/// giving up. Each restart means another process made progress (it removed or created the store),
/// so this is only a guard against an endless fight.
const MAX_ATTEMPTS: u32 = 10_000;

/// What makes a store temporary: kept in [`StoreInner`], whose drop calls [`TempRegion::release`].
#[derive(Debug)]
pub(crate) struct TempRegion {
    /// The store's name (for debugging).
    #[allow(dead_code)]
    name: String,
}

impl Release for TempRegion {
    /// The last step of closing the temporary store `file`, found at `path`: if no other process
    /// holds it, remove it. Called when the store's [`StoreInner`] is dropped, before the file is
    /// closed. Never fails: a store that cannot be removed now is a leftover for the next opener.
    fn release(&self, path: &Path, file: &File) {
        release(path, file);
    }
}

/// How an open treats an existing or a missing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create; an existing store in use is an error.
    Create,
    /// Open; a missing store is an error.
    Open,
    /// Open, creating if missing.
    OpenOrCreate,
}

impl Store {
    /// Creates the temporary store `name` with `capacity` bytes, for other processes of this user
    /// to open by name with [`Store::open_temp`]: the counterpart of .NET's
    /// `MemoryMappedFile.CreateNew(name, capacity)`, with the typed API of every store.
    ///
    /// A temporary store needs no path and cleans up after itself: it is removed when the last
    /// process that has it open closes it (drops its last [`Store`] clone and entry handle), or
    /// dies, even by `SIGKILL`. (A store left by processes that all died is removed by the next
    /// process that opens its name, or by [`Store::clean_temp`].) It is the file
    /// `shmstore.NAME` in `/dev/shm`, a memory-backed file system, or in the directory named by
    /// the environment variable [`SHMSTORE_TEMP_DIR`](crate::TEMP_DIR_VAR); the file has mode
    /// 0600, and a file at that path that is a symbolic link, not a regular file, or another
    /// user's is refused ([`Error::UnsafeTempRegion`]).
    ///
    /// The capacity is an initial size, for a store that grows: one below what the header and
    /// catalog need (20,544 bytes for the default 64 entries; .NET's common 4096, say) is rounded
    /// up to that minimum.
    ///
    /// Fails with [`Error::TempExists`] if a store of that name is in use; a leftover is replaced.
    /// Names are single file names of at most [`MAX_TEMP_NAME_LEN`](crate::MAX_TEMP_NAME_LEN)
    /// bytes, without control characters ([`Error::InvalidTempName`]).
    ///
    /// Tools that open the file by its path ([`Store::open`], the `shmstore` command) keep it from
    /// being removed while they have it open, but do not remove it when they close it. A child
    /// made by `fork` must open it again by name to use it: the store it inherits fails with
    /// [`Error::Forked`], and dropping that one in the child leaves the store alone.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::env::set_var("SHMSTORE_TEMP_DIR", dir.path());
    /// use shmstore::Store;
    ///
    /// let store = Store::create_temp("doc-create-temp", 1 << 20)?;
    /// let hits = store.object_or_init("hits", || 0u64)?;
    /// hits.update(|h| *h += 1)?;
    ///
    /// // Any process of this user can open it by name while it is open somewhere.
    /// let other = Store::open_temp("doc-create-temp")?;
    /// assert_eq!(other.object::<u64>("hits")?.load()?, 1);
    ///
    /// // Once the last user closes it, it is gone.
    /// drop((store, hits, other));
    /// let err = Store::open_temp("doc-create-temp").unwrap_err();
    /// assert!(matches!(err, shmstore::Error::TempNotFound { .. }));
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn create_temp(name: &str, capacity: u64) -> Result<Store> {
        open_in(&temp_dir()?, name, Mode::Create, Some(capacity), &OpenOptions::default())
    }

    /// Opens the temporary store `name` created by another process (or this one) with
    /// [`Store::create_temp`] or [`Store::open_or_create_temp`], at its own size: the counterpart
    /// of .NET's `MemoryMappedFile.OpenExisting(name)`. It stays until the last process that has
    /// it open, this one included, closes it.
    ///
    /// Fails with [`Error::TempNotFound`] ("no shared memory ...") if no process has it open. A
    /// leftover of processes that all died counts as missing, and is removed.
    pub fn open_temp(name: &str) -> Result<Store> {
        open_in(&temp_dir()?, name, Mode::Open, None, &OpenOptions::default())
    }

    /// Opens the temporary store `name`, creating it with `capacity` bytes if no process has it
    /// open (a leftover of processes that all died is replaced by a fresh store): the counterpart
    /// of .NET's `MemoryMappedFile.CreateOrOpen(name, capacity)`. An existing store opens at its
    /// own size. See [`Store::create_temp`] for how temporary stores live and go.
    pub fn open_or_create_temp(name: &str, capacity: u64) -> Result<Store> {
        open_in(&temp_dir()?, name, Mode::OpenOrCreate, Some(capacity), &OpenOptions::default())
    }

    /// Removes every temporary store in the temporary-store directory that no process holds: the
    /// leftovers of processes that all died (or were killed). Returns their names, sorted. Stores
    /// in use are left alone, and so are files of other users and files whose names are not
    /// temporary store names.
    ///
    /// Opening a leftover by name already removes it; this is for cleaning up the rest, e.g. at
    /// the start of a service or from the `shmstore clean-temp` command.
    pub fn clean_temp() -> Result<Vec<String>> {
        clean_in(&temp_dir()?)
    }
}

impl OpenOptions {
    /// Opens the temporary store `name` with these options: with [`create(true)`](Self::create)
    /// and a capacity, like [`Store::open_or_create_temp`], otherwise like [`Store::open_temp`].
    /// [`max_entries`](Self::max_entries) applies when the store is created; durability, maximum
    /// capacity and allocation apply to this opener. Temporary stores are always opened read-write
    /// (every opener may be the one that removes it), so `read_only(true)` is
    /// [`Error::InvalidOptions`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::env::set_var("SHMSTORE_TEMP_DIR", dir.path());
    /// use shmstore::Store;
    ///
    /// let store = Store::options().create(true).capacity(1 << 20).max_entries(512).open_temp("doc-options")?;
    /// assert_eq!(store.max_entries(), 512);
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn open_temp(&self, name: &str) -> Result<Store> {
        if self.read_only {
            return Err(Error::InvalidOptions("temporary stores are always opened read-write: drop read_only(true)"));
        }
        let (mode, capacity) = match (self.create, self.capacity) {
            (true, Some(capacity)) => (Mode::OpenOrCreate, Some(capacity)),
            (true, None) => return Err(Error::CapacityRequired { path: temp_dir()?.join(format!("{PREFIX}{name}")) }),
            (false, _) => (Mode::Open, None),
        };
        open_in(&temp_dir()?, name, mode, capacity, self)
    }
}

/// The temporary-store directory: `$SHMSTORE_TEMP_DIR`, or `/dev/shm`.
pub(crate) fn temp_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os(TEMP_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_TEMP_DIR),
    };
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => Err(Error::TempDir { dir, reason: "it is not a directory".into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Error::TempDir { dir, reason: "it does not exist".into() })
        }
        Err(e) => Err(Error::TempDir { dir, reason: e.to_string() }),
    }
}

/// Checks a temporary store name.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty: give the store a name, such as \"global_share_memory\"".to_owned()
    } else if name.len() > MAX_TEMP_NAME_LEN {
        format!("it is {} bytes long, more than the limit of {MAX_TEMP_NAME_LEN}: use a shorter name", name.len())
    } else if name == "." || name == ".." {
        "`.` and `..` are reserved: choose another name".to_owned()
    } else if name.contains('/') {
        "it contains `/`, but a name is a single file name: use another character, such as `_` or `.`".to_owned()
    } else if name.contains('\0') {
        "it contains a NUL character: use printable characters only".to_owned()
    } else if name.chars().any(char::is_control) {
        "it contains a control character: use printable characters only".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidTempName { name: name.to_owned(), reason })
}

/// Opens (or creates) the temporary store `name` in `dir`, following the rules of the module
/// documentation.
fn open_in(dir: &Path, name: &str, mode: Mode, capacity: Option<u64>, opts: &OpenOptions) -> Result<Store> {
    check_name(name)?;
    let path = dir.join(format!("{PREFIX}{name}"));
    let io = |op, source| Error::Io { op, path: path.clone(), source };
    let not_found = || Error::TempNotFound { name: name.to_owned() };
    for _ in 0..MAX_ATTEMPTS {
        let file = match open_region(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(capacity) = capacity.filter(|_| mode != Mode::Open) else { return Err(not_found()) };
                match create_region(dir, &path, capacity, opts.max_entries, opts.allocate)? {
                    // Locked and linked: nobody can remove it now (rules 1 and 4).
                    Some(file) => return attach(&path, name, file, opts),
                    // Another process created it first: open that one.
                    None => continue,
                }
            }
            Err(e) => return Err(open_error(&path, e)),
        };
        #[cfg(test)]
        tests::pause();
        check_region(&path, &file)?;
        // Rule 5: does anybody hold it?
        match file.try_lock() {
            Ok(()) => {
                // Nobody does: a leftover (or a file that was just removed and replaced, which the
                // check below tells apart). Remove it under the exclusive lock.
                if still_linked(&path, &file).map_err(|e| io("stat", e))? {
                    remove(&path).map_err(|e| io("remove", e))?;
                    if mode == Mode::Open {
                        return Err(not_found());
                    }
                }
                continue;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(io("lock", e)),
        }
        // Somebody holds it: a live store, or a process removing it right now, which the check
        // after our shared lock catches (rule 3).
        file.lock_shared().map_err(|e| io("lock", e))?;
        if !still_linked(&path, &file).map_err(|e| io("stat", e))? {
            continue;
        }
        if mode == Mode::Create {
            // It exists. It is in use unless everybody else closed it since we looked, in which
            // case we are the last holder and may replace it.
            match file.try_lock() {
                Ok(()) => {
                    // Turning a shared `flock` into an exclusive one is not atomic (see rule 2), so
                    // check again that the name still refers to this file before removing it.
                    if still_linked(&path, &file).map_err(|e| io("stat", e))? {
                        remove(&path).map_err(|e| io("remove", e))?;
                    }
                    continue;
                }
                Err(TryLockError::WouldBlock) => return Err(Error::TempExists { name: name.to_owned() }),
                Err(TryLockError::Error(e)) => return Err(io("lock", e)),
            }
        }
        return attach(&path, name, file, opts);
    }
    Err(io(
        "open",
        io::Error::other(format!("the store kept being removed or replaced; gave up after {MAX_ATTEMPTS} attempts")),
    ))
}

/// Turns `file`, holding its shared lock and still linked at `path`, into a [`Store`] that removes
/// it on close.
fn attach(path: &Path, name: &str, file: File, opts: &OpenOptions) -> Result<Store> {
    // A second descriptor of the same open file shares its lock: if the store cannot be opened
    // (`from_file` consumes `file`), it still lets us remove the store if we were its last holder,
    // instead of leaving a leftover behind.
    let spare = file.try_clone();
    // The store opens at its own size; everything else the caller chose applies.
    let mut opts = opts.clone();
    opts.capacity = None;
    opts.create = false;
    match StoreInner::from_file(path, file, &opts) {
        Ok(mut inner) => {
            inner.temp = Some(Box::new(TempRegion { name: name.to_owned() }));
            Ok(Store { inner: Arc::new(inner) })
        }
        Err(e) => {
            if let Ok(spare) = spare {
                release(path, &spare);
            }
            Err(e)
        }
    }
}

/// Closes the temporary store `file` at `path` as described by rule 2.
fn release(path: &Path, file: &File) {
    if file.try_lock().is_ok() && still_linked(path, file).unwrap_or(false) {
        #[cfg(test)]
        tests::pause();
        let _ = remove(path);
    }
}

/// Opens the file at `path` for reading and writing, refusing to follow a symbolic link, and
/// refusing (without blocking on it) anything that is not a regular file: a FIFO planted at the
/// path, say. A non-regular file is reported as `EISDIR`-like [`io::ErrorKind::InvalidInput`],
/// which [`open_error`] turns into [`Error::UnsafeTempRegion`].
fn open_region(path: &Path) -> io::Result<File> {
    sys::file::open_regular(path, true, libc::O_NOFOLLOW).map_err(|e| match e {
        sys::file::OpenError::Io(e) => e,
        sys::file::OpenError::NotRegular(what) => io::Error::new(io::ErrorKind::InvalidInput, NotRegular(what)),
    })
}

/// The payload of the error [`open_region`] gives for a path that is not a regular file.
#[derive(Debug)]
struct NotRegular(&'static str);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "it is {}, not a regular file", self.0)
    }
}

impl std::error::Error for NotRegular {}

/// The error for a failed open of an existing path.
fn open_error(path: &Path, e: io::Error) -> Error {
    let refused = |reason: &str| Error::UnsafeTempRegion { path: path.to_owned(), reason: reason.to_owned() };
    match e.raw_os_error() {
        Some(libc::ELOOP) => refused(
            "it is a symbolic link, which could redirect the store to another file: \
             remove it, or set SHMSTORE_TEMP_DIR to a directory only you can write to",
        ),
        _ if let Some(NotRegular(what)) = e.get_ref().and_then(|inner| inner.downcast_ref::<NotRegular>()) => {
            refused(&format!("it is {what}, not a regular file: remove it or choose another name"))
        }
        Some(libc::EACCES) => match fs::symlink_metadata(path) {
            Ok(meta) if meta.uid() != sys::current_uid() => refused(&foreign(meta.uid())),
            _ => Error::Io { op: "open", path: path.to_owned(), source: e },
        },
        _ => Error::Io { op: "open", path: path.to_owned(), source: e },
    }
}

/// Why another user's file is refused.
fn foreign(uid: u32) -> String {
    format!(
        "it belongs to user {uid}, not to this user ({}); temporary stores are private to their user: \
         choose another name, or set SHMSTORE_TEMP_DIR to a directory of your own",
        sys::current_uid()
    )
}

/// Checks that an opened region is a regular file owned by the current user.
fn check_region(path: &Path, file: &File) -> Result<()> {
    let meta = file.metadata().map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e })?;
    let reason = if !meta.file_type().is_file() {
        "it is not a regular file: remove it or choose another name".to_owned()
    } else if meta.uid() != sys::current_uid() {
        foreign(meta.uid())
    } else {
        return Ok(());
    };
    Err(Error::UnsafeTempRegion { path: path.to_owned(), reason })
}

/// Whether `path` still names the file `file` is open on (rule 3): same device and inode, and the
/// file still has a link.
fn still_linked(path: &Path, file: &File) -> io::Result<bool> {
    sys::file::still_linked(path, file)
}

/// Unlinks `path`; already gone is fine. Only called under the exclusive lock of the file `path`
/// was just checked to name (rule 1).
fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates a new store at `path` (rule 4): built with `store::create` in a private staging
/// directory, given mode 0600, locked shared, and hard-linked to `path`. Returns the locked file,
/// or `None` if another process linked its store to `path` first.
fn create_region(
    dir: &Path,
    path: &Path,
    capacity: u64,
    max_entries: Option<u32>,
    allocate: bool,
) -> Result<Option<File>> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    static ATTEMPT: AtomicU64 = AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let staging = dir.join(format!("{STAGING_PREFIX}{}.{attempt}.{nanos}", std::process::id()));
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(|e| io("create", e))?;
    let result = (|| {
        // The umask can only remove permission bits, but make sure nobody else can get in.
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o700)).map_err(|e| io("create", e))?;
        let staged = staging.join("store");
        // A temporary store is not meant to outlive a reboot: its creation syncs nothing.
        let how = Creation { max_entries, durability: crate::Durability::Process, allocate, exclusive: true };
        create::create(&staged, capacity, &how).map_err(|e| at_path(e, path))?;
        let file = open_region(&staged).map_err(|e| io("open", e))?;
        file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| io("chmod", e))?;
        file.lock_shared().map_err(|e| io("lock", e))?;
        match fs::hard_link(&staged, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(io("create", e)),
        }
        // Reopen it by its real name, for the kernel to report that name (in /proc/PID/maps,
        // lsof) rather than the staging one, which is about to be removed ("(deleted)"). The
        // staging descriptor's lock keeps the store in place meanwhile (rule 1), so the name
        // still refers to it; the check is cheap insurance.
        let named = open_region(path).map_err(|e| open_error(path, e))?;
        named.lock_shared().map_err(|e| io("lock", e))?;
        let (a, b) = (file.metadata().map_err(|e| io("stat", e))?, named.metadata().map_err(|e| io("stat", e))?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(io("open", io::Error::other("the new store was replaced as soon as it was created")));
        }
        Ok(Some(named))
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

/// Reports an error of `store::create` on the staging file against the store's real path.
fn at_path(e: Error, path: &Path) -> Error {
    match e {
        Error::CapacityTooLarge { requested, maximum, .. } => {
            Error::CapacityTooLarge { path: path.to_owned(), requested, maximum }
        }
        Error::DiskFull { requested, .. } => Error::DiskFull { path: path.to_owned(), requested },
        Error::Io { op, source, .. } => Error::Io { op, path: path.to_owned(), source },
        other => other,
    }
}

/// Removes the leftovers in `dir`: see [`Store::clean_temp`].
fn clean_in(dir: &Path) -> Result<Vec<String>> {
    let io = |source| Error::Io { op: "read directory", path: dir.to_owned(), source };
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if let Some(name) = file_name.strip_prefix(PREFIX) {
            if check_name(name).is_err() {
                continue;
            }
            let path = entry.path();
            let Ok(file) = open_region(&path) else { continue };
            if check_region(&path, &file).is_ok()
                && file.try_lock().is_ok()
                && still_linked(&path, &file).unwrap_or(false)
                && remove(&path).is_ok()
            {
                removed.push(name.to_owned());
            }
        } else if let Some(rest) = file_name.strip_prefix(STAGING_PREFIX) {
            // The staging directory of a creator that died before it could remove it.
            let pid = rest.split('.').next().and_then(|pid| pid.parse::<i32>().ok()).filter(|&pid| pid > 0);
            let path = entry.path();
            let ours = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == sys::current_uid());
            if let (Some(pid), true) = (pid, ours) {
                if !sys::process_exists(pid) {
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Microseconds to sleep at the points where the races happen: between an opener's `open` and
    /// its lock, and while a closer holds the exclusive lock before it removes the store. Only the
    /// race test sets it.
    static PAUSE_MICROS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn pause() {
        let micros = PAUSE_MICROS.load(Ordering::Relaxed);
        if micros > 0 {
            std::thread::sleep(Duration::from_micros(micros));
        }
    }

    /// Whether `store` is attached to the file its path names now.
    fn attached(store: &Store) -> bool {
        still_linked(store.path(), &store.inner.file).unwrap()
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b", "a\nb", "\u{7f}"] {
            assert!(matches!(check_name(bad), Err(Error::InvalidTempName { .. })), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(MAX_TEMP_NAME_LEN + 1)).is_err());
        for good in ["a", "global_share_memory", "...", ".hidden", "ümlaut €", &"x".repeat(MAX_TEMP_NAME_LEN)] {
            check_name(good).unwrap();
        }
    }

    /// Threads (each opening the store on its own file descriptor, so with their own `flock`s, as
    /// separate processes would) close and open the store concurrently, with pauses that widen
    /// the race windows; after every open, the descriptor is the file the name refers to, and a
    /// fresh opener sees what was written through it.
    #[test]
    fn an_opener_is_never_attached_to_a_removed_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(tmp.path().to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let removals = Arc::new(AtomicU64::new(0));
        PAUSE_MICROS.store(200, Ordering::Relaxed);
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let (dir, stop, removals) = (dir.clone(), stop.clone(), removals.clone());
                std::thread::spawn(move || {
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) || rounds < 20 {
                        rounds += 1;
                        let store = if t % 2 == 0 {
                            open_in(&dir, "race", Mode::OpenOrCreate, Some(1 << 16), &OpenOptions::default()).unwrap()
                        } else {
                            match open_in(&dir, "race", Mode::Open, None, &OpenOptions::default()) {
                                Ok(store) => store,
                                Err(Error::TempNotFound { .. }) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        };
                        assert!(attached(&store), "attached to a removed store");
                        let token = (t << 32) | rounds;
                        let cell = store.object_or_init(&format!("t{t}"), || 0u64).unwrap();
                        cell.store(token).unwrap();
                        let fresh = open_in(&dir, "race", Mode::Open, None, &OpenOptions::default()).unwrap();
                        assert!(attached(&fresh));
                        assert_eq!(fresh.object::<u64>(&format!("t{t}")).unwrap().load().unwrap(), token);
                        drop((fresh, cell));
                        let path = store.path().to_owned();
                        drop(store);
                        if !path.exists() {
                            removals.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
        PAUSE_MICROS.store(0, Ordering::Relaxed);
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
        // Everybody closed it: it is gone, and so is every staging directory.
        assert_eq!(fs::read_dir(&*dir).unwrap().count(), 0);
        assert!(removals.load(Ordering::Relaxed) > 0, "the store was never removed between rounds");
    }

    #[test]
    fn a_failed_open_of_a_store_it_created_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_in(dir.path(), "huge", Mode::Create, Some(u64::MAX), &OpenOptions::default()).unwrap_err();
        match err {
            Error::CapacityTooLarge { path, .. } => assert_eq!(path, dir.path().join("shmstore.huge")),
            other => panic!("{other}"),
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_staging_directories_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid i32::MAX (pid_max is at most 2^22).
        let stale = dir.path().join(format!("{STAGING_PREFIX}{}.0.0", i32::MAX));
        let live = dir.path().join(format!("{STAGING_PREFIX}{}.0.0", std::process::id()));
        for d in [&stale, &live] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("store"), b"x").unwrap();
        }
        assert!(clean_in(dir.path()).unwrap().is_empty());
        assert!(!stale.exists());
        assert!(live.exists());
        let store = open_in(dir.path(), "owned", Mode::Create, Some(1 << 16), &OpenOptions::default()).unwrap();
        assert_eq!(fs::metadata(store.path()).unwrap().mode() & 0o777, 0o600);
        assert!(attached(&store));
    }
}
