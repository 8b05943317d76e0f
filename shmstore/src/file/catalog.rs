//! The catalog: finding entries by name, publishing new ones, listing them.
//!
//! A format-v2 store's catalog is an index of entry blocks (`catalog_v2.rs`); a format-v1 store
//! (opened read-only) has a fixed table of records, read here. This module gives both one
//! interface: [`Found`] entries, by name or all of them.
//!
//! In a v1 store, a migrated entry is a chain: the record found by name (`live`) forwards, through
//! its `moved_to` word, to the record that replaced it (`shadow`: reachable only by forwarding),
//! and so on. Lookups follow the chain to its end.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file::state::{Format, StoreInner};
use crate::format::catalog_check::{check_catalog, CatalogError, CatalogSummary, Record};
use crate::format::entry::MAX_NAME_LEN;
use crate::format::entry::{self, check_name, home_slot, Entry, EntryKind, NameError, STATE_EMPTY, STATE_LIVE};
use crate::format::header::Header;
use crate::format::schema::{self, Schema};
use crate::layout::Layout;

pub(crate) use crate::file::catalog_v2::V2Cache;

/// An entry found in the catalog: where its record (v1) or block (v2) is, the serial it had when
/// it was found (v2; 0 in v1), and its decoded static part.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Offset of the entry's record (v1) or block (v2).
    pub(crate) at: u64,
    /// The block's serial when it was found (v2), 0 in v1.
    pub(crate) serial: u64,
    /// The entry's static part.
    pub(crate) entry: Arc<Entry>,
}

impl StoreInner {
    /// The published entry `name`, or [`Error::NotFound`].
    pub(crate) fn find(&self, name: &str) -> Result<Found> {
        let found = match self.format {
            Format::V1(_) => {
                valid_name(name)?;
                self.lookup(name)?.map(|(slot, entry)| self.v1_found(slot, entry))
            }
            // A v2 lookup returns only an entry of exactly this name, and every entry's name was
            // checked when its block was, so a hit needs no check of the name: only a miss does
            // (an invalid name is `InvalidName`, not `NotFound`). A name too long to be one is
            // not even hashed.
            Format::V2(_) if name.len() > MAX_NAME_LEN => None,
            Format::V2(_) => self.v2_lookup(name)?,
        };
        match found {
            Some(found) => Ok(found),
            None => {
                valid_name(name)?;
                Err(Error::NotFound { name: name.to_owned() })
            }
        }
    }

    fn v1_found(&self, slot: u32, entry: Arc<Entry>) -> Found {
        Found { at: self.record_offset(slot), serial: 0, entry }
    }

    /// The v1 catalog slot of the record at `at`.
    pub(crate) fn v1_slot(&self, at: u64) -> u32 {
        match &self.format {
            Format::V1(h) => ((at - h.catalog_offset) / entry::ENTRY_SIZE) as u32,
            Format::V2(_) => 0,
        }
    }

    fn v1(&self) -> Result<&Header> {
        match &self.format {
            Format::V1(h) => Ok(h),
            Format::V2(_) => Err(self.corrupt("a version-1 catalog operation on a version-2 store".into())),
        }
    }

    /// Every entry, at the end of its migration chain (v1), in catalog order.
    pub(crate) fn scan(&self) -> Result<Vec<Found>> {
        match self.format {
            Format::V1(_) => Ok(self.v1_scan()?.into_iter().map(|(slot, e)| self.v1_found(slot, e)).collect()),
            Format::V2(_) => self.v2_scan(),
        }
    }

    /// The entry `name`, created if absent; see [`StoreInner::v2_find_or_create`]. A v1 store is
    /// read-only: a missing entry is [`Error::ReadOnly`].
    pub(crate) fn find_or_create(
        &self,
        name: &str,
        kind: EntryKind,
        layout: &'static Layout,
        count: u64,
        init: impl FnOnce() -> Vec<u8>,
    ) -> Result<Found> {
        valid_name(name)?;
        match self.format {
            Format::V1(_) => match self.lookup(name)? {
                Some((slot, entry)) => Ok(self.v1_found(slot, entry)),
                None => Err(self.read_only_error("creating a new entry")),
            },
            Format::V2(_) => self.v2_find_or_create(name, kind, layout, count, init),
        }
    }

