//! The state of one open store file ([`StoreInner`]), shared by a [`Store`](crate::Store) and all
//! its handles: opening the file (creating it through [`create`](super::create)), its mappings
//! and growth, and its locks.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::file::create::{adopt_empty, check_capacity, create, disk_error, Creation, MAX_CAPACITY};
use crate::file::lock::robust::Robust;
use crate::file::lock::{EntryLock, Held, LockError, LockScope, Locks, RangeLock, Wait};
use crate::file::map::{Mapping, Mappings};
use crate::format::entry::{Entry, ENTRY_SIZE};
use crate::format::header::{self, Header, HeaderError, LiveError, LOCK_BASE};
use crate::format::v2::{block as v2block, header as v2h};
use crate::options::Durability;
use crate::options::OpenOptions;
use crate::sys::file::{Link, OpenError};
use crate::sys::{self, sync};

/// The largest size a store grows to by itself unless [`OpenOptions::max_capacity`] says
/// otherwise: 1 TiB. A runaway request (an array of `1 << 40` values, say) then fails with
/// [`Error::StoreFull`], which says how to raise the limit, instead of claiming terabytes.
pub(crate) const DEFAULT_MAX_CAPACITY: u64 = 1 << 40;

/// How many times an open starts over because the file at the path was replaced between its
/// `open` and its lock. Each restart means another process replaced the file, so this only guards
/// against an endless fight.
const MAX_OPEN_ATTEMPTS: u32 = 10_000;

/// What closes a temporary store when its [`StoreInner`] is dropped: implemented by `temp.rs`
/// (above this module), which sets [`StoreInner::temp`] when it opens one.
pub(crate) trait Release: std::fmt::Debug + Send + Sync {
    /// Closes the temporary store `file`, found at `path`, before the file is closed.
    fn release(&self, path: &Path, file: &File);
}

/// The state behind a [`Store`] and all its handles.
#[derive(Debug)]
pub(crate) struct StoreInner {
    pub(crate) path: PathBuf,
    /// `path` made absolute at open, so that [`StoreInner::check`] looks at the same file after
    /// the process changes its working directory.
    pub(crate) absolute: PathBuf,
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
    pub(crate) temp: Option<Box<dyn Release>>,
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
    pub(crate) fn open(path: &Path, opts: &OpenOptions) -> Result<StoreInner> {
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
                Err(e) => return Err(Error::open_failed(path, e)),
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
