//! Catalog records: one [`ENTRY_SIZE`]-byte record per named entry.
//!
//! A record has a `state` word first (native-endian `AtomicU32`: [`STATE_EMPTY`] or
//! [`STATE_LIVE`]), a static part written once before the state turns live and covered by a
//! checksum, and a live part: the commit sequence word and the futex words that later commits and
//! change notification use.
//!
//! Records are found by name: slot `hash(name) % slots`, then the following slots in turn (open
//! addressing with linear probing). Entries are never removed in format version 1, so the first
//! empty slot ends a search.

use std::fmt;
use std::ops::Range;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::checksum;
use super::header::{Header, LOCK_BASE};

/// Size of one catalog record.
pub const ENTRY_SIZE: u64 = 256;
/// The longest entry name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// `state` of a slot that holds no entry.
pub const STATE_EMPTY: u32 = 0;
/// `state` of a slot whose entry is fully written and published, found by name.
pub const STATE_LIVE: u32 = 1;
/// `state` of a slot holding the replacement of a migrated entry: reached only through the
/// `moved_to` word of the record it replaced, never by name.
pub const STATE_SHADOW: u32 = 2;
/// Offset of the static part within the record.
pub const STATIC_OFFSET: u64 = 8;
/// Size of the static part, including its trailing checksum.
pub const STATIC_SIZE: usize = 176;
/// Offset of the live commit-sequence word (`AtomicU64`) within the record.
pub const SEQ_OFFSET: u64 = 192;
/// Offset of the live futex word (`AtomicU32`) within the record.
pub const FUTEX_OFFSET: u64 = 200;
/// Offset of the live waiter count (`AtomicU32`) within the record.
pub const WAITERS_OFFSET: u64 = 204;
/// Offset of the live `moved_to` word (`AtomicU32`) within the record: 0, or 1 + the slot of the
/// record that replaced this one in a migration.
pub const MOVED_TO_OFFSET: u64 = 208;

/// What kind of entry a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// One value of a type.
    Object,
    /// A fixed-length array of values of a type.
    Array,
    /// A fixed-length region of raw bytes: stored like an array of `u8` (one slot, `elem_size` 1),
    /// but opened as bytes ([`Store::bytes`](crate::Store::bytes)) rather than as a typed array.
    Bytes,
}

impl EntryKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            EntryKind::Object => 1,
            EntryKind::Array => 2,
            EntryKind::Bytes => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<EntryKind> {
        match code {
            1 => Some(EntryKind::Object),
            2 => Some(EntryKind::Array),
            3 => Some(EntryKind::Bytes),
            _ => None,
        }
    }

    /// `"object"`, `"array"` or `"bytes"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Object => "object",
            EntryKind::Array => "array",
            EntryKind::Bytes => "bytes",
        }
    }
}

/// The static part of a record, exactly as stored.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawEntry {
    kind: u8,
    slot_count: u8,
    name_len: U16,
    version: U32,
    name: [u8; MAX_NAME_LEN],
    fingerprint: U64,
    elem_size: U64,
    elem_align: U64,
    count: U64,
    data_offset: U64,
    slot_stride: U64,
    schema_offset: U64,
    schema_len: U64,
    lock_offset: U64,
    reserved: [u8; 24],
    checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawEntry>() == STATIC_SIZE);
const _: () = assert!(STATIC_OFFSET as usize + STATIC_SIZE <= SEQ_OFFSET as usize);

