//! What object and array handles share: a located entry, its lock, and guard construction.
//!
//! A handle is made once per entry (the catalog lookup and layout check happen then) and caches
//! the entry's location, so every later access is a lock plus pointer arithmetic.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::entry::guard::{ReadGuard, WriteGuard};
use crate::entry::staging;
use crate::error::{Error, Result};
use crate::file::catalog::Found;
use crate::file::copy;
use crate::file::lock::{EntryLock, Wait};
use crate::file::map::Located;
use crate::file::state::StoreInner;
use crate::format::entry::{Entry, EntryKind};
use crate::format::schema::Schema;
use crate::layout::{Layout, SharedLayout};
use crate::options::Durability;

/// The serial word of the entries of a version-1 store, which have none: always 0, as
/// [`EntryHandle::serial`] is for them.
static NO_SERIAL: AtomicU64 = AtomicU64::new(0);

/// A held lock on one entry.
pub(crate) type Hold<'a> = crate::file::lock::Held<'a>;

/// A located, layout-checked entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryHandle {
    pub(crate) store: Arc<StoreInner>,
    pub(crate) entry: Arc<Entry>,
    /// Offset of the entry's block (v2) or catalog record (v1).
    pub(crate) at: u64,
    /// The block's serial when the handle was made (v2; 0 in v1): a reused block has another.
    pub(crate) serial: u64,
    /// The entry's lock, from the store's table of locks ([`StoreInner::entry_lock`]): looked up
    /// on the handle's first lock, not when the handle is made, so that finding an entry costs no
    /// lock, and a handle only ever used for lock-free loads never makes one.
    ///
    /// Boxed: a cell inside the handle itself (a `OnceLock` holds an `UnsafeCell`) would tell the
    /// compiler that any field of a shared `&EntryHandle` may change behind its back, and a
    /// lock-free load would reload the handle's words after each atomic load (it cost `load()`
    /// 0.6 ns, a quarter of its time).
    lock: Box<std::sync::OnceLock<Arc<EntryLock>>>,
    /// The layout the handle was opened with, to report a migration against.
    expected: Expected,
    /// `layout.needs_validation()`, computed once: the layout walk is not free.
    validate: bool,
    /// `layout.contains_atomics()`, computed once.
    atomics: bool,
    /// How far commits through this handle go.
    pub(crate) durability: Durability,
    /// For double-buffered objects, the words a lock-free load touches, located once.
    hot: Option<Hot>,
}

/// The words of a double-buffered object that tell whether it is still the entry a handle was
/// made for, and what they hold while it is: its `moved` word (v1's `moved_to`, v2's `state`) and
/// its block's serial (v2; 0 in v1). Taken out of the handle once per access, so that checking
/// them again costs their two loads and nothing more.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StillCurrent<'a> {
    moved: &'a AtomicU32,
    current_value: u32,
    serial: &'a AtomicU64,
    expected_serial: u64,
}

impl StillCurrent<'_> {
    /// Whether the entry may have moved, been removed or renamed, or its block reused: then
    /// [`EntryHandle::check_current`] says why. Two loads.
    #[inline(always)]
    pub(crate) fn moved_away(&self) -> bool {
        // Both loads, then one branch (`|`, not `||`): they are two loads of one cache line.
        (self.moved.load(std::sync::atomic::Ordering::Acquire) != self.current_value)
            | (self.serial.load(std::sync::atomic::Ordering::Acquire) != self.expected_serial)
    }
}

