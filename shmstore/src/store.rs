//! [`Store`]: opening and creating store files, and the typed entry API.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::array::SharedArray;
use crate::entry::commit::Durability;
use crate::entry::handle::EntryHandle;
use crate::error::{Error, Result};
use crate::file::catalog::Found;
use crate::file::lock::robust::Robust;
use crate::file::lock::{EntryLock, Held, LockError, LockScope, Locks, RangeLock, Wait};
use crate::file::map::{Mapping, Mappings};
use crate::format::entry::{Entry, EntryKind, ENTRY_SIZE};
use crate::format::header::{self, Header, HeaderError, LiveError, LOCK_BASE};
use crate::format::v2::{block as v2block, header as v2h, index as v2index};
use crate::layout::SharedLayout;
use crate::object::Shared;
use crate::sys::file::{Link, OpenError};
use crate::sys::{self, sync};

/// The number of slots of a new store's first index table. The catalog grows past it (a table is
/// replaced by a larger one when half full); only [`OpenOptions::max_entries`] caps it.
pub const DEFAULT_MAX_ENTRIES: u32 = 64;

/// The largest size a store grows to by itself unless [`OpenOptions::max_capacity`] says
/// otherwise: 1 TiB. A runaway request (an array of `1 << 40` values, say) then fails with
/// [`Error::StoreFull`], which says how to raise the limit, instead of claiming terabytes.
pub(crate) const DEFAULT_MAX_CAPACITY: u64 = 1 << 40;

/// The largest capacity any store can have: what a file offset (and this process's address
/// space) can express, `isize::MAX` bytes. Larger requests fail with [`Error::CapacityTooLarge`]
/// or [`Error::EntryTooLarge`].
pub(crate) const MAX_CAPACITY: u64 = isize::MAX as u64;

/// How many times an open starts over because the file at the path was replaced between its
/// `open` and its lock. Each restart means another process replaced the file, so this only guards
/// against an endless fight.
const MAX_OPEN_ATTEMPTS: u32 = 10_000;

/// How to open or create a [`Store`]; made by [`Store::options`].
///
/// The capacity rules follow .NET's `MemoryMappedFile.CreateFromFile`:
/// - a new file needs a capacity ([`capacity`](Self::capacity) or
///   [`initial_capacity`](Self::initial_capacity));
/// - an existing file opens at its own length when no capacity is given, or when only an
///   `initial_capacity` is;
/// - an explicit `capacity` below an existing file's length is an error, and a larger one grows
///   the file.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("opts.shm");
/// use shmstore::Store;
///
/// let store = Store::options().create(true).capacity(1 << 20).max_entries(16).open(&path)?;
/// assert_eq!(store.capacity(), 1 << 20);
/// drop(store);
///
/// let reader = Store::options().read_only(true).open(&path)?;
/// assert!(reader.is_read_only());
/// # Ok::<(), shmstore::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub(crate) create: bool,
    pub(crate) capacity: Option<u64>,
    pub(crate) capacity_only_if_created: bool,
    pub(crate) read_only: bool,
    pub(crate) max_entries: Option<u32>,
    pub(crate) durability: Durability,
    pub(crate) max_capacity: Option<u64>,
    pub(crate) allocate: bool,
    pub(crate) create_new: bool,
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) lock_mode: Option<v2h::LockMode>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            durability: Durability::Process,
            max_capacity: None,
            allocate: false,
            create: false,
            capacity: None,
            capacity_only_if_created: false,
            read_only: false,
            max_entries: None,
            create_new: false,
            lock_timeout: None,
            lock_mode: None,
        }
    }
}

impl OpenOptions {
    /// Create the file if it does not exist (default: `false`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// The capacity in bytes: of a new file, or to grow an existing file to. Below an existing
    /// file's length it is an error, since a store never shrinks.
    ///
    /// A new store needs room for its header and first index table (8 KiB); a smaller capacity
    /// for a new file is rounded up to that minimum, since a store grows anyway.
    /// More than `isize::MAX` bytes is [`Error::CapacityTooLarge`].
    pub fn capacity(&mut self, bytes: u64) -> &mut Self {
        self.capacity = Some(bytes);
        self.capacity_only_if_created = false;
        self
    }

    /// The capacity a new file gets; an existing file opens at its length, whatever this says.
    /// Below the minimum a new store needs, it is rounded up (see [`capacity`](Self::capacity)).
    pub fn initial_capacity(&mut self, bytes: u64) -> &mut Self {
        self.capacity = Some(bytes);
        self.capacity_only_if_created = true;
        self
    }

    /// Open read-only (default: `false`): read guards and loads only; writes fail with
    /// [`Error::ReadOnly`]. Cannot be combined with `create`.
    pub fn read_only(&mut self, read_only: bool) -> &mut Self {
        self.read_only = read_only;
        self
    }

    /// Caps the number of entries a new store can hold (default: no cap). Without it, the
    /// catalog grows like the data; with it, creating an entry when the store already holds `n`
    /// fails with [`Error::CatalogFull`]. The cap is recorded in the file when the store is
    /// created (it also sizes the first index table, so that `n` entries fit without the table
    /// being replaced); it is ignored when opening an existing store.
    pub fn max_entries(&mut self, n: u32) -> &mut Self {
        self.max_entries = Some(n);
        self
    }

    /// How far commits go before they return (default: [`Durability::Process`]). Handles can
    /// override it with [`Shared::with_durability`](crate::Shared::with_durability).
    pub fn durability(&mut self, durability: Durability) -> &mut Self {
        self.durability = durability;
        self
    }

    /// The largest size the store may grow to by itself (default: 1 TiB;
    /// at most `isize::MAX` bytes). When a new entry does not fit, the store grows geometrically (at
    /// least doubling) up to this size, and every process that has it open adopts the new size on
    /// its next access; past it, creation fails with [`Error::StoreFull`]. Growth also needs this
    /// process to map the new size: if it cannot (its address space, `ulimit -v`, is too small),
    /// the store keeps its old size and the request fails with [`Error::GrowthFailed`].
    pub fn max_capacity(&mut self, bytes: u64) -> &mut Self {
        self.max_capacity = Some(bytes);
        self
    }

    /// Reserve disk blocks for the whole store (`posix_fallocate`; default: `false`), when it is
    /// created (or an empty file adopted) and whenever it grows. A sparse store (the default)
    /// costs disk only for pages actually written, which suits huge, mostly empty arrays, but if
    /// the disk fills up, a write into a hole kills the process with `SIGBUS`. With
    /// `allocate(true)` a full disk is [`Error::DiskFull`] when the space is claimed instead (a
    /// creation that fails so leaves no file behind).
    pub fn allocate(&mut self, allocate: bool) -> &mut Self {
        self.allocate = allocate;
        self
    }

