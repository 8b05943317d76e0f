//! Objects made entirely of atomics, used without a guard ([`Shared::get`](crate::Shared::get)),
//! and the writes that keep that sound.
//!
//! Every byte of an [`AllAtomic`](crate::AllAtomic) value belongs to a std atomic, so the value
//! needs no lock to be read or changed: `get()` hands out `&T` with no lock held, bound to the
//! handle's lifetime, and its holders use the atomics whenever they like. That is sound only if
//! every other access to those bytes, in every process, is atomic too, and if no `&mut T` to
//! them is ever made. So for such an object:
//! - a write guard works on a private copy, read with one atomic load per atomic, and its commit
//!   stores the copy back with one atomic store per atomic ([`copy::store_atomics`]);
//!   [`Shared::store`](crate::Shared::store) stores the same way; writers still exclude each other
//!   and read guards with the entry's lock, but not `get()` users, whose operations between a
//!   guard's copy and its commit are overwritten by the commit;
//! - a migration reads the old value with atomic loads and never writes the old bytes;
//! - the bytes stay where they are for as long as the store is open: format version 1 never reuses
//!   an entry's space, and format version 2 never reuses the space of an entry whose layout holds atomics
//!   (see `docs/format.md`). A `&T` still held when the entry is migrated (or, in version 2,
//!   removed) keeps pointing at the old bytes, which stay valid and are nobody else's; `get()`
//!   itself then fails as every other access does.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::entry::guard::WriteGuard;
use crate::entry::handle::{EntryHandle, Expected, Hold};
use crate::entry::staging::{self, Staging};
use crate::error::{Error, Result};
use crate::file::copy;
use crate::file::lock::Wait;
use crate::file::map::Located;
use crate::format::entry::EntryKind;
use crate::format::v2::block;
use crate::layout::SharedLayout;
use crate::options::Durability;

/// Where `get()` finds an all-atomic object's value and the words that say whether the entry is
/// still the handle's (v1's forwarding word or v2's state, and v2's serial), located once when the
/// handle is made.
#[derive(Debug)]
pub(crate) struct AtomicValue<T> {
    pub(crate) value: Located<T>,
    pub(crate) moved: Located<AtomicU32>,
    pub(crate) serial: Option<Located<AtomicU64>>,
}

impl<T> Clone for AtomicValue<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for AtomicValue<T> {}

impl EntryHandle {
    /// Locates the value of an object whose type `T` is all atomics, for `get()`. `None` for any
    /// other entry, and on a read-only store (whose mapping the atomics could not be written
    /// through): `get()` then reports why with [`get_refused`](Self::get_refused).
    pub(crate) fn locate_all_atomic<T: SharedLayout>(&self) -> Option<AtomicValue<T>> {
        if !T::LAYOUT.is_all_atomic()
            || self.entry.kind != EntryKind::Object
            || self.entry.slot_count != 1
            || self.store.read_only
        {
            return None;
        }
        let map = self.store.map();
        let value = map.locate::<T>(self.store.active_offset(self.at, &self.entry))?;
        let moved = map.locate_u32(self.at + self.store.words.current)?;
        let serial = match self.serial {
            0 => None,
            _ => Some(map.locate_u64(self.at + block::SERIAL)?),
        };
        Some(AtomicValue { value, moved, serial })
    }

    /// Why `get()` cannot hand out a reference to this entry (see
    /// [`locate_all_atomic`](Self::locate_all_atomic)).
    #[cold]
    pub(crate) fn get_refused(&self) -> Error {
        if self.store.read_only {
            return self.store.read_only_error("`get()` on a type made of atomics (they can be written through it)");
        }
        self.store.corrupt(format!("object `{}` points outside the mapping or is misaligned", self.entry.name))
    }

    /// Fails with the error every other access gives if the entry is no longer the one this
    /// handle was made for (migrated away, or in v2 removed, renamed, or its block reused).
    /// `moved` and `serial` are the words [`locate_all_atomic`](Self::locate_all_atomic) found.
    #[inline(always)]
    pub(crate) fn check_all_atomic_current(&self, moved: &AtomicU32, serial: Option<&AtomicU64>) -> Result<()> {
        let stale = moved.load(Ordering::Acquire) != self.store.words.current_value
            || serial.is_some_and(|serial| serial.load(Ordering::Acquire) != self.serial);
        if stale {
            self.check_current()?;
        }
        Ok(())
    }