/// The layout a handle was opened with: a Rust type's, or, for an untyped handle
/// ([`UntypedObject`](crate::UntypedObject), [`UntypedArray`](crate::UntypedArray)), the schema
/// stored with the entry it was opened on.
#[derive(Debug, Clone)]
pub(crate) enum Expected {
    /// A typed handle's layout.
    Type(&'static Layout),
    /// An untyped handle's stored schema.
    Stored(Arc<Schema>),
}

/// The sequence word, the word that tells whether the entry is still current (v1's `moved_to`,
/// v2's `state`), the serial word (v2) and both slots of a double-buffered object.
#[derive(Debug, Clone, Copy)]
struct Hot {
    seq: Located<AtomicU64>,
    moved: Located<AtomicU32>,
    /// The block's serial word (v2), or, in a version-1 store (which has none), [`NO_SERIAL`].
    serial: Located<AtomicU64>,
    /// Both slots, each `words` words long.
    slots: [Located<[AtomicU64]>; 2],
    /// The length of each slot in words.
    words: usize,
    /// The change-notification words a commit bumps and checks: `futex`, `waiters`.
    notify: [Located<AtomicU32>; 2],
    /// What `moved` holds while the entry is current (the store's `words.current_value`), kept
    /// here so that a lock-free load compares it with no load through the store.
    current_value: u32,
}

impl EntryHandle {
    /// Checks that the entry holds `T` values and lies inside this process's mapping.
    pub(crate) fn new<T: SharedLayout>(store: Arc<StoreInner>, found: Found) -> Result<EntryHandle> {
        let Found { at, serial, entry } = found;
        let layout = &T::LAYOUT;
        if entry.fingerprint != layout.fingerprint
            || entry.version != layout.version
            || entry.elem_size != layout.size as u64
            || entry.elem_align != layout.align as u64
        {
            return Err(store.mismatch(&entry, layout));
        }
        let (validate, atomics) = (layout.needs_validation(), layout.contains_atomics());
        EntryHandle::located(store, Found { at, serial, entry }, Expected::Type(layout), validate, atomics)
    }

    /// Checks that `schema` (decoded from the entry's block or record) describes the entry's
    /// values, and that the entry lies inside this process's mapping: an untyped handle.
    pub(crate) fn untyped(store: Arc<StoreInner>, found: Found, schema: Arc<Schema>) -> Result<EntryHandle> {
        let entry = &found.entry;
        if schema.fingerprint != entry.fingerprint
            || schema.version != entry.version
            || schema.size != entry.elem_size
            || schema.align != entry.elem_align
        {
            return Err(store.corrupt(format!("the stored schema of entry `{}` does not match its record", entry.name)));
        }
        let validate = crate::format::value::needs_validation(&schema);
        let atomics = copy::Shape::holds_atomics(&*schema);
        EntryHandle::located(store, found, Expected::Stored(schema), validate, atomics)
    }

    /// Locates the entry of a checked handle.
    fn located(
        store: Arc<StoreInner>,
        found: Found,
        expected: Expected,
        validate: bool,
        atomics: bool,
    ) -> Result<EntryHandle> {
        let Found { at, serial, entry } = found;
        let end = entry.data_offset + entry.data_len();
        if end > store.map().len() {
            return Err(Error::BeyondMapping { name: entry.name.clone(), mapped: store.map().len() });
        }
        if entry.kind == EntryKind::Object && entry.slot_count != if atomics { 1 } else { 2 } {
            return Err(store.corrupt(format!("object `{}` has the wrong number of slots for its type", entry.name)));
        }
        let durability = store.durability;
        let hot = if entry.slot_count == 2 {
            let map = store.map();
            let words = (entry.elem_size as usize).div_ceil(8);
            let located = (
                map.locate_u64(at + store.words.seq),
                map.locate_u32(at + store.words.current),
                map.locate_words(entry.data_offset, words),
                map.locate_words(entry.data_offset + entry.slot_stride, words),
                map.locate_u32(at + store.words.futex),
                map.locate_u32(at + store.words.waiters),
            );
            let (Some(seq), Some(moved), Some(slot0), Some(slot1), Some(futex), Some(waiters)) = located else {
                // The data lies inside the mapping (checked above), so a slot is misaligned.
                return Err(store.corrupt(format!("the slots of object `{}` are misaligned", entry.name)));
            };
            let serial = if serial != 0 {
                let Some(word) = map.locate_u64(at + crate::format::v2::block::SERIAL) else {
                    return Err(store.corrupt(format!("the block of object `{}` is misaligned", entry.name)));
                };
                word
            } else {
                Located::of_static(&NO_SERIAL)
            };
            let current_value = store.words.current_value;
            Some(Hot { seq, moved, serial, slots: [slot0, slot1], words, notify: [futex, waiters], current_value })
        } else {
            None
        };
        let lock = Box::new(std::sync::OnceLock::new());
        Ok(EntryHandle { store, entry, at, serial, lock, expected, validate, atomics, durability, hot })
    }

    /// The entry's lock: [`Error::Forked`] in a forked child (see [`StoreInner::entry_lock`]).
    #[inline]
    pub(crate) fn lock(&self) -> Result<&EntryLock> {
        match self.lock.get() {
            Some(lock) => Ok(lock),
            None => self.first_lock(),
        }
    }