/// A record's static part, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name.
    pub name: String,
    /// Object or array.
    pub kind: EntryKind,
    /// 1 for values updated in place, 2 for double-buffered objects.
    pub slot_count: u8,
    /// The layout's declared version.
    pub version: u32,
    /// The layout's fingerprint.
    pub fingerprint: u64,
    /// Size of one element (of the value, for objects).
    pub elem_size: u64,
    /// Alignment of one element.
    pub elem_align: u64,
    /// Number of elements: 1 for objects.
    pub count: u64,
    /// Offset of slot 0.
    pub data_offset: u64,
    /// Distance from slot 0 to slot 1; 0 when there is one slot.
    pub slot_stride: u64,
    /// Offset of the encoded schema.
    pub schema_offset: u64,
    /// Length of the encoded schema.
    pub schema_len: u64,
    /// The byte this entry's range lock uses.
    pub lock_offset: u64,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The checksum does not match the contents.
    BadChecksum,
    /// A field holds an impossible value.
    Invalid(&'static str),
    /// The entry's bytes reach past the end of the store.
    OutOfBounds {
        /// Where the entry's space ends.
        end: u64,
        /// The store's capacity.
        capacity: u64,
    },
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The empty string.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// It contains a NUL or another control character.
    ControlChar,
}

/// Checks an entry name: 1 to [`MAX_NAME_LEN`] bytes of UTF-8, no control characters.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    Ok(())
}

/// The slot where a search for `name` starts in a catalog of `slots` records.
pub fn home_slot(name: &str, slots: u32) -> u32 {
    (checksum(name.as_bytes()) % u64::from(slots)) as u32
}

/// The byte-range lock offset of the entry in `slot`.
pub fn lock_offset_for(slot: u32) -> u64 {
    LOCK_BASE + 1 + u64::from(slot)
}

impl Entry {
    /// Total bytes of data: every slot of an object, or every element of an array or byte region.
    pub fn data_len(&self) -> u64 {
        match self.kind {
            EntryKind::Object => self.slot_stride.max(self.elem_size) * u64::from(self.slot_count),
            EntryKind::Array | EntryKind::Bytes => self.elem_size * self.count,
        }
    }

