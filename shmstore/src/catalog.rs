//! The catalog: finding entries by name, publishing new ones, listing them.
//!
//! Lookups are lock-free: a slot's `state` word is published last, with a release store, after
//! the record and the entry's data are written; a reader that sees it live (acquire) sees all of
//! that. Creation takes the catalog lock, so that two processes creating the same name agree on
//! one entry, and allocation is serialised.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::entry::{self, check_name, home_slot, Entry, EntryKind, NameError, STATE_EMPTY, STATE_LIVE};
use crate::format::header;
use crate::format::schema::{self, Schema};
use crate::format::{align_up, entry::MAX_NAME_LEN};
use crate::layout::Layout;
use crate::lock::Wait;
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

    /// The published entry `name`, if any: from this process's cache, else by probing the file.
    fn lookup(&self, name: &str) -> Result<Option<(u32, Arc<Entry>)>> {
        if let Some(hit) = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(Some(hit.clone()));
        }
        let slots = self.header.catalog_slots;
        let home = home_slot(name, slots);
        for i in 0..slots {
            let slot = (home + i) % slots;
            match self.read_record(slot)? {
                None => return Ok(None),
                Some(entry) if entry.name == name => {
                    let hit = (slot, Arc::new(entry));
                    self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), hit.clone());
                    return Ok(Some(hit));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The record in `slot`: `None` if the slot is empty, an error if it is damaged.
    fn read_record(&self, slot: u32) -> Result<Option<Entry>> {
        let at = self.record_offset(slot);
        let state = self
            .map
            .atomic_u32(at)
            .ok_or_else(|| self.corrupt(format!("catalog slot {slot} lies outside the file")))?
            .load(Ordering::Acquire);
        match state {
            STATE_EMPTY => return Ok(None),
            STATE_LIVE => {}
            other => return Err(self.corrupt(format!("catalog slot {slot} has unknown state {other}"))),
        }
        let mut raw = [0u8; entry::STATIC_SIZE];
        if !self.map.read(at + entry::STATIC_OFFSET, &mut raw) {
            return Err(self.corrupt(format!("catalog slot {slot} lies outside the file")));
        }
        Entry::decode(&raw, &self.header, self.capacity().max(self.map.len())).map(Some).map_err(|e| match e {
            entry::EntryError::BadChecksum => {
                Error::BadChecksum { path: self.path.clone(), what: format!("the entry in catalog slot {slot}") }
            }
            entry::EntryError::Invalid(detail) => self.corrupt(format!("entry in catalog slot {slot}: {detail}")),
            entry::EntryError::OutOfBounds { end, capacity } => self
                .corrupt(format!("entry in catalog slot {slot} ends at byte {end}, past the store's {capacity} bytes")),
        })
    }

    /// Every published entry, in slot order.
    pub(crate) fn scan(&self) -> Result<Vec<(u32, Entry)>> {
        let mut out = Vec::new();
        for slot in 0..self.header.catalog_slots {
            if let Some(entry) = self.read_record(slot)? {
                out.push((slot, entry));
            }
        }
        Ok(out)
    }

    /// The decoded schema stored for `entry`.
    pub(crate) fn stored_schema(&self, entry: &Entry) -> Result<Schema> {
        let len = usize::try_from(entry.schema_len)
            .map_err(|_| self.corrupt(format!("schema of `{}` is too large", entry.name)))?;
        let mut bytes = vec![0u8; len];
        if !self.map.read(entry.schema_offset, &mut bytes) {
            return Err(Error::BeyondMapping { name: entry.name.clone(), mapped: self.map.len() });
        }
        schema::decode(&bytes).map_err(|e| self.corrupt(format!("schema of entry `{}`: {e}", entry.name)))
    }

    /// The stored type's name for messages; falls back to the fingerprint if the schema is damaged.
    pub(crate) fn stored_type_name(&self, entry: &Entry) -> String {
        self.stored_schema(entry).map_or_else(|_| format!("<type {:016x}>", entry.fingerprint), |s| s.display_name())
    }

    /// The entry `name`, created if absent. `init` gives the bytes of one value, which fill the
    /// new entry's first slot (every element, for arrays); it runs under the catalog lock, only
    /// when the entry is created.
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
        let _held = self.catalog_lock.write(&self.file, Wait::Forever).map_err(|e| self.lock_error(e))?;
        self.create_locked(name, kind, layout, count, init)
    }

    fn create_locked(
        &self,
        name: &str,
        kind: EntryKind,
        layout: &Layout,
        count: u64,
        init: impl FnOnce() -> Vec<u8>,
    ) -> Result<(u32, Arc<Entry>)> {
        // Another process may have created it while we waited for the lock.
        if let Some(hit) = self.lookup(name)? {
            return Ok(hit);
        }
        let slots = self.header.catalog_slots;
        let home = home_slot(name, slots);
        let slot = (0..slots)
            .map(|i| (home + i) % slots)
            .find(|&s| {
                self.map.atomic_u32(self.record_offset(s)).is_some_and(|w| w.load(Ordering::Acquire) == STATE_EMPTY)
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
        // Never write a schema that could not be read back: whatever the decoder refuses (a layout
        // nested too deeply, say) is refused here, before anything is allocated.
        let schema_bytes = schema::encode(layout);
        if let Err(e) = schema::decode(&schema_bytes) {
            return Err(unsupported(format!("its layout descriptor cannot be recorded: {e}")));
        }
        let single_slot = kind == EntryKind::Array || layout.contains_atomics();
        let (slot_count, slot_stride, data_align) = match kind {
            // Arrays of a page or more start on a page: copies run at full speed, and their pages
            // are never shared with another entry.
            EntryKind::Array if elem_size.saturating_mul(count) >= PAGE => (1u8, 0, elem_align.max(PAGE)),
            EntryKind::Array => (1u8, 0, elem_align.max(OBJECT_ALIGN)),
            _ => {
                let stride = align_up(elem_size.max(1), OBJECT_ALIGN).unwrap_or(u64::MAX);
                if single_slot {
                    (1, 0, elem_align.max(OBJECT_ALIGN))
                } else {
                    (2, stride, elem_align.max(OBJECT_ALIGN))
                }
            }
        };
        let data_len = match kind {
            EntryKind::Array => elem_size.checked_mul(count),
            _ => Some(align_up(elem_size.max(1), OBJECT_ALIGN).unwrap_or(u64::MAX) * u64::from(slot_count)),
        };

        // Allocate: data, then the schema, from the allocation end. The end is advanced before
        // anything is written, so a crash can leak the space but never hand it out twice.
        let start = self.alloc_end();
        let capacity = self.capacity().min(self.map.len());
        let placed = data_len.and_then(|len| {
            let data = align_up(start, data_align)?;
            let schema_at = align_up(data.checked_add(len.max(1))?, 8)?;
            let end = schema_at.checked_add(schema_bytes.len() as u64)?;
            Some((data, schema_at, end))
        });
        let (data_offset, schema_offset, end) = match placed {
            Some(p) if p.2 <= capacity => p,
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

        let value = init();
        debug_assert_eq!(value.len() as u64, elem_size);
        let written = self.map.write(schema_offset, &schema_bytes)
            && match kind {
                EntryKind::Array => self.fill_repeated(data_offset, &value, count),
                _ => self.map.write(data_offset, &value),
            };
        if !written {
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
        self.map.write(at + entry::STATIC_OFFSET, &entry.encode());
        if let Some(seq) = self.map.atomic_u64(at + entry::SEQ_OFFSET) {
            seq.store(0, Ordering::Relaxed);
        }
        // Publish: everything above happens-before any reader that sees the slot live.
        self.map
            .atomic_u32(at)
            .ok_or_else(|| self.corrupt("catalog outside the file".into()))?
            .store(STATE_LIVE, Ordering::Release);
        if let Some(count) = self.map.atomic_u32(header::ENTRY_COUNT_OFFSET) {
            count.fetch_add(1, Ordering::AcqRel);
        }
        let hit = (slot, Arc::new(entry));
        self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), hit.clone());
        Ok(hit)
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
            if !self.map.write(offset + done * value.len() as u64, &chunk[..(n as usize) * value.len()]) {
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