    /// Create a new store, failing with [`Error::AlreadyExists`] if there is a file at the path
    /// (default: `false`), as [`std::fs::OpenOptions::create_new`] and .NET's
    /// `FileMode.CreateNew` do. Implies [`create`](Self::create); needs a capacity. The store is
    /// built aside and linked into place atomically, so of several processes racing to create the
    /// same path, exactly one succeeds.
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// How long an open waits while another process holds the store file exclusively (default:
    /// not at all). Every opener holds the file's `flock` shared for its life; tools that compact,
    /// shrink or replace a store take it exclusively first. By default such an open fails at once
    /// with [`Error::Busy`]; with a timeout it polls (with a back-off up to 5 ms) until the tool
    /// lets go, and fails with [`Error::Busy`] once the timeout has passed.
    pub fn lock_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// How this process locks the store's entries (default: whatever the processes that have the
    /// store open use, and [`LockMode::Robust`](crate::LockMode::Robust) for the first opener).
    ///
    /// - **Robust** mode: each entry has a robust, process-shared pthread mutex in the file; a
    ///   commit takes it and releases it without a system call unless another writer is in. If a
    ///   process dies holding it, the next locker is told and repairs it (see
    ///   [`SharedArray::interrupted`](crate::SharedArray::interrupted) for what a writer killed
    ///   mid-write leaves). Read guards on arrays, byte regions and objects holding atomics use a
    ///   reader table in the file; a `read()` guard on a double-buffered object takes no lock at
    ///   all. Every process sharing the store must use the same libc (glibc or musl: their mutexes
    ///   differ) and the same PID namespace (the mutexes store thread ids): processes in other
    ///   containers, or built against the other libc, are refused with
    ///   [`Error::LockModeMismatch`].
    /// - **OFD** mode: each entry has a kernel byte-range lock (`F_OFD_SETLKW`), two system calls
    ///   per guard or commit (about 25 times slower uncontended), but shared safely across PID
    ///   namespaces and libcs.
    ///
    /// The first process to open a store (with no other process having it open) records the mode
    /// for everyone who opens it until all have closed it; it also resets every lock left in the
    /// file by processes that are gone (after a crash, a reboot, or in a copied file), so that
    /// none of them is ever waited for. A later opener that asks for the other mode gets
    /// [`Error::LockModeMismatch`]; one that does not ask follows the store. A read-only opener in
    /// robust mode cannot take the in-file locks (its mapping is read-only), so it reads without
    /// them: `load()` as always, and copies and read guards of arrays and byte regions as
    /// optimistic copies, retried until no writer was in (a read guard then holds a copy). Read
    /// guards on objects holding atomics are refused on read-only stores in both modes.
    pub fn lock_mode(&mut self, mode: v2h::LockMode) -> &mut Self {
        self.lock_mode = Some(mode);
        self
    }

    /// Opens (or creates) the store at `path`.
    ///
    /// Only regular files are opened: a FIFO, a directory or a device at the path is
    /// [`Error::NotRegularFile`], refused before anything waits on it. An existing empty file
    /// (made by `touch`, or `tempfile::NamedTempFile`) is adopted as a new store when a capacity
    /// and [`create`](Self::create) are given, as .NET does: it is initialised in place under the
    /// store's catalog lock, so that of several processes adopting it at once exactly one
    /// initialises it and all open the same store. Without a capacity, an empty file is
    /// [`Error::NotAStore`] (also for a process that looks at it just before another adopts it).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Store> {
        StoreInner::open(path.as_ref(), self).map(|inner| Store { inner: Arc::new(inner) })
    }
}

/// A store file, mapped into memory, holding named typed objects and arrays.
///
/// A `Store` is cheap to clone (it is reference-counted), `Send` and `Sync`: share one between
/// threads, and open the same file from as many processes as you like. Every handle it gives out
/// keeps the mapping alive, so handles may outlive the `Store` value they came from.
///
/// ```
/// use shmstore::{SharedLayout, Store};
///
/// #[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
/// #[repr(C)]
/// struct Config { port: u16, verbose: bool, _pad: [u8; 5], max_conn: u64 }
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.shm");
/// let store = Store::open_or_create(&path, 1 << 20)?;
/// let cfg = store.object_or_init("config", Config::default)?;
/// cfg.write()?.port = 8080;
/// cfg.update(|c| c.max_conn += 1)?;
/// assert_eq!(cfg.load()?, Config { port: 8080, max_conn: 1, ..Config::default() });
///
/// let samples = store.array_or_init::<f64>("samples", 1000, 0.0)?;
/// samples.write_at(2, &[1.0, 2.0])?;
/// let total: f64 = samples.read()?.iter().sum();
/// assert_eq!(total, 3.0);
/// store.flush()?;
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # Locks held by one thread
///
/// A thread never waits for itself. It may take a read guard on an entry it already reads, even
/// while a writer is queued for it (directly, or through `load()` of an object holding atomics,
/// [`SharedArray::get`], [`SharedArray::read_at`], ...). A request it could never get fails at
/// once with [`Error::WouldDeadlock`] instead of waiting, whatever the wait (`try_*` and
/// `*_timeout` included): a write (a guard, `store`, `update`, `write_at`, [`Store::migrate`]) of
/// an entry it holds a guard on, and a read of an entry it holds a write guard on (a write guard
/// reads too). This holds across two `Store`s of the same file in one process, which lock the same
/// bytes of the file through two open file descriptions. (One re-entrant read is refused too: one
/// through a second `Store` of the file while a writer of that second `Store` is already waiting
/// for the kernel lock, which it gets only once this thread lets go of its first read.)
///
/// # Processes and fork
///
/// A `Store` belongs to the process that opened it. A child made by `fork()` (without `exec`)
/// shares its parent's open file description, and with it the parent's kernel locks, so the child
/// would not be excluded from its parent: every operation on an inherited `Store`, or on a handle
/// or guard made from it, that would take a lock, look an entry up or create one fails in the child
/// with [`Error::Forked`], before it touches any lock or in-process state. Open the store again in
/// the child ([`Store::open`], [`Store::open_temp`], ...): that gives the child its own open file
/// description, and it is then excluded from its parent like any other process. Only lock-free
/// [`Shared::load`] of a double-buffered object keeps working on the inherited handle (if it loses
/// [`OPTIMISTIC_TRIES`](crate::OPTIMISTIC_TRIES) races in a row, it needs the shared lock and
/// returns [`Error::Forked`] instead).
///
/// Dropping inherited values in the child never touches the parent's locks: a guard the parent
/// held at the `fork` is neither committed nor released by the child, and a temporary store is not
/// removed. A guard held at the `fork` must not be used in the child at all: the lock that makes
/// its reference safe is the parent's, which the parent may release at any time. `fork` is
/// detected with a `pthread_atfork` handler, installed when the first store is opened; a child made
/// by a raw `clone` or `syscall(SYS_fork)`, which bypasses libc's `fork`, is not detected.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

/// One line of [`Store::entries`]: what an entry is, read from the catalog and its stored schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The entry's name.
    pub name: String,
    /// Object, array or byte region.
    pub kind: EntryKind,
    /// The stored type's name, as the stored schema renders it (`Config`, `f64`, `[u8; 16]`).
    pub type_name: String,
    /// The stored layout's version.
    pub version: u32,
    /// The stored layout's fingerprint.
    pub fingerprint: u64,
    /// Size of one value in bytes.
    pub elem_size: u64,
    /// Alignment of one value.
    pub align: u64,
    /// Number of values: 1 for an object, the length for an array.
    pub len: u64,
    /// Bytes of data the entry occupies in the file (all slots).
    pub bytes: u64,
    /// 2 for double-buffered objects (crash-atomic commits, lock-free loads), 1 for values updated
    /// in place (arrays, and objects holding atomics).
    pub slots: u8,
    /// Where the entry's data starts in the file (slot 0), for readers in other languages that map
    /// the file themselves; see `docs/format.md`.
    pub data_offset: u64,
    /// Distance from slot 0 to slot 1 of a double-buffered object (0 otherwise). The active slot is
    /// `data_offset + (seq & 1) * slot_stride`.
    pub slot_stride: u64,
    /// Where the entry's block (format v2; its catalog record in v1) starts; its commit sequence
    /// word `seq` (a native-endian `u64`) is at `record_offset + 16` (`+ 192` in a v1 store).
    pub record_offset: u64,
    /// Where the entry's commit sequence word `seq` (a native-endian `u64`) is, whatever the
    /// format version.
    pub seq_offset: u64,
}

impl EntryInfo {
    /// Whether commits to this entry are crash-atomic and its loads lock-free (a double-buffered
    /// object), rather than made in place.
    pub fn is_double_buffered(&self) -> bool {
        self.slots == 2
    }
}

impl Store {
    /// Options for opening or creating a store.
    pub fn options() -> OpenOptions {
        OpenOptions::default()
    }

    /// Opens the store at `path`, creating it with `capacity` bytes if it does not exist. An
    /// existing file opens at its own length.
    pub fn open_or_create(path: impl AsRef<Path>, capacity: u64) -> Result<Store> {
        Store::options().create(true).initial_capacity(capacity).open(path)
    }