    /// Encodes the static part, checksum included. The name must have passed [`check_name`].
    pub fn encode(&self) -> [u8; STATIC_SIZE] {
        let mut name = [0u8; MAX_NAME_LEN];
        name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        let mut raw = RawEntry {
            kind: self.kind.code(),
            slot_count: self.slot_count,
            name_len: (self.name.len() as u16).into(),
            version: self.version.into(),
            name,
            fingerprint: self.fingerprint.into(),
            elem_size: self.elem_size.into(),
            elem_align: self.elem_align.into(),
            count: self.count.into(),
            data_offset: self.data_offset.into(),
            slot_stride: self.slot_stride.into(),
            schema_offset: self.schema_offset.into(),
            schema_len: self.schema_len.into(),
            lock_offset: self.lock_offset.into(),
            reserved: [0; 24],
            checksum: 0.into(),
        };
        raw.checksum = checksum(&raw.as_bytes()[..STATIC_SIZE - 8]).into();
        let mut out = [0u8; STATIC_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes the static part of the record in catalog `slot` and checks it against the store's
    /// geometry and `capacity` (see [`Entry::check`]).
    pub fn decode(bytes: &[u8], header: &Header, slot: u32, capacity: u64) -> Result<Entry, EntryError> {
        let raw = bytes
            .get(..STATIC_SIZE)
            .and_then(|b| RawEntry::read_from_bytes(b).ok())
            .ok_or(EntryError::Invalid("record is truncated"))?;
        if raw.checksum.get() != checksum(&raw.as_bytes()[..STATIC_SIZE - 8]) {
            return Err(EntryError::BadChecksum);
        }
        let kind = EntryKind::from_code(raw.kind).ok_or(EntryError::Invalid("unknown entry kind"))?;
        let name_len = usize::from(raw.name_len.get());
        let name = raw
            .name
            .get(..name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .filter(|n| check_name(n).is_ok())
            .ok_or(EntryError::Invalid("entry name is not valid"))?
            .to_owned();
        let entry = Entry {
            name,
            kind,
            slot_count: raw.slot_count,
            version: raw.version.get(),
            fingerprint: raw.fingerprint.get(),
            elem_size: raw.elem_size.get(),
            elem_align: raw.elem_align.get(),
            count: raw.count.get(),
            data_offset: raw.data_offset.get(),
            slot_stride: raw.slot_stride.get(),
            schema_offset: raw.schema_offset.get(),
            schema_len: raw.schema_len.get(),
            lock_offset: raw.lock_offset.get(),
        };
        entry.check(header, slot, capacity)?;
        Ok(entry)
    }

    /// The bytes the entry's data takes, every slot of it: `data_offset .. data_offset +
    /// data_len()`, or `None` if that overflows.
    pub fn data_range(&self) -> Option<Range<u64>> {
        let len = match self.kind {
            EntryKind::Object => self.slot_stride.max(self.elem_size).checked_mul(u64::from(self.slot_count))?,
            EntryKind::Array | EntryKind::Bytes => self.elem_size.checked_mul(self.count)?,
        };
        Some(self.data_offset..self.data_offset.checked_add(len)?)
    }

    /// The bytes the entry's encoded schema takes, or `None` if that overflows.
    pub fn schema_range(&self) -> Option<Range<u64>> {
        Some(self.schema_offset..self.schema_offset.checked_add(self.schema_len)?)
    }

    /// Checks the record on its own, as it sits in catalog `slot` of a store with this `header`
    /// whose first `capacity` bytes are in use. Each rule has its own message:
    ///
    /// - the element alignment is a power of two up to 4096, and divides the element size;
    /// - the slot and element counts fit the kind (an object: 1 or 2 slots and one element; an
    ///   array: 1 slot; a byte region: 1 slot of 1-byte elements);
    /// - two slots do not overlap, each takes whole cache lines, and the second is aligned;
    ///   a single slot has no stride;
    /// - the data starts in the data area, aligned; the schema is not empty, starts in the data
    ///   area, and is at most [`MAX_SCHEMA_LEN`](super::schema::MAX_SCHEMA_LEN) bytes long;
    /// - data and schema end at or before `capacity` ([`EntryError::OutOfBounds`]), and do not
    ///   overlap;
    /// - the lock offset is [`lock_offset_for`] `slot`, a slot of the catalog.
    ///
    /// That records do not overlap one another is checked over the whole catalog, by
    /// [`check_catalog`](super::catalog_check::check_catalog).
    pub fn check(&self, header: &Header, slot: u32, capacity: u64) -> Result<(), EntryError> {
        self.check_shape(header.data_offset, capacity)?;
        if slot >= header.catalog_slots || self.lock_offset != lock_offset_for(slot) {
            return Err(EntryError::Invalid("lock offset is not the one its catalog slot implies"));
        }
        Ok(())
    }

    /// The checks of [`Entry::check`] that do not depend on the format version (all but the lock
    /// offset), for a data area starting at `data_start` in a store whose first `capacity` bytes
    /// are in use.
    pub fn check_shape(&self, data_start: u64, capacity: u64) -> Result<(), EntryError> {
        use EntryError::Invalid;
        if !self.elem_align.is_power_of_two() || self.elem_align > 4096 {
            return Err(Invalid("element alignment is not a power of two up to 4096"));
        }
        if !self.elem_size.is_multiple_of(self.elem_align) {
            return Err(Invalid("element size is not a multiple of its alignment"));
        }
        match (self.kind, self.slot_count) {
            (EntryKind::Object, 1 | 2) if self.count == 1 => {}
            (EntryKind::Array, 1) => {}
            (EntryKind::Bytes, 1) if self.elem_size == 1 => {}
            _ => return Err(Invalid("slot count or element count does not fit the entry kind")),
        }
        if self.slot_count == 2 && self.slot_stride < self.elem_size {
            return Err(Invalid("object slots overlap"));
        }
        if self.slot_count == 2 && !self.slot_stride.is_multiple_of(64) {
            return Err(Invalid("object slots are not whole cache lines"));
        }
        if self.slot_count == 2 && !self.slot_stride.is_multiple_of(self.elem_align) {
            return Err(Invalid("the second object slot is misaligned"));
        }
        if self.slot_count == 1 && self.slot_stride != 0 {
            return Err(Invalid("single-slot entry has a slot stride"));
        }
        if self.data_offset < data_start || !self.data_offset.is_multiple_of(self.elem_align) {
            return Err(Invalid("data lies before the data area or is misaligned"));
        }
        let (Some(data), Some(schema)) = (self.data_range(), self.schema_range()) else {
            return Err(Invalid("entry size overflows"));
        };
        if self.schema_offset < data_start || self.schema_len == 0 {
            return Err(Invalid("schema lies outside the data area"));
        }
        if self.schema_len > super::schema::MAX_SCHEMA_LEN as u64 {
            return Err(Invalid("schema is longer than the format allows"));
        }
        for end in [data.end, schema.end] {
            if end > capacity {
                return Err(EntryError::OutOfBounds { end, capacity });
            }
        }
        if schema.start.max(data.start) < schema.end.min(data.end) {
            return Err(Invalid("schema overlaps the entry's data"));
        }
        Ok(())
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::BadChecksum => f.write_str("its checksum does not match"),
            EntryError::Invalid(detail) => f.write_str(detail),
            EntryError::OutOfBounds { end, capacity } => {
                write!(f, "it ends at byte {end}, past the store's {capacity} bytes")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::schema::MAX_SCHEMA_LEN;

    const CAPACITY: u64 = 1 << 20;
    const SLOT: u32 = 5;

    fn header() -> Header {
        Header::new(64, CAPACITY, 0)
    }

    /// A double-buffered object of 16 bytes in slot [`SLOT`]: data at the start of the data area,
    /// two 64-byte slots, then its schema right after them.
    fn sample() -> Entry {
        let h = header();
        Entry {
            name: "config".into(),
            kind: EntryKind::Object,
            slot_count: 2,
            version: 3,
            fingerprint: 0xdead_beef,
            elem_size: 16,
            elem_align: 8,
            count: 1,
            data_offset: h.data_offset,
            slot_stride: 64,
            schema_offset: h.data_offset + 128,
            schema_len: 40,
            lock_offset: lock_offset_for(SLOT),
        }
    }

    /// An array of `count` `u32`s, in slot [`SLOT`], with its schema right after it.
    fn array(count: u64) -> Entry {
        let h = header();
        Entry {
            kind: EntryKind::Array,
            slot_count: 1,
            slot_stride: 0,
            elem_size: 4,
            elem_align: 4,
            count,
            schema_offset: h.data_offset + (4 * count).next_multiple_of(8).max(8),
            ..sample()
        }
    }

    fn decode(e: &Entry) -> Result<Entry, EntryError> {
        Entry::decode(&e.encode(), &header(), SLOT, CAPACITY)
    }

    /// Asserts that `e` round-trips through encoding and its checks.
    #[track_caller]
    fn accepted(e: &Entry) {
        assert_eq!(decode(e), Ok(e.clone()));
    }

    /// Asserts that `e` is refused with exactly `detail`.
    #[track_caller]
    fn refused(e: &Entry, detail: &'static str) {
        assert_eq!(decode(e), Err(EntryError::Invalid(detail)), "{e:?}");
    }

    #[test]
    fn round_trip() {
        accepted(&sample());
        accepted(&array(10));
        accepted(&array(0));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = sample().encode();
        for i in 0..STATIC_SIZE {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(Entry::decode(&bad, &header(), SLOT, CAPACITY).is_err(), "flip at {i} went unnoticed");
        }
        let short = Entry::decode(&bytes[..STATIC_SIZE - 1], &header(), SLOT, CAPACITY);
        assert_eq!(short, Err(EntryError::Invalid("record is truncated")));
        let mut bad = bytes;
        bad[STATIC_SIZE - 1] ^= 0x80;
        assert_eq!(Entry::decode(&bad, &header(), SLOT, CAPACITY), Err(EntryError::BadChecksum));
    }

    #[test]
    fn encoding_is_pinned() {
        let bytes = sample().encode();
        assert_eq!(bytes[0], 1, "kind");
        assert_eq!(bytes[1], 2, "slot count");
        assert_eq!(&bytes[2..4], &6u16.to_le_bytes(), "name length");
        assert_eq!(&bytes[4..8], &3u32.to_le_bytes(), "version");
        assert_eq!(&bytes[8..14], b"config");
        assert!(bytes[14..72].iter().all(|&b| b == 0), "the name is zero-padded");
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let e = sample();
        assert_eq!(
            [field(72), field(80), field(88), field(96), field(104), field(112), field(120), field(128), field(136)],
            [
                e.fingerprint,
                e.elem_size,
                e.elem_align,
                e.count,
                e.data_offset,
                e.slot_stride,
                e.schema_offset,
                e.schema_len,
                e.lock_offset
            ]
        );
        assert!(bytes[144..168].iter().all(|&b| b == 0), "reserved");
        assert_eq!(field(168), checksum(&bytes[..168]));
        assert_eq!(array(1).encode()[0], 2);
        assert_eq!(lock_offset_for(0), (1 << 62) + 1);
        assert_eq!(lock_offset_for(SLOT), (1 << 62) + 6);
    }

    #[test]
    fn kinds() {
        assert_eq!(EntryKind::Object.as_str(), "object");
        assert_eq!(EntryKind::Array.as_str(), "array");
        assert_eq!(EntryKind::Bytes.as_str(), "bytes");
        for code in [0u8, 4, 255] {
            let mut unknown = sample().encode();
            unknown[0] = code;
            let sum = checksum(&unknown[..STATIC_SIZE - 8]).to_le_bytes();
            unknown[STATIC_SIZE - 8..].copy_from_slice(&sum);
            let decoded = Entry::decode(&unknown, &header(), SLOT, CAPACITY);
            assert_eq!(decoded, Err(EntryError::Invalid("unknown entry kind")), "code {code}");
        }
    }

    #[test]
    fn ranges() {
        let e = sample();
        assert_eq!(e.data_len(), 128);
        assert_eq!(e.data_range(), Some(e.data_offset..e.data_offset + 128));
        assert_eq!(e.schema_range(), Some(e.schema_offset..e.schema_offset + 40));
        let single = Entry { slot_count: 1, slot_stride: 0, ..sample() };
        assert_eq!(single.data_len(), 16);
        assert_eq!(single.data_range(), Some(e.data_offset..e.data_offset + 16));
        assert_eq!(array(10).data_len(), 40);
        assert_eq!(array(10).data_range(), Some(e.data_offset..e.data_offset + 40));
        assert_eq!(Entry { count: u64::MAX, ..array(1) }.data_range(), None);
        assert_eq!(Entry { data_offset: u64::MAX - 39, ..array(10) }.data_range(), None);
        assert_eq!(Entry { data_offset: u64::MAX - 40, ..array(10) }.data_range(), Some(u64::MAX - 40..u64::MAX));
        assert_eq!(Entry { slot_stride: u64::MAX / 2 + 1, ..sample() }.data_range(), None);
        assert_eq!(Entry { schema_len: u64::MAX, ..sample() }.schema_range(), None);
    }

    #[test]
    fn alignment() {
        let detail = "element alignment is not a power of two up to 4096";
        for align in [0, 3, 24, 8192] {
            refused(&Entry { elem_align: align, elem_size: 24576, ..array(1) }, detail);
        }
        // A page is the most there is.
        let h = header();
        let paged = Entry {
            elem_align: 4096,
            elem_size: 4096,
            data_offset: h.data_offset,
            schema_offset: h.data_offset + 4096,
            ..array(1)
        };
        accepted(&paged);
        refused(&Entry { elem_size: 12, ..sample() }, "element size is not a multiple of its alignment");
        accepted(&Entry { elem_size: 24, ..sample() });
    }

    #[test]
    fn slot_and_element_counts_fit_the_kind() {
        let detail = "slot count or element count does not fit the entry kind";
        refused(&Entry { count: 2, ..sample() }, detail);
        refused(&Entry { count: 0, ..sample() }, detail);
        refused(&Entry { slot_count: 3, slot_stride: 64, ..sample() }, detail);
        refused(&Entry { slot_count: 0, slot_stride: 0, ..sample() }, detail);
        refused(&Entry { slot_count: 2, slot_stride: 64, ..array(10) }, detail);
        accepted(&Entry { slot_count: 1, slot_stride: 0, ..sample() });
    }

    #[test]
    fn object_slots() {
        refused(&Entry { slot_stride: 8, ..sample() }, "object slots overlap");
        // Slots may touch: a stride of exactly the value's size is fine.
        let touching = Entry { elem_size: 64, slot_stride: 64, ..sample() };
        accepted(&touching);
        refused(&Entry { slot_stride: 72, ..sample() }, "object slots are not whole cache lines");
        refused(&Entry { slot_stride: 96, ..sample() }, "object slots are not whole cache lines");
        let wide = Entry {
            elem_size: 128,
            elem_align: 128,
            slot_stride: 192,
            schema_offset: sample().data_offset + 384,
            ..sample()
        };
        refused(&wide, "the second object slot is misaligned");
        accepted(&Entry { slot_stride: 256, schema_offset: wide.data_offset + 512, ..wide });
        refused(&Entry { slot_stride: 64, ..array(10) }, "single-slot entry has a slot stride");
        refused(&Entry { slot_count: 1, ..sample() }, "single-slot entry has a slot stride");
    }

    #[test]
    fn data_lies_in_the_data_area_aligned() {
        let detail = "data lies before the data area or is misaligned";
        let start = header().data_offset;
        refused(&Entry { data_offset: start - 64, ..sample() }, detail);
        refused(&Entry { data_offset: 0, ..sample() }, detail);
        refused(&Entry { data_offset: start + 4, ..sample() }, detail);
        accepted(&Entry { data_offset: start + 8, schema_offset: start + 136, ..sample() });
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        let detail = "entry size overflows";
        refused(&Entry { count: u64::MAX / 2, ..array(1) }, detail);
        refused(&Entry { data_offset: u64::MAX - 63, ..sample() }, detail);
        refused(&Entry { schema_len: u64::MAX, ..sample() }, detail);
        refused(&Entry { schema_offset: u64::MAX - 7, ..sample() }, detail);
    }

    #[test]
    fn schema() {
        let start = header().data_offset;
        let detail = "schema lies outside the data area";
        refused(&Entry { schema_offset: start - 8, schema_len: 8, ..sample() }, detail);
        refused(&Entry { schema_offset: 0, ..sample() }, detail);
        refused(&Entry { schema_len: 0, ..sample() }, detail);
        // Before the data, touching it, is fine; so is right after it.
        let moved = Entry { data_offset: start + 64, schema_offset: start, schema_len: 64, ..sample() };
        accepted(&moved);
        let overlap = "schema overlaps the entry's data";
        refused(&Entry { schema_len: 65, ..moved.clone() }, overlap);
        refused(&Entry { schema_offset: start + 120, ..sample() }, overlap);
        refused(&Entry { schema_offset: start + 8, schema_len: 8, ..sample() }, overlap);
        refused(&Entry { schema_offset: start, schema_len: 1000, ..sample() }, overlap);
        // An empty array overlaps nothing, wherever it is.
        accepted(&Entry { data_offset: start + 16, schema_offset: start, schema_len: 64, ..array(0) });
    }

    #[test]
    fn schema_length_is_bounded() {
        let max = MAX_SCHEMA_LEN as u64;
        let h = header();
        let big = |schema_len| Entry { schema_len, ..sample() };
        let capacity = h.data_offset + 128 + max + 1;
        assert_eq!(Entry::decode(&big(max).encode(), &h, SLOT, capacity), Ok(big(max)));
        assert_eq!(
            Entry::decode(&big(max + 1).encode(), &h, SLOT, capacity),
            Err(EntryError::Invalid("schema is longer than the format allows"))
        );
        // Checked before the capacity: a huge schema in a small store says what is wrong with it.
        refused(&big(6 << 30), "schema is longer than the format allows");
    }

    #[test]
    fn entries_end_at_or_before_the_capacity() {
        let e = sample();
        let data_end = e.data_offset + 128;
        let schema_end = e.schema_offset + 40;
        let decode_at = |e: &Entry, capacity| Entry::decode(&e.encode(), &header(), SLOT, capacity);
        assert_eq!(decode_at(&e, schema_end), Ok(e.clone()));
        assert_eq!(
            decode_at(&e, schema_end - 1),
            Err(EntryError::OutOfBounds { end: schema_end, capacity: schema_end - 1 })
        );
        // With the schema before the data, the data's end counts.
        let flipped = Entry { data_offset: e.data_offset + 64, schema_offset: e.data_offset, schema_len: 64, ..e };
        let data_end = data_end + 64;
        assert_eq!(decode_at(&flipped, data_end), Ok(flipped.clone()));
        assert_eq!(
            decode_at(&flipped, data_end - 1),
            Err(EntryError::OutOfBounds { end: data_end, capacity: data_end - 1 })
        );
        let err = decode_at(&flipped, 100).unwrap_err();
        assert_eq!(err.to_string(), format!("it ends at byte {data_end}, past the store's 100 bytes"));
    }

    #[test]
    fn lock_offset_is_the_slots() {
        let detail = "lock offset is not the one its catalog slot implies";
        for lock_offset in [lock_offset_for(SLOT - 1), lock_offset_for(SLOT + 1), LOCK_BASE, 0, u64::MAX] {
            refused(&Entry { lock_offset, ..sample() }, detail);
        }
        // The last slot of the catalog, and one past it.
        let h = header();
        let last = Entry { lock_offset: lock_offset_for(63), ..sample() };
        assert_eq!(Entry::decode(&last.encode(), &h, 63, CAPACITY), Ok(last));
        let past = Entry { lock_offset: lock_offset_for(64), ..sample() };
        assert_eq!(Entry::decode(&past.encode(), &h, 64, CAPACITY), Err(EntryError::Invalid(detail)));
        assert_eq!(EntryError::Invalid(detail).to_string(), detail);
        assert_eq!(EntryError::BadChecksum.to_string(), "its checksum does not match");
    }

    #[test]
    fn byte_regions() {
        let mut e = sample();
        e.kind = EntryKind::Bytes;
        e.slot_count = 1;
        e.slot_stride = 0;
        e.elem_size = 1;
        e.elem_align = 1;
        e.count = 1000;
        e.schema_offset = e.data_offset + 1000;
        accepted(&e);
        assert_eq!(e.data_len(), 1000);
        assert_eq!(e.encode()[0], 3);
        // Bytes are one byte each, in one slot.
        let detail = "slot count or element count does not fit the entry kind";
        refused(&Entry { elem_size: 2, elem_align: 2, ..e.clone() }, detail);
        refused(&Entry { slot_count: 2, slot_stride: 1024, ..e.clone() }, detail);
    }

    #[test]
    fn names() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"x".repeat(65)), Err(NameError::TooLong { len: 65 }));
        assert!(check_name(&"x".repeat(64)).is_ok());
        assert_eq!(check_name("a\0b"), Err(NameError::ControlChar));
        assert!(check_name("données/ü").is_ok());
        // The home slot is FNV-1a-64 of the name, modulo the slot count.
        assert_eq!(home_slot("config", 64), 39);
        assert_eq!(checksum(b"config"), 0x7803_9475_c6a5_0527);
        assert_eq!(home_slot("config", 1), 0);
        let detail = "entry name is not valid";
        let mut bad = sample().encode();
        bad[8] = 0xff;
        let sum = checksum(&bad[..STATIC_SIZE - 8]).to_le_bytes();
        bad[STATIC_SIZE - 8..].copy_from_slice(&sum);
        assert_eq!(Entry::decode(&bad, &header(), SLOT, CAPACITY), Err(EntryError::Invalid(detail)));
    }
}
