//! Raw access to a store's entries for offline tools (`shmstore upgrade`, `shmstore compact`):
//! every entry of a v1 or v2 store as raw parts (name, kind, encoded schema, count, sequence,
//! where its values lie in the file), and the creation of v2 entries from such parts.
//!
//! These functions take no entry locks and assume that no other process has the store open: the
//! offline tools hold the store's exclusive `flock` (and the open byte) while they run. They are
//! used by the offline rewrites (`rebuild.rs`) and by the tests below.
#![cfg_attr(not(test), allow(dead_code))]

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::file::catalog::Found;
use crate::file::catalog_v2::{NewBlock, Shape};
use crate::file::state::{Format, StoreInner};
use crate::format::checksum::hash64;
use crate::format::entry::{Entry, EntryKind, STATE_LIVE, STATE_SHADOW};
use crate::format::v2::{block as blk, header as v2h};

/// One entry of a store, as raw parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    /// The entry's name.
    pub(crate) name: String,
    /// Object, array or byte region.
    pub(crate) kind: EntryKind,
    /// The encoded schema of its values (see `docs/schema-encoding.md`).
    pub(crate) schema: Vec<u8>,
    /// The number of values: 1 for an object.
    pub(crate) count: u64,
    /// The commit sequence (its parity picks the active slot of a double-buffered object).
    pub(crate) seq: u64,
    /// Where the current values lie in the file (the active slot of a double-buffered object).
    pub(crate) data_offset: u64,
    /// Bytes of the current values: `count` times the schema's size.
    pub(crate) data_len: u64,
}

/// A record of a format-v1 catalog, live or shadow (the replacement of a migrated entry,
/// reachable only through the `moved_to` of the record it replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Record {
    /// The catalog slot.
    pub(crate) slot: u32,
    /// Whether it is found by name (`true`) or a shadow (`false`).
    pub(crate) live: bool,
    /// The slot of the record that replaced it, if it was migrated.
    pub(crate) moved_to: Option<u32>,
    /// The record's entry.
    pub(crate) entry: RawEntry,
}

impl StoreInner {
    fn raw_entry(&self, at: u64, entry: &Entry) -> Result<RawEntry> {
        let len = usize::try_from(entry.schema_len).map_err(|_| self.corrupt("schema too long".into()))?;
        let mut schema = vec![0u8; len.min(crate::format::schema::MAX_SCHEMA_LEN)];
        if schema.len() != len || !self.map().read(entry.schema_offset, &mut schema) {
            return Err(self.corrupt(format!("the schema of entry `{}` lies outside the file", entry.name)));
        }
        let seq = self.map().atomic_u64(at + self.words.seq).map_or(0, |s| s.load(Ordering::Acquire));
        Ok(RawEntry {
            name: entry.name.clone(),
            kind: entry.kind,
            schema,
            count: entry.count,
            seq,
            data_offset: self.active_offset(at, entry),
            data_len: entry.elem_size * entry.count,
        })
    }
}

impl StoreInner {
    /// Every entry that a lookup by name finds (the newest layout of a migrated entry), as raw
    /// parts, in catalog order.
    pub(crate) fn raw_entries(&self) -> Result<Vec<RawEntry>> {
        let inner = self;
        inner.scan()?.iter().map(|f| inner.raw_entry(f.at, &f.entry)).collect()
    }

    /// Every record of a format-v1 store, live and shadow, as raw parts with its forwarding.
    /// [`Error::Corrupt`] for a v2 store.
    pub(crate) fn v1_records(&self) -> Result<Vec<V1Record>> {
        let inner = self;
        if !matches!(inner.format, Format::V1(_)) {
            return Err(inner.corrupt("v1_records reads format-v1 stores only".into()));
        }
        let (records, _) = inner.checked_records()?;
        records
            .iter()
            .filter(|r| r.state == STATE_LIVE || r.state == STATE_SHADOW)
            .map(|r| {
                let at = inner.record_offset(r.slot);
                Ok(V1Record {
                    slot: r.slot,
                    live: r.state == STATE_LIVE,
                    moved_to: inner.moved_to(r.slot),
                    entry: inner.raw_entry(at, &r.entry)?,
                })
            })
            .collect()
    }