    /// Opens an existing store; [`Error::FileNotFound`] if there is none.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::options().open(path)
    }

    /// The object `name`, created with `init()` if it does not exist yet. An existing entry is
    /// opened as it is: `init` is not called, and a different layout is
    /// [`Error::LayoutMismatch`]. `init` runs without any lock held, so it may use the store
    /// (read other entries, create entries); if another thread or process creates `name` while it
    /// runs, that entry is opened and the value `init` returned is dropped.
    pub fn object_or_init<T: SharedLayout>(&self, name: &str, init: impl FnOnce() -> T) -> Result<Shared<T>> {
        let found = self.inner.find_or_create(name, EntryKind::Object, &T::LAYOUT, 1, || {
            crate::entry::staging::owned_bytes(&mut init()).to_vec()
        })?;
        self.typed::<T>(found, EntryKind::Object).map(Shared::new)
    }

    /// The existing object `name`: [`Error::NotFound`] if there is none,
    /// [`Error::LayoutMismatch`] if it holds another type.
    pub fn object<T: SharedLayout>(&self, name: &str) -> Result<Shared<T>> {
        let found = self.inner.find(name)?;
        self.typed::<T>(found, EntryKind::Object).map(Shared::new)
    }

    /// The array `name` of `len` values, each set to `value`, created if it does not exist yet.
    /// An existing array is opened as it is, whatever its length (check
    /// [`SharedArray::len`]). A zero `value` costs nothing: fresh store space is already zero, and
    /// stays sparse on disk until written.
    pub fn array_or_init<T: SharedLayout + Copy>(&self, name: &str, len: usize, value: T) -> Result<SharedArray<T>> {
        let elem_size = std::mem::size_of::<T>() as u64;
        if (len as u64).checked_mul(elem_size).is_none_or(|bytes| bytes > MAX_CAPACITY) {
            return Err(Error::EntryTooLarge {
                name: name.to_owned(),
                len: len as u64,
                elem_size,
                maximum: MAX_CAPACITY,
            });
        }
        let found = self.inner.find_or_create(name, EntryKind::Array, &T::LAYOUT, len as u64, || {
            crate::entry::staging::value_bytes(&value).to_vec()
        })?;
        self.typed::<T>(found, EntryKind::Array).map(SharedArray::new)
    }

    /// The existing array `name`: [`Error::NotFound`] if there is none,
    /// [`Error::LayoutMismatch`] if it holds another type.
    pub fn array<T: SharedLayout>(&self, name: &str) -> Result<SharedArray<T>> {
        let found = self.inner.find(name)?;
        self.typed::<T>(found, EntryKind::Array).map(SharedArray::new)
    }

    /// A handle of `T` values on `entry`, which must be of `kind`.
    pub(crate) fn typed<T: SharedLayout>(&self, found: Found, kind: EntryKind) -> Result<EntryHandle> {
        let entry = &found.entry;
        if entry.kind != kind {
            return Err(Error::KindMismatch {
                name: entry.name.clone(),
                expected: kind.as_str(),
                found: entry.kind.as_str(),
            });
        }
        EntryHandle::new::<T>(self.inner.clone(), found)
    }

    /// Every entry in the store: in creation order (format v2), or in catalog order (a v1 store).
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        self.inner.scan()?.iter().map(|f| self.inner.entry_info(f.at, &f.entry)).collect()
    }

    /// Removes the entry `name`, crash-atomically: afterwards lookups by name give
    /// [`Error::NotFound`], and every handle to it, in this process and in others, fails with
    /// [`Error::Removed`] on its next access (it never reads or writes the entry's bytes again,
    /// which may by then belong to another entry). Its space is reused by later entries, except
    /// for layouts holding atomics, whose space is never reused (a reference into it may outlive
    /// the entry); `shmstore compact` reclaims that.
    ///
    /// It takes the entry's write lock, so it waits for guards held on it in other threads and
    /// processes; a guard held by this thread is [`Error::WouldDeadlock`]. A format-v1 store is
    /// read-only ([`Error::ReadOnly`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = shmstore::Store::open_or_create(dir.path().join("rm.shm"), 1 << 20)?;
    /// let hits = store.object_or_init("hits", || 0u64)?;
    /// store.remove("hits")?;
    /// assert!(matches!(store.object::<u64>("hits"), Err(shmstore::Error::NotFound { .. })));
    /// assert!(matches!(hits.load(), Err(shmstore::Error::Removed { .. })));
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        crate::file::catalog::valid_name(name)?;
        match self.inner.format {
            Format::V1(_) => Err(self.inner.read_only_error("removing an entry")),
            Format::V2(_) => self.inner.v2_remove(name),
        }
    }

    /// Renames the entry `from` to `to`, atomically: at every instant, and after a crash at any
    /// instant, exactly one of the two names finds the entry. Its data stays where it is (nothing
    /// is copied); handles made before fail with [`Error::Moved`], which names `to`: open it again
    /// by that name. `to` must be free ([`Error::NameTaken`]); renaming to the same name does
    /// nothing.
    ///
    /// It takes the entry's write lock, as [`Store::remove`] does.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = shmstore::Store::open_or_create(dir.path().join("mv.shm"), 1 << 20)?;
    /// store.object_or_init("draft", || 7u32)?;
    /// store.rename("draft", "final")?;
    /// assert_eq!(store.object::<u32>("final")?.load()?, 7);
    /// assert!(store.object::<u32>("draft").is_err());
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        crate::file::catalog::valid_name(from)?;
        match self.inner.format {
            Format::V1(_) => Err(self.inner.read_only_error("renaming an entry")),
            Format::V2(_) => self.inner.v2_rename(from, to),
        }
    }

    pub(crate) fn inner(&self) -> &StoreInner {
        &self.inner
    }

    pub(crate) fn inner_arc(&self) -> Arc<StoreInner> {
        self.inner.clone()
    }

    /// Writes every change back to the file and waits for the disk, so that everything done
    /// before it survives an OS crash or a power loss. Without it (or
    /// [`Durability::PowerLoss`]), changes are in the page cache: visible to every process at once
    /// and written back by the kernel in its own time, in any order; they survive the process,
    /// but not a power loss. See [`Durability`] for what a power loss *during* a flush leaves.
    pub fn flush(&self) -> Result<()> {
        // `fdatasync` writes back every page dirtied through the mapping too (on Linux, `msync`
        // with `MS_SYNC` is the same call restricted to a range), and it also covers the file's
        // length, which `msync` does not: after growth, the length must be durable before the
        // header that records it. The directory sync makes the store's name durable, which a
        // store created with `Durability::Process` was not.
        let inner = &self.inner;
        sync::fdatasync(&inner.path, &inner.file).map_err(|source| inner.io("flush", source))?;
        sync::fsync_dir(parent_dir(&inner.absolute)).map_err(|source| inner.io("flush the directory of", source))?;
        // Written to disk, but to a file nobody else will open: say so.
        inner.check()
    }

    /// Checks that the store's path still names the file this store has open:
    /// [`Error::Replaced`] if another file was renamed over it, or it was deleted. A process that
    /// goes on using a replaced store reads and writes a file that new openers of the path never
    /// see. [`Store::open`], growth and [`Store::flush`] check this too; call it where a
    /// long-running process wants to notice sooner (one `fstat` and one `stat`).
    pub fn check(&self) -> Result<()> {
        self.inner.check()
    }

    /// Flushes and closes this handle of the store, reporting a failed flush instead of
    /// swallowing it (as dropping would). The mapping stays alive while entry handles exist.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// How this store's entries are locked ([`OpenOptions::lock_mode`]): the mode its first
    /// opener chose, which every process that has it open shares. Format-v1 stores (read-only)
    /// use OFD locks.
    pub fn lock_mode(&self) -> crate::LockMode {
        self.inner.lock_state.mode()
    }

    /// The store's capacity in bytes (its file length).
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// Bytes in use: header, catalog and allocated data (free-list space included).
    pub fn used(&self) -> u64 {
        self.inner.alloc_end()
    }

    /// The maximum number of entries: the cap set with [`OpenOptions::max_entries`] when the
    /// store was created, the
    /// catalog's fixed size for a format-v1 store, and `u32::MAX` otherwise (the catalog grows).
    pub fn max_entries(&self) -> u32 {
        match (&self.inner.format, self.inner.max_entries) {
            (Format::V1(header), _) => header.catalog_slots,
            (Format::V2(_), Some(cap)) => cap,
            (Format::V2(_), None) => u32::MAX,
        }
    }

    /// The format version of the store file: 2, or 1 for a store opened read-only from a
    /// format-v1 file (convert it with `shmstore upgrade`).
    pub fn format_version(&self) -> u32 {
        match self.inner.format {
            Format::V1(_) => header::FORMAT_VERSION,
            Format::V2(_) => v2h::FORMAT_VERSION,
        }
    }
}

