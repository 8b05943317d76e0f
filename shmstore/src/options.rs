//! [`OpenOptions`]: how a store is opened or created, and [`Durability`]: how far its changes go
//! before a call returns.

use std::time::Duration;

#[cfg(doc)]
use crate::error::Error;

use crate::format::v2::header as v2h;

/// The number of slots of a new store's first index table. The catalog grows past it (a table is
/// replaced by a larger one when half full); only [`OpenOptions::max_entries`] caps it.
pub const DEFAULT_MAX_ENTRIES: u32 = 64;

/// How to open or create a [`Store`](crate::Store); made by
/// [`Store::options`](crate::Store::options).
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
}

/// How far a change goes before the call that makes it returns: into the kernel's page cache,
/// which every process shares ([`Process`](Self::Process), the default), or onto the disk
/// ([`PowerLoss`](Self::PowerLoss)).
///
/// A store's level ([`OpenOptions::durability`](crate::OpenOptions::durability)) governs its
/// commits and in-place writes, and also the creation of the store and of entries, growth and
/// migration. A handle can change it for its own commits and writes (`with_durability` on
/// [`Shared`](crate::Shared::with_durability), [`SharedArray`](crate::SharedArray::with_durability)
/// and [`SharedBytes`](crate::SharedBytes::with_durability)); an entry created through a
/// `Process` store is only on disk after [`Store::flush`](crate::Store::flush), even if its
/// handle commits with `PowerLoss`.
///
/// # After a process crash
///
/// At both levels, nothing that returned is lost when any process dies, the writer included, at
/// any instant (even by `SIGKILL`): the file's pages live in the page cache, which outlives every
/// process.
/// - A double-buffered object shows its last published value: a commit in progress is there
///   entirely or not at all.
/// - An array, a byte region or an object holding atomics (changed in place) shows every write
///   that returned; a write in progress may be partly done (in-place changes have no rollback).
/// - An entry being created is absent (its space is leaked) or complete; a growth in progress
///   leaves the old or the new capacity; an entry being migrated holds its old layout or its new
///   one.
///
/// # After an OS crash or a power loss
///
/// Both lose the page cache; what the disk holds then depends on the level.
///
/// With **`Process`**, nothing is synced: the kernel writes pages back when it likes, in any order.
/// Anything changed since the last [`Store::flush`](crate::Store::flush) returned may be lost, in
/// part or entirely, in any combination of pages: an object may show an older value, a value of
/// two commits ago or zeros (its sequence word reached the disk and its slot did not), or, if it
/// is larger than a page, a mix of two values; an entry created, a growth or a migration since
/// the last flush may leave a store that refuses to open (for example with
/// [`Error::Truncated`](crate::Error::Truncated), a capacity beyond a file length that did not reach
/// the disk) or entries without their data. A returned flush makes everything before it durable; a
/// power loss *during* the flush leaves any mix.
///
/// With **`PowerLoss`**, every operation that returned is on disk, and one in progress is on disk
/// in the same all-or-nothing state that a process crash leaves (partial only for in-place writes):
/// - **Commit** to a double-buffered object: the new slot, every page of it, is synced (`msync`)
///   before the 8-byte sequence word that selects it changes, and the record holding that word is
///   synced after. A returned commit survives; one in progress leaves the old value or the new
///   one, never a mix, *including for an object larger than a page*.
/// - **In-place write** (an array, a byte region or an object holding atomics, through a write
///   guard, `write_at`, `set`, `update`, an [`ArrayView`](crate::ArrayView) or a
///   [`ByteStream`](crate::ByteStream)): the entry's data is synced before the call returns (or
///   when the write guard is committed or dropped; only [`WriteGuard::commit`](crate::WriteGuard::commit)
///   reports a failed sync). A write in progress may be partly on disk, page by page. Changes made
///   through the atomics of a *read* guard are not synced (use `Store::flush`), and an in-place
///   entry's [`Version`](crate::Version) is not either: it may be lower after a power loss.
/// - **Entry creation** (`object_or_init`, `array_or_init`, `bytes_or_init`): the initial value,
///   the schema, the header's allocation end and the record are synced before the record's state
///   word publishes it, and that word after. A created entry survives with its initial value; one
///   in progress is absent, and its space is leaked.
/// - **Growth**: the file's new length is synced (`fdatasync`) before the header's capacity word
///   rises, and the header after. Once the call that grew the store returns, the new capacity
///   survives; during it, the old or the new one, never one beyond the file's length.
/// - **Migration**: the converted entry is created as above, under a shadow record, and then the
///   old record's forwarding word is set and synced. Once [`Store::migrate`](crate::Store::migrate)
///   returns the new layout survives; during it, the entry holds its old layout or the new one.
/// - **Store creation**: the new file is synced (`fsync`) before it is linked under its name, and
///   its directory after: once the open that created it returns, the store survives.
///
/// These hold if the disk honours `fsync` and `msync` (no volatile write cache that acknowledges
/// writes it has not made) and writes an aligned word of up to 8 bytes atomically. A temporary store
/// ([`Store::create_temp`](crate::Store::create_temp)) lives on a tmpfs, which a power loss
/// empties, whatever the level. `tests/power_loss.rs` checks every claim in this list by
/// rebuilding, at each sync, every disk image a power loss could leave.
///
/// `PowerLoss` costs two `msync`s per commit, one per in-place write, four per entry created, an
/// `fdatasync` and an `msync` per growth, and an `fsync` of the file and of its directory when a
/// store is created. `Process` makes no sync call at all.
///
/// ```
/// use shmstore::{Durability, Store};
///
/// # let dir = tempfile::tempdir().unwrap();
/// // Every commit of this store reaches the disk before it returns:
/// let store = Store::options().create(true).capacity(1 << 20).durability(Durability::PowerLoss).open(dir.path().join("d.shm"))?;
/// let counter = store.object_or_init("counter", || 0u64)?;
/// counter.store(1)?;
///
/// // Or per handle: this one commits to the page cache only.
/// let fast = counter.clone().with_durability(Durability::Process);
/// fast.store(2)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A change is immediately visible to every process (a commit all at once), and survives the
    /// death of any process, including the writer, at any instant. It lives in the kernel's page
    /// cache and reaches the disk when the kernel writes it back, in any order (or at
    /// [`Store::flush`](crate::Store::flush)), so an OS crash or a power loss can lose recent
    /// changes, or mix them, and may leave a store that does not open. Makes no sync call of its
    /// own. The default.
    #[default]
    Process,
    /// Additionally, every change is on disk, in an order that keeps the store consistent, before
    /// the call that makes it returns: after an OS crash or a power loss, everything that returned
    /// is there and an operation in progress is all there or not at all (in-place writes aside,
    /// which may be partly there). Costs two `msync` calls per commit; see above for the rest.
    PowerLoss,
}
