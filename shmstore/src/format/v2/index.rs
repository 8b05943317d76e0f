//! The index: an open-addressing table of `(block, hash)` slots that finds an entry's block by
//! name, replaced by a table twice the size when half full.
//!
//! A table lies in the data area, 64-aligned: a 64-byte header (`magic`, `slots`, checksum of the
//! two), then `slots` slots of 16 bytes, each a live `block: AtomicU64` followed by a live
//! `hash: AtomicU64`. A slot's `block` is [`EMPTY`], [`TOMBSTONE`] or a block offset.
//!
//! The magic names where a probe for a hash starts ([`Probe`]): tables written by this build
//! ([`MAGIC`]) start at the top bits of `hash * 0x9e3779b97f4a7c15` ([`home`]); tables of the
//! first v2 builds ([`LEGACY_MAGIC`]) start at the low bits of the hash ([`legacy_home`]), which
//! `hash64` leaves poorly mixed (names that differ in their last characters share few homes),
//! and are still read; they are replaced by [`MAGIC`] tables when they next grow.

use crate::format::checksum::checksum64;

/// The first eight bytes of a table that [`home`] probes (every table this build writes).
pub const MAGIC: [u8; 8] = *b"SHMINDX2";
/// The first eight bytes of a table that [`legacy_home`] probes (written by the first v2 builds;
/// still read).
pub const LEGACY_MAGIC: [u8; 8] = *b"SHMINDEX";
/// The multiplier of [`home`] (2^64 divided by the golden ratio, odd).
const HOME_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Size of the table header.
pub const HEADER_LEN: u64 = 64;
/// Offset, in a table's header, of its live `used` word (`AtomicU64`): the slots that are not
/// empty (live or tombstone), which decides when the table grows ([`must_grow`]). In the
/// reserved bytes after the checksum, outside what the checksum covers; see `docs/format.md`.
pub const USED: u64 = 24;
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

/// Where a probe for `hash` starts in a [`MAGIC`] table of `slots` slots (a power of two): the
/// top `log2(slots)` bits of `hash * HOME_MULTIPLIER`, which depend on every bit of the hash.
pub fn home(hash: u64, slots: u64) -> u64 {
    hash.wrapping_mul(HOME_MULTIPLIER) >> (64 - slots.trailing_zeros())
}

/// Where a probe for `hash` starts in a [`LEGACY_MAGIC`] table of `slots` slots (a power of
/// two): its low bits.
pub fn legacy_home(hash: u64, slots: u64) -> u64 {
    hash & (slots - 1)
}

/// How a table places its slots: which home function its probes start at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// [`home`] ([`MAGIC`]).
    Mixed,
    /// [`legacy_home`] ([`LEGACY_MAGIC`]).
    Legacy,
}

/// A checked table header: its slot count and how its probes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The slot count, a power of two in `MIN_SLOTS..=MAX_SLOTS`.
    pub slots: u64,
    /// The home function of the table.
    pub probe: Probe,
}

impl Table {
    /// Where a probe for `hash` starts in this table.
    #[inline]
    pub fn home(&self, hash: u64) -> u64 {
        match self.probe {
            Probe::Mixed => home(hash, self.slots),
            Probe::Legacy => legacy_home(hash, self.slots),
        }
    }
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

/// Encodes a table header for `slots` slots, probed by [`home`].
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
            IndexError::BadMagic => f.write_str("the index table has no SHMINDX2 or SHMINDEX magic"),
            IndexError::BadChecksum => f.write_str("the index table header's checksum does not match"),
            IndexError::BadSlots(n) => write!(f, "the index table claims {n} slots"),
            IndexError::OutOfBounds => f.write_str("the index table lies outside the data area"),
        }
    }
}

/// Decodes and checks the header of the table at `at` (its first 64 bytes are `bytes`) in a
/// store of `capacity` bytes: returns its slot count.
pub fn decode_header(bytes: &[u8], at: u64, capacity: u64) -> Result<u64, IndexError> {
    decode_table(bytes, at, capacity).map(|table| table.slots)
}

/// Decodes and checks the header of the table at `at` (its first 64 bytes are `bytes`) in a
/// store of `capacity` bytes: returns its slot count and home function.
pub fn decode_table(bytes: &[u8], at: u64, capacity: u64) -> Result<Table, IndexError> {
    let bytes = bytes.get(..HEADER_LEN as usize).ok_or(IndexError::OutOfBounds)?;
    let probe = match bytes[..8].try_into().expect("8 bytes") {
        MAGIC => Probe::Mixed,
        LEGACY_MAGIC => Probe::Legacy,
        _ => return Err(IndexError::BadMagic),
    };
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
    Ok(Table { slots, probe })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = encode_header(128);
        assert_eq!(decode_header(&h, 4096, 1 << 20), Ok(128));
        assert_eq!(decode_table(&h, 4096, 1 << 20), Ok(Table { slots: 128, probe: Probe::Mixed }));
        assert_eq!(&h[..8], b"SHMINDX2");
        // A table of the first v2 builds still decodes, with its own home function.
        let mut legacy = h;
        legacy[..8].copy_from_slice(&LEGACY_MAGIC);
        let sum = checksum64(&legacy[..16]);
        legacy[16..24].copy_from_slice(&sum.to_le_bytes());
        let table = decode_table(&legacy, 4096, 1 << 20).unwrap();
        assert_eq!(table, Table { slots: 128, probe: Probe::Legacy });
        assert_eq!(table.home(0xffff_ffff_ffff_ff41), 65);
        assert_eq!(
            decode_table(&h, 4096, 1 << 20).unwrap().home(0xffff_ffff_ffff_ff41),
            home(0xffff_ffff_ffff_ff41, 128)
        );
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
        assert_eq!(legacy_home(0xffff_ffff_ffff_ff41, 64), 1);
        assert_eq!(home(0, 64), 0);
        assert_eq!(home(1, 64), HOME_MULTIPLIER >> 58);
        assert_eq!(home(u64::MAX, 1 << 26), HOME_MULTIPLIER.wrapping_neg() >> 38);
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

    /// Names that differ only in their last characters (`entry-00000`, `entry-00001`, ...) must
    /// spread over the table: the mean probe length of an insert into a table at its growth
    /// point stays near 1. (With the legacy home, ten such names share one home and 10,000 of
    /// them average 18 probes.)
    #[test]
    fn similar_names_spread_over_the_table() {
        use crate::format::checksum::hash64;
        for (n, slots) in [(10u64, 64u64), (1_000, 4096), (10_000, 32_768)] {
            let mut used = vec![false; slots as usize];
            let (mut probes, mut longest) = (0u64, 0u64);
            for k in 0..n {
                let mut i = home(hash64(&format!("entry-{k:05}")), slots);
                let mut p = 1;
                while used[i as usize] {
                    i = (i + 1) & (slots - 1);
                    p += 1;
                }
                used[i as usize] = true;
                probes += p;
                longest = longest.max(p);
            }
            assert!(probes * 2 <= n * 3, "{n} names in {slots} slots: {probes} probes");
            assert!(longest <= 16, "{n} names in {slots} slots: a probe of {longest}");
        }
    }
}