/// The state behind a [`Store`] and all its handles.
#[derive(Debug)]
pub(crate) struct StoreInner {
    pub(crate) path: PathBuf,
    /// `path` made absolute at open, so that [`StoreInner::check`] looks at the same file after
    /// the process changes its working directory.
    absolute: PathBuf,
    pub(crate) file: File,
    /// How entries and the catalog are locked: OFD byte-range locks (format v1, and v2 in OFD
    /// mode) or robust mutexes in the mapping. Declared before `maps`: robust mode keeps
    /// pointers into the mappings, which it uses when dropped (to free its reader slot).
    pub(crate) lock_state: Locks,
    /// One lock per entry lock byte, shared by every handle of this process.
    locks: Mutex<HashMap<u64, Arc<EntryLock>, crate::file::catalog_v2::FastBuild>>,
    /// The mappings of the file; see [`StoreInner::map`].
    maps: Mappings,
    /// The file's format and static header.
    pub(crate) format: Format,
    /// Where the live words of this format lie.
    pub(crate) words: Words,
    /// The cap on entries recorded at creation ([`OpenOptions::max_entries`]).
    pub(crate) max_entries: Option<u32>,
    /// What this process knows of a v2 catalog: names, accepted blocks, their byte ranges.
    pub(crate) v2: Mutex<crate::file::catalog::V2Cache>,
    /// The largest capacity automatic growth may reach.
    max_capacity: u64,
    /// Whether growth reserves disk blocks (`posix_fallocate`) instead of extending sparsely.
    allocate: bool,
    pub(crate) read_only: bool,
    /// The default durability of commits.
    pub(crate) durability: Durability,
    /// The file's identity and the process generation that opened it, for every lock taken on it.
    pub(crate) scope: LockScope,
    /// Entries this process has seen in a v1 store, by name. Records never change once published.
    pub(crate) names: Mutex<HashMap<String, (u32, Arc<Entry>)>>,
    /// Set for a temporary store (see `temp.rs`): removed on drop if no other process holds it.
    pub(crate) temp: Option<crate::temp::TempRegion>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // A guard leaked with `mem::forget` in robust mode leaves its mutex held, and on its
        // thread's robust list, which glibc and the kernel walk: keep the memory mapped, and keep
        // the open byte (through the description) so that no reset initialises that mutex again,
        // for the rest of the process's life. (Not in a forked child, which holds nothing.)
        if !self.scope.forked() {
            let locks = self.locks.get_mut().unwrap_or_else(|e| e.into_inner());
            if self.lock_state.leaked(locks.values().map(|lock| &**lock)) {
                self.maps.leak();
                sys::keep_description(&self.file);
            }
        }
        // A forked child's copy shares the parent's open file, and with it the parent's `flock`:
        // releasing would take it exclusively and remove the store under the parent.
        if let (Some(temp), false) = (&self.temp, self.scope.forked()) {
            temp.release(&self.path, &self.file);
        }
    }
}

