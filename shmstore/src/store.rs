//! [`Store`]: opening and creating store files, and the typed entry API.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::array::SharedArray;
use crate::commit::Durability;
use crate::error::{Error, Result};
use crate::format::entry::{Entry, EntryKind, ENTRY_SIZE};
use crate::format::header::{self, Header, HeaderError, LiveError, HEADER_SIZE, LOCK_BASE};
use crate::handle::EntryHandle;
use crate::layout::SharedLayout;
use crate::lock::{Held, LockError, LockScope, RangeLock, Wait};
use crate::map::{Mapping, Mappings};
use crate::object::Shared;
use crate::sys::sync;

/// The number of catalog slots a new store gets unless [`OpenOptions::max_entries`] says otherwise.
pub const DEFAULT_MAX_ENTRIES: u32 = 64;

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
    pub(crate) max_entries: u32,
    pub(crate) durability: Durability,
    pub(crate) max_capacity: Option<u64>,
    pub(crate) allocate: bool,
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
            max_entries: DEFAULT_MAX_ENTRIES,
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
    pub fn capacity(&mut self, bytes: u64) -> &mut Self {
        self.capacity = Some(bytes);
        self.capacity_only_if_created = false;
        self
    }

    /// The capacity a new file gets; an existing file opens at its length, whatever this says.
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

    /// How many entries a new store can hold (default: [`DEFAULT_MAX_ENTRIES`]). Each costs 256
    /// bytes of catalog. Ignored when opening an existing store.
    pub fn max_entries(&mut self, n: u32) -> &mut Self {
        self.max_entries = n;
        self
    }

    /// How far commits go before they return (default: [`Durability::Process`]). Handles can
    /// override it with [`Shared::with_durability`](crate::Shared::with_durability).
    pub fn durability(&mut self, durability: Durability) -> &mut Self {
        self.durability = durability;
        self
    }

    /// The largest size the store may grow to (default: no limit). When a new entry does not fit,
    /// the store grows geometrically (at least doubling) up to this size, and every process that
    /// has it open adopts the new size on its next access; past it, creation fails with
    /// [`Error::StoreFull`].
    pub fn max_capacity(&mut self, bytes: u64) -> &mut Self {
        self.max_capacity = Some(bytes);
        self
    }

    /// Reserve disk blocks when the store grows (`posix_fallocate`; default: `false`). A sparse
    /// store (the default) costs disk only for pages actually written, which suits huge, mostly
    /// empty arrays, but if the disk fills up, a write into a hole kills the process with `SIGBUS`.
    /// With `allocate(true)` a full disk is an error at growth time instead.
    pub fn allocate(&mut self, allocate: bool) -> &mut Self {
        self.allocate = allocate;
        self
    }

    /// Opens (or creates) the store at `path`.
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
    /// Where the entry's catalog record starts; its commit sequence word `seq` (a native-endian
    /// `u64`) is at `record_offset + 192`.
    pub record_offset: u64,
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
        let (slot, entry) = self.inner.find_or_create(name, EntryKind::Object, &T::LAYOUT, 1, || {
            crate::view::owned_bytes(&mut init()).to_vec()
        })?;
        self.typed::<T>(slot, entry, EntryKind::Object).map(Shared::new)
    }

    /// The existing object `name`: [`Error::NotFound`] if there is none,
    /// [`Error::LayoutMismatch`] if it holds another type.
    pub fn object<T: SharedLayout>(&self, name: &str) -> Result<Shared<T>> {
        let (slot, entry) = self.inner.find(name)?;
        self.typed::<T>(slot, entry, EntryKind::Object).map(Shared::new)
    }

    /// The array `name` of `len` values, each set to `value`, created if it does not exist yet.
    /// An existing array is opened as it is, whatever its length (check
    /// [`SharedArray::len`]). A zero `value` costs nothing: fresh store space is already zero, and
    /// stays sparse on disk until written.
    pub fn array_or_init<T: SharedLayout + Copy>(&self, name: &str, len: usize, value: T) -> Result<SharedArray<T>> {
        let (slot, entry) = self.inner.find_or_create(name, EntryKind::Array, &T::LAYOUT, len as u64, || {
            crate::view::value_bytes(&value).to_vec()
        })?;
        self.typed::<T>(slot, entry, EntryKind::Array).map(SharedArray::new)
    }

    /// The existing array `name`: [`Error::NotFound`] if there is none,
    /// [`Error::LayoutMismatch`] if it holds another type.
    pub fn array<T: SharedLayout>(&self, name: &str) -> Result<SharedArray<T>> {
        let (slot, entry) = self.inner.find(name)?;
        self.typed::<T>(slot, entry, EntryKind::Array).map(SharedArray::new)
    }

    /// A handle of `T` values on `entry`, which must be of `kind`.
    pub(crate) fn typed<T: SharedLayout>(&self, slot: u32, entry: Arc<Entry>, kind: EntryKind) -> Result<EntryHandle> {
        if entry.kind != kind {
            return Err(Error::KindMismatch {
                name: entry.name.clone(),
                expected: kind.as_str(),
                found: entry.kind.as_str(),
            });
        }
        EntryHandle::new::<T>(self.inner.clone(), slot, entry)
    }

    /// Every entry in the store, in catalog order.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        self.inner.scan()?.iter().map(|(slot, e)| self.inner.entry_info(*slot, e)).collect()
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
        sync::fsync_dir(parent_dir(&inner.path)).map_err(|source| inner.io("flush the directory of", source))
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

    /// The store's capacity in bytes (its file length).
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// Bytes in use: header, catalog and allocated data.
    pub fn used(&self) -> u64 {
        self.inner.alloc_end()
    }

    /// The maximum number of entries.
    pub fn max_entries(&self) -> u32 {
        self.inner.header.catalog_slots
    }
}