    /// The entry's lock, the first time: from the store's table, which gives every handle of the
    /// entry the same lock (so two threads that get here at once keep the same one).
    #[cold]
    fn first_lock(&self) -> Result<&EntryLock> {
        let lock = self.store.entry_lock(self.entry.lock_offset)?;
        Ok(self.lock.get_or_init(|| lock))
    }

    pub(crate) fn name(&self) -> &str {
        &self.entry.name
    }

    /// Takes the entry's lock: [`Error::Forked`] in a forked child (checked before anything else),
    /// [`Error::WouldDeadlock`] if this thread holds the entry in a mode the request would wait
    /// for forever (a read of an entry this thread reads is granted).
    #[inline]
    pub(crate) fn hold(&self, exclusive: bool, wait: Wait, timeout: Option<Duration>) -> Result<Hold<'_>> {
        // (The fork check is the lock's first step; the read-only check touches nothing.)
        if exclusive && self.store.read_only {
            return Err(self.store.read_only_error("writing an entry"));
        }
        let in_place = self.entry.slot_count != 2;
        let held = self.store.lock_entry(self.lock()?, &self.entry.name, exclusive, in_place, wait, timeout)?;
        // A migration commits under this lock: checked now, it cannot happen until we release it.
        // (One or two loads of words located once, for a double-buffered object.)
        if self.moved_away() {
            self.check_current()?;
        }
        Ok(held)
    }

    /// The sequence word and the two slots of a double-buffered object, and the words that tell
    /// whether it is still the entry this handle was made for.
    #[inline(always)]
    pub(crate) fn hot(&self) -> Option<(&AtomicU64, [&[AtomicU64]; 2], StillCurrent<'_>)> {
        let hot = self.hot.as_ref()?;
        // SAFETY: `hot` was located in this store's mappings (its serial word may be the static
        // `NO_SERIAL`), and `self.store` keeps the store, hence every one of its mappings, alive
        // for as long as `self` is borrowed. Both slots were located `words` words long: rebuilt
        // with that one length, they tell the compiler that they are equally long (one length
        // check covers both).
        unsafe {
            let slot = |located: Located<[AtomicU64]>| {
                std::slice::from_raw_parts(located.ptr().cast::<AtomicU64>().as_ptr(), hot.words)
            };
            let still = StillCurrent {
                moved: hot.moved.get(),
                current_value: hot.current_value,
                serial: hot.serial.get(),
                expected_serial: self.serial,
            };
            Some((hot.seq.get(), [slot(hot.slots[0]), slot(hot.slots[1])], still))
        }
    }

    /// The change-notification words of a double-buffered object, `futex` and `waiters`.
    #[inline(always)]
    pub(crate) fn notify_words(&self) -> Option<(&AtomicU32, &AtomicU32)> {
        let hot = self.hot?;
        // SAFETY: as in `hot`.
        unsafe { Some((hot.notify[0].get(), hot.notify[1].get())) }
    }

    /// Whether the entry may no longer be the one this handle was made for (see
    /// [`StillCurrent`]); `true` for an entry that is not double-buffered.
    #[inline(always)]
    pub(crate) fn moved_away(&self) -> bool {
        self.hot().is_none_or(|(_, _, still)| still.moved_away())
    }

    /// The layout the handle was opened with.
    pub(crate) fn expected(&self) -> &Expected {
        &self.expected
    }

    fn active_offset(&self) -> u64 {
        self.store.active_offset(self.at, &self.entry)
    }

    /// Locates elements `start..start + count` of the active slot and validates their bytes.
    /// The caller holds `hold` on this entry.
    fn elements<T: SharedLayout>(&self, _hold: &Hold<'_>, start: u64, count: u64) -> Result<NonNull<[T]>> {
        let layout = &T::LAYOUT;
        debug_assert!(matches!(self.expected, Expected::Type(l) if l.fingerprint == layout.fingerprint));
        let size = layout.size as u64;
        let offset = self.active_offset() + start * size;
        let len = count * size;
        // `EntryHandle::new` checked that the whole entry lies in the mapping and `Entry::decode`
        // checked the alignment, so this lookup only fails if the file was tampered with.
        let ptr = self.store.map().ptr(offset, len, layout.align as u64).ok_or_else(|| Error::Corrupt {
            path: self.store.path.clone(),
            detail: format!("entry `{}` points outside the mapping", self.entry.name),
        })?;
        if self.validate {
            // SAFETY: `ptr..ptr + len` is inside the mapping, which `self.store` keeps alive for
            // this borrow, holds `count` values of `T::LAYOUT` (checked when the handle was
            // made: the typed methods are only called by the `Shared<T>`, `SharedArray<T>` or
            // `SharedBytes` holding a handle that `EntryHandle::new::<T>` made for this same `T`;
            // untyped handles never call them), and the caller holds this entry's lock (`_hold`),
            // which is what `validate_shared` needs to read it without racing (atomics are read
            // atomically).
            unsafe { self.validate_values(layout, ptr, count, start)? };
        }
        Ok(NonNull::slice_from_raw_parts(ptr.cast::<T>(), count as usize))
    }

