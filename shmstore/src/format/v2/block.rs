//! Entry blocks: one 384-byte, 64-aligned block per entry, holding its live words (state,
//! serial, commit sequence, futex, forwarding word, lock words) and its checksummed static part.
//!
//! Blocks never move and are only ever reused as blocks, so a handle may keep pointers to the
//! live words of its block for as long as the store is mapped: when the entry is removed or
//! replaced, the handle sees `state` or `serial` change.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::format::checksum::checksum64;
use crate::format::entry::{check_name, Entry, EntryError, EntryKind, MAX_NAME_LEN};

/// Size of a block.
pub const BLOCK_SIZE: u64 = 384;
/// Alignment of a block.
pub const BLOCK_ALIGN: u64 = 64;

/// Live `state` (`AtomicU32`): [`STATE_LIVE`], [`STATE_SHADOW`], [`STATE_MOVED`], [`STATE_REMOVED`]
/// (0 while the block is being written or is free).
pub const STATE: u64 = 0;
/// Live copy of the static `serial` (`AtomicU64`): handles compare it to detect reuse.
pub const SERIAL: u64 = 8;
/// Commit sequence (`AtomicU64`): the active slot of a double-buffered object is `seq & 1`.
pub const SEQ: u64 = 16;
/// Change-notification futex word (`AtomicU32`).
pub const FUTEX: u64 = 24;
/// Processes waiting on [`FUTEX`] (`AtomicU32`).
pub const WAITERS: u64 = 28;
/// Offset of the block that replaced this one (`AtomicU64`), or 0.
pub const MOVED_TO: u64 = 32;
/// Robust mode: the `lock_epoch` at which [`MUTEX`] was last initialised (`AtomicU64`).
pub const LOCK_EPOCH: u64 = 40;
/// 1 after a writer of an in-place entry died holding its lock (`AtomicU32`).
pub const INTERRUPTED: u64 = 48;
/// Robust mode: the entry's `pthread_mutex_t` (64 bytes of room).
pub const MUTEX: u64 = 64;
/// Room for [`MUTEX`].
pub const MUTEX_SIZE: u64 = 64;
/// Robust mode: the 128-bit reader bitmap (two `AtomicU64`).
pub const READERS: u64 = 128;
/// Robust mode: 1 while a writer holds or waits for an in-place entry (`AtomicU32`).
pub const WRITER: u64 = 144;
/// Offset of the static part.
pub const STATIC_OFFSET: u64 = 192;
/// Size of the static part, checksum included.
pub const STATIC_SIZE: usize = 192;

/// `state` of a block that is free or not yet published.
pub const STATE_FREE: u32 = 0;
/// `state` of a published entry, found by name.
pub const STATE_LIVE: u32 = 1;
/// `state` of a replacement that is reachable only through another block's `moved_to`.
pub const STATE_SHADOW: u32 = 2;
/// `state` of a block replaced by the block in its `moved_to` (migration, rename, resize).
pub const STATE_MOVED: u32 = 3;
/// `state` of a removed entry.
pub const STATE_REMOVED: u32 = 4;

const _: () = assert!(STATIC_OFFSET + STATIC_SIZE as u64 == BLOCK_SIZE);

/// The static part, exactly as stored.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawBlock {
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
    serial: U64,
    reserved: [u8; 40],
    checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawBlock>() == STATIC_SIZE);

/// A block's static part, decoded: the entry (whose `lock_offset` is the block's derived OFD lock
/// byte) and its serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The entry's fields, as version 1 names them.
    pub entry: Entry,
    /// The serial the entry got at creation: never 0, never reused within a store.
    pub serial: u64,
}