impl StoreInner {
    fn open(path: &Path, opts: &OpenOptions) -> Result<StoreInner> {
        if opts.read_only && (opts.create || opts.create_new) {
            return Err(Error::InvalidOptions(
                "a store cannot be created read-only: drop create(true)/create_new(true) or read_only(true)",
            ));
        }
        if let Some(capacity) = opts.capacity {
            check_capacity(path, capacity)?;
        }
        let may_create = opts.create || opts.create_new;
        // Whether this open made the store (created or adopted it): then its capacity is the one
        // asked for (rounded up to the minimum), and not checked against the file again.
        let mut fresh = false;
        for _ in 0..MAX_OPEN_ATTEMPTS {
            let file = match sys::file::open_regular(path, !opts.read_only, 0) {
                Ok(_) if opts.create_new && !fresh => return Err(Error::AlreadyExists { path: path.to_owned() }),
                Ok(file) => file,
                Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound && may_create => {
                    if let Ok(target) = fs::read_link(path) {
                        return Err(Error::DanglingSymlink { path: path.to_owned(), target });
                    }
                    let capacity = opts.capacity.ok_or_else(|| Error::CapacityRequired { path: path.to_owned() })?;
                    let options = Creation {
                        max_entries: opts.max_entries,
                        durability: opts.durability,
                        allocate: opts.allocate,
                        exclusive: opts.create_new,
                    };
                    fresh = create(path, capacity, &options)?;
                    continue;
                }
                Err(e) => return Err(open_error(path, e)),
            };
            // Every opener holds a shared whole-file lock for its life: a tool that wants to
            // shrink or replace the file must take the exclusive lock first, and so cannot pull
            // pages out from under a live mapping.
            lock_shared(path, &file, opts.lock_timeout)?;
            // The path may have been renamed over or unlinked between the open and the lock (by a
            // tool that held the exclusive lock meanwhile): then start over with what it names now.
            if sys::file::link_state(path, &file).map_err(|e| Error::Io {
                op: "stat",
                path: path.to_owned(),
                source: e,
            })? != Link::Linked
            {
                continue;
            }
            let len = file.metadata().map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e })?.len();
            if len == 0 && may_create && opts.capacity.is_some() && !opts.read_only {
                if !adopt_empty(path, &file, opts)? {
                    // It changed under us: look again.
                    continue;
                }
                fresh = true;
            } else if len > 0 && !fresh {
                // Another process may be adopting this file right now (see `adopt_empty`): its
                // catalog lock, held shared for a moment, waits until the header is complete.
                sys::lock_range(&file, LOCK_BASE, sys::LockKind::Shared, true).map_err(|e| Error::Io {
                    op: "lock",
                    path: path.to_owned(),
                    source: e,
                })?;
                let _ = sys::unlock_range(&file, LOCK_BASE);
            }
            if fresh {
                let mut opts = opts.clone();
                opts.capacity_only_if_created = true;
                return StoreInner::from_file(path, file, &opts);
            }
            return StoreInner::from_file(path, file, opts);
        }
        Err(Error::Io {
            op: "open",
            path: path.to_owned(),
            source: io::Error::other(format!(
                "the file kept being replaced while it was opened; gave up after {MAX_OPEN_ATTEMPTS} attempts"
            )),
        })
    }

    /// Finishes opening the store file `file` (found at `path`), on which the caller holds the
    /// shared `flock`: header and catalog checks, mapping, and growth to an explicit capacity.
    pub(crate) fn from_file(path: &Path, file: File, opts: &OpenOptions) -> Result<StoreInner> {
        let io = |op, source| Error::Io { op, path: path.to_owned(), source };
        let len = file.metadata().map_err(|e| io("stat", e))?.len();
        if len == 0 {
            return Err(Error::NotAStore {
                path: path.to_owned(),
                reason: "it is empty (0 bytes); to make it a new store, open it with a capacity: \
                         Store::open_or_create(path, bytes) or Store::options().create(true).capacity(bytes)"
                    .into(),
            });
        }
        let mut store = StoreInner::map_and_check(path, file, len, opts)?;
        store.durability = opts.durability;
        store.max_capacity = opts.max_capacity.unwrap_or(DEFAULT_MAX_CAPACITY).min(MAX_CAPACITY);
        store.allocate = opts.allocate;
        if let (Some(capacity), false) = (opts.capacity, opts.capacity_only_if_created) {
            store.ensure_capacity(capacity)?;
        }
        Ok(store)
    }

    /// Maps an initialised file and checks its header: a format-v2 store ([`StoreInner::open_v2`]),
    /// or, read-only, a format-v1 one ([`StoreInner::open_v1`]).
    fn map_and_check(path: &Path, file: File, len: u64, opts: &OpenOptions) -> Result<StoreInner> {
        let mut first = [0u8; v2h::STATIC_SIZE];
        let n =
            read_prefix(&file, &mut first).map_err(|e| Error::Io { op: "read", path: path.to_owned(), source: e })?;
        match v2h::peek_version(&first[..n]).map_err(|e| header_error(path, e))? {
            1 => StoreInner::open_v1(path, file, len, &first[..n], opts.read_only),
            v2h::FORMAT_VERSION => StoreInner::open_v2(path, file, len, &first[..n], opts),
            found => Err(Error::UnsupportedFormat { path: path.to_owned(), found, supported: v2h::FORMAT_VERSION }),
        }
    }

    /// Maps a format-v2 file and checks its header, its open state and its live words; takes the
    /// open byte (resetting the open state if this is the first opener). Entries are checked
    /// later, each when this process first uses it: opening costs nothing per entry.
    fn open_v2(path: &Path, file: File, len: u64, first: &[u8], opts: &OpenOptions) -> Result<StoreInner> {
        let header = v2h::Header::decode(first).map_err(|e| header_error(path, e))?;
        if len < v2h::min_capacity() {
            return Err(Error::Truncated { path: path.to_owned(), expected: v2h::min_capacity(), actual: len });
        }
        let map = Mapping::new(&file, len, opts.read_only).map_err(|e| Error::Io {
            op: "map",
            path: path.to_owned(),
            source: e,
        })?;
        let scope = LockScope::of(&file).map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e })?;
        let mut store = StoreInner {
            path: path.to_owned(),
            absolute: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            file,
            lock_state: Locks::Ofd { admin: RangeLock::new(v2h::LOCK_BASE) },
            locks: Mutex::new(HashMap::default()),
            maps: Mappings::new(map),
            format: Format::V2(header),
            words: Words::V2,
            max_entries: (header.max_entries != 0).then_some(header.max_entries),
            v2: Mutex::default(),
            max_capacity: DEFAULT_MAX_CAPACITY,
            allocate: false,
            read_only: opts.read_only,
            durability: Durability::Process,
            scope,
            names: Mutex::new(HashMap::new()),
            temp: None,
        };
        // As for v1: a grower extends the file before it raises the capacity word.
        let live = v2h::Live {
            capacity: store.capacity(),
            alloc_end: store.alloc_end(),
            index_root: store.live_u64(v2h::INDEX_ROOT).load(Ordering::Acquire),
        };
        let len = store.file.metadata().map_err(|e| store.io("stat", e))?.len().max(len);
        v2h::check_live(&live, len).map_err(|e| match e {
            LiveError::FileShorterThanCapacity { capacity, file_len } => {
                Error::Truncated { path: path.to_owned(), expected: capacity, actual: file_len }
            }
            LiveError::Impossible(detail) => Error::Corrupt { path: path.to_owned(), detail: detail.into() },
        })?;
        store.index_table(live.index_root)?;
        // A refused capacity leaves the file as it was (before the open state is touched).
        let recorded = live.capacity;
        if let (Some(requested), false) = (opts.capacity, opts.capacity_only_if_created) {
            if requested < recorded {
                return Err(Error::CapacityTooSmall {
                    path: path.to_owned(),
                    requested,
                    minimum: recorded,
                    shrink: true,
                });
            }
        }
        // Last, so that a store refused above is left as it was.
        let state = crate::file::lock_mode::join(&store, opts.lock_mode)?;
        if state.lock_mode == v2h::LockMode::Robust {
            let robust = Robust::new(store.map(), &store.file, state.lock_epoch, !store.read_only)
                .map_err(|e| store.io("dup", e))?
                .ok_or_else(|| store.corrupt("the header lies outside the mapping".into()))?;
            store.lock_state = Locks::Robust(robust);
        }
        Ok(store)
    }

    /// Maps a format-v1 file, read-only, and checks its header and its whole catalog. A
    /// read-write open is [`Error::UpgradeRequired`].
    fn open_v1(path: &Path, file: File, len: u64, first: &[u8], read_only: bool) -> Result<StoreInner> {
        if !read_only {
            return Err(Error::UpgradeRequired { path: path.to_owned() });
        }
        let header = Header::decode(first).map_err(|e| header_error(path, e))?;
        if len < header.min_capacity() {
            return Err(Error::Truncated { path: path.to_owned(), expected: header.min_capacity(), actual: len });
        }
        let map = Mapping::new(&file, len, read_only).map_err(|e| Error::Io {
            op: "map",
            path: path.to_owned(),
            source: e,
        })?;
        let scope = LockScope::of(&file).map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e })?;
        let store = StoreInner {
            path: path.to_owned(),
            absolute: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            file,
            lock_state: Locks::Ofd { admin: RangeLock::new(LOCK_BASE) },
            locks: Mutex::new(HashMap::default()),
            maps: Mappings::new(map),
            format: Format::V1(header),
            words: Words::V1,
            max_entries: None,
            v2: Mutex::default(),
            max_capacity: DEFAULT_MAX_CAPACITY,
            allocate: false,
            read_only,
            durability: Durability::Process,
            scope,
            names: Mutex::new(HashMap::new()),
            temp: None,
        };
        // Another process may be growing the file right now: it extends the file before it raises
        // the capacity word, so reading the capacity first and the length second never sees a
        // capacity beyond the length unless the file really was truncated.
        let capacity = store.capacity();
        let len = store.file.metadata().map_err(|e| store.io("stat", e))?.len().max(len);
        header.check_live(capacity, store.alloc_end(), len).map_err(|e| match e {
            LiveError::FileShorterThanCapacity { capacity, file_len } => {
                Error::Truncated { path: path.to_owned(), expected: capacity, actual: file_len }
            }
            LiveError::Impossible(detail) => Error::Corrupt { path: path.to_owned(), detail: detail.into() },
        })?;
        // Every record, on its own and all together: what open accepts, no safe operation can
        // turn into undefined behaviour (overlapping entries, shared locks, unbounded schemas).
        let (_, summary) = store.checked_records()?;
        let _ = summary;
        Ok(store)
    }

    /// Grows the file to `capacity` bytes if it is smaller, returning whether it grew; refuses to
    /// shrink it.
    fn ensure_capacity(&self, capacity: u64) -> Result<bool> {
        let current = self.capacity();
        if capacity < current {
            return Err(Error::CapacityTooSmall {
                path: self.path.clone(),
                requested: capacity,
                minimum: current,
                shrink: true,
            });
        }
        if capacity == current {
            return Ok(false);
        }
        if self.read_only {
            return Err(self.read_only_error("growing the store"));
        }
        if capacity > MAX_CAPACITY {
            return Err(Error::CapacityTooLarge {
                path: self.path.clone(),
                requested: capacity,
                maximum: MAX_CAPACITY,
            });
        }
        let _held = self.lock_catalog("growing", &self.path.display().to_string())?;
        self.grow_to(capacity)?;
        Ok(true)
    }

    /// Grows the file to at least `capacity` bytes and tells every process, by raising the
    /// capacity word and bumping the growth generation. The caller holds the catalog lock.
    ///
    /// The file is extended *before* the capacity word rises, so no process ever maps or touches
    /// bytes past the end of the file. With [`OpenOptions::allocate`], the new blocks are reserved
    /// on disk now, so that a full disk is an error here rather than a `SIGBUS` on a later write.
    /// This process then maps the new size, still before the capacity word rises: if it cannot
    /// ([`Error::GrowthFailed`]), nothing was published, and the file goes back to its old length
    /// (if this call extended it), so that a failed request leaves the store as it was.
    ///
    /// With [`Durability::PowerLoss`] the same order holds on disk: the new length is synced
    /// (`fdatasync`, which covers the length) before the capacity word rises, and the header is
    /// synced after, so no power loss leaves a capacity beyond the file's length.
    pub(crate) fn grow_to(&self, capacity: u64) -> Result<()> {
        self.check()?;
        if capacity > MAX_CAPACITY {
            return Err(Error::CapacityTooLarge {
                path: self.path.clone(),
                requested: capacity,
                maximum: MAX_CAPACITY,
            });
        }
        let len = self.file.metadata().map_err(|e| self.io("stat", e))?.len();
        let extended = len < capacity;
        // Puts the file back to its old length after a failure, if this call extended it. Nobody
        // maps beyond the published capacity, which is at most `len`, so nobody loses a page.
        let undo = |e: Error| {
            if extended {
                let _ = sync::set_len(&self.path, &self.file, len);
            }
            e
        };
        if extended {
            let grown = if self.allocate {
                sync::allocate(&self.path, &self.file, len, capacity - len)
            } else {
                sync::set_len(&self.path, &self.file, capacity)
            };
            grown.map_err(|e| {
                undo(disk_error(&self.path, capacity, if self.allocate { "allocate" } else { "grow" }, e))
            })?;
        }
        if self.maps.current().len() < capacity {
            match Mapping::new(&self.file, capacity, self.read_only) {
                Ok(next) => {
                    self.maps.push(next);
                }
                Err(source) => return Err(undo(Error::GrowthFailed { path: self.path.clone(), capacity, source })),
            }
        }
        let power_loss = self.durability == Durability::PowerLoss;
        if power_loss {
            // Even if the file was long enough already: whoever extended it may not have synced.
            sync::fdatasync(&self.path, &self.file).map_err(|e| self.io("fdatasync", e))?;
        }
        self.live_u64(self.words.capacity).fetch_max(capacity, Ordering::AcqRel);
        self.live_u64(self.words.generation).fetch_add(1, Ordering::AcqRel);
        if power_loss {
            self.sync_range(0, self.words.header_len)?;
        }
        Ok(())
    }

    /// [`Error::Replaced`] if the store's path no longer names the file this process has open.
    pub(crate) fn check(&self) -> Result<()> {
        match sys::file::link_state(&self.absolute, &self.file).map_err(|e| self.io("stat", e))? {
            Link::Linked => Ok(()),
            Link::Unlinked => Err(Error::Replaced { path: self.path.clone(), unlinked: true }),
            Link::Replaced => Err(Error::Replaced { path: self.path.clone(), unlinked: false }),
        }
    }

    /// Waits until bytes `offset..offset + len` of the file are on disk (`msync`; whole pages).
    /// Does not cover the file's length: see [`sys::sync::fdatasync`](crate::sys::sync::fdatasync).
    pub(crate) fn sync_range(&self, offset: u64, len: u64) -> Result<()> {
        self.map().flush_range(&self.path, offset, len).map_err(|e| self.io("msync", e))
    }

    /// The capacity automatic growth would give a store that needs `end` bytes, or `None` if it
    /// may not grow that far.
    pub(crate) fn growth_target(&self, end: u64) -> Option<u64> {
        if self.read_only {
            return None;
        }
        let doubled = self.capacity().saturating_mul(2);
        let target = crate::format::align_up(end, 1 << 20)?.max(doubled);
        if end > self.max_capacity {
            return None;
        }
        Some(target.min(self.max_capacity))
    }

    /// The current mapping of the file, remapped first if another process (or this one) grew the
    /// store beyond it. One atomic load on the common path.
    #[inline]
    pub(crate) fn map(&self) -> &Mapping {
        let current = self.maps.current();
        let capacity = current.atomic_u64(self.words.capacity).map_or(0, |c| c.load(Ordering::Acquire));
        if capacity <= current.len() {
            current
        } else {
            self.remap(capacity)
        }
    }

    #[cold]
    fn remap(&self, capacity: u64) -> &Mapping {
        // A forked child's list of mappings may have been locked by another thread of its parent
        // at the instant of the fork, and would stay locked forever: the child keeps the mappings
        // it inherited, and what lies beyond them reports `BeyondMapping` ("reopen the store").
        if self.scope.forked() {
            return self.maps.current();
        }
        // Growers extend the file before they raise the capacity, so the file is long enough;
        // check anyway, since mapping past the end of a (truncated) file would turn accesses into
        // SIGBUS. If remapping fails, the old mapping stays, and entries beyond it report
        // `BeyondMapping` instead.
        let long_enough = self.file.metadata().is_ok_and(|m| m.len() >= capacity);
        match Mapping::new(&self.file, capacity, self.read_only) {
            Ok(next) if long_enough => self.maps.push(next),
            _ => self.maps.current(),
        }
    }

    /// A live header word. The header lies inside every mapping (checked at open).
    pub(crate) fn live_u64(&self, offset: u64) -> &std::sync::atomic::AtomicU64 {
        self.maps.current().atomic_u64(offset).expect("header words lie inside the mapping")
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.live_u64(self.words.capacity).load(Ordering::Acquire)
    }

    pub(crate) fn alloc_end(&self) -> u64 {
        self.live_u64(self.words.alloc_end).load(Ordering::Acquire)
    }

    /// Offset of the catalog record in `slot` of a format-v1 store.
    #[inline]
    pub(crate) fn record_offset(&self, slot: u32) -> u64 {
        match &self.format {
            Format::V1(header) => header.catalog_offset + u64::from(slot) * ENTRY_SIZE,
            Format::V2(_) => 0,
        }
    }

    /// Offset of the slot of `entry` (whose record or block is at `at`) that readers and writers
    /// use now. Objects with two slots alternate between them by the parity of the entry's
    /// sequence word; everything else has one slot.
    pub(crate) fn active_offset(&self, at: u64, entry: &Entry) -> u64 {
        if entry.slot_count == 2 {
            let seq = self.map().atomic_u64(at + self.words.seq).map_or(0, |s| s.load(Ordering::Acquire));
            entry.data_offset + (seq & 1) * entry.slot_stride
        } else {
            entry.data_offset
        }
    }

    /// The process-wide lock of the entry whose lock byte is `offset`; [`Error::Forked`] in a
    /// forked child, whose copy of the lock table may have been locked by a parent thread at the
    /// instant of the fork.
    pub(crate) fn entry_lock(&self, offset: u64) -> Result<Arc<EntryLock>> {
        self.check_not_forked()?;
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = locks.get(&offset) {
            return Ok(lock.clone());
        }
        let lock = self.lock_state.entry(self.map(), offset).ok_or_else(|| {
            self.corrupt(format!("the lock byte {offset:#x} names no entry block inside the mapping"))
        })?;
        Ok(locks.entry(offset).or_insert(Arc::new(lock)).clone())
    }

    /// Whether this process cannot take the store's entry locks: a read-only mapping in robust
    /// lock mode (its locks live in the file).
    #[inline]
    pub(crate) fn cannot_lock(&self) -> bool {
        self.read_only && matches!(self.lock_state, Locks::Robust(_))
    }

    /// Takes `lock` (from [`entry_lock`](Self::entry_lock); of an entry changed `in_place` or
    /// double-buffered), exclusively or shared, for entry `name`.
    #[inline]
    pub(crate) fn lock_entry<'a>(
        &'a self,
        lock: &'a EntryLock,
        name: &str,
        exclusive: bool,
        in_place: bool,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<Held<'a>> {
        if self.cannot_lock() {
            self.check_not_forked()?;
            return Err(self.read_only_error(
                "taking a lock in robust lock mode (its locks live in the file, which a read-only \
                 mapping cannot change): copy values with load() instead, open the store read-write, \
                 or have every process open it with lock_mode(LockMode::Ofd)",
            ));
        }
        let (file, scope) = (&self.file, &self.scope);
        let held = if exclusive {
            self.lock_state.write(lock, file, scope, wait, in_place)
        } else {
            self.lock_state.read(lock, file, scope, wait, in_place)
        };
        held.map_err(|e| self.entry_lock_error(e, name, exclusive, timeout))
    }

    /// Takes the catalog lock exclusively, for `requested` (`creating`, `migrating`, `growing`)
    /// `name`.
    pub(crate) fn lock_catalog(&self, requested: &'static str, name: &str) -> Result<Held<'_>> {
        self.lock_state.admin(&self.file, &self.scope, Wait::Forever).map_err(|e| match e {
            // This thread already holds the catalog lock. No caller's code runs under it (an
            // `init` closure runs before it is taken), so this is a bug; report it, never hang.
            LockError::WouldDeadlock { .. } => {
                Error::WouldDeadlock { name: name.to_owned(), held: "the store's catalog lock", requested }
            }
            other => self.entry_lock_error(other, name, true, None),
        })
    }

    /// [`Error::Forked`] if this process is a forked child of the one that opened the store.
    #[inline]
    pub(crate) fn check_not_forked(&self) -> Result<()> {
        if self.scope.forked() {
            return Err(Error::Forked { path: self.path.clone() });
        }
        Ok(())
    }

    pub(crate) fn io(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io { op, path: self.path.clone(), source }
    }

    pub(crate) fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt { path: self.path.clone(), detail }
    }

    pub(crate) fn read_only_error(&self, action: &'static str) -> Error {
        Error::ReadOnly { path: self.path.clone(), action }
    }

    /// The error for a failed acquisition of the lock of entry `name`, for a write (`exclusive`) or
    /// a read, that waited at most `timeout`.
    pub(crate) fn entry_lock_error(
        &self,
        e: LockError,
        name: &str,
        exclusive: bool,
        timeout: Option<Duration>,
    ) -> Error {
        match e {
            LockError::Io(source) => self.io("lock", source),
            LockError::WouldBlock => Error::WouldBlock { name: name.to_owned() },
            LockError::Timeout => Error::Timeout {
                name: name.to_owned(),
                waited: timeout.unwrap_or_default(),
                waited_for: crate::error::WaitedFor::Lock,
            },
            LockError::Forked => Error::Forked { path: self.path.clone() },
            LockError::NotRecoverable => Error::LockNotRecoverable { path: self.path.clone(), name: name.to_owned() },
            LockError::WouldDeadlock { held_exclusive } => Error::WouldDeadlock {
                name: name.to_owned(),
                held: if held_exclusive { "a write guard on it" } else { "a read guard on it" },
                requested: if exclusive { "a write lock on" } else { "a read lock on" },
            },
        }
    }
}

