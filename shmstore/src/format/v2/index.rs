//! The index: an open-addressing table of `(block, hash)` slots that finds an entry's block by
//! name, replaced by a table twice the size when half full.
//!
//! A table lies in the data area, 64-aligned: a 64-byte header (`magic`, `slots`, checksum of the
//! two), then `slots` slots of 16 bytes, each a live `block: AtomicU64` followed by a live
//! `hash: AtomicU64`. A slot's `block` is [`EMPTY`], [`TOMBSTONE`] or a block offset.

use crate::format::checksum::checksum64;

/// The table's first eight bytes.
pub const MAGIC: [u8; 8] = *b"SHMINDEX";
/// Size of the table header.
pub const HEADER_LEN: u64 = 64;
/// Size of one slot.
pub const SLOT_LEN: u64 = 16;
/// Offset of a slot's `block` word within the slot.
pub const SLOT_BLOCK: u64 = 0;
/// Offset of a slot's `hash` word within the slot.
pub const SLOT_HASH: u64 = 8;
/// The smallest table (and the first one of every store).
pub const MIN_SLOTS: u64 = 64;
/// The largest table.
pub const MAX_SLOTS: u64 = 1 << 26;
/// `block` of a slot never used: ends a probe.
pub const EMPTY: u64 = 0;
/// `block` of a slot whose entry was removed or renamed away: a probe goes on past it.
pub const TOMBSTONE: u64 = 1;

/// Bytes a table of `slots` slots takes.
pub fn table_len(slots: u64) -> u64 {
    HEADER_LEN + SLOT_LEN * slots
}

/// Offset of slot `i` within a table.
pub fn slot_offset(i: u64) -> u64 {
    HEADER_LEN + SLOT_LEN * i
}

/// Where a probe for `hash` starts in a table of `slots` slots (a power of two).
pub fn home(hash: u64, slots: u64) -> u64 {
    hash & (slots - 1)
}

/// Whether a table of `slots` slots with `used` live and tombstone slots must be replaced before
/// one more slot is used: when it would then be more than half full.
pub fn must_grow(used: u64, slots: u64) -> bool {
    (used + 1) * 2 > slots
}

/// The slot count of the table that replaces a full one holding `live` entries: twice the live
/// count (plus the one being added), rounded up to a power of two, at least [`MIN_SLOTS`]; `None`
/// past [`MAX_SLOTS`].
pub fn grown_slots(live: u64) -> Option<u64> {
    let want = (live + 1).checked_mul(4)?.checked_next_power_of_two()?.max(MIN_SLOTS);
    (want <= MAX_SLOTS).then_some(want)
}

/// Encodes a table header for `slots` slots.
pub fn encode_header(slots: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&slots.to_le_bytes());
    let sum = checksum64(&out[..16]);
    out[16..24].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Why a table header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexError {
    /// Not an index table's magic.
    BadMagic,
    /// The checksum does not match.
    BadChecksum,
    /// The slot count is not a power of two in `MIN_SLOTS..=MAX_SLOTS`.
    BadSlots(u64),
    /// The table does not fit in `[data_offset, capacity)` or is misaligned.
    OutOfBounds,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::BadMagic => f.write_str("the index table has no SHMINDEX magic"),
            IndexError::BadChecksum => f.write_str("the index table header's checksum does not match"),
            IndexError::BadSlots(n) => write!(f, "the index table claims {n} slots"),
            IndexError::OutOfBounds => f.write_str("the index table lies outside the data area"),
        }
    }
}

/// Decodes and checks the header of the table at `at` (its first 64 bytes are `bytes`) in a
/// store of `capacity` bytes: returns its slot count.
pub fn decode_header(bytes: &[u8], at: u64, capacity: u64) -> Result<u64, IndexError> {
    let bytes = bytes.get(..HEADER_LEN as usize).ok_or(IndexError::OutOfBounds)?;
    if bytes[..8] != MAGIC {
        return Err(IndexError::BadMagic);
    }
    let stored = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if stored != checksum64(&bytes[..16]) {
        return Err(IndexError::BadChecksum);
    }
    let slots = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if !slots.is_power_of_two() || !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
        return Err(IndexError::BadSlots(slots));
    }
    if at < super::header::DATA_OFFSET
        || !at.is_multiple_of(64)
        || at.checked_add(table_len(slots)).is_none_or(|end| end > capacity)
    {
        return Err(IndexError::OutOfBounds);
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = encode_header(128);
        assert_eq!(decode_header(&h, 4096, 1 << 20), Ok(128));
        assert_eq!(&h[..8], b"SHMINDEX");
        assert!(h[24..].iter().all(|&b| b == 0));
        for i in 0..24 {
            let mut bad = h;
            bad[i] ^= 2;
            assert!(decode_header(&bad, 4096, 1 << 20).is_err(), "flip at {i}");
        }
        let fix = |slots: u64| encode_header(slots);
        assert_eq!(decode_header(&fix(63), 4096, 1 << 30), Err(IndexError::BadSlots(63)));
        assert_eq!(decode_header(&fix(32), 4096, 1 << 30), Err(IndexError::BadSlots(32)));
        assert_eq!(decode_header(&fix(1 << 27), 4096, 1 << 40), Err(IndexError::BadSlots(1 << 27)));
        assert_eq!(decode_header(&fix(1 << 26), 4096, 1 << 40), Ok(1 << 26));
        assert_eq!(decode_header(&h, 4032, 1 << 20), Err(IndexError::OutOfBounds));
        assert_eq!(decode_header(&h, 4100, 1 << 20), Err(IndexError::OutOfBounds));
        assert_eq!(decode_header(&h, 4096, 4096 + table_len(128) - 1), Err(IndexError::OutOfBounds));
        assert_eq!(decode_header(&h, u64::MAX - 63, u64::MAX), Err(IndexError::OutOfBounds));
        assert_eq!(decode_header(&h[..63], 4096, 1 << 20), Err(IndexError::OutOfBounds));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad, 4096, 1 << 20), Err(IndexError::BadMagic));
    }

    #[test]
    fn geometry_and_growth() {
        assert_eq!(table_len(64), 1088);
        assert_eq!(slot_offset(3), 112);
        assert_eq!(home(0xffff_ffff_ffff_ff41, 64), 1);
        assert!(!must_grow(31, 64));
        assert!(must_grow(32, 64));
        assert_eq!(grown_slots(0), Some(64));
        assert_eq!(grown_slots(32), Some(256));
        assert_eq!(grown_slots(1 << 24), None);
        // A grown table is at most a quarter full, so it takes many inserts before the next growth.
        for live in [0u64, 10, 31, 1000, 100_000] {
            let slots = grown_slots(live).unwrap();
            assert!((live + 1) * 4 <= slots, "{live}");
        }
    }
}