    /// Checks that the `count` values of `layout` at `ptr` are valid (see
    /// [`copy::validate_shared`]); an invalid one is named by its index from `start` in an array.
    ///
    /// # Safety
    ///
    /// As for [`copy::validate_shared`]: `ptr..ptr + count * layout.size` is live memory holding
    /// values of `layout` that nobody writes but through their atomics meanwhile (the entry's
    /// lock is held, or the bytes are a private copy).
    unsafe fn validate_values(&self, layout: &Layout, ptr: NonNull<u8>, count: u64, start: u64) -> Result<()> {
        // SAFETY: the caller's contract, which is `validate_shared`'s.
        let checked = unsafe { copy::validate_shared(layout, ptr, count as usize) };
        checked.map_err(|(i, mut invalid)| {
            if self.entry.kind == EntryKind::Array {
                invalid.path = invalid.path.replacen("value", &format!("value[{}]", start + i as u64), 1);
            }
            Error::InvalidValue { name: self.entry.name.clone(), type_name: layout.display_name(), invalid }
        })
    }

    /// Copies elements `start..start + count` of an entry changed in place (whose type holds no
    /// atomics), without its lock, for a process that cannot take it: a read-only mapping in
    /// robust lock mode. An optimistic read, as for double-buffered objects: the entry's `seq`,
    /// then its `writer` word (set by a writer, holding the mutex, before it changes anything,
    /// with a release fence), a copy with atomic loads, an acquire fence, and both words again;
    /// retried until no writer was in. While a writer is in, it sleeps on the entry's futex word
    /// in 2 ms slices (a read-only mapping cannot register as a waiter), honouring `wait`. A
    /// writer that died leaves its `writer` word set until a read-write process recovers the
    /// entry's lock; until then this waits (or times out).
    fn copy_unlocked<T: SharedLayout>(
        &self,
        start: u64,
        count: u64,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<Box<[T]>> {
        let layout = &T::LAYOUT;
        let size = layout.size as u64;
        let len = usize::try_from(count * size).map_err(|_| self.store.corrupt("an entry too large to copy".into()))?;
        let mut values: Vec<std::mem::MaybeUninit<T>> = Vec::new();
        values.try_reserve_exact(count as usize).map_err(|_| {
            self.store.io(
                "read",
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("cannot allocate {len} bytes to copy into"),
                ),
            )
        })?;
        values.resize_with(count as usize, std::mem::MaybeUninit::zeroed);
        // SAFETY: `values` holds `count` zeroed `T`s, `len` initialised bytes, borrowed
        // exclusively for this slice's life; `u8` has no alignment or validity requirement.
        let out = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), len) };
        let offset = self.active_offset() + start * size;
        self.store
            .copy_unlocked(&self.entry.name, self.at, layout, offset, out, wait, timeout, || self.check_current())?;
        if self.validate {
            let ptr = std::ptr::NonNull::from(&mut *out).cast::<u8>();
            // SAFETY: `ptr` is this process's private copy of `count` values of `T::LAYOUT`,
            // which nobody else can reach.
            unsafe { self.validate_values(layout, ptr, count, start)? };
        }
        // SAFETY: every value was copied from the entry, whose values have `T`'s layout, and the
        // bytes passed `T::LAYOUT` validation (or need none): they are valid `T`s (the
        // `SharedLayout` contract).
        Ok(unsafe { values.into_boxed_slice().assume_init() })
    }

    /// Bounds-checks `start..start + count` against the array's length.
    pub(crate) fn check_range(&self, what: &'static str, start: usize, count: usize) -> Result<()> {
        let len = self.entry.count;
        match (start as u64).checked_add(count as u64) {
            Some(end) if end <= len => Ok(()),
            end => Err(Error::OutOfBounds {
                name: self.entry.name.clone(),
                what,
                start: start as u64,
                end: end.unwrap_or(u64::MAX),
                len,
            }),
        }
    }

    /// Replaces elements from `start` with `bytes` (whole values of the handle's type, already
    /// bounds-checked by the caller), without reading them first: a plain store never needs the
    /// old value, and this way bytes that are not a valid `T` (left by a foreign writer) can be
    /// repaired.
    ///
    /// The caller makes `bytes` with [`staging::slice_bytes`] (which needs `T: Copy`) or
    /// [`staging::owned_bytes`] (which needs `&mut T`), so that no other thread can change them while
    /// they are copied: values holding atomics can only come through the second.
    pub(crate) fn overwrite(&self, start: usize, bytes: &[u8]) -> Result<()> {
        let hold = self.hold(true, Wait::Forever, None)?;
        if self.entry.slot_count == 2 {
            return self.publish(&hold, bytes, self.durability);
        }
        let offset = self.active_offset() + start as u64 * self.entry.elem_size;
        if !self.store.map().write(offset, bytes) {
            return Err(self.store.corrupt(format!("entry `{}` points outside the mapping", self.entry.name)));
        }
        self.changed_in_place(&hold, self.durability)
    }

    /// A read guard over elements `start..start + count`, already bounds-checked by the caller.
    pub(crate) fn read<T: SharedLayout>(
        &self,
        start: usize,
        count: usize,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<ReadGuard<'_, [T]>> {
        if self.atomics && self.store.read_only {
            return Err(self
                .store
                .read_only_error("a read guard on a type holding atomics (they can be written through it)"));
        }
        if self.store.cannot_lock() {
            return Ok(ReadGuard::pinned_slice(self.copy_unlocked::<T>(start as u64, count as u64, wait, timeout)?));
        }
        let hold = self.hold(false, wait, timeout)?;
        let ptr = self.elements::<T>(&hold, start as u64, count as u64)?;
        // SAFETY: `elements` returned a pointer that is in the mapping (kept alive by
        // `self.store` for the guard's borrow of `self`), aligned for `T`, and whose bytes passed
        // `T::LAYOUT` validation, so they are valid `T`s (the `SharedLayout` contract); `hold` is
        // this entry's shared lock and moves into the guard, so it lasts as long as the reference.
        Ok(unsafe { ReadGuard::new(ptr, hold) })
    }

    /// The entry's `interrupted` word (format v2), or `None` for a format-v1 store.
    fn interrupted_word(&self) -> Result<Option<&AtomicU32>> {
        if !matches!(self.store.format, crate::file::state::Format::V2(_)) {
            return Ok(None);
        }
        let at = self.at + crate::format::v2::block::INTERRUPTED;
        self.store.map().atomic_u32(at).map(Some).ok_or_else(|| {
            self.store.corrupt(format!("the block of entry `{}` lies outside the mapping", self.entry.name))
        })
    }

    /// Whether a writer of this (in-place) entry died holding its lock, as robust lock mode
    /// records it, since the flag was last cleared.
    pub(crate) fn interrupted(&self) -> Result<bool> {
        self.check_current()?;
        Ok(self.interrupted_word()?.is_some_and(|w| w.load(std::sync::atomic::Ordering::Acquire) != 0))
    }

    /// Clears the `interrupted` flag, under the entry's write lock (so that a writer recovering
    /// from another death in between is not overlooked: it sets the flag again after this).
    pub(crate) fn clear_interrupted(&self) -> Result<()> {
        let _hold = self.hold(true, Wait::Forever, None)?;
        if let Some(word) = self.interrupted_word()? {
            word.store(0, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// A read guard over an object's value: in robust lock mode, a double-buffered object's guard
    /// pins a validated copy of the last commit and takes no lock (a lock-free `load`); otherwise
    /// the guard holds the entry's shared lock.
    pub(crate) fn read_object<T: SharedLayout>(
        &self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<ReadGuard<'_, T>> {
        if self.entry.slot_count == 2 && matches!(self.store.lock_state, crate::file::lock::Locks::Robust(_)) {
            self.store.check_not_forked()?;
            let (value, _) = self.load_optimistic::<T>(crate::entry::commit::OPTIMISTIC_TRIES)?;
            return Ok(ReadGuard::pinned(value));
        }
        let guard = self.read::<T>(0, 1, wait, timeout)?;
        guard.into_first().ok_or_else(|| self.store.corrupt(format!("object `{}` holds no value", self.entry.name)))
    }

    /// An in-place write guard over elements `start..start + count`, already bounds-checked by
    /// the caller.
    pub(crate) fn write<T: SharedLayout>(
        &self,
        start: usize,
        count: usize,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard<'_, [T]>> {
        let hold = self.hold(true, wait, timeout)?;
        let ptr = self.elements::<T>(&hold, start as u64, count as u64)?;
        // SAFETY: as in `read`, and `hold` is this entry's exclusive lock (refused on read-only
        // stores, so the mapping is writable), moved into the guard for its whole life.
        Ok(unsafe { WriteGuard::in_place(ptr, self, hold) })
    }

    /// Runs `f` on elements `start..start + count` (already bounds-checked by the caller) under
    /// the write lock, and commits.
    pub(crate) fn update_range<T: SharedLayout, R>(
        &self,
        start: usize,
        count: usize,
        f: impl FnOnce(&mut [T]) -> R,
    ) -> Result<R> {
        let mut guard = self.write::<T>(start, count, Wait::Forever, None)?;
        let result = f(&mut guard);
        guard.commit()?;
        Ok(result)
    }

    /// Runs `f` on a copy of a double-buffered object's value under the write lock and commits
    /// the result: what `Shared::update` does, without a write guard's private copy. If `f`
    /// panics, the lock is released and nothing is committed.
    #[inline]
    pub(crate) fn update_object<T: SharedLayout, R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.with_exclusive(|hold| {
            let (mut value, _) = self.read_slot::<T>(hold)?;
            let result = f(&mut value);
            self.publish_inline(hold, staging::owned_bytes(&mut value), self.durability)?;
            Ok(result)
        })
    }

    /// A write guard over an object's value: staged and committed atomically for double-buffered
    /// objects, in place for objects holding atomics.
    pub(crate) fn write_object<T: SharedLayout>(
        &self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard<'_, T>> {
        if self.entry.slot_count == 2 {
            return self.write_staged(wait, timeout);
        }
        let hold = self.hold(true, wait, timeout)?;
        let ptr = self.elements::<T>(&hold, 0, 1)?.cast::<T>();
        // SAFETY: as in `write`; `elements` covered exactly one valid `T` at this address.
        Ok(unsafe { WriteGuard::in_place(ptr, self, hold) })
    }

    /// Replaces the entry by one of `new_len` elements: the first `min(old, new)` copied, the
    /// rest filled with `fill` (the bytes of one element), crash-atomically (a new block and new
    /// data, committed by one store); returns a handle to the new entry. Every other handle gets
    /// [`Error::Moved`] on its next access.
    pub(crate) fn resize<T: SharedLayout>(&self, new_len: u64, fill: &[u8]) -> Result<EntryHandle> {
        let hold = self.hold(true, Wait::Forever, None)?;
        let size = T::LAYOUT.size as u64;
        let keep = self.entry.count.min(new_len);
        if new_len.checked_mul(size).is_none_or(|bytes| bytes > crate::file::create::MAX_CAPACITY) {
            return Err(Error::EntryTooLarge {
                name: self.entry.name.clone(),
                len: new_len,
                elem_size: size,
                maximum: crate::file::create::MAX_CAPACITY,
            });
        }
        let found = Found { at: self.at, serial: self.serial, entry: self.entry.clone() };
        let seq = self.version().get();
        let map = || self.store.map();
        let from = self.entry.data_offset;
        self.store.v2_replace(&found, &T::LAYOUT, new_len, seq, |to, fresh| {
            // Under the exclusive lock nobody writes the old data: plain copies are safe.
            const CHUNK: u64 = 1 << 20;
            let mut buf = vec![0u8; CHUNK.min(keep * size) as usize];
            let mut done = 0;
            while done < keep * size {
                let n = CHUNK.min(keep * size - done);
                let chunk = &mut buf[..n as usize];
                if !(map().read(from + done, chunk) && map().write(to + done, chunk)) {
                    return false;
                }
                done += n;
            }
            self.store.fill_repeated(to + keep * size, fill, new_len - keep, fresh)
        })?;
        drop(hold);
        let found = self.store.find(&self.entry.name)?;
        EntryHandle::new::<T>(self.store.clone(), found)
    }
}
