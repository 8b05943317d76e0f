//! The whole-catalog check: what a store's records must satisfy together, beyond what each
//! satisfies alone ([`Entry::check`]).
//!
//! Every record is checked on its own when it is decoded, but a record whose checksum is valid and
//! whose fields each look sane can still lie about its neighbours: two entries whose data share
//! bytes would hand out a `&mut [T]` and a `&[U]` to the same memory, and an entry whose schema
//! lies inside another's data would change under its writes. So `Store::open` (and listing the
//! entries) hands every published record to [`check_catalog`], which refuses the catalog unless
//!
//! - every record passes [`Entry::check`] for the slot it sits in (so its data, every slot of it,
//!   and its schema lie inside `[data_offset, capacity)`, do not overlap each other, and its lock
//!   byte is the one its slot implies: no two records share a lock);
//! - every record's state is live or shadow;
//! - no two byte ranges of different records overlap, whatever their states (a migration's shadow
//!   record has its own space, and so has an orphan one);
//! - no two records claim the same slot, and no two live records carry the same name.
//!
//! It is pure code over decoded records, `O(n log n)` in their number, and never panics.

use std::fmt;
use std::ops::Range;

use super::entry::{Entry, EntryError, STATE_LIVE, STATE_SHADOW};
use super::header::Header;

/// One published catalog record, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The catalog slot it sits in.
    pub slot: u32,
    /// Its state word: [`STATE_LIVE`] or [`STATE_SHADOW`].
    pub state: u32,
    /// Its decoded static part.
    pub entry: Entry,
}

/// Which part of an entry a byte range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Its data: every slot of an object, every element of an array or byte region.
    Data,
    /// Its encoded schema.
    Schema,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Data => "data",
            Part::Schema => "schema",
        }
    }
}

/// A byte range of one entry, named for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// The catalog slot of the entry's record.
    pub slot: u32,
    /// The entry's name.
    pub name: String,
    /// Which part of the entry.
    pub part: Part,
    /// The bytes.
    pub range: Range<u64>,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} of entry `{}` (catalog slot {}, bytes {}..{})",
            self.part.as_str(),
            self.name,
            self.slot,
            self.range.start,
            self.range.end
        )
    }
}

/// Why a catalog was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogError {
    /// A record fails [`Entry::check`] on its own.
    Record {
        /// Its slot.
        slot: u32,
        /// What is wrong with it.
        error: EntryError,
    },
    /// A record's state is neither live nor shadow.
    State {
        /// Its slot.
        slot: u32,
        /// The state.
        state: u32,
    },
    /// Two records claim the same bytes.
    Overlap {
        /// The range that starts first.
        first: Region,
        /// A range that starts inside it.
        second: Region,
    },
    /// Two records claim the same catalog slot (so they would share its lock byte).
    DuplicateSlot {
        /// The slot.
        slot: u32,
    },
    /// Two live records carry the same name, so a lookup could find either.
    DuplicateName {
        /// The name.
        name: String,
        /// The lower slot.
        first: u32,
        /// The higher slot.
        second: u32,
    },
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogError::Record { slot, error } => write!(f, "entry in catalog slot {slot}: {error}"),
            CatalogError::State { slot, state } => write!(f, "catalog slot {slot} has unknown state {state}"),
            CatalogError::Overlap { first, second } => write!(f, "{second} overlaps {first}"),
            CatalogError::DuplicateSlot { slot } => write!(f, "two records claim catalog slot {slot}"),
            CatalogError::DuplicateName { name, first, second } => {
                write!(f, "catalog slots {first} and {second} both hold a live entry named `{name}`")
            }
        }
    }
}

/// What a catalog that passed [`check_catalog`] occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogSummary {
    /// The end of the highest byte any record uses, or the start of the data area if there are no
    /// records: the allocation end can be raised to it safely.
    pub end: u64,
}

