//! The catalog: finding entries by name, publishing new ones, listing them.
//!
//! Lookups are lock-free: a slot's `state` word is published last, with a release store, after
//! the record and the entry's data are written; a reader that sees it live (acquire) sees all of
//! that. Creation takes the catalog lock, so that two processes creating the same name agree on
//! one entry, and allocation is serialised.
//!
//! A migrated entry is a chain: the record found by name (`live`) forwards, through its
//! `moved_to` word, to the record that replaced it (`shadow`: reachable only by forwarding), and
//! so on. Lookups follow the chain to its end, so every process sees the newest layout at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::commit::Durability;
use crate::error::{Error, Result};
use crate::format::catalog_check::{check_catalog, CatalogError, CatalogSummary, Record};
use crate::format::entry::{
    self, check_name, home_slot, Entry, EntryKind, NameError, ENTRY_SIZE, STATE_EMPTY, STATE_LIVE,
};
use crate::format::header;
use crate::format::schema::{self, Schema};
use crate::format::{align_up, entry::MAX_NAME_LEN};
use crate::layout::Layout;
use crate::store::StoreInner;

/// Objects start on their own cache line, and each of their slots takes whole cache lines, so that
/// unrelated objects never share a line.
const OBJECT_ALIGN: u64 = 64;

/// The alignment of large arrays.
const PAGE: u64 = 4096;