    /// Creates the entry `entry.name` of a v2 store from raw parts, with `values` (its
    /// `entry.data_len` bytes; `None` leaves them zero, for a caller that copies them itself to
    /// keep holes), and `entry.seq` as its sequence (a double-buffered object gets its value in
    /// both slots, so either parity reads it). Returns the offset where the values were placed
    /// (for a double-buffered object: its active slot). [`Error::NameTaken`] if the name exists.
    pub(crate) fn insert_raw(&self, entry: &RawEntry, values: Option<&[u8]>) -> Result<u64> {
        let inner = self;
        crate::file::catalog::valid_name(&entry.name)?;
        if inner.read_only || !matches!(inner.format, Format::V2(_)) {
            return Err(inner.read_only_error("creating an entry from raw parts"));
        }
        let shape = Shape::from_schema(&entry.schema)
            .map_err(|e| inner.corrupt(format!("the schema of entry `{}` cannot be decoded: {e}", entry.name)))?;
        let expected = shape.elem_size.checked_mul(entry.count);
        if expected != Some(entry.data_len) || values.is_some_and(|v| v.len() as u64 != entry.data_len) {
            return Err(inner.corrupt(format!("entry `{}`: its values do not fit its schema and count", entry.name)));
        }
        let _held = inner.lock_catalog("creating", &entry.name)?;
        if inner.v2_lookup(&entry.name)?.is_some() {
            return Err(Error::NameTaken { from: entry.name.clone(), to: entry.name.clone() });
        }
        let new = NewBlock { name: &entry.name, kind: entry.kind, shape: &shape, count: entry.count };
        let write = |data: u64, _fresh: bool| {
            let Some(values) = values else { return true };
            let map = inner.map();
            if entry.kind == EntryKind::Object && !shape.atomics {
                let stride = crate::format::align_up(shape.elem_size.max(1), 64).unwrap_or(u64::MAX);
                map.write(data, values) && map.write(data + stride, values)
            } else {
                map.write(data, values)
            }
        };
        let (at, _, _) = inner.v2_place(&new, entry.seq, blk::STATE_LIVE, 0, write)?;
        inner.v2_insert_published(hash64(&entry.name), at)?;
        let found: Found = inner.accept(at)?;
        Ok(inner.active_offset(at, &found.entry))
    }
}

impl StoreInner {
    /// Inserts the published block `at` into the index and counts it. The caller holds the admin
    /// lock.
    pub(crate) fn v2_insert_published(&self, hash: u64, at: u64) -> Result<()> {
        self.index_insert(hash, at)?;
        self.live_u64(v2h::ENTRY_COUNT).fetch_add(1, Ordering::AcqRel);
        self.catalog_changed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn entries_copy_through_raw_parts() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open_or_create(dir.path().join("a.shm"), 1 << 20).unwrap();
        let pair = from.object_or_init("pair", || [1u64, 2]).unwrap();
        pair.store([3, 4]).unwrap();
        from.array_or_init::<u16>("ids", 5, 9).unwrap();
        from.bytes_or_init("blob", 3).unwrap().write_at(0, b"xyz").unwrap();
        let to = Store::open_or_create(dir.path().join("b.shm"), 1 << 20).unwrap();
        for raw in from.inner().raw_entries().unwrap() {
            let mut values = vec![0u8; raw.data_len as usize];
            assert!(from.inner().map().read(raw.data_offset, &mut values));
            to.inner().insert_raw(&raw, Some(&values)).unwrap();
            assert!(matches!(to.inner().insert_raw(&raw, Some(&values)), Err(Error::NameTaken { .. })));
        }
        assert_eq!(to.object::<[u64; 2]>("pair").unwrap().load().unwrap(), [3, 4]);
        assert_eq!(to.object::<[u64; 2]>("pair").unwrap().version(), pair.version());
        assert_eq!(&*to.array::<u16>("ids").unwrap().read().unwrap(), &[9; 5]);
        let mut blob = [0u8; 3];
        to.bytes("blob").unwrap().read_at(0, &mut blob).unwrap();
        assert_eq!(&blob, b"xyz");
        assert!(to.inner().v1_records().is_err());
    }

    #[test]
    fn v1_records_include_shadows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.shm");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/v1.shm"), &path).unwrap();
        let store = Store::options().read_only(true).open(&path).unwrap();
        let records = store.inner().v1_records().unwrap();
        let shadows: Vec<_> = records.iter().filter(|r| !r.live).collect();
        assert_eq!(shadows.len(), 1, "the golden file holds one migrated entry");
        let old = records.iter().find(|r| r.moved_to == Some(shadows[0].slot)).unwrap();
        assert_eq!(old.entry.name, shadows[0].entry.name);
        assert_eq!(store.inner().raw_entries().unwrap().len(), 6);
    }
}
