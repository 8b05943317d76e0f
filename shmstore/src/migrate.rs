//! Migrating an entry from one layout to another, atomically with respect to crashes.
//!
//! A migration reads every value under the entry's exclusive lock, converts it, and writes the
//! converted values, with the new layout's schema, into freshly allocated space and a new catalog
//! record (in the *shadow* state, invisible to lookups by name). The commit point is one atomic
//! store: the old record's `moved_to` word is set to the new record's slot. A process killed
//! before it leaves the old entry untouched (the new space and record are leaked, never exposed);
//! one killed after it has published the complete new entry.
//!
//! Every handle checks its record's `moved_to` word when it takes a lock, and before a lock-free
//! load: a handle of the old type then fails with [`Error::LayoutMismatch`], and never reads the
//! new bytes as its own type. Its old bytes are never overwritten either, since the new entry lives
//! in new space.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::format::entry::{Entry, ENTRY_SIZE, MOVED_TO_OFFSET, STATE_SHADOW};
use crate::handle::EntryHandle;
use crate::layout::{Layout, SharedLayout};
use crate::lock::Wait;
use crate::store::Store;
use crate::view::{self, Staging};
use crate::Durability;

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migration {
    /// The entry held the old layout and now holds the new one.
    Migrated,
    /// The entry already held the new layout (a migration that ran before): nothing was done.
    AlreadyMigrated,
}

fn matches(entry: &Entry, layout: &Layout) -> bool {
    entry.fingerprint == layout.fingerprint
        && entry.version == layout.version
        && entry.elem_size == layout.size as u64
        && entry.elem_align == layout.align as u64
}

impl Store {
    /// Converts the entry `name` from layout `Old` to layout `New`, value by value (element by
    /// element, for an array) with `convert`, atomically: every process sees either the old entry
    /// or the new one, whatever happens to the migrating process. Afterwards, handles of the old
    /// type fail with [`Error::LayoutMismatch`] on their next access.
    ///
    /// Running it again is harmless: an entry that already holds `New` is left alone
    /// ([`Migration::AlreadyMigrated`]). An entry that holds neither layout is
    /// [`Error::LayoutMismatch`] (against `Old`). If `convert` panics, nothing changes.
    ///
    /// ```
    /// use shmstore::{Migration, SharedLayout, Store};
    ///
    /// #[derive(SharedLayout, Clone, Copy)]
    /// #[repr(C)]
    /// #[shared(version = 1)]
    /// struct ConfigV1 { port: u16, _pad: [u8; 6] }
    ///
    /// #[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
    /// #[repr(C)]
    /// #[shared(version = 2)]
    /// struct ConfigV2 { port: u16, _pad: [u8; 6], timeout_ms: u64 }
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open_or_create(dir.path().join("m.shm"), 1 << 20)?;
    /// store.object_or_init("config", || ConfigV1 { port: 8080, _pad: [0; 6] })?;
    ///
    /// let upgrade = |old: ConfigV1| ConfigV2 { port: old.port, _pad: [0; 6], timeout_ms: 5000 };
    /// assert_eq!(store.migrate("config", upgrade)?, Migration::Migrated);
    /// assert_eq!(store.migrate("config", upgrade)?, Migration::AlreadyMigrated);
    /// assert_eq!(store.object::<ConfigV2>("config")?.load()?.timeout_ms, 5000);
    /// assert!(store.object::<ConfigV1>("config").is_err());
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn migrate<Old: SharedLayout, New: SharedLayout>(
        &self,
        name: &str,
        mut convert: impl FnMut(Old) -> New,
    ) -> Result<Migration> {
        let inner = self.inner();
        if inner.read_only {
            return Err(inner.read_only_error("migrating an entry"));
        }
        // The entry may be migrated by someone else while we wait for its lock: look again then.
        for _ in 0..inner.header.catalog_slots {
            let (slot, entry) = inner.find(name)?;
            if matches(&entry, &New::LAYOUT) {
                return Ok(Migration::AlreadyMigrated);
            }
            let old = EntryHandle::new::<Old>(self.inner_arc(), slot, entry.clone())?;
            let hold = match old.hold(true, Wait::Forever, None) {
                Err(Error::LayoutMismatch { .. }) => continue,
                other => other?,
            };
            // Read and convert everything before allocating, so that a panicking `convert`
            // leaves nothing behind.
            let count = entry.count;
            let mut converted =
                Vec::with_capacity(usize::try_from(count.saturating_mul(New::LAYOUT.size as u64)).unwrap_or(0));
            // Under the exclusive lock no writer touches the active slot, but holders of
            // `Shared::get` may still use an all-atomic object's atomics: read those atomically.
            for i in 0..count {
                let mut staging = Staging::<Old>::zeroed();
                if !old.copy_element(&hold, i, staging.bytes_mut()) {
                    return Err(Error::BeyondMapping { name: name.to_owned(), mapped: inner.map().len() });
                }
                let value = staging.into_value().map_err(|invalid| Error::InvalidValue {
                    name: name.to_owned(),
                    type_name: Old::LAYOUT.display_name(),
                    invalid,
                })?;
                converted.extend_from_slice(view::owned_bytes(&mut convert(value)));
            }

            let _catalog = inner.lock_catalog("migrating", name)?;
            // With PowerLoss, `place` puts the converted data, its schema, the allocation end and
            // the shadow record on disk, in that order, before it returns: the new entry is
            // durable before anything points to it.
            let (new_slot, _) = inner.place(name, entry.kind, &New::LAYOUT, count, STATE_SHADOW, |data_offset| {
                inner.map().write(data_offset, &converted)
            })?;
            let moved = inner
                .map()
                .atomic_u32(inner.record_offset(slot) + MOVED_TO_OFFSET)
                .ok_or_else(|| inner.corrupt(format!("catalog slot {slot} lies outside the file")))?;
            // The commit point.
            moved.store(new_slot + 1, Ordering::Release);
            if inner.durability == Durability::PowerLoss {
                inner.sync_range(inner.record_offset(slot), ENTRY_SIZE)?;
            }
            // Wake anyone waiting for a change of the old entry: their next access reports the
            // migration.
            old.migrated_away(&hold);
            return Ok(Migration::Migrated);
        }
        Err(inner.corrupt(format!("entry `{name}` keeps being migrated")))
    }
}

impl EntryHandle {
    /// Fails with [`Error::LayoutMismatch`] if the entry was migrated away from this handle's
    /// record.
    pub(crate) fn check_current(&self) -> Result<()> {
        if self.store.moved_to(self.slot).is_none() {
            return Ok(());
        }
        let (_, newest) = self.store.resolve((self.slot, self.entry.clone()))?;
        Err(self.store.mismatch(&newest, self.layout()))
    }
}
