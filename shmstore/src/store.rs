//! [`Store`]: the facade over one store file, and the typed entry API.

use std::path::Path;
use std::sync::Arc;

use crate::array::SharedArray;
use crate::entry::handle::EntryHandle;
use crate::error::{Error, Result};
use crate::file::catalog::Found;
use crate::file::create::{parent_dir, MAX_CAPACITY};
use crate::file::state::{Format, StoreInner};
use crate::format::entry::EntryKind;
use crate::format::header;
use crate::format::v2::header as v2h;
use crate::layout::SharedLayout;
use crate::object::Shared;
#[cfg(doc)]
use crate::options::Durability;
use crate::options::OpenOptions;
use crate::sys::sync;

impl OpenOptions {
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

    /// Checks the store's free space (format v2; a v1 store has none): every node of the two free
    /// lists (free data extents and free entry blocks) has a sound header, lies in the data area,
    /// aligned; no node shares a byte with another or with a live entry's block, data or schema;
    /// and each list ends. Returns how many nodes the lists hold. A problem is
    /// [`Error::Corrupt`], naming the node. Opening a store and using it never walk the free lists
    /// (an allocation reads only the nodes it passes), so this is the full check that
    /// `shmstore verify` runs.
    pub fn check_free_lists(&self) -> Result<u64> {
        match self.inner.format {
            Format::V1(_) => Ok(0),
            Format::V2(_) => self.inner.v2_check_free_lists(),
        }
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