impl StoreInner {
    /// The published entry `name`, or [`Error::NotFound`].
    pub(crate) fn find(&self, name: &str) -> Result<(u32, Arc<Entry>)> {
        valid_name(name)?;
        self.lookup(name)?.ok_or_else(|| Error::NotFound { name: name.to_owned() })
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
        let slots = self.header.catalog_slots;
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

    /// The slot that replaced the record in `slot` by a migration, if any.
    pub(crate) fn moved_to(&self, slot: u32) -> Option<u32> {
        let word = self.map().atomic_u32(self.record_offset(slot) + entry::MOVED_TO_OFFSET)?;
        word.load(Ordering::Acquire).checked_sub(1)
    }

    /// Follows the migration chain from `root` to the entry's newest record.
    pub(crate) fn resolve(&self, root: (u32, Arc<Entry>)) -> Result<(u32, Arc<Entry>)> {
        let mut at = root;
        for _ in 0..self.header.catalog_slots {
            let Some(next) = self.moved_to(at.0) else { return Ok(at) };
            // `moved_to` is a live word, not checksummed: check that it names a slot at all.
            let record = if next < self.header.catalog_slots { self.read_record(next)? } else { None };
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
        if slot >= self.header.catalog_slots {
            return Err(self.corrupt(format!(
                "catalog slot {slot} does not exist: the catalog has {} slots",
                self.header.catalog_slots
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
        let entry = Entry::decode(&raw, &self.header, slot, self.capacity())
            .map_err(|error| self.catalog_error(CatalogError::Record { slot, error }))?;
        Ok(Some((state, entry)))
    }

    /// Every record in use, in slot order, each checked on its own.
    fn scan_records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for slot in 0..self.header.catalog_slots {
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
        let summary = check_catalog(&self.header, capacity, &records).map_err(|e| self.catalog_error(e))?;
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
    pub(crate) fn scan(&self) -> Result<Vec<(u32, Arc<Entry>)>> {
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

    /// The entry `name`, created if absent. `init` gives the bytes of one value, which fill the
    /// new entry's first slot (every element, for arrays); it runs only if the entry was missing,
    /// and *before* the catalog lock is taken, since it may be the caller's code: code that takes
    /// a guard (which may wait for a thread that waits for the catalog lock: a migration, or a
    /// writer creating an entry) or creates an entry must not run under that lock. If another
    /// thread or process creates the entry meanwhile, its value is dropped.
    pub(crate) fn find_or_create(
        &self,
        name: &str,
        kind: EntryKind,
        layout: &Layout,
        count: u64,
        init: impl FnOnce() -> Vec<u8>,
    ) -> Result<(u32, Arc<Entry>)> {
        valid_name(name)?;
        if let Some(hit) = self.lookup(name)? {
            return Ok(hit);
        }
        if self.read_only {
            return Err(self.read_only_error("creating a new entry"));
        }
        let value = init();
        let _held = self.lock_catalog("creating", name)?;
        // Another thread or process may have created it meanwhile (even `init` itself).
        if let Some(hit) = self.lookup(name)? {
            return Ok(hit);
        }
        debug_assert_eq!(value.len(), layout.size);
        let (slot, entry) = self.place(name, kind, layout, count, STATE_LIVE, |data_offset| match kind {
            EntryKind::Array | EntryKind::Bytes => self.fill_repeated(data_offset, &value, count),
            _ => self.map().write(data_offset, &value),
        })?;
        if let Some(count) = self.map().atomic_u32(header::ENTRY_COUNT_OFFSET) {
            count.fetch_add(1, Ordering::AcqRel);
        }
        let hit = (slot, Arc::new(entry));
        self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), hit.clone());
        Ok(hit)
    }

    /// Allocates space for a new record of `count` values of `layout`, lets `write_data` fill it
    /// (given the data offset), and publishes the record in a free slot with `state`. The caller
    /// holds the catalog lock.
    ///
    /// With the store's [`Durability::PowerLoss`], every step is on disk before the next one
    /// starts, so that no power loss leaves a record that points at data, a schema or an
    /// allocation end that did not reach the disk:
    /// 1. growth, if needed: the file's new length, then the capacity word (see `grow_to`);
    /// 2. the data and the schema, then the header, whose `alloc_end` covers them, then the
    ///    record's fields (its `state` still empty);
    /// 3. the `state` word (the publishing store), synced.
    ///
    /// A power loss before step 3 leaks the space (like a process killed there); after it, the
    /// entry is complete. With [`Durability::Process`] nothing is synced.
    pub(crate) fn place(
        &self,
        name: &str,
        kind: EntryKind,
        layout: &Layout,
        count: u64,
        state: u32,
        write_data: impl FnOnce(u64) -> bool,
    ) -> Result<(u32, Entry)> {
        let slots = self.header.catalog_slots;
        let home = home_slot(name, slots);
        let slot = (0..slots)
            .map(|i| (home + i) % slots)
            .find(|&s| {
                self.map().atomic_u32(self.record_offset(s)).is_some_and(|w| w.load(Ordering::Acquire) == STATE_EMPTY)
            })
            .ok_or_else(|| Error::CatalogFull { path: self.path.clone(), max_entries: slots })?;

        let elem_size = layout.size as u64;
        let elem_align = layout.align as u64;
        let unsupported = |reason: String| Error::UnsupportedLayout {
            name: name.to_owned(),
            type_name: layout.display_name(),
            reason,
        };
        if elem_align > PAGE {
            return Err(unsupported(format!(
                "it is aligned to {elem_align} bytes, but store data is aligned to at most {PAGE}; lower its `align`"
            )));
        }
        // A byte region holds `u8`s, always (a record of kind bytes with any other element size is
        // refused as corrupt): a migration cannot retype one.
        if kind == EntryKind::Bytes && layout.fingerprint != <u8 as crate::SharedLayout>::LAYOUT.fingerprint {
            return Err(unsupported("a byte region holds u8 bytes; copy them into a new array entry instead".into()));
        }
        // Never write a schema that could not be read back: whatever the decoder refuses (a layout
        // nested too deeply, say) is refused here, before anything is allocated.
        let schema_bytes = schema::encode(layout);
        if let Err(e) = schema::decode(&schema_bytes) {
            return Err(unsupported(format!("its layout descriptor cannot be recorded: {e}")));
        }
        let (slot_count, slot_stride, data_align, data_len) = match kind {
            // Arrays of a page or more start on a page: copies run at full speed, and their pages
            // are never shared with another entry.
            EntryKind::Array | EntryKind::Bytes => {
                let len = elem_size.checked_mul(count);
                let align = if len.is_none_or(|l| l >= PAGE) { PAGE } else { OBJECT_ALIGN };
                (1u8, 0, elem_align.max(align), len)
            }
            _ => {
                let stride = align_up(elem_size.max(1), OBJECT_ALIGN).unwrap_or(u64::MAX);
                // Objects holding atomics are changed in place by several processes at once, so
                // they cannot be double-buffered.
                if layout.contains_atomics() {
                    (1, 0, elem_align.max(OBJECT_ALIGN), Some(stride))
                } else {
                    (2, stride, elem_align.max(OBJECT_ALIGN), stride.checked_mul(2))
                }
            }
        };

        // Allocate: data, then the schema, from the allocation end. The end is advanced before
        // anything is written, so a crash can leak the space but never hand it out twice.
        let start = self.alloc_end();
        let capacity = self.capacity().min(self.map().len());
        let placed = data_len.and_then(|len| {
            let data = align_up(start, data_align)?;
            let schema_at = align_up(data.checked_add(len.max(1))?, 8)?;
            let end = schema_at.checked_add(schema_bytes.len() as u64)?;
            Some((data, schema_at, end))
        });
        let (data_offset, schema_offset, end) = match placed {
            Some(p) if p.2 <= capacity => p,
            // Too big for the store as it is: grow it (every process adopts the new size on its
            // next access), unless the maximum capacity forbids it.
            Some(p) if let Some(target) = self.growth_target(p.2) => {
                self.grow_to(target)?;
                if self.map().len() < p.2 {
                    return Err(self.io("map", std::io::Error::other("could not map the grown store")));
                }
                p
            }
            other => {
                let needed = other.map_or(u64::MAX, |p| p.2 - start);
                return Err(Error::StoreFull {
                    path: self.path.clone(),
                    needed,
                    available: capacity.saturating_sub(start),
                    capacity,
                    suggested: start.saturating_add(needed).checked_next_power_of_two().unwrap_or(u64::MAX),
                });
            }
        };
        self.live_u64(header::ALLOC_END_OFFSET).store(end, Ordering::Release);

        if !(self.map().write(schema_offset, &schema_bytes) && write_data(data_offset)) {
            return Err(self.corrupt("the allocation end points outside the file".into()));
        }
        let entry = Entry {
            name: name.to_owned(),
            kind,
            slot_count,
            version: layout.version,
            fingerprint: layout.fingerprint,
            elem_size,
            elem_align,
            count,
            data_offset,
            slot_stride,
            schema_offset,
            schema_len: schema_bytes.len() as u64,
            lock_offset: entry::lock_offset_for(slot),
        };
        let at = self.record_offset(slot);
        let state_word = self.map().atomic_u32(at).ok_or_else(|| self.corrupt("catalog outside the file".into()))?;
        self.map().write(at + entry::STATIC_OFFSET, &entry.encode());
        let power_loss = self.durability == Durability::PowerLoss;
        if power_loss {
            // Everything the record points to, the allocation end that covers it, and the
            // record's own fields reach the disk before the state word that publishes them: a
            // power loss then leaves an empty slot (and leaked space) or the complete entry, and
            // never relies on the record's bytes and its state word being written together.
            self.sync_range(data_offset, end - data_offset)?;
            self.sync_range(0, header::HEADER_SIZE)?;
            self.sync_range(at, ENTRY_SIZE)?;
        }
        // Publish: everything above happens-before any reader that sees the slot in use.
        state_word.store(state, Ordering::Release);
        if power_loss {
            self.sync_range(at, ENTRY_SIZE)?;
        }
        Ok((slot, entry))
    }

    /// Writes `value` into `count` consecutive elements at `offset`. Fresh store space is zero, so
    /// a zero value writes nothing and leaves the file sparse.
    fn fill_repeated(&self, offset: u64, value: &[u8], count: u64) -> bool {
        if value.iter().all(|&b| b == 0) || value.is_empty() {
            return true;
        }
        const CHUNK: usize = 64 * 1024;
        let per_chunk = (CHUNK / value.len()).max(1) as u64;
        let chunk: Vec<u8> = value.repeat(per_chunk.min(count) as usize);
        let mut done = 0u64;
        while done < count {
            let n = per_chunk.min(count - done);
            if !self.map().write(offset + done * value.len() as u64, &chunk[..(n as usize) * value.len()]) {
                return false;
            }
            done += n;
        }
        true
    }
}

fn valid_name(name: &str) -> Result<()> {
    check_name(name).map_err(|e| Error::InvalidName {
        name: name.to_owned(),
        reason: match e {
            NameError::Empty => "names cannot be empty".to_owned(),
            NameError::TooLong { len } => format!("it is {len} bytes long; names hold at most {MAX_NAME_LEN} bytes"),
            NameError::ControlChar => "names cannot contain NUL or other control characters".to_owned(),
        },
    })
}
