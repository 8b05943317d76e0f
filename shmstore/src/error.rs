//! The one error type of shmstore.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::diff::LayoutDiff;
use crate::layout::InvalidValue;
use crate::sys::file::OpenError;

/// Everything that can go wrong in shmstore. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} `{path}` failed: {source}")]
    Io {
        /// What was being done (`open`, `map`, `lock`, ...).
        op: &'static str,
        /// The store file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The store file does not exist.
    #[error(
        "store file `{path}` does not exist: create it with Store::open_or_create or Store::options().create(true)"
    )]
    FileNotFound {
        /// The path that was opened.
        path: PathBuf,
    },

    /// The file exists but is not a shmstore file.
    #[error("`{path}` is not a shmstore file ({reason}): check the path, or delete the file if it is a leftover")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The file was written by a format version this build does not understand.
    #[error("`{path}` uses store format v{found}; this build reads up to v{supported}: upgrade shmstore to open it")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The file's format version.
        found: u32,
        /// The version this build supports.
        supported: u32,
    },

    /// The file was written on a machine with the other byte order.
    #[error("`{path}` was written on a machine with the other byte order: open it on a machine of that byte order, or export and re-import its data")]
    WrongEndianness {
        /// The file.
        path: PathBuf,
    },

    /// A checksum did not match: the file was damaged or written by something other than shmstore.
    #[error("`{path}`: the checksum of {what} does not match: the file is damaged; restore it from a backup")]
    BadChecksum {
        /// The file.
        path: PathBuf,
        /// Which block (`the header`, `entry in catalog slot 3`).
        what: String,
    },

    /// The file is shorter than its header says: another program truncated it (shmstore never
    /// shrinks a store). Processes that had it mapped die of `SIGBUS` when they touch the lost
    /// pages.
    #[error("`{path}` is {actual} bytes long but its header records a capacity of {expected} bytes: another program truncated it (shmstore never shrinks a store, and processes that map it die of SIGBUS on the lost pages); restore it from a backup, and make programs that shrink or replace store files take the file's exclusive flock first")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The length the header requires.
        expected: u64,
        /// The actual length.
        actual: u64,
    },

    /// Some structure in the file is impossible (for example an entry that points outside it).
    #[error("`{path}` is corrupt: {detail}; restore it from a backup")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A new store was requested without a capacity.
    #[error("creating `{path}` needs a capacity: use Store::open_or_create(path, bytes) or Store::options().capacity(bytes)")]
    CapacityRequired {
        /// The file.
        path: PathBuf,
    },

    /// The requested capacity is smaller than the file or than the minimum a store needs.
    #[error("capacity {requested} bytes for `{path}` is too small: it must be at least {minimum} bytes{}", if *.shrink { " (a store never shrinks, because shrinking a mapped file crashes the processes that map it)" } else { " (header and catalog need that much)" })]
    CapacityTooSmall {
        /// The file.
        path: PathBuf,
        /// The capacity asked for.
        requested: u64,
        /// The smallest acceptable capacity.
        minimum: u64,
        /// Whether the request would have shrunk an existing file.
        shrink: bool,
    },

    /// Conflicting options were given to [`OpenOptions`](crate::OpenOptions).
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),

    /// No entry has this name.
    #[error("no entry named `{name}` in the store: create it with object_or_init / array_or_init, or check the name (Store::entries lists them)")]
    NotFound {
        /// The name looked up.
        name: String,
    },

    /// The entry exists with a different layout than the type it was opened with.
    ///
    /// Its message lists what differs, field by field, from the stored layout to the requested
    /// one (see [`LayoutDiff`]). Both its `Display` and its `Debug` show the fingerprints in hex
    /// (see [`Fingerprint`]), as `shmstore inspect` does.
    #[error("entry `{name}` holds {found_type} v{found_version} (fingerprint {found_fingerprint:016x}), but it was opened as {expected_type} v{expected_version} (fingerprint {expected_fingerprint:016x}); from the stored layout to the requested one:\n{}\nopen it with the type it was created with, or convert it with Store::migrate", diff_text(diff))]
    LayoutMismatch {
        /// The entry.
        name: String,
        /// The requested type's name.
        expected_type: String,
        /// The stored type's name.
        found_type: String,
        /// The requested type's version.
        expected_version: u32,
        /// The stored version.
        found_version: u32,
        /// The requested type's fingerprint ([`Layout::fingerprint`](crate::Layout::fingerprint)).
        expected_fingerprint: Fingerprint,
        /// The stored fingerprint ([`EntryInfo::fingerprint`](crate::EntryInfo::fingerprint)).
        found_fingerprint: Fingerprint,
        /// What differs, field by field; `None` if the stored layout descriptor could not be read.
        diff: Option<LayoutDiff>,
    },

    /// The entry exists but is of another kind than was asked for: an object where an array was
    /// asked for, an array where a byte region was, and so on.
    #[error("entry `{name}` is of kind {found}, not {expected}: open it with Store::{found}")]
    KindMismatch {
        /// The entry.
        name: String,
        /// What was asked for.
        expected: &'static str,
        /// What the entry is.
        found: &'static str,
    },

    /// The type cannot be stored: it is aligned to more than a page, or its layout descriptor
    /// cannot be recorded (for example, it nests too deeply).
    #[error("type {type_name} cannot be stored in entry `{name}`: {reason}")]
    UnsupportedLayout {
        /// The entry.
        name: String,
        /// The type.
        type_name: String,
        /// Why, and what to do.
        reason: String,
    },

    /// A change to an entry updated in place cannot be rolled back.
    #[error("entry `{name}` is changed in place (it is an array or holds atomics), so its changes cannot be rolled back; they were kept")]
    RollbackUnsupported {
        /// The entry.
        name: String,
    },

    /// The entry name is empty, too long, or holds control characters.
    #[error("invalid entry name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// An index range reaches past the end of an array, a byte region or an
    /// [`ArrayView`](crate::ArrayView). For a view, `name` is the entry's name followed by the view's
    /// range (`samples[10..20]`), and `start`, `end` and `len` count from the view's start.
    #[error("{what} {start}..{end} is out of bounds for `{name}`, which has {len} elements: keep indices below {len}")]
    OutOfBounds {
        /// The entry.
        name: String,
        /// What was out of range (`read_at`, `write_at`, `index`).
        what: &'static str,
        /// First index asked for.
        start: u64,
        /// One past the last index asked for.
        end: u64,
        /// The array's length.
        len: u64,
    },

    /// The data area has no room for the new entry, and the store may not grow enough (it was
    /// opened read-only, or the entry would take it past its maximum capacity).
    #[error("store `{path}` is full: the new entry needs {needed} bytes but {available} are free of {capacity}, and the store may not grow past its maximum capacity: raise it, e.g. Store::options().max_capacity({suggested})")]
    StoreFull {
        /// The file.
        path: PathBuf,
        /// Bytes the entry needs, including alignment and its schema.
        needed: u64,
        /// Bytes still free.
        available: u64,
        /// The store's capacity.
        capacity: u64,
        /// A capacity that would fit the entry.
        suggested: u64,
    },

    /// The store already holds the number of entries that
    /// [`OpenOptions::max_entries`](crate::OpenOptions::max_entries) capped it to when it was
    /// created. (Without that option, the catalog grows without limit.)
    #[error("store `{path}` already holds its maximum of {max_entries} entries, set when it was created: remove entries (Store::remove), or create a new store without Store::options().max_entries(n), or with a larger n")]
    CatalogFull {
        /// The file.
        path: PathBuf,
        /// The catalog's size.
        max_entries: u32,
    },

    /// A write was attempted on a store opened read-only.
    #[error("store `{path}` is open read-only: {action} needs a read-write open (Store::options().read_only(false))")]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// What was refused.
        action: &'static str,
    },

    /// The lock is held elsewhere and the caller asked not to wait.
    #[error("entry `{name}` is locked by another thread or process: retry later, or use read()/write() to wait")]
    WouldBlock {
        /// The entry.
        name: String,
    },

    /// A call with a timeout gave up: every timeout in the API is this one error, and
    /// `waited_for` says what the call was waiting for.
    ///
    /// - [`WaitedFor::Lock`]: a `read_timeout` or `write_timeout` did not get the entry's lock,
    ///   because another thread or process held it all along;
    /// - [`WaitedFor::Change`]: a `wait_for_change` saw no commit to the entry. That is the normal
    ///   outcome of a quiet interval, not a failure: call `wait_for_change` again to keep waiting.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmstore::{Error, Store, WaitedFor};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open_or_create(dir.path().join("t.shm"), 1 << 20)?;
    /// let ticks = store.object_or_init("ticks", || 0u64)?;
    /// match ticks.wait_for_change(ticks.version(), Duration::from_millis(1)) {
    ///     Ok((value, _)) => println!("new value {value}"),
    ///     Err(Error::Timeout { waited_for: WaitedFor::Change, .. }) => println!("quiet; wait again"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    #[error("{}", timeout_text(name, *waited, *waited_for))]
    Timeout {
        /// The entry.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// What the caller was waiting for: the entry's lock, or a change to it.
        waited_for: WaitedFor,
    },

    /// The entry's bytes are not a valid value of its type.
    #[error("entry `{name}` holds bytes that are not a valid {type_name}: {invalid}; something other than shmstore wrote to the file, so restore it or overwrite the value")]
    InvalidValue {
        /// The entry.
        name: String,
        /// The type it was read as.
        type_name: String,
        /// Which field is bad, and how.
        invalid: InvalidValue,
    },

    /// The entry lies beyond the part of the file this process has mapped: another process grew the
    /// store after this one opened it.
    #[error("entry `{name}` lies beyond the {mapped} bytes this process mapped: another process grew the store; reopen it with Store::open")]
    BeyondMapping {
        /// The entry.
        name: String,
        /// The mapped length.
        mapped: u64,
    },

    /// No temporary store of this name is open in any process (a leftover of processes that all
    /// died counts as missing).
    #[error("no shared memory named `{name}`: no process has this temporary store open; create it with Store::create_temp or Store::open_or_create_temp (a temporary store disappears when the last process using it closes it)")]
    TempNotFound {
        /// The name looked up.
        name: String,
    },

    /// [`Store::create_temp`](crate::Store::create_temp) found the temporary store in use.
    #[error("temporary store `{name}` already exists and is in use by another process: open it with Store::open_temp or Store::open_or_create_temp, or choose another name")]
    TempExists {
        /// The name.
        name: String,
    },

    /// The temporary store name cannot be used.
    #[error("invalid temporary store name {name:?}: {reason}")]
    InvalidTempName {
        /// The name as given.
        name: String,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// The file at a temporary store's path is not safe to use: a symbolic link, not a regular
    /// file, or another user's.
    #[error("refusing to use `{path}` as a temporary store: {reason}")]
    UnsafeTempRegion {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// The directory for temporary stores cannot be used.
    #[error("cannot keep temporary stores in `{dir}`: {reason}; set SHMSTORE_TEMP_DIR to a writable directory (a tmpfs such as /dev/shm keeps them in memory)")]
    TempDir {
        /// The directory (`/dev/shm` or `$SHMSTORE_TEMP_DIR`).
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The store was opened before this process was forked from the one that opened it. A forked
    /// child shares its parent's open file, and with it the parent's locks, so it would not be
    /// excluded from the parent: the child must open the store again.
    #[error("`{path}` was opened before fork(), by the parent of this process, and a child shares the parent's locks: open the store again in the child (Store::open, Store::open_temp, ...) and use that")]
    Forked {
        /// The store file.
        path: PathBuf,
    },

    /// The calling thread asked for a lock that it could never get, because it holds a
    /// conflicting one on the same entry itself (through this [`Store`](crate::Store) or another
    /// one of the same file): a write while it reads or writes the entry, or a read while it
    /// writes it. Waiting would wait forever. (A thread that reads an entry may read it again:
    /// re-entrant reads are granted, even while a writer waits.)
    #[error("{requested} `{name}` would wait forever for {held}, which this same thread holds: {}", deadlock_fix(.held))]
    WouldDeadlock {
        /// The entry (or, for growing the store, its path).
        name: String,
        /// What this thread holds: `a read guard on it`, `a write guard on it` (or `the store's
        /// catalog lock`, which no caller's code runs under, so this would be a bug in shmstore).
        held: &'static str,
        /// What it asked for: `a read lock on`, `a write lock on`, `creating`, `migrating` or
        /// `growing`.
        requested: &'static str,
    },

    /// The path names something that is not a regular file (a FIFO, a directory, a device, a
    /// socket). It is refused before anything waits on it.
    #[error("`{path}` is {what}, not a regular file: a store is a regular file; check the path")]
    NotRegularFile {
        /// The path that was opened.
        path: PathBuf,
        /// What it is (`a FIFO (named pipe)`, `a directory`, ...).
        what: &'static str,
    },

    /// The store file was renamed over or unlinked while this process had it open: this process
    /// still uses the old file, while new openers of the path get another one (or none).
    #[error("`{path}` no longer names the store this process has open: {}; this process still uses the old file, which nobody else will see: close this store and open the path again", if *.unlinked { "it was deleted (or renamed away)" } else { "another file was renamed over it (or put there after it was deleted)" })]
    Replaced {
        /// The store's path.
        path: PathBuf,
        /// Whether nothing is at the path any more (rather than another file).
        unlinked: bool,
    },

    /// Another process holds the store file exclusively (its whole-file `flock`), as a tool that
    /// compacts, shrinks or replaces a store does.
    #[error("another process holds `{path}` exclusively (a tool compacting or replacing it?){}: retry later, or wait for it with Store::options().lock_timeout(duration)", match .waited { Some(w) => format!(" and still did after {w:?}"), None => String::new() })]
    Busy {
        /// The store file.
        path: PathBuf,
        /// How long the open waited ([`OpenOptions::lock_timeout`](crate::OpenOptions::lock_timeout)),
        /// if it did.
        waited: Option<Duration>,
    },

    /// [`OpenOptions::create_new`](crate::OpenOptions::create_new) found a file at the path.
    #[error("`{path}` already exists: open it with Store::open, or drop create_new(true) to open an existing store")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },

    /// The file system has no room for the disk blocks that
    /// [`OpenOptions::allocate`](crate::OpenOptions::allocate) reserves.
    #[error("no room on the file system of `{path}` to reserve {requested} bytes (OpenOptions::allocate(true)): free some space, or ask for a smaller capacity")]
    DiskFull {
        /// The store file.
        path: PathBuf,
        /// The store size that was to be reserved.
        requested: u64,
    },

    /// A capacity larger than this process can ever map was asked for.
    #[error("capacity {requested} bytes for `{path}` is larger than this process's address space allows (at most {maximum} bytes): ask for less")]
    CapacityTooLarge {
        /// The file.
        path: PathBuf,
        /// The capacity asked for.
        requested: u64,
        /// The largest capacity a store can have.
        maximum: u64,
    },

    /// An array or byte region was asked for with more bytes than any store can hold.
    #[error("entry `{name}`: {len} values of {elem_size} bytes each are more than a store can hold (at most {maximum} bytes): ask for a shorter array")]
    EntryTooLarge {
        /// The entry.
        name: String,
        /// The number of values asked for.
        len: u64,
        /// The size of one value.
        elem_size: u64,
        /// The largest store capacity.
        maximum: u64,
    },

    /// The store file lies on a read-only file system, and it was opened for writing.
    #[error("`{path}` is on a read-only file system: open it read-only (Store::options().read_only(true).open(path)), or remount the file system read-write")]
    ReadOnlyFileSystem {
        /// The file.
        path: PathBuf,
    },

    /// The path is a symbolic link to a file that does not exist.
    #[error("`{path}` is a symbolic link to `{target}`, which does not exist: check the link")]
    DanglingSymlink {
        /// The link.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },

    /// Growing the store failed because this process could not map its new size (its address
    /// space, `ulimit -v`, is too small). The store was left at its old size.
    #[error("could not map {capacity} bytes of `{path}` to grow it ({source}): this process's address space is too small (ulimit -v?); the store keeps its old size: ask for less, or raise the limit")]
    GrowthFailed {
        /// The file.
        path: PathBuf,
        /// The capacity that could not be mapped.
        capacity: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A layout compiled in another language (a struct from `shmstore header`, given to the C ABI
    /// as its size and fingerprint, or to [`UntypedObject::expect_layout`](crate::UntypedObject::expect_layout))
    /// is not the entry's stored layout: the program was built against another version of the
    /// entry's type, or the entry was migrated since.
    #[error("entry `{name}` holds {found_type} ({found_size} bytes, fingerprint {found_fingerprint}), but the caller's compiled layout is {expected_size} bytes with fingerprint {expected_fingerprint}: regenerate the header with `shmstore header` and rebuild, or migrate the entry to the caller's layout")]
    ForeignLayoutMismatch {
        /// The entry.
        name: String,
        /// The stored type's name.
        found_type: String,
        /// The stored value's (or element's) size in bytes.
        found_size: u64,
        /// The stored fingerprint.
        found_fingerprint: Fingerprint,
        /// The size the caller compiled.
        expected_size: u64,
        /// The fingerprint the caller compiled.
        expected_fingerprint: Fingerprint,
    },

    /// A byte buffer given to an untyped handle ([`UntypedObject`](crate::UntypedObject),
    /// [`UntypedArray`](crate::UntypedArray), the C ABI) does not fit the entry's values.
    #[error("entry `{name}`: {what} was given {len} bytes, but {}", if *.exact { format!("its value is {elem_size} bytes: pass a buffer of exactly {elem_size} bytes") } else { format!("that is not a whole number of its {elem_size}-byte elements: pass a multiple of {elem_size} bytes") })]
    BufferSize {
        /// The entry.
        name: String,
        /// The call (`load_into`, `write_at`, ...).
        what: &'static str,
        /// The buffer's length.
        len: u64,
        /// The size of one value (or element) of the entry.
        elem_size: u64,
        /// Whether the buffer must be exactly one value (an object) rather than whole elements
        /// (an array).
        exact: bool,
    },

    /// A conditional commit ([`UntypedObject::store_bytes_if`](crate::UntypedObject::store_bytes_if))
    /// found the object at another version than the one it was based on: another writer
    /// committed in between, and this commit was not made.
    #[error("entry `{name}` is at version {found}, not {expected}: another writer committed first; load it again, re-apply the change and retry")]
    VersionConflict {
        /// The entry.
        name: String,
        /// The version the commit was based on.
        expected: u64,
        /// The version the object is at.
        found: u64,
    },

    /// The entry this handle refers to was removed ([`Store::remove`](crate::Store::remove)), in
    /// this process or another. Its bytes are never read or written through the handle again.
    #[error("entry `{name}` was removed from the store: this handle is no longer valid; look the name up again (it is NotFound unless the entry was created anew)")]
    Removed {
        /// The entry's name, as the handle knew it.
        name: String,
    },

    /// The entry this handle refers to was renamed ([`Store::rename`](crate::Store::rename)) or
    /// resized ([`SharedArray::resize`](crate::SharedArray::resize)), in this process or another:
    /// the handle's view of it is out of date.
    #[error("entry `{name}` was renamed or resized and is now `{to}`: open it again by that name (Store::array, Store::object, Store::bytes)")]
    Moved {
        /// The entry's name, as the handle knew it.
        name: String,
        /// The entry's name now.
        to: String,
    },

    /// The file is a format-v1 store, which this build opens read-only.
    #[error("`{path}` is a format v1 store, which this build opens read-only: convert it with `shmstore upgrade {path}` (with the store closed everywhere), or open it with Store::options().read_only(true)")]
    UpgradeRequired {
        /// The file.
        path: PathBuf,
    },

    /// [`Store::rename`](crate::Store::rename) was asked to give an entry a name that another
    /// entry already has.
    #[error("cannot rename entry `{from}` to `{to}`: an entry named `{to}` exists; remove it first (Store::remove) or choose another name")]
    NameTaken {
        /// The entry to rename.
        from: String,
        /// The name already in use.
        to: String,
    },

    /// An offline rewrite ([`compact`](crate::compact), [`upgrade`](crate::upgrade)) found the
    /// store open: it replaces the file, which it may do only while no process has it open (it
    /// checks through the file's `flock`, which every process that has the store open holds).
    #[error("`{path}` is open in {}: {action} replaces the file and needs the store closed everywhere: close it in those processes (or stop them) and run {action} again", holders_text(.holders))]
    InUse {
        /// The store file.
        path: PathBuf,
        /// What was refused: `compact` or `upgrade`.
        action: &'static str,
        /// The processes that hold the store open, as far as the kernel tells (`/proc/locks`):
        /// pid and command name (empty if unknown). Empty if it does not say.
        holders: Vec<(u32, String)>,
    },

    /// An offline rewrite ([`compact`](crate::compact), [`upgrade`](crate::upgrade)) found that
    /// the store file has other names (hard links): it replaces the file under one name only, and
    /// the others would go on naming the old store.
    #[error("`{path}` has {links} names (hard links): {action} replaces the file under this name only, and the other names would keep the old store: remove the other links (`find / -samefile {path}` lists them), then run {action} again")]
    HardLinked {
        /// The store file.
        path: PathBuf,
        /// What was refused: `compact` or `upgrade`.
        action: &'static str,
        /// How many names the file has.
        links: u64,
    },

    /// Robust lock mode: the lock of entry `name` (or of the catalog) can no longer be taken,
    /// because a process that does not follow shmstore's protocol unlocked it, after its previous
    /// holder died, without repairing it. Nobody can take it until the store's locks are reset,
    /// which happens when a process opens the store while no other process has it open.
    #[error("the lock of `{name}` in `{path}` cannot be recovered: a process that does not follow shmstore's protocol unlocked it after its holder died, without repairing it; close the store in every process and open it again, which resets its locks")]
    LockNotRecoverable {
        /// The file.
        path: PathBuf,
        /// The entry (or `the catalog`).
        name: String,
    },

    /// The processes that have the store open lock it in a way this opener cannot share: another
    /// lock mode than the one asked for, or, in robust mode, another mutex ABI (a binary built
    /// against another libc, glibc or musl) or another PID namespace (another container). Robust
    /// mode's mutexes store thread ids and libc-specific layouts, so such processes would break
    /// each other's locks silently; the OFD lock mode works across both.
    #[error("`{path}` is open in other processes {reason}: processes of different libcs or PID namespaces can share a store only in ofd lock mode; close it everywhere and open it with Store::options().lock_mode(LockMode::Ofd) in every process")]
    LockModeMismatch {
        /// The file.
        path: PathBuf,
        /// What differs, as "with X, and this process Y".
        reason: String,
    },
}

/// Who holds a store open, in words, for [`Error::InUse`].
fn holders_text(holders: &[(u32, String)]) -> String {
    const SHOWN: usize = 5;
    if holders.is_empty() {
        return "another process".to_owned();
    }
    let mut text = holders
        .iter()
        .take(SHOWN)
        .map(|(pid, name)| if name.is_empty() { format!("process {pid}") } else { format!("process {pid} ({name})") })
        .collect::<Vec<_>>()
        .join(", ");
    if holders.len() > SHOWN {
        text.push_str(&format!(" and {} more", holders.len() - SHOWN));
    }
    text
}

/// A layout fingerprint ([`Layout::fingerprint`](crate::Layout::fingerprint), a `u64`) as
/// [`Error::LayoutMismatch`] carries it, so that its `Debug` shows it in hex like its `Display`
/// does, and like `shmstore inspect` prints fingerprints.
///
/// `Display` gives 16 hex digits (`f385fdcb866f7774`), `Debug` the same as a Rust literal
/// (`0xf385fdcb866f7774`), and `{:x}` / `{:X}` format it like the `u64`. It compares equal to its
/// `u64`, and converts to and from one.
///
/// ```
/// use shmstore::Fingerprint;
///
/// let fp = Fingerprint(0xf385_fdcb_866f_7774);
/// assert_eq!(fp.to_string(), "f385fdcb866f7774");
/// assert_eq!(format!("{fp:?}"), "0xf385fdcb866f7774");
/// assert_eq!(fp, 0xf385_fdcb_866f_7774_u64);
/// assert_eq!(u64::from(fp), fp.0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::LowerHex for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::UpperHex for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(&self.0, f)
    }
}

impl From<u64> for Fingerprint {
    fn from(fingerprint: u64) -> Self {
        Fingerprint(fingerprint)
    }
}

impl From<Fingerprint> for u64 {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.0
    }
}

impl PartialEq<u64> for Fingerprint {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Fingerprint> for u64 {
    fn eq(&self, other: &Fingerprint) -> bool {
        *self == other.0
    }
}

/// What a call that gave up was waiting for: the `waited_for` of [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitedFor {
    /// The entry's lock (`read_timeout`, `write_timeout`): another thread or process held it for
    /// the whole timeout.
    Lock,
    /// A change to the entry (`wait_for_change`): nothing was committed to it within the timeout.
    Change,
}

/// The message of an [`Error::Timeout`].
fn timeout_text(name: &str, waited: Duration, waited_for: WaitedFor) -> String {
    match waited_for {
        WaitedFor::Lock => format!(
            "entry `{name}` stayed locked for {waited:?}: another thread or process is holding it; retry, or raise the timeout"
        ),
        WaitedFor::Change => {
            format!("no change to entry `{name}` within {waited:?}: call wait_for_change again to keep waiting")
        }
    }
}

/// What to do about an [`Error::WouldDeadlock`], given what the thread holds.
fn deadlock_fix(held: &str) -> &'static str {
    if held.contains("catalog") {
        "this thread is creating an entry, migrating one or growing the store; this is a bug in shmstore, please report it"
    } else {
        "release the guard you hold on this entry first (drop it, or use it: a write guard reads too)"
    }
}

fn diff_text(diff: &Option<LayoutDiff>) -> String {
    match diff {
        Some(d) if !d.is_empty() => d.to_string(),
        Some(_) => "  (no difference)".to_owned(),
        None => "  (the stored layout descriptor could not be read)".to_owned(),
    }
}

/// `Result<T, shmstore::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for a failed open of the store file `path` (by `Store::open` and the offline
    /// tools alike): a missing file, or a dangling symbolic link, a file that is not a regular
    /// file, a read-only file system, or the system's error as it is.
    pub(crate) fn open_failed(path: &Path, e: OpenError) -> Error {
        match e {
            OpenError::NotRegular(what) => Error::NotRegularFile { path: path.to_owned(), what },
            OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::read_link(path) {
                Ok(target) => Error::DanglingSymlink { path: path.to_owned(), target },
                Err(_) => Error::FileNotFound { path: path.to_owned() },
            },
            OpenError::Io(e) if e.raw_os_error() == Some(libc::EROFS) => {
                Error::ReadOnlyFileSystem { path: path.to_owned() }
            }
            OpenError::Io(e) => Error::Io { op: "open", path: path.to_owned(), source: e },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_mismatch_shows_fingerprints_in_hex_in_display_and_debug() {
        let e = Error::LayoutMismatch {
            name: "config".into(),
            expected_type: "Config".into(),
            found_type: "Config".into(),
            expected_version: 2,
            found_version: 1,
            expected_fingerprint: Fingerprint(0x15a3_5594_25dc_bbd0),
            found_fingerprint: Fingerprint(0x0085_fdcb_866f_7774),
            diff: None,
        };
        let display = e.to_string();
        assert!(display.contains("fingerprint 15a3559425dcbbd0"), "{display}");
        assert!(display.contains("fingerprint 0085fdcb866f7774"), "{display}");
        let debug = format!("{e:?}");
        assert!(debug.contains("expected_fingerprint: 0x15a3559425dcbbd0"), "{debug}");
        assert!(debug.contains("found_fingerprint: 0x0085fdcb866f7774"), "{debug}");
        // No decimal rendering of either.
        assert!(!debug.contains(&0x15a3_5594_25dc_bbd0_u64.to_string()), "{debug}");
        assert!(!debug.contains(&0x0085_fdcb_866f_7774_u64.to_string()), "{debug}");
    }

    #[test]
    fn fingerprints_format_like_their_u64_in_hex() {
        let fp = Fingerprint(0xab);
        assert_eq!((fp.to_string(), format!("{fp:?}")), ("00000000000000ab".into(), "0x00000000000000ab".into()));
        assert_eq!(
            (format!("{fp:x}"), format!("{fp:016x}"), format!("{fp:X}")),
            ("ab".into(), "00000000000000ab".into(), "AB".into())
        );
        assert_eq!(format!("{:?}", Fingerprint(u64::MAX)), "0xffffffffffffffff");
        assert_eq!(Fingerprint::from(7), 7u64);
        assert_eq!(7u64, Fingerprint(7));
        assert_eq!(u64::from(Fingerprint(9)), 9);
    }

    #[test]
    fn in_use_names_the_holders() {
        let path = PathBuf::from("app.shm");
        let e =
            |holders: Vec<(u32, String)>| Error::InUse { path: path.clone(), action: "compact", holders }.to_string();
        assert_eq!(
            e(vec![]),
            "`app.shm` is open in another process: compact replaces the file and needs the store closed everywhere: \
             close it in those processes (or stop them) and run compact again"
        );
        assert!(e(vec![(12, "worker".into()), (13, String::new())])
            .starts_with("`app.shm` is open in process 12 (worker), process 13: "));
        let many = e((1..=7).map(|p| (p, String::new())).collect());
        assert!(many.contains("process 5 and 2 more: "), "{many}");
    }

    #[test]
    fn timeouts_say_what_they_waited_for() {
        let waited = Duration::from_millis(20);
        let lock = Error::Timeout { name: "n".into(), waited, waited_for: WaitedFor::Lock }.to_string();
        let change = Error::Timeout { name: "n".into(), waited, waited_for: WaitedFor::Change }.to_string();
        assert_eq!(
            lock,
            "entry `n` stayed locked for 20ms: another thread or process is holding it; retry, or raise the timeout"
        );
        assert_eq!(change, "no change to entry `n` within 20ms: call wait_for_change again to keep waiting");
    }
}