/// How [`create`] builds a new store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creation {
    /// The entries the first index table holds without growing ([`OpenOptions::max_entries`]).
    pub(crate) max_entries: Option<u32>,
    /// Whether the new file (and its name) are synced before it is used.
    pub(crate) durability: Durability,
    /// Whether its blocks are reserved on disk ([`OpenOptions::allocate`]).
    pub(crate) allocate: bool,
    /// Whether a file already at the path is an error ([`OpenOptions::create_new`]) rather than
    /// the store to open.
    pub(crate) exclusive: bool,
}

/// Refuses a capacity no store can have.
fn check_capacity(path: &Path, capacity: u64) -> Result<()> {
    if capacity > MAX_CAPACITY {
        return Err(Error::CapacityTooLarge { path: path.to_owned(), requested: capacity, maximum: MAX_CAPACITY });
    }
    Ok(())
}

/// A new store's plan: its static header, the slots of its first index table, and its capacity
/// (`capacity` rounded up to what the header and that table need).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewStore {
    pub(crate) header: v2h::Header,
    pub(crate) index_slots: u64,
    pub(crate) capacity: u64,
}

/// Plans a new store of `capacity` bytes whose first index table holds `max_entries` entries
/// (the default table if `None`).
fn new_header(path: &Path, capacity: u64, max_entries: Option<u32>) -> Result<NewStore> {
    let index_slots = match max_entries {
        None => v2index::MIN_SLOTS,
        Some(n) if n == 0 || n > header::MAX_SLOTS => {
            return Err(Error::InvalidOptions("max_entries must be between 1 and 1048576"));
        }
        Some(n) => (u64::from(n) * 2).next_power_of_two().max(v2index::MIN_SLOTS),
    };
    check_capacity(path, capacity)?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let needed = (v2h::DATA_OFFSET + v2index::table_len(index_slots)).next_multiple_of(8192);
    let capacity = capacity.max(needed).max(v2h::min_capacity());
    let header =
        v2h::Header { initial_capacity: capacity, created_unix_nanos: created, max_entries: max_entries.unwrap_or(0) };
    Ok(NewStore { header, index_slots, capacity })
}