    /// Checks that `value` (an all-atomic object's value, in the mapping) is a valid `T`: only
    /// needed for types holding an `AtomicBool`, whose byte must be 0 or 1.
    #[cold]
    pub(crate) fn validate_all_atomic<T: SharedLayout>(&self, value: &Located<T>) -> Result<()> {
        let mut staging = Staging::<T>::zeroed();
        // SAFETY: `value` was located in this store's mapping (which `self.store` keeps mapped)
        // with `T`'s size and alignment, and every byte there belongs to an atomic of `T`'s
        // layout (it is all atomics), which every cooperating access uses at that atomic's width:
        // `copy_shared` reads each with an atomic load of that width, so no lock is needed.
        unsafe { copy::copy_shared(&T::LAYOUT, value.ptr(), staging.bytes_mut()) };
        staging.into_value().map(|_| ()).map_err(|invalid| Error::InvalidValue {
            name: self.entry.name.clone(),
            type_name: T::LAYOUT.display_name(),
            invalid,
        })
    }

    /// A copy of an all-atomic object's value, read with one atomic load per atomic. The caller
    /// holds `_hold`, a lock on the entry.
    fn snapshot_all_atomic<T: SharedLayout>(&self, _hold: &Hold<'_>) -> Result<T> {
        let located = self.locate_value::<T>()?;
        let mut staging = Staging::<T>::zeroed();
        // SAFETY: as in `validate_all_atomic`.
        unsafe { copy::copy_shared(&T::LAYOUT, located.ptr(), staging.bytes_mut()) };
        staging.into_value().map_err(|invalid| Error::InvalidValue {
            name: self.entry.name.clone(),
            type_name: T::LAYOUT.display_name(),
            invalid,
        })
    }

    /// Copies element `index` of the entry's active slot into `out` (one value of the handle's
    /// type), reading every atomic with an atomic load of its width: holders of `get()`'s
    /// references may change them even while the caller holds the exclusive lock. `false` if the
    /// element lies outside the mapping. The caller holds `_hold`, a lock on the entry.
    pub(crate) fn copy_element(&self, _hold: &Hold<'_>, index: u64, out: &mut [u8]) -> bool {
        let (size, align) = (self.entry.elem_size, self.entry.elem_align);
        let offset =
            index.checked_mul(size).and_then(|at| at.checked_add(self.store.active_offset(self.at, &self.entry)));
        let Some(ptr) = offset.and_then(|offset| self.store.map().ptr(offset, out.len() as u64, align)) else {
            return false;
        };
        // SAFETY: `ptr..ptr + out.len()` lies in this store's mapping (checked just above), which
        // stays mapped while `self.store` lives; it holds values of the handle's layout, and the
        // caller holds a lock on the entry, so no cooperating thread or process changes any byte
        // there other than an atomic's, which `copy_shared` reads atomically.
        unsafe {
            match self.expected() {
                Expected::Type(layout) => copy::copy_shared(*layout, ptr, out),
                Expected::Stored(schema) => copy::copy_shared(&**schema, ptr, out),
            }
        };
        true
    }

    fn locate_value<T>(&self) -> Result<Located<T>> {
        self.store
            .map()
            .locate::<T>(self.store.active_offset(self.at, &self.entry))
            .ok_or_else(|| self.store.corrupt(format!("entry `{}` points outside the mapping", self.entry.name)))
    }

    /// Stores `bytes` (one value of the handle's all-atomic type) into the object with one atomic
    /// store per atomic, then records the change. The caller holds `hold`, the exclusive lock.
    fn store_all_atomic<T: SharedLayout>(&self, hold: &Hold<'_>, bytes: &[u8], durability: Durability) -> Result<()> {
        let located = self.locate_value::<T>()?;
        // SAFETY: `located` lies in this store's mapping, which is writable (the exclusive lock
        // `hold` is refused on read-only stores) and stays mapped while `self.store` lives, and it
        // is aligned for `T`; its bytes are a value of `T`'s all-atomic layout, which every
        // cooperating access uses through its atomics only (this function is how writers write).
        let stored = unsafe { copy::store_atomics(&T::LAYOUT, located.ptr(), bytes) };
        if !stored {
            return Err(self.store.corrupt(format!("entry `{}`: a value of the wrong size", self.entry.name)));
        }
        self.changed_in_place(hold, durability)
    }

    /// `Shared::store` for an all-atomic object.
    pub(crate) fn overwrite_all_atomic<T: SharedLayout>(&self, bytes: &[u8]) -> Result<()> {
        let hold = self.hold(true, Wait::Forever, None)?;
        self.store_all_atomic::<T>(&hold, bytes, self.durability)
    }

    /// `Shared::write` for an all-atomic object: a guard over a private copy, stored back atomic
    /// by atomic when it commits.
    pub(crate) fn write_all_atomic<T: SharedLayout>(
        &self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard<'_, T>> {
        let hold = self.hold(true, wait, timeout)?;
        let value = self.snapshot_all_atomic::<T>(&hold)?;
        Ok(WriteGuard::staged_with(value, self, hold, |handle, hold, value, durability| {
            handle.store_all_atomic::<T>(hold, staging::owned_bytes(value), durability)
        }))
    }
}
