//! Free-extent headers: the first 64 bytes of every extent on the free lists of a version-2
//! store (data extents, and entry blocks of [`BLOCK_SIZE`](super::block::BLOCK_SIZE) bytes).
//!
//! `magic "SHMFREE\0"`, `len: u64` (the whole extent, header included, a multiple of 64),
//! `next: u64` (the next free extent, 0 at the end), checksum64 of those 24 bytes.

use crate::format::checksum::checksum64;

/// The header's first eight bytes.
pub const MAGIC: [u8; 8] = *b"SHMFREE\0";
/// Size of the header, and the unit of every free extent.
pub const HEADER_LEN: u64 = 64;

/// A free extent's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeExtent {
    /// Bytes of the extent, header included.
    pub len: u64,
    /// The next free extent on the list, 0 at the end.
    pub next: u64,
}

/// Why a free-extent header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// No `SHMFREE` magic.
    BadMagic,
    /// The checksum does not match.
    BadChecksum,
    /// The extent is misaligned, empty, not whole 64-byte units, or outside `[data_offset,
    /// capacity)`.
    OutOfBounds,
    /// `next` is neither 0 nor a 64-aligned offset in the data area.
    BadNext,
}

impl std::fmt::Display for FreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FreeError::BadMagic => "a free-list extent has no SHMFREE magic",
            FreeError::BadChecksum => "a free-list extent's checksum does not match",
            FreeError::OutOfBounds => "a free-list extent lies outside the data area",
            FreeError::BadNext => "a free-list extent links to an impossible offset",
        })
    }
}

impl FreeExtent {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..24].copy_from_slice(&self.next.to_le_bytes());
        let sum = checksum64(&out[..24]);
        out[24..32].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes and checks the header of the extent at `at` in a store of `capacity` bytes.
    pub fn decode(bytes: &[u8], at: u64, capacity: u64) -> Result<FreeExtent, FreeError> {
        let bytes = bytes.get(..32).ok_or(FreeError::OutOfBounds)?;
        if bytes[..8] != MAGIC {
            return Err(FreeError::BadMagic);
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        if word(24) != checksum64(&bytes[..24]) {
            return Err(FreeError::BadChecksum);
        }
        let extent = FreeExtent { len: word(8), next: word(16) };
        let data = super::header::DATA_OFFSET;
        if at < data
            || !at.is_multiple_of(64)
            || extent.len == 0
            || !extent.len.is_multiple_of(64)
            || at.checked_add(extent.len).is_none_or(|end| end > capacity)
        {
            return Err(FreeError::OutOfBounds);
        }
        if extent.next != 0 && (extent.next < data || !extent.next.is_multiple_of(64) || extent.next >= capacity) {
            return Err(FreeError::BadNext);
        }
        Ok(extent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let e = FreeExtent { len: 4096, next: 8192 };
        let bytes = e.encode();
        assert_eq!(FreeExtent::decode(&bytes, 4096, 1 << 20), Ok(e));
        assert_eq!(&bytes[..8], b"SHMFREE\0");
        for i in 0..32 {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(FreeExtent::decode(&bad, 4096, 1 << 20).is_err(), "flip at {i}");
        }
        let at = |e: FreeExtent, at, cap| FreeExtent::decode(&e.encode(), at, cap);
        assert_eq!(at(e, 0, 1 << 20), Err(FreeError::OutOfBounds));
        assert_eq!(at(e, 4160 + 8, 1 << 20), Err(FreeError::OutOfBounds));
        assert_eq!(at(FreeExtent { len: 0, next: 0 }, 4096, 1 << 20), Err(FreeError::OutOfBounds));
        assert_eq!(at(FreeExtent { len: 100, next: 0 }, 4096, 1 << 20), Err(FreeError::OutOfBounds));
        assert_eq!(at(e, 4096, 8191), Err(FreeError::OutOfBounds));
        assert_eq!(at(FreeExtent { len: u64::MAX - 63, next: 0 }, 4096, u64::MAX), Err(FreeError::OutOfBounds));
        assert_eq!(at(FreeExtent { len: 64, next: 100 }, 4096, 1 << 20), Err(FreeError::BadNext));
        assert_eq!(at(FreeExtent { len: 64, next: 64 }, 4096, 1 << 20), Err(FreeError::BadNext));
        assert_eq!(at(FreeExtent { len: 64, next: 1 << 20 }, 4096, 1 << 20), Err(FreeError::BadNext));
        assert_eq!(at(FreeExtent { len: 64, next: 0 }, 4096, 1 << 20), Ok(FreeExtent { len: 64, next: 0 }));
        let mut bad = bytes;
        bad[0] = 0;
        assert_eq!(FreeExtent::decode(&bad, 4096, 1 << 20), Err(FreeError::BadMagic));
        assert_eq!(FreeExtent::decode(&bytes[..31], 4096, 1 << 20), Err(FreeError::OutOfBounds));
    }
}