/// Writes a new store into the empty file `file` (found at `path`): its length (or its reserved
/// blocks, with `allocate`), then its header, open state, live words and first index table,
/// synced with [`Durability::PowerLoss`] (by `msync`, then the length by `fsync`).
fn initialise(path: &Path, file: &File, plan: &NewStore, how: &Creation) -> Result<()> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let capacity = plan.capacity;
    if how.allocate {
        sync::allocate(path, file, 0, capacity).map_err(|e| disk_error(path, capacity, "allocate", e))?;
    } else {
        sync::set_len(path, file, capacity).map_err(|e| disk_error(path, capacity, "grow", e))?;
    }
    let index_end = v2h::DATA_OFFSET + v2index::table_len(plan.index_slots);
    let map = Mapping::new(file, index_end, false).map_err(|e| io("map", e))?;
    let written = map.write(0, &plan.header.encode())
        && map.write(v2h::OPEN_STATE_OFFSET, &crate::file::lock_mode::initial_state().encode())
        && map.write(v2h::DATA_OFFSET, &v2index::encode_header(plan.index_slots));
    debug_assert!(written, "the header and the first index fit in their own mapping");
    let live = |offset| map.atomic_u64(offset).expect("live words lie inside the header");
    live(v2h::CAPACITY).store(capacity, Ordering::Release);
    live(v2h::GENERATION).store(0, Ordering::Release);
    live(v2h::ALLOC_END).store(index_end.next_multiple_of(64), Ordering::Release);
    live(v2h::INDEX_ROOT).store(v2h::DATA_OFFSET, Ordering::Release);
    live(v2h::NEXT_SERIAL).store(1, Ordering::Release);
    if how.durability == Durability::PowerLoss {
        // The header was written through the mapping: msync it, then fsync for the length.
        map.flush(path).map_err(|e| io("msync", e))?;
        sync::fsync(path, file).map_err(|e| io("fsync", e))?;
    }
    Ok(())
}

/// The error for a failed extension of a store file to `capacity` bytes.
fn disk_error(path: &Path, capacity: u64, op: &'static str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: path.to_owned(), requested: capacity },
        Some(libc::EFBIG) => {
            Error::CapacityTooLarge { path: path.to_owned(), requested: capacity, maximum: MAX_CAPACITY }
        }
        _ => Error::Io { op, path: path.to_owned(), source: e },
    }
}

