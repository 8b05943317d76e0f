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
    fn code(self) -> u8 {
        match self {
            EntryKind::Object => 1,
            EntryKind::Array => 2,
            EntryKind::Bytes => 3,
        }
    }

    fn from_code(code: u8) -> Option<EntryKind> {
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

    /// Decodes a static part and checks it against the store's geometry and `capacity`.
    pub fn decode(bytes: &[u8], header: &Header, capacity: u64) -> Result<Entry, EntryError> {
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
        entry.check(header, capacity)?;
        Ok(entry)
    }

    fn check(&self, header: &Header, capacity: u64) -> Result<(), EntryError> {
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
        if self.slot_count == 1 && self.slot_stride != 0 {
            return Err(Invalid("single-slot entry has a slot stride"));
        }
        if self.data_offset < header.data_offset || !self.data_offset.is_multiple_of(self.elem_align) {
            return Err(Invalid("data lies before the data area or is misaligned"));
        }
        let data_len = match self.kind {
            EntryKind::Object => self.slot_stride.max(self.elem_size).checked_mul(u64::from(self.slot_count)),
            EntryKind::Array | EntryKind::Bytes => self.elem_size.checked_mul(self.count),
        };
        let data_end = data_len.and_then(|len| self.data_offset.checked_add(len));
        let schema_end = self.schema_offset.checked_add(self.schema_len);
        let (Some(data_end), Some(schema_end)) = (data_end, schema_end) else {
            return Err(Invalid("entry size overflows"));
        };
        if self.schema_offset < header.data_offset || self.schema_len == 0 {
            return Err(Invalid("schema lies outside the data area"));
        }
        for end in [data_end, schema_end] {
            if end > capacity {
                return Err(EntryError::OutOfBounds { end, capacity });
            }
        }
        if self.lock_offset <= LOCK_BASE || self.lock_offset > LOCK_BASE + u64::from(header.catalog_slots) {
            return Err(Invalid("lock offset is outside the lock area"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(64, 1 << 20, 0)
    }

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
            lock_offset: lock_offset_for(5),
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode(), &header(), 1 << 20), Ok(e));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = sample().encode();
        for i in 0..STATIC_SIZE {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(Entry::decode(&bad, &header(), 1 << 20).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn bounds_are_checked() {
        let mut e = sample();
        e.kind = EntryKind::Array;
        e.slot_count = 1;
        e.slot_stride = 0;
        e.count = u64::MAX / 2;
        assert_eq!(Entry::decode(&e.encode(), &header(), 1 << 20), Err(EntryError::Invalid("entry size overflows")));
        e.count = 1 << 20;
        assert!(matches!(Entry::decode(&e.encode(), &header(), 1 << 20), Err(EntryError::OutOfBounds { .. })));
        let mut e = sample();
        e.data_offset = 8;
        assert!(Entry::decode(&e.encode(), &header(), 1 << 20).is_err());
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
        assert_eq!(Entry::decode(&e.encode(), &header(), 1 << 20), Ok(e.clone()));
        assert_eq!(e.data_len(), 1000);
        assert_eq!(e.encode()[0], 3);
        assert_eq!(EntryKind::Bytes.as_str(), "bytes");
        // Bytes are one byte each, in one slot.
        let refused = Err(EntryError::Invalid("slot count or element count does not fit the entry kind"));
        let mut wide = e.clone();
        (wide.elem_size, wide.elem_align) = (2, 2);
        assert_eq!(Entry::decode(&wide.encode(), &header(), 1 << 20), refused);
        let mut two_slots = e.clone();
        (two_slots.slot_count, two_slots.slot_stride) = (2, 1000);
        assert_eq!(Entry::decode(&two_slots.encode(), &header(), 1 << 20), refused);
        let mut unknown = e.encode();
        unknown[0] = 4;
        let sum = checksum(&unknown[..STATIC_SIZE - 8]).to_le_bytes();
        unknown[STATIC_SIZE - 8..].copy_from_slice(&sum);
        assert_eq!(Entry::decode(&unknown, &header(), 1 << 20), Err(EntryError::Invalid("unknown entry kind")));
    }

    #[test]
    fn names() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"x".repeat(65)), Err(NameError::TooLong { len: 65 }));
        assert!(check_name(&"x".repeat(64)).is_ok());
        assert_eq!(check_name("a\0b"), Err(NameError::ControlChar));
        assert!(check_name("données/ü").is_ok());
        assert!(home_slot("config", 64) < 64);
    }
}