/// Encodes the static part of the block of `entry` (whose name passed [`check_name`]) with
/// `serial`. `entry.lock_offset` is not stored: it is derived from the block's offset.
pub fn encode(entry: &Entry, serial: u64) -> [u8; STATIC_SIZE] {
    let mut name = [0u8; MAX_NAME_LEN];
    name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
    let mut raw = RawBlock {
        kind: entry.kind.code(),
        slot_count: entry.slot_count,
        name_len: (entry.name.len() as u16).into(),
        version: entry.version.into(),
        name,
        fingerprint: entry.fingerprint.into(),
        elem_size: entry.elem_size.into(),
        elem_align: entry.elem_align.into(),
        count: entry.count.into(),
        data_offset: entry.data_offset.into(),
        slot_stride: entry.slot_stride.into(),
        schema_offset: entry.schema_offset.into(),
        schema_len: entry.schema_len.into(),
        serial: serial.into(),
        reserved: [0; 40],
        checksum: 0.into(),
    };
    raw.checksum = checksum64(&raw.as_bytes()[..STATIC_SIZE - 8]).into();
    let mut out = [0u8; STATIC_SIZE];
    out.copy_from_slice(raw.as_bytes());
    out
}

/// Whether `at` can be a block in a store of `capacity` bytes: 64-aligned, inside the data area.
pub fn block_in_bounds(at: u64, capacity: u64) -> bool {
    at >= super::header::DATA_OFFSET
        && at.is_multiple_of(BLOCK_ALIGN)
        && at.checked_add(BLOCK_SIZE).is_some_and(|end| end <= capacity)
}