/// Creates a store at `path` if there is none (returning whether this call linked it), without ever exposing a half-written file: the
/// store is built in a temporary file beside `path` and hard-linked into place, which fails if
/// another process got there first (and then its store is the one everybody opens, unless
/// `how.exclusive` makes that [`Error::AlreadyExists`]).
///
/// A capacity below what the header and catalog need is rounded up to it.
///
/// With [`Durability::PowerLoss`], the new file (its header and its length) is synced before it
/// is linked, and the directory after, so that once this returns a power loss can neither lose
/// the store nor leave a name for a file that is empty or shorter than its header says. With
/// [`Durability::Process`] nothing is synced: the page cache is shared by every process, so
/// nobody needs the disk to see the new store.
pub(crate) fn create(path: &Path, capacity: u64, how: &Creation) -> Result<bool> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let plan = new_header(path, capacity, how.max_entries)?;
    let file_name = path.file_name().ok_or_else(|| io("create", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // Unique per process, per thread and per attempt, so concurrent creators never collide.
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".{}.{attempt}.{}.creating", std::process::id(), plan.header.created_unix_nanos));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| create_error(path, e))?;
        initialise(&tmp, &file, &plan, how).map_err(|e| at_path(e, path))?;
        let mut linked = true;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && how.exclusive => {
                return Err(Error::AlreadyExists { path: path.to_owned() });
            }
            // Another creator won: its store is the one to open; the directory sync below still
            // makes its name durable (its contents are its creator's to sync).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => linked = false,
            Err(e) => return Err(create_error(path, e)),
        }
        if how.durability == Durability::PowerLoss {
            // One directory sync covers the new name and the temporary one's removal.
            let _ = fs::remove_file(&tmp);
            sync::fsync_dir(parent_dir(path)).map_err(|e| io("fsync the directory of", e))?;
        }
        Ok(linked)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reports an error about the staging file of [`create`] against the store's path.
fn at_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { op, source, .. } => Error::Io { op, path: path.to_owned(), source },
        Error::DiskFull { requested, .. } => Error::DiskFull { path: path.to_owned(), requested },
        other => other,
    }
}

/// The error for a failed creation of a file beside `path`.
fn create_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EROFS) => Error::ReadOnlyFileSystem { path: path.to_owned() },
        Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: path.to_owned(), requested: 0 },
        _ => Error::Io { op: "create", path: path.to_owned(), source: e },
    }
}

/// The error for a failed open of `path`.
fn open_error(path: &Path, e: OpenError) -> Error {
    match e {
        OpenError::NotRegular(what) => Error::NotRegularFile { path: path.to_owned(), what },
        OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound => match fs::read_link(path) {
            Ok(target) => Error::DanglingSymlink { path: path.to_owned(), target },
            Err(_) => Error::FileNotFound { path: path.to_owned() },
        },
        OpenError::Io(e) if e.raw_os_error() == Some(libc::EROFS) => {
            Error::ReadOnlyFileSystem { path: path.to_owned() }
        }
        OpenError::Io(e) => Error::Io { op: "open", path: path.to_owned(), source: e },
    }
}

/// Takes the shared `flock` of `file` (found at `path`): at once, or polling until `timeout`
/// passes; [`Error::Busy`] if another process holds it exclusively.
fn lock_shared(path: &Path, file: &File, timeout: Option<Duration>) -> Result<()> {
    let io = |source| Error::Io { op: "lock", path: path.to_owned(), source };
    if sys::file::try_lock_shared(file).map_err(io)? {
        return Ok(());
    }
    let Some(timeout) = timeout else { return Err(Error::Busy { path: path.to_owned(), waited: None }) };
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(20);
    loop {
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(Error::Busy { path: path.to_owned(), waited: Some(timeout) });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
        if sys::file::try_lock_shared(file).map_err(io)? {
            return Ok(());
        }
    }
}

/// Makes the empty file `file` (found at `path`, on which the caller holds the shared `flock`) a
/// new store with the capacity and catalog `opts` ask for. Returns `false` if it turned out not
/// to be empty, or no longer at `path`, once the lock was held: the caller looks again.
///
/// The initialisation happens under the store's catalog lock (an OFD byte-range lock, which
/// conflicts across processes and, unlike `flock`, is independent of the shared `flock` every
/// opener holds), so that of several processes adopting the file at once, exactly one writes the
/// header; the others wait for it and then find a store. Every open of a non-empty file takes
/// that lock shared for a moment before it reads the header, so no opener sees the file extended
/// but its header not yet written.
fn adopt_empty(path: &Path, file: &File, opts: &OpenOptions) -> Result<bool> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    let capacity = opts.capacity.ok_or_else(|| Error::CapacityRequired { path: path.to_owned() })?;
    let plan = new_header(path, capacity, opts.max_entries)?;
    sys::lock_range(file, LOCK_BASE, sys::LockKind::Exclusive, true).map_err(|e| io("lock", e))?;
    let result = (|| {
        let empty = file.metadata().map_err(|e| io("stat", e))?.len() == 0;
        if !empty || sys::file::link_state(path, file).map_err(|e| io("stat", e))? != Link::Linked {
            return Ok(false);
        }
        let how = Creation {
            max_entries: opts.max_entries,
            durability: opts.durability,
            allocate: opts.allocate,
            exclusive: false,
        };
        if let Err(e) = initialise(path, file, &plan, &how) {
            // Leave it empty, as it was, rather than half initialised.
            let _ = sync::set_len(path, file, 0);
            return Err(e);
        }
        Ok(true)
    })();
    let _ = sys::unlock_range(file, LOCK_BASE);
    result
}

/// The directory that holds `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Reads up to `buf.len()` bytes from the start of the file.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn header_error(path: &Path, e: HeaderError) -> Error {
    let path = path.to_owned();
    match e {
        HeaderError::TooShort { len } => Error::NotAStore { path, reason: format!("it is only {len} bytes long") },
        HeaderError::BadMagic => Error::NotAStore { path, reason: "it does not start with the shmstore magic".into() },
        HeaderError::UnsupportedVersion { found } => {
            Error::UnsupportedFormat { path, found, supported: v2h::FORMAT_VERSION }
        }
        HeaderError::WrongEndianness => Error::WrongEndianness { path },
        HeaderError::BadChecksum { .. } => Error::BadChecksum { path, what: "the header".into() },
        HeaderError::BadGeometry(detail) => Error::Corrupt { path, detail: format!("header: {detail}") },
    }
}

/// Which format a store file uses, with its decoded static header.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    /// Format version 1: a fixed catalog of records, opened read-only.
    V1(Header),
    /// Format version 2: an index and entry blocks.
    V2(v2h::Header),
}

/// Where the live words that every format has lie: in the header, and within an entry's record
/// (v1) or block (v2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words {
    /// The header's `capacity` word.
    pub(crate) capacity: u64,
    /// The header's growth `generation` word.
    pub(crate) generation: u64,
    /// The header's `alloc_end` word.
    pub(crate) alloc_end: u64,
    /// Bytes of the header.
    pub(crate) header_len: u64,
    /// An entry's commit sequence word.
    pub(crate) seq: u64,
    /// An entry's futex word.
    pub(crate) futex: u64,
    /// An entry's waiter count.
    pub(crate) waiters: u64,
    /// The `u32` word a handle checks before it trusts its entry: v1's `moved_to`, v2's `state`.
    pub(crate) current: u64,
    /// The value [`current`](Self::current) holds while the entry is the one its handles know.
    pub(crate) current_value: u32,
    /// Bytes of a record (v1) or block (v2), for syncing it.
    pub(crate) record_len: u64,
}

impl Words {
    pub(crate) const V1: Words = Words {
        capacity: header::CAPACITY_OFFSET,
        generation: header::GENERATION_OFFSET,
        alloc_end: header::ALLOC_END_OFFSET,
        header_len: header::HEADER_SIZE,
        seq: crate::format::entry::SEQ_OFFSET,
        futex: crate::format::entry::FUTEX_OFFSET,
        waiters: crate::format::entry::WAITERS_OFFSET,
        current: crate::format::entry::MOVED_TO_OFFSET,
        current_value: 0,
        record_len: ENTRY_SIZE,
    };
    pub(crate) const V2: Words = Words {
        capacity: v2h::CAPACITY,
        generation: v2h::GENERATION,
        alloc_end: v2h::ALLOC_END,
        header_len: v2h::HEADER_SIZE,
        seq: v2block::SEQ,
        futex: v2block::FUTEX,
        waiters: v2block::WAITERS,
        current: v2block::STATE,
        current_value: v2block::STATE_LIVE,
        record_len: v2block::BLOCK_SIZE,
    };
}