/// The state behind a [`Store`] and all its handles.
#[derive(Debug)]
pub(crate) struct StoreInner {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// The mappings of the file; see [`StoreInner::map`].
    maps: Mappings,
    pub(crate) header: Header,
    /// The largest capacity automatic growth may reach.
    max_capacity: Option<u64>,
    /// Whether growth reserves disk blocks (`posix_fallocate`) instead of extending sparsely.
    allocate: bool,
    pub(crate) read_only: bool,
    /// The default durability of commits.
    pub(crate) durability: Durability,
    /// The file's identity and the process generation that opened it, for every lock taken on it.
    pub(crate) scope: LockScope,
    /// Serialises catalog changes (entry creation, growth) across threads and processes; taken
    /// through [`StoreInner::lock_catalog`].
    catalog_lock: RangeLock,
    /// Entries this process has seen, by name. Records never change once published.
    pub(crate) names: Mutex<HashMap<String, (u32, Arc<Entry>)>>,
    /// One lock per entry slot, shared by every handle of this process.
    locks: Mutex<HashMap<u32, Arc<RangeLock>>>,
    /// Set for a temporary store (see `temp.rs`): removed on drop if no other process holds it.
    pub(crate) temp: Option<crate::temp::TempRegion>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // A forked child's copy shares the parent's open file, and with it the parent's `flock`:
        // releasing would take it exclusively and remove the store under the parent.
        if let (Some(temp), false) = (&self.temp, self.scope.forked()) {
            temp.release(&self.path, &self.file);
        }
    }
}

