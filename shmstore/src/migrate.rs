//! Migrating an entry from one layout to another, atomically with respect to crashes.
//!
//! A migration reads every value under the entry's exclusive lock, converts it, and writes the
//! converted values, with the new layout's schema, into freshly allocated space and a new entry
//! block (a *shadow*, invisible to lookups until it is committed). The commit point is one atomic
//! store: the old block's `state` becomes `moved` (its `moved_to` already names the new block).
//! A process killed before it leaves the old entry untouched (the new space is leaked, never
//! exposed); one killed after it has published the complete new entry.
//!
//! Every handle checks its block's `state` and serial when it takes a lock, and before a
//! lock-free load: a handle of the old type then fails with [`Error::LayoutMismatch`], and never
//! reads the new bytes as its own type. The old space goes to the free list once the migration
//! committed; no guard can be held on it then (the migration held the exclusive lock), and a
//! lock-free load that raced with the reuse sees the old block's sequence word move and retries
//! into the error.

use crate::entry::handle::{EntryHandle, Expected};
use crate::entry::staging::{self, Staging};
use crate::error::{Error, Result};
use crate::file::lock::Wait;
use crate::format::entry::Entry;
use crate::layout::{Layout, SharedLayout};
use crate::store::Store;

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
        for _ in 0..10_000 {
            let found = inner.find(name)?;
            let entry = found.entry.clone();
            if matches(&entry, &New::LAYOUT) {
                return Ok(Migration::AlreadyMigrated);
            }
            let old = EntryHandle::new::<Old>(self.inner_arc(), found.clone())?;
            let hold = match old.hold(true, Wait::Forever, None) {
                Err(Error::LayoutMismatch { .. } | Error::Moved { .. } | Error::Removed { .. }) => continue,
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
                converted.extend_from_slice(staging::owned_bytes(&mut convert(value)));
            }
            // The converted values go to slot 0, so the new entry's `seq` continues even.
            let seq = old.version().get() & !1;
            // The replacement bumps the old entry's version and wakes its waiters: their next access
            // reports the migration.
            inner.v2_replace(&found, &New::LAYOUT, count, seq, |data_offset, _| {
                inner.map().write(data_offset, &converted)
            })?;
            return Ok(Migration::Migrated);
        }
        Err(inner.corrupt(format!("entry `{name}` keeps being migrated")))
    }
}

impl EntryHandle {
    /// Fails if the entry is no longer the one this handle was made for: [`Error::LayoutMismatch`]
    /// if it was migrated away, [`Error::Removed`] or [`Error::Moved`] (v2) if it was removed,
    /// renamed or resized.
    pub(crate) fn check_current(&self) -> Result<()> {
        if self.serial != 0 {
            return self.store.v2_check_current(
                self.at,
                self.serial,
                &self.entry,
                Some(&|newest| self.mismatch_with(newest)),
            );
        }
        let slot = self.store.v1_slot(self.at);
        if self.store.moved_to(slot).is_none() {
            return Ok(());
        }
        let (_, newest) = self.store.resolve((slot, self.entry.clone()))?;
        Err(match self.expected() {
            Expected::Type(layout) => self.store.mismatch(&newest, layout),
            Expected::Stored(schema) => crate::untyped::mismatch(&self.store, &newest, schema),
        })
    }

    /// The error for a handle of this layout meeting `newest`, the entry as it is now, or `None`
    /// if `newest` has this handle's layout.
    fn mismatch_with(&self, newest: &Entry) -> Option<Error> {
        match self.expected() {
            Expected::Type(layout) => {
                let same = newest.fingerprint == layout.fingerprint
                    && newest.version == layout.version
                    && newest.elem_size == layout.size as u64
                    && newest.elem_align == layout.align as u64;
                (!same).then(|| self.store.mismatch(newest, layout))
            }
            Expected::Stored(schema) => {
                let same = newest.fingerprint == schema.fingerprint
                    && newest.version == schema.version
                    && newest.elem_size == schema.size
                    && newest.elem_align == schema.align;
                (!same).then(|| crate::untyped::mismatch(&self.store, newest, schema))
            }
        }
    }
}