/// Decodes and checks the static part (`bytes`) of the block at `at` in a store of `capacity`
/// bytes: the block lies in the data area, 64-aligned; checksum; kind; name; serial; and every
/// check of [`Entry::check_shape`] (sizes, alignment, data and schema inside the data area and not
/// overlapping each other); and neither overlaps the block itself. That blocks do not overlap
/// *each other* is checked by the reader's interval set.
pub fn decode(bytes: &[u8], at: u64, capacity: u64) -> Result<Block, EntryError> {
    if !block_in_bounds(at, capacity) {
        return Err(EntryError::Invalid("entry block lies outside the data area or is misaligned"));
    }
    let raw = bytes
        .get(..STATIC_SIZE)
        .and_then(|b| RawBlock::read_from_bytes(b).ok())
        .ok_or(EntryError::Invalid("record is truncated"))?;
    if raw.checksum.get() != checksum64(&raw.as_bytes()[..STATIC_SIZE - 8]) {
        return Err(EntryError::BadChecksum);
    }
    let kind = EntryKind::from_code(raw.kind).ok_or(EntryError::Invalid("unknown entry kind"))?;
    let name_len = usize::from(raw.name_len.get());
    let name = raw
        .name
        .get(..name_len)
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|n| check_name(n).is_ok())
        .ok_or(EntryError::Invalid("entry name is not valid"))?;
    if raw.name[name_len..].iter().any(|&b| b != 0) {
        return Err(EntryError::Invalid("entry name is not zero-padded"));
    }
    if raw.serial.get() == 0 {
        return Err(EntryError::Invalid("entry serial is 0"));
    }
    let entry = Entry {
        name: name.to_owned(),
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
        lock_offset: super::header::entry_lock_byte(at),
    };
    entry.check_shape(super::header::DATA_OFFSET, capacity)?;
    let block = at..at + BLOCK_SIZE;
    for range in [entry.data_range(), entry.schema_range()].into_iter().flatten() {
        if !range.is_empty() && range.start < block.end && block.start < range.end {
            return Err(EntryError::Invalid("entry data or schema overlaps its own block"));
        }
    }
    Ok(Block { entry, serial: raw.serial.get() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AT: u64 = 8192;
    const CAPACITY: u64 = 1 << 20;

    fn sample() -> Entry {
        Entry {
            name: "config".into(),
            kind: EntryKind::Object,
            slot_count: 2,
            version: 3,
            fingerprint: 0xdead_beef,
            elem_size: 16,
            elem_align: 8,
            count: 1,
            data_offset: 4096,
            slot_stride: 64,
            schema_offset: 4096 + 128,
            schema_len: 40,
            lock_offset: super::super::header::entry_lock_byte(AT),
        }
    }

    fn decode_at(e: &Entry, serial: u64) -> Result<Block, EntryError> {
        decode(&encode(e, serial), AT, CAPACITY)
    }

    #[test]
    fn round_trip_and_pinned_layout() {
        let e = sample();
        assert_eq!(decode_at(&e, 5), Ok(Block { entry: e.clone(), serial: 5 }));
        let bytes = encode(&e, 5);
        assert_eq!((bytes[0], bytes[1]), (1, 2));
        assert_eq!(&bytes[2..4], &6u16.to_le_bytes());
        assert_eq!(&bytes[8..14], b"config");
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(field(72), e.fingerprint);
        assert_eq!(field(104), e.data_offset);
        assert_eq!(field(136), 5, "serial at block offset 328");
        assert!(bytes[144..184].iter().all(|&b| b == 0));
        assert_eq!(field(184), checksum64(&bytes[..184]));
        // The live words' offsets, as the specification names them.
        assert_eq!(
            [STATE, SERIAL, SEQ, MOVED_TO, LOCK_EPOCH, MUTEX, READERS, WRITER],
            [0, 8, 16, 32, 40, 64, 128, 144]
        );
        assert_eq!([FUTEX, WAITERS, INTERRUPTED], [24, 28, 48]);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = encode(&sample(), 5);
        for i in 0..STATIC_SIZE {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(decode(&bad, AT, CAPACITY).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn each_check_refuses() {
        let invalid = |e: &Entry, serial, detail| assert_eq!(decode_at(e, serial), Err(EntryError::Invalid(detail)));
        invalid(&sample(), 0, "entry serial is 0");
        let e = sample();
        for at in [0, 4032, AT + 8, CAPACITY - 320, u64::MAX - 63] {
            assert_eq!(
                decode(&encode(&e, 1), at, CAPACITY),
                Err(EntryError::Invalid("entry block lies outside the data area or is misaligned")),
                "{at}"
            );
        }
        invalid(
            &Entry { data_offset: AT, schema_offset: AT + 512, ..sample() },
            1,
            "entry data or schema overlaps its own block",
        );
        invalid(&Entry { schema_offset: AT + 380, ..sample() }, 1, "entry data or schema overlaps its own block");
        invalid(&Entry { count: 2, ..sample() }, 1, "slot count or element count does not fit the entry kind");
        invalid(&Entry { data_offset: 0, ..sample() }, 1, "data lies before the data area or is misaligned");
        assert_eq!(
            decode(&encode(&Entry { data_offset: CAPACITY, schema_offset: 4096, ..sample() }, 1), AT, CAPACITY),
            Err(EntryError::OutOfBounds { end: CAPACITY + 128, capacity: CAPACITY })
        );
        // An unknown kind and a bad name, with a valid checksum.
        let fix = |mut b: [u8; STATIC_SIZE]| {
            let sum = checksum64(&b[..STATIC_SIZE - 8]);
            b[STATIC_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
            b
        };
        let mut bad = encode(&sample(), 1);
        bad[0] = 9;
        assert_eq!(decode(&fix(bad), AT, CAPACITY), Err(EntryError::Invalid("unknown entry kind")));
        let mut bad = encode(&sample(), 1);
        bad[8] = 0;
        assert_eq!(decode(&fix(bad), AT, CAPACITY), Err(EntryError::Invalid("entry name is not valid")));
        let mut bad = encode(&sample(), 1);
        bad[20] = b'x';
        assert_eq!(decode(&fix(bad), AT, CAPACITY), Err(EntryError::Invalid("entry name is not zero-padded")));
        let mut bad = encode(&sample(), 1);
        bad[2] = 65;
        assert_eq!(decode(&fix(bad), AT, CAPACITY), Err(EntryError::Invalid("entry name is not valid")));
        assert_eq!(decode(&encode(&sample(), 1)[..100], AT, CAPACITY), Err(EntryError::Invalid("record is truncated")));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..STATIC_SIZE + 8), at in any::<u64>(), capacity in any::<u64>()) {
            let _ = decode(&bytes, at, capacity);
        }

        #[test]
        fn arrays_round_trip(count in 0u64..10_000, serial in 1u64..u64::MAX, name in "[a-z]{1,64}") {
            let e = Entry {
                name,
                kind: EntryKind::Array,
                slot_count: 1,
                slot_stride: 0,
                elem_size: 4,
                elem_align: 4,
                count,
                data_offset: 16384,
                schema_offset: (16384 + 4 * count).next_multiple_of(8).max(16392),
                ..sample()
            };
            prop_assert_eq!(decode(&encode(&e, serial), AT, CAPACITY), Ok(Block { entry: e, serial }));
        }
    }
}