/// Checks `records`, every published record of a store with this `header` whose first `capacity`
/// bytes are in use, together: see the [module docs](self) for the rules.
pub fn check_catalog(header: &Header, capacity: u64, records: &[Record]) -> Result<CatalogSummary, CatalogError> {
    let mut regions: Vec<(Range<u64>, &Record, Part)> = Vec::with_capacity(records.len() * 2);
    let mut end = header.data_offset;
    for r in records {
        if r.state != STATE_LIVE && r.state != STATE_SHADOW {
            return Err(CatalogError::State { slot: r.slot, state: r.state });
        }
        let e = &r.entry;
        e.check(header, r.slot, capacity).map_err(|error| CatalogError::Record { slot: r.slot, error })?;
        // `check` refused every record whose ranges overflow.
        let (Some(data), Some(schema)) = (e.data_range(), e.schema_range()) else {
            return Err(CatalogError::Record { slot: r.slot, error: EntryError::Invalid("entry size overflows") });
        };
        end = end.max(data.end).max(schema.end);
        for (part, range) in [(Part::Data, data), (Part::Schema, schema)] {
            // An empty range holds no bytes, so it overlaps nothing.
            if !range.is_empty() {
                regions.push((range, r, part));
            }
        }
    }

    // Sorted by their starts, non-empty ranges are pairwise disjoint exactly when each ends at or
    // before the start of the next: if a range overlaps any earlier one, it overlaps the one just
    // before it, since that one starts no earlier and, the earlier ones being disjoint, ends last.
    regions.sort_unstable_by_key(|(range, r, _)| (range.start, range.end, r.slot));
    if let Some(pair) = regions.windows(2).find(|pair| pair[1].0.start < pair[0].0.end) {
        let region = |(range, r, part): &(Range<u64>, &Record, Part)| Region {
            slot: r.slot,
            name: r.entry.name.clone(),
            part: *part,
            range: range.clone(),
        };
        return Err(CatalogError::Overlap { first: region(&pair[0]), second: region(&pair[1]) });
    }

    // Slots and live names are unique: two records in one slot would share a lock byte.
    let mut slots: Vec<u32> = records.iter().map(|r| r.slot).collect();
    slots.sort_unstable();
    if let Some(pair) = slots.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(CatalogError::DuplicateSlot { slot: pair[0] });
    }
    let mut live: Vec<(&str, u32)> =
        records.iter().filter(|r| r.state == STATE_LIVE).map(|r| (r.entry.name.as_str(), r.slot)).collect();
    live.sort_unstable();
    if let Some(pair) = live.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(CatalogError::DuplicateName { name: pair[0].0.to_owned(), first: pair[0].1, second: pair[1].1 });
    }
    Ok(CatalogSummary { end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::entry::{lock_offset_for, EntryKind};

    const CAPACITY: u64 = 1 << 20;

    fn header() -> Header {
        Header::new(64, CAPACITY, 0)
    }

    /// A record in `slot` of a `u32` array of `count` elements at `data`, with a 40-byte schema at
    /// `schema`.
    fn record(slot: u32, name: &str, data: u64, count: u64, schema: u64) -> Record {
        Record {
            slot,
            state: STATE_LIVE,
            entry: Entry {
                name: name.into(),
                kind: EntryKind::Array,
                slot_count: 1,
                version: 1,
                fingerprint: 7,
                elem_size: 4,
                elem_align: 4,
                count,
                data_offset: data,
                slot_stride: 0,
                schema_offset: schema,
                schema_len: 40,
                lock_offset: lock_offset_for(slot),
            },
        }
    }

    fn start() -> u64 {
        header().data_offset
    }

    /// Three entries laid out as the allocator lays them out: data, then schema, each next.
    fn good() -> Vec<Record> {
        let s = start();
        vec![record(3, "a", s, 16, s + 64), record(9, "b", s + 128, 10, s + 168), record(1, "c", s + 256, 2, s + 264)]
    }

    fn check(records: &[Record]) -> Result<CatalogSummary, CatalogError> {
        check_catalog(&header(), CAPACITY, records)
    }

    #[track_caller]
    fn overlap(records: &[Record]) -> (Region, Region) {
        match check(records) {
            Err(CatalogError::Overlap { first, second }) => (first, second),
            other => panic!("expected an overlap, got {other:?}"),
        }
    }

    fn region(slot: u32, name: &str, part: Part, range: Range<u64>) -> Region {
        Region { slot, name: name.into(), part, range }
    }

    #[test]
    fn a_well_laid_out_catalog_passes() {
        let s = start();
        assert_eq!(check(&good()), Ok(CatalogSummary { end: s + 304 }));
        assert_eq!(check(&[]), Ok(CatalogSummary { end: s }));
        // The summary is the furthest end, whatever the order of records and of data and schema.
        let mut records = good();
        records.reverse();
        records[0].entry.schema_offset = s + 1000;
        assert_eq!(check(&records), Ok(CatalogSummary { end: s + 1040 }));
        let last = record(5, "d", s + 2000, 100, s + 1900);
        assert_eq!(check(&[last]), Ok(CatalogSummary { end: s + 2400 }));
    }

    #[test]
    fn data_overlapping_data_is_refused_naming_both_entries() {
        let s = start();
        let mut records = good();
        // `b` starts in the middle of `a`'s data.
        records[1].entry.data_offset = s + 32;
        records[1].entry.schema_offset = s + 400;
        let (first, second) = overlap(&records);
        assert_eq!(first, region(3, "a", Part::Data, s..s + 64));
        assert_eq!(second, region(9, "b", Part::Data, s + 32..s + 72));
        let err = CatalogError::Overlap { first, second };
        assert_eq!(
            err.to_string(),
            format!(
                "the data of entry `b` (catalog slot 9, bytes {}..{}) overlaps the data of entry `a` (catalog slot 3, bytes {s}..{})",
                s + 32,
                s + 72,
                s + 64
            )
        );
        // The same start.
        records[1].entry.data_offset = s;
        let (first, second) = overlap(&records);
        assert_eq!((first.name.as_str(), second.name.as_str()), ("b", "a"));
        // One byte of overlap is enough; touching is not overlapping.
        records[1].entry.data_offset = s + 60;
        assert_eq!(overlap(&records).1.range, s + 60..s + 100);
        records[1].entry.data_offset = s + 400;
        records[1].entry.schema_offset = s + 360;
        assert!(check(&records).is_ok());
    }

    #[test]
    fn a_range_inside_a_longer_earlier_one_is_found() {
        let s = start();
        // `a`'s data is long, `b` lies wholly inside it, after a short range that ends early.
        let mut records = vec![record(3, "a", s, 1000, s + 4000), record(9, "b", s + 2000, 4, s + 5000)];
        assert_eq!(overlap(&records).0, region(3, "a", Part::Data, s..s + 4000));
        // A short range that starts later but ends earlier does not hide the long one.
        records.push(record(1, "c", s + 1000, 1, s + 6000));
        records[1].entry.data_offset = s + 3000;
        let (first, second) = overlap(&records);
        assert_eq!((first.name.as_str(), second.name.as_str()), ("a", "c"));
    }

    #[test]
    fn schema_overlapping_another_entrys_data_is_refused() {
        let s = start();
        let mut records = good();
        // `c`'s schema lies inside `b`'s data.
        records[2].entry.schema_offset = s + 136;
        let (first, second) = overlap(&records);
        assert_eq!(first, region(9, "b", Part::Data, s + 128..s + 168));
        assert_eq!(second, region(1, "c", Part::Schema, s + 136..s + 176));
        // Two schemas sharing bytes.
        let mut records = good();
        records[2].entry.schema_offset = s + 72;
        let (first, second) = overlap(&records);
        assert_eq!((first.part, second.part), (Part::Schema, Part::Schema));
        assert_eq!((first.slot, second.slot), (3, 1));
    }

    #[test]
    fn shadow_records_count_too() {
        let s = start();
        let mut records = good();
        records[1].state = STATE_SHADOW;
        records[1].entry.name = "a".into();
        assert!(check(&records).is_ok(), "a shadow may share its live record's name");
        records[1].entry.data_offset = s + 8;
        records[1].entry.schema_offset = s + 400;
        assert_eq!(overlap(&records).1.slot, 9);
    }

    #[test]
    fn empty_arrays_overlap_nothing() {
        let s = start();
        let mut records = good();
        records.push(record(7, "empty", s + 16, 0, s + 600));
        assert_eq!(check(&records), Ok(CatalogSummary { end: s + 640 }));
        records.push(record(8, "also-empty", s + 16, 0, s + 700));
        assert!(check(&records).is_ok());
    }

    #[test]
    fn every_record_is_checked_on_its_own_for_its_slot() {
        let mut records = good();
        records[1].entry.lock_offset = lock_offset_for(3);
        assert_eq!(
            check(&records),
            Err(CatalogError::Record {
                slot: 9,
                error: EntryError::Invalid("lock offset is not the one its catalog slot implies")
            })
        );
        let mut records = good();
        records[2].entry.count = 1 << 30;
        records[2].entry.schema_offset = start() + 208;
        let end = start() + 256 + (4 << 30);
        assert_eq!(
            check(&records),
            Err(CatalogError::Record { slot: 1, error: EntryError::OutOfBounds { end, capacity: CAPACITY } })
        );
        let err = check(&records).unwrap_err().to_string();
        assert_eq!(err, format!("entry in catalog slot 1: it ends at byte {end}, past the store's {CAPACITY} bytes"));
        // Ending exactly at the capacity is fine.
        let records = good();
        assert_eq!(check_catalog(&header(), start() + 304, &records), Ok(CatalogSummary { end: start() + 304 }));
        assert!(matches!(check_catalog(&header(), start() + 303, &records), Err(CatalogError::Record { slot: 1, .. })));
    }

    #[test]
    fn states_other_than_live_and_shadow_are_refused() {
        for state in [0, 3, u32::MAX] {
            let mut records = good();
            records[1].state = state;
            assert_eq!(check(&records), Err(CatalogError::State { slot: 9, state }));
        }
        let err = CatalogError::State { slot: 9, state: 3 };
        assert_eq!(err.to_string(), "catalog slot 9 has unknown state 3");
    }

    #[test]
    fn live_names_are_unique() {
        let mut records = good();
        records[2].entry.name = "a".into();
        let err = check(&records).unwrap_err();
        assert_eq!(err, CatalogError::DuplicateName { name: "a".into(), first: 1, second: 3 });
        assert_eq!(err.to_string(), "catalog slots 1 and 3 both hold a live entry named `a`");
        records[2].state = STATE_SHADOW;
        assert!(check(&records).is_ok());
    }

    #[test]
    fn slots_are_unique() {
        let s = start();
        let mut records = good();
        records.push(record(9, "d", s + 400, 1, s + 408));
        let err = check(&records).unwrap_err();
        assert_eq!(err, CatalogError::DuplicateSlot { slot: 9 });
        assert_eq!(err.to_string(), "two records claim catalog slot 9");
    }

    /// The rules of the module docs, checked pair by pair: the model `check_catalog` must agree with.
    fn brute_force(records: &[Record]) -> bool {
        let each_ok = records.iter().all(|r| {
            (r.state == STATE_LIVE || r.state == STATE_SHADOW) && r.entry.check(&header(), r.slot, CAPACITY).is_ok()
        });
        if !each_ok {
            return false;
        }
        let ranges: Vec<(usize, Range<u64>)> = records
            .iter()
            .enumerate()
            .flat_map(|(i, r)| [(i, r.entry.data_range().unwrap()), (i, r.entry.schema_range().unwrap())])
            .collect();
        let shared_byte = |a: &Range<u64>, b: &Range<u64>| a.start.max(b.start) < a.end.min(b.end);
        let disjoint = ranges
            .iter()
            .enumerate()
            .all(|(x, (i, a))| ranges[x + 1..].iter().all(|(j, b)| i == j || !shared_byte(a, b)));
        let unique = records.iter().enumerate().all(|(x, a)| {
            records[x + 1..].iter().all(|b| {
                a.slot != b.slot && !(a.state == STATE_LIVE && b.state == STATE_LIVE && a.entry.name == b.entry.name)
            })
        });
        disjoint && unique
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Small records crowded into a small area, so that most catalogs have an overlap
        /// somewhere: `check_catalog` accepts exactly the catalogs the pairwise model accepts, and
        /// an overlap it reports is real.
        #[test]
        fn agrees_with_a_pairwise_model(
            raw in proptest::collection::vec(
                (0u32..64, 0u32..8, 0u8..3, 0u64..64, 0u64..12, 0u64..64, 1u64..24),
                0..6,
            )
        ) {
            let s = start();
            let records: Vec<Record> = raw
                .iter()
                .map(|&(slot, state, name, data, count, schema, schema_len)| {
                    let mut r = record(slot, ["a", "b", "c"][usize::from(name)], s + 4 * data, count, s + 4 * schema);
                    // Mostly live or shadow; one in eight is a state that does not exist.
                    r.state = match state {
                        0 => 3,
                        odd if odd % 2 == 1 => STATE_LIVE,
                        _ => STATE_SHADOW,
                    };
                    r.entry.schema_len = schema_len;
                    r
                })
                .collect();
            let result = check_catalog(&header(), CAPACITY, &records);
            proptest::prop_assert_eq!(result.is_ok(), brute_force(&records), "{:?}", result);
            if let Err(CatalogError::Overlap { first, second }) = &result {
                proptest::prop_assert!(first.range.start <= second.range.start);
                proptest::prop_assert!(second.range.start < first.range.end);
            }
            if let Ok(summary) = result {
                let end = records.iter().map(|r| r.entry.schema_range().unwrap().end.max(r.entry.data_range().unwrap().end)).max();
                proptest::prop_assert_eq!(summary.end, end.unwrap_or(s));
            }
        }
    }
}