    /// The published entry `name`, if any, at the end of its migration chain. The chain's first
    /// record comes from this process's cache, else from probing the file.
    fn lookup(&self, name: &str) -> Result<Option<(u32, Arc<Entry>)>> {
        // The cache's mutex may have been held by a parent thread at the instant of a fork.
        self.check_not_forked()?;
        let cached = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        let root = match cached {
            Some(hit) => hit,
            None => match self.probe(name)? {
                Some(hit) => {
                    self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), hit.clone());
                    hit
                }
                None => return Ok(None),
            },
        };
        self.resolve(root).map(Some)
    }

    /// The live record named `name`, found by probing from its home slot.
    fn probe(&self, name: &str) -> Result<Option<(u32, Arc<Entry>)>> {
        let slots = self.v1()?.catalog_slots;
        let home = home_slot(name, slots);
        for i in 0..slots {
            let slot = (home + i) % slots;
            match self.read_record(slot)? {
                None => return Ok(None),
                Some((STATE_LIVE, entry)) if entry.name == name => return Ok(Some((slot, Arc::new(entry)))),
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The slot that replaced the record in `slot` of a v1 store by a migration, if any.
    pub(crate) fn moved_to(&self, slot: u32) -> Option<u32> {
        let word = self.map().atomic_u32(self.record_offset(slot) + entry::MOVED_TO_OFFSET)?;
        word.load(Ordering::Acquire).checked_sub(1)
    }

    /// Follows the migration chain from `root` to the entry's newest record.
    pub(crate) fn resolve(&self, root: (u32, Arc<Entry>)) -> Result<(u32, Arc<Entry>)> {
        let slots = self.v1()?.catalog_slots;
        let mut at = root;
        for _ in 0..slots {
            let Some(next) = self.moved_to(at.0) else { return Ok(at) };
            // `moved_to` is a live word, not checksummed: check that it names a slot at all.
            let record = if next < slots { self.read_record(next)? } else { None };
            match record {
                Some((entry::STATE_SHADOW, entry)) if entry.name == at.1.name => {
                    at = (next, Arc::new(entry));
                }
                _ => {
                    return Err(self.corrupt(format!(
                        "entry `{}` forwards to catalog slot {next}, which does not hold its replacement",
                        at.1.name
                    )))
                }
            }
        }
        Err(self.corrupt(format!("the migration chain of entry `{}` loops", at.1.name)))
    }

    /// The record in `slot` and its state: `None` if the slot is empty, an error if it is damaged
    /// or fails the checks a record must pass on its own ([`Entry::check`]).
    fn read_record(&self, slot: u32) -> Result<Option<(u32, Entry)>> {
        let header = *self.v1()?;
        if slot >= header.catalog_slots {
            return Err(self.corrupt(format!(
                "catalog slot {slot} does not exist: the catalog has {} slots",
                header.catalog_slots
            )));
        }
        let at = self.record_offset(slot);
        let state = self
            .map()
            .atomic_u32(at)
            .ok_or_else(|| self.corrupt(format!("catalog slot {slot} lies outside the file")))?
            .load(Ordering::Acquire);
        match state {
            STATE_EMPTY => return Ok(None),
            STATE_LIVE | entry::STATE_SHADOW => {}
            other => return Err(self.corrupt(format!("catalog slot {slot} has unknown state {other}"))),
        }
        let mut raw = [0u8; entry::STATIC_SIZE];
        if !self.map().read(at + entry::STATIC_OFFSET, &mut raw) {
            return Err(self.corrupt(format!("catalog slot {slot} lies outside the file")));
        }
        // Read after the state word: a record published after a growth sees the grown capacity.
        let entry = Entry::decode(&raw, &header, slot, self.capacity())
            .map_err(|error| self.catalog_error(CatalogError::Record { slot, error }))?;
        Ok(Some((state, entry)))
    }

    /// Every record in use, in slot order, each checked on its own.
    fn scan_records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for slot in 0..self.v1()?.catalog_slots {
            if let Some((state, entry)) = self.read_record(slot)? {
                out.push(Record { slot, state, entry });
            }
        }
        Ok(out)
    }

    /// Every record in use, in slot order, checked together ([`check_catalog`]: no two claim the
    /// same bytes, each uses the lock its slot implies), and what they occupy.
    pub(crate) fn checked_records(&self) -> Result<(Vec<Record>, CatalogSummary)> {
        let records = self.scan_records()?;
        // Read after the scan: whoever published a record the scan saw had raised the capacity
        // (if the record needed it) before.
        let capacity = self.capacity();
        let summary = check_catalog(self.v1()?, capacity, &records).map_err(|e| self.catalog_error(e))?;
        Ok((records, summary))
    }

    /// The error for a catalog that failed its checks.
    fn catalog_error(&self, e: CatalogError) -> Error {
        match e {
            CatalogError::Record { slot, error: entry::EntryError::BadChecksum } => {
                Error::BadChecksum { path: self.path.clone(), what: format!("the entry in catalog slot {slot}") }
            }
            other => self.corrupt(other.to_string()),
        }
    }

    /// Every entry, at the end of its migration chain, in the slot order of the records found by
    /// name.
    fn v1_scan(&self) -> Result<Vec<(u32, Arc<Entry>)>> {
        self.checked_records()?
            .0
            .into_iter()
            .filter(|r| r.state == STATE_LIVE)
            .map(|r| self.resolve((r.slot, Arc::new(r.entry))))
            .collect()
    }

    /// The decoded schema stored for `entry`.
    pub(crate) fn stored_schema(&self, entry: &Entry) -> Result<Schema> {
        // Bounded before anything is allocated (`Entry::check` refused longer schemas already).
        let len =
            usize::try_from(entry.schema_len).ok().filter(|&len| len <= schema::MAX_SCHEMA_LEN).ok_or_else(|| {
                self.corrupt(format!("the schema of entry `{}` is longer than the format allows", entry.name))
            })?;
        let map = self.map();
        if entry.schema_offset.checked_add(entry.schema_len).is_none_or(|end| end > map.len()) {
            return Err(Error::BeyondMapping { name: entry.name.clone(), mapped: map.len() });
        }
        let mut bytes = vec![0u8; len];
        if !map.read(entry.schema_offset, &mut bytes) {
            return Err(Error::BeyondMapping { name: entry.name.clone(), mapped: map.len() });
        }
        schema::decode(&bytes).map_err(|e| self.corrupt(format!("schema of entry `{}`: {e}", entry.name)))
    }

    /// The error for opening `entry` with a type of layout `expected`: names, versions,
    /// fingerprints, and a field-by-field diff from the stored schema (if it can be read).
    pub(crate) fn mismatch(&self, entry: &Entry, expected: &Layout) -> Error {
        let stored = self.stored_schema(entry).ok();
        Error::LayoutMismatch {
            name: entry.name.clone(),
            expected_type: expected.display_name(),
            found_type: stored
                .as_ref()
                .map_or_else(|| format!("<type {:016x}>", entry.fingerprint), Schema::display_name),
            expected_version: expected.version,
            found_version: entry.version,
            expected_fingerprint: expected.fingerprint.into(),
            found_fingerprint: entry.fingerprint.into(),
            diff: stored.map(|stored| crate::format::diff::diff(&stored, &Schema::from(expected))),
        }
    }
}

pub(crate) fn valid_name(name: &str) -> Result<()> {
    check_name(name).map_err(|e| Error::InvalidName {
        name: name.to_owned(),
        reason: match e {
            NameError::Empty => "names cannot be empty".to_owned(),
            NameError::TooLong { len } => format!("it is {len} bytes long; names hold at most {MAX_NAME_LEN} bytes"),
            NameError::ControlChar => "names cannot contain NUL or other control characters".to_owned(),
        },
    })
}