impl StoreInner {
    fn open(path: &Path, opts: &OpenOptions) -> Result<StoreInner> {
        if opts.read_only && opts.create {
            return Err(Error::InvalidOptions(
                "a store cannot be created read-only: drop create(true) or read_only(true)",
            ));
        }
        let io = |op, source| Error::Io { op, path: path.to_owned(), source };
        let open = || fs::OpenOptions::new().read(true).write(!opts.read_only).open(path);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && opts.create => {
                let capacity = opts.capacity.ok_or_else(|| Error::CapacityRequired { path: path.to_owned() })?;
                create(path, capacity, opts.max_entries, opts.durability)?;
                open()
            }
            other => other,
        }
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::FileNotFound { path: path.to_owned() }
            } else {
                io("open", e)
            }
        })?;
        StoreInner::from_file(path, file, opts)
    }

    /// Finishes opening the store file `file` (found at `path`): shared `flock`, header and
    /// catalog checks, mapping, and growth to an explicit capacity.
    pub(crate) fn from_file(path: &Path, file: File, opts: &OpenOptions) -> Result<StoreInner> {
        let io = |op, source| Error::Io { op, path: path.to_owned(), source };
        // Every opener holds a shared whole-file lock for its life: a tool that wants to shrink or
        // replace the file must take the exclusive lock first, and so cannot pull pages out from
        // under a live mapping.
        file.lock_shared().map_err(|e| io("lock", e))?;
        let len = file.metadata().map_err(|e| io("stat", e))?.len();
        let mut store = StoreInner::map_and_check(path, file, len, opts.read_only)?;
        store.durability = opts.durability;
        store.max_capacity = opts.max_capacity;
        store.allocate = opts.allocate;
        if let (Some(capacity), false) = (opts.capacity, opts.capacity_only_if_created) {
            store.ensure_capacity(capacity)?;
        }
        Ok(store)
    }

    /// Maps an initialised file and checks its header and its whole catalog, repairing an
    /// allocation end that lags the catalog (on a writable open).
    fn map_and_check(path: &Path, file: File, len: u64, read_only: bool) -> Result<StoreInner> {
        let mut first = [0u8; header::STATIC_SIZE];
        let n =
            read_prefix(&file, &mut first).map_err(|e| Error::Io { op: "read", path: path.to_owned(), source: e })?;
        let header = Header::decode(&first[..n]).map_err(|e| header_error(path, e))?;
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
            file,
            maps: Mappings::new(map),
            header,
            max_capacity: None,
            allocate: false,
            read_only,
            durability: Durability::Process,
            scope,
            catalog_lock: RangeLock::new(LOCK_BASE),
            names: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
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
        // A creator raises `alloc_end` before it publishes an entry, so in a running store every
        // entry the scan saw ends at or below the `alloc_end` read now, after the scan, even if it
        // was created meanwhile. But after an OS crash or a power loss the catalog page may have
        // reached the disk while the header page did not. Entries past `alloc_end` passed every
        // check above (they lie inside the capacity and overlap nothing), so they are kept; a
        // writer raises `alloc_end` past them, under the catalog lock, so that the allocator never
        // hands their space out again.
        if summary.end > store.alloc_end() && !read_only {
            let _held = store.lock_catalog("repairing the allocation end of", "the catalog")?;
            store.live_u64(header::ALLOC_END_OFFSET).fetch_max(summary.end, Ordering::AcqRel);
        }
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
    ///
    /// With [`Durability::PowerLoss`] the same order holds on disk: the new length is synced
    /// (`fdatasync`, which covers the length) before the capacity word rises, and the header is
    /// synced after, so no power loss leaves a capacity beyond the file's length.
    pub(crate) fn grow_to(&self, capacity: u64) -> Result<()> {
        let len = self.file.metadata().map_err(|e| self.io("stat", e))?.len();
        if len < capacity {
            if self.allocate {
                sync::allocate(&self.path, &self.file, len, capacity - len).map_err(|e| self.io("allocate", e))?;
            } else {
                sync::set_len(&self.path, &self.file, capacity).map_err(|e| self.io("grow", e))?;
            }
        }
        let power_loss = self.durability == Durability::PowerLoss;
        if power_loss {
            // Even if the file was long enough already: whoever extended it may not have synced.
            sync::fdatasync(&self.path, &self.file).map_err(|e| self.io("fdatasync", e))?;
        }
        self.live_u64(header::CAPACITY_OFFSET).fetch_max(capacity, Ordering::AcqRel);
        self.live_u64(header::GENERATION_OFFSET).fetch_add(1, Ordering::AcqRel);
        if power_loss {
            self.sync_range(0, HEADER_SIZE)?;
        }
        Ok(())
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
        match self.max_capacity {
            Some(max) if end > max => None,
            Some(max) => Some(target.min(max)),
            None => Some(target),
        }
    }

    /// The current mapping of the file, remapped first if another process (or this one) grew the
    /// store beyond it. One atomic load on the common path.
    #[inline]
    pub(crate) fn map(&self) -> &Mapping {
        let current = self.maps.current();
        let capacity = current.atomic_u64(header::CAPACITY_OFFSET).map_or(0, |c| c.load(Ordering::Acquire));
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
        self.live_u64(header::CAPACITY_OFFSET).load(Ordering::Acquire)
    }

    pub(crate) fn alloc_end(&self) -> u64 {
        self.live_u64(header::ALLOC_END_OFFSET).load(Ordering::Acquire)
    }

    /// Offset of the catalog record in `slot`.
    #[inline]
    pub(crate) fn record_offset(&self, slot: u32) -> u64 {
        self.header.catalog_offset + u64::from(slot) * ENTRY_SIZE
    }

    /// Offset of the slot of `entry` (in catalog `slot`) that readers and writers use now.
    /// Objects with two slots alternate between them by the parity of the entry's sequence word;
    /// everything else has one slot.
    pub(crate) fn active_offset(&self, slot: u32, entry: &Entry) -> u64 {
        if entry.slot_count == 2 {
            let seq = self.record_offset(slot) + crate::format::entry::SEQ_OFFSET;
            let seq = self.map().atomic_u64(seq).map_or(0, |s| s.load(Ordering::Acquire));
            entry.data_offset + (seq & 1) * entry.slot_stride
        } else {
            entry.data_offset
        }
    }

    /// The process-wide lock of the entry in `slot`; [`Error::Forked`] in a forked child, whose
    /// copy of the lock table may have been locked by a parent thread at the instant of the fork.
    pub(crate) fn entry_lock(&self, slot: u32, offset: u64) -> Result<Arc<RangeLock>> {
        self.check_not_forked()?;
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Ok(locks.entry(slot).or_insert_with(|| Arc::new(RangeLock::new(offset))).clone())
    }

    /// Takes the catalog lock exclusively, for `requested` (`creating`, `migrating`, `growing`)
    /// `name`.
    pub(crate) fn lock_catalog(&self, requested: &'static str, name: &str) -> Result<Held<'_>> {
        self.catalog_lock.write(&self.file, &self.scope, Wait::Forever).map_err(|e| match e {
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
            LockError::WouldDeadlock { held_exclusive } => Error::WouldDeadlock {
                name: name.to_owned(),
                held: if held_exclusive { "a write guard on it" } else { "a read guard on it" },
                requested: if exclusive { "a write lock on" } else { "a read lock on" },
            },
        }
    }
}

/// Creates a store at `path` if there is none, without ever exposing a half-written file: the
/// store is built in a temporary file beside `path` and hard-linked into place, which fails if
/// another process got there first (and then its store is the one everybody opens).
///
/// With [`Durability::PowerLoss`], the new file (its header and its length) is synced before it
/// is linked, and the directory after, so that once this returns a power loss can neither lose
/// the store nor leave a name for a file that is empty or shorter than its header says. With
/// [`Durability::Process`] nothing is synced: the page cache is shared by every process, so
/// nobody needs the disk to see the new store.
pub(crate) fn create(path: &Path, capacity: u64, max_entries: u32, durability: Durability) -> Result<()> {
    let io = |op, source| Error::Io { op, path: path.to_owned(), source };
    if max_entries == 0 || max_entries > header::MAX_SLOTS {
        return Err(Error::InvalidOptions("max_entries must be between 1 and 1048576"));
    }
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let header = Header::new(max_entries, capacity, created);
    if capacity < header.min_capacity() {
        return Err(Error::CapacityTooSmall {
            path: path.to_owned(),
            requested: capacity,
            minimum: header.min_capacity(),
            shrink: false,
        });
    }
    let file_name = path.file_name().ok_or_else(|| io("create", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // Unique per process, per thread and per attempt, so concurrent creators never collide.
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".{}.{attempt}.{created}.creating", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file =
            fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(|e| io("create", e))?;
        sync::set_len(&tmp, &file, capacity).map_err(|e| io("grow", e))?;
        let map = Mapping::new(&file, HEADER_SIZE, false).map_err(|e| io("map", e))?;
        let written = map.write(0, &header.encode());
        debug_assert!(written, "the header fits in its own mapping");
        let live = |offset| map.atomic_u64(offset).expect("live words lie inside the header");
        live(header::CAPACITY_OFFSET).store(capacity, Ordering::Release);
        live(header::GENERATION_OFFSET).store(0, Ordering::Release);
        live(header::ALLOC_END_OFFSET).store(header.data_offset, Ordering::Release);
        let power_loss = durability == Durability::PowerLoss;
        if power_loss {
            // The header was written through the mapping: msync it, then fsync for the length.
            map.flush(&tmp).map_err(|e| io("msync", e))?;
            sync::fsync(&tmp, &file).map_err(|e| io("fsync", e))?;
        }
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            // Another creator won: its store is the one to open; the directory sync below still
            // makes its name durable (its contents are its creator's to sync).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create", e)),
        }
        if power_loss {
            // One directory sync covers the new name and the temporary one's removal.
            let _ = fs::remove_file(&tmp);
            sync::fsync_dir(parent_dir(path)).map_err(|e| io("fsync the directory of", e))?;
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
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
            Error::UnsupportedFormat { path, found, supported: header::FORMAT_VERSION }
        }
        HeaderError::WrongEndianness => Error::WrongEndianness { path },
        HeaderError::BadChecksum { .. } => Error::BadChecksum { path, what: "the header".into() },
        HeaderError::BadGeometry(detail) => Error::Corrupt { path, detail: format!("header: {detail}") },
    }
}
