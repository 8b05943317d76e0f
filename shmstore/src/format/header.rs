//! The store header: the first [`HEADER_SIZE`] bytes of every store file.
//!
//! The header has two parts:
//! - a **static part** (bytes `0..STATIC_SIZE`), written once when the file is created and covered
//!   by a checksum; all integers little-endian;
//! - a **live part** (from [`LIVE_OFFSET`]), a few native-endian atomic words that change while
//!   the store is in use (capacity, growth generation, allocation end). They are not checksummed,
//!   because a process can die between any two stores; instead every reader bounds-checks them.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::checksum;

/// The file's first eight bytes.
pub const MAGIC: [u8; 8] = *b"SHMSTORE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// A `u32` written in the machine's own byte order: it tells which byte order the data uses.
pub const ENDIAN_MARKER: u32 = 0x0102_0304;
/// Total size of the header, static and live parts.
pub const HEADER_SIZE: u64 = 512;
/// Size of the checksummed static part, including its trailing checksum.
pub const STATIC_SIZE: usize = 128;
/// Offset of the live part.
pub const LIVE_OFFSET: u64 = 128;
/// Offset of the live `capacity` word (`AtomicU64`): how many bytes of the file the store uses.
pub const CAPACITY_OFFSET: u64 = LIVE_OFFSET;
/// Offset of the live growth `generation` word (`AtomicU64`), bumped whenever capacity grows.
pub const GENERATION_OFFSET: u64 = LIVE_OFFSET + 8;
/// Offset of the live `alloc_end` word (`AtomicU64`): the end of allocated data space. Space at
/// and above it is untouched (zero).
pub const ALLOC_END_OFFSET: u64 = LIVE_OFFSET + 16;
/// Offset of the live `entry_count` word (`AtomicU32`): how many entries are published.
pub const ENTRY_COUNT_OFFSET: u64 = LIVE_OFFSET + 24;

/// Where the byte-range locks live: far beyond any real file size (locks need no data behind them).
/// The catalog lock is at `LOCK_BASE`; entry `i` locks byte `LOCK_BASE + 1 + i`.
pub const LOCK_BASE: u64 = 1 << 62;

/// The largest catalog this format allows.
pub const MAX_SLOTS: u32 = 1 << 20;

/// The static part of the header, exactly as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: U32,
    /// [`ENDIAN_MARKER`] in the writer's native byte order.
    pub endian_marker: [u8; 4],
    /// [`HEADER_SIZE`].
    pub header_size: U32,
    /// Reserved flags, zero in version 1.
    pub flags: U32,
    /// Offset of the catalog.
    pub catalog_offset: U64,
    /// Number of catalog slots (the maximum number of entries).
    pub catalog_slots: U32,
    /// Size of one catalog record.
    pub entry_size: U32,
    /// Offset where the data area starts.
    pub data_offset: U64,
    /// The capacity the file was created with.
    pub initial_capacity: U64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_nanos: U64,
    /// Reserved for later format features; zero.
    pub reserved: [u8; 56],
    /// [`checksum`](fn@super::checksum) of all the bytes above.
    pub checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == STATIC_SIZE);

/// The static header, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Offset of the catalog.
    pub catalog_offset: u64,
    /// Number of catalog slots.
    pub catalog_slots: u32,
    /// Offset where the data area starts.
    pub data_offset: u64,
    /// The capacity the file was created with.
    pub initial_capacity: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_nanos: u64,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    TooShort {
        /// How many bytes there were.
        len: u64,
    },
    /// The magic is wrong: not a store file.
    BadMagic,
    /// Written by a format version this build does not know.
    UnsupportedVersion {
        /// The file's version.
        found: u32,
    },
    /// The data was written on a machine with the other byte order.
    WrongEndianness,
    /// The checksum does not match the contents.
    BadChecksum {
        /// What the header says.
        stored: u64,
        /// What the bytes hash to.
        computed: u64,
    },
    /// A geometry field is impossible.
    BadGeometry(&'static str),
}

/// Why the live header words were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// The file is shorter than the capacity the header records: it was truncated.
    FileShorterThanCapacity {
        /// The recorded capacity.
        capacity: u64,
        /// The actual file length.
        file_len: u64,
    },
    /// A live word holds an impossible value.
    Impossible(&'static str),
}

impl Header {
    /// The geometry of a new store with `slots` catalog slots.
    pub fn new(slots: u32, initial_capacity: u64, created_unix_nanos: u64) -> Header {
        Header {
            catalog_offset: HEADER_SIZE,
            catalog_slots: slots,
            data_offset: Self::data_offset_for(slots),
            initial_capacity,
            created_unix_nanos,
        }
    }

    /// Where data starts for a catalog of `slots` records: after the catalog, page-aligned.
    pub fn data_offset_for(slots: u32) -> u64 {
        let end = HEADER_SIZE + u64::from(slots) * super::entry::ENTRY_SIZE;
        super::align_up(end, 4096).unwrap_or(u64::MAX)
    }

    /// Encodes the static part, checksum included.
    pub fn encode(&self) -> [u8; STATIC_SIZE] {
        let mut raw = RawHeader {
            magic: MAGIC,
            format_version: FORMAT_VERSION.into(),
            endian_marker: ENDIAN_MARKER.to_ne_bytes(),
            header_size: (HEADER_SIZE as u32).into(),
            flags: 0.into(),
            catalog_offset: self.catalog_offset.into(),
            catalog_slots: self.catalog_slots.into(),
            entry_size: (super::entry::ENTRY_SIZE as u32).into(),
            data_offset: self.data_offset.into(),
            initial_capacity: self.initial_capacity.into(),
            created_unix_nanos: self.created_unix_nanos.into(),
            reserved: [0; 56],
            checksum: 0.into(),
        };
        raw.checksum = checksum(&raw.as_bytes()[..STATIC_SIZE - 8]).into();
        let mut out = [0u8; STATIC_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and checks the static part from the first bytes of a file.
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        let Some(raw) = bytes.get(..STATIC_SIZE).and_then(|b| RawHeader::read_from_bytes(b).ok()) else {
            return Err(HeaderError::TooShort { len: bytes.len() as u64 });
        };
        if raw.magic != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if raw.format_version.get() != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion { found: raw.format_version.get() });
        }
        let computed = checksum(&raw.as_bytes()[..STATIC_SIZE - 8]);
        if raw.checksum.get() != computed {
            return Err(HeaderError::BadChecksum { stored: raw.checksum.get(), computed });
        }
        if raw.endian_marker != ENDIAN_MARKER.to_ne_bytes() {
            return Err(HeaderError::WrongEndianness);
        }
        if u64::from(raw.header_size.get()) != HEADER_SIZE {
            return Err(HeaderError::BadGeometry("header size is not 512"));
        }
        if u64::from(raw.entry_size.get()) != super::entry::ENTRY_SIZE {
            return Err(HeaderError::BadGeometry("catalog record size is not 256"));
        }
        let header = Header {
            catalog_offset: raw.catalog_offset.get(),
            catalog_slots: raw.catalog_slots.get(),
            data_offset: raw.data_offset.get(),
            initial_capacity: raw.initial_capacity.get(),
            created_unix_nanos: raw.created_unix_nanos.get(),
        };
        if header.catalog_offset != HEADER_SIZE {
            return Err(HeaderError::BadGeometry("catalog does not follow the header"));
        }
        if header.catalog_slots == 0 || header.catalog_slots > MAX_SLOTS {
            return Err(HeaderError::BadGeometry("catalog slot count out of range"));
        }
        if header.data_offset != Self::data_offset_for(header.catalog_slots) {
            return Err(HeaderError::BadGeometry("data area does not follow the catalog"));
        }
        Ok(header)
    }

    /// The smallest file that can hold this geometry plus one cache line of data.
    pub fn min_capacity(&self) -> u64 {
        self.data_offset + 64
    }

    /// Checks the live words against the file: `capacity` within the file, `alloc_end` within the
    /// data area.
    pub fn check_live(&self, capacity: u64, alloc_end: u64, file_len: u64) -> Result<(), LiveError> {
        if capacity > file_len {
            return Err(LiveError::FileShorterThanCapacity { capacity, file_len });
        }
        if capacity < self.min_capacity() {
            return Err(LiveError::Impossible("capacity is smaller than header and catalog"));
        }
        if alloc_end < self.data_offset || alloc_end > capacity {
            return Err(LiveError::Impossible("allocation end lies outside the data area"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> [u8; STATIC_SIZE] {
        Header::new(64, 1 << 20, 42).encode()
    }

    /// `good()` with `edit` applied to its raw fields, and the checksum fixed up.
    fn edited(edit: impl FnOnce(&mut RawHeader)) -> [u8; STATIC_SIZE] {
        let mut raw = RawHeader::read_from_bytes(&good()[..]).unwrap();
        edit(&mut raw);
        raw.checksum = checksum(&raw.as_bytes()[..STATIC_SIZE - 8]).into();
        let mut out = [0u8; STATIC_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    #[test]
    fn round_trip() {
        let h = Header::new(64, 1 << 20, 42);
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        assert_eq!(h.data_offset, 20480);
        assert_eq!(h.catalog_offset, 512);
        // Trailing bytes (the live part, the catalog) are not the static header's business.
        let mut longer = h.encode().to_vec();
        longer.extend_from_slice(&[0xa5; 400]);
        assert_eq!(Header::decode(&longer), Ok(h));
    }

    #[test]
    fn encoding_is_pinned() {
        let bytes = good();
        assert_eq!(&bytes[0..8], b"SHMSTORE");
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(u32_at(8), 1, "format version");
        assert_eq!(&bytes[12..16], &0x0102_0304u32.to_ne_bytes(), "byte-order marker");
        assert_eq!((u32_at(16), u32_at(20)), (512, 0), "header size, flags");
        assert_eq!((u64_at(24), u32_at(32), u32_at(36)), (512, 64, 256), "catalog");
        assert_eq!((u64_at(40), u64_at(48), u64_at(56)), (20480, 1 << 20, 42), "data offset, capacity, time");
        assert!(bytes[64..120].iter().all(|&b| b == 0), "reserved");
        assert_eq!(u64_at(120), checksum(&bytes[..120]));
    }

    #[test]
    fn geometry() {
        // The data area starts on the first page after the catalog.
        assert_eq!(Header::data_offset_for(1), 4096);
        assert_eq!(Header::data_offset_for(14), 4096);
        assert_eq!(Header::data_offset_for(15), 8192);
        assert_eq!(Header::data_offset_for(78), 20480);
        assert_eq!(Header::data_offset_for(79), 24576);
        assert_eq!(Header::data_offset_for(MAX_SLOTS), 512 + 256 * (1 << 20) + 3584);
        assert_eq!(Header::new(64, 0, 0).min_capacity(), 20480 + 64);
        assert_eq!(Header::new(1, 0, 0).min_capacity(), 4096 + 64);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = good();
        for i in 0..STATIC_SIZE {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            assert!(Header::decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn distinct_errors() {
        let good = good();
        assert_eq!(Header::decode(&good[..100]), Err(HeaderError::TooShort { len: 100 }));
        assert_eq!(Header::decode(&good[..STATIC_SIZE - 1]), Err(HeaderError::TooShort { len: 127 }));
        assert_eq!(Header::decode(&[]), Err(HeaderError::TooShort { len: 0 }));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(Header::decode(&bad), Err(HeaderError::BadMagic));
        let mut bad = good;
        bad[8] = 9;
        assert_eq!(Header::decode(&bad), Err(HeaderError::UnsupportedVersion { found: 9 }));
        let mut bad = good;
        bad[130 - 10] ^= 1;
        let stored = u64::from_le_bytes(bad[120..].try_into().unwrap());
        let computed = checksum(&bad[..120]);
        assert_eq!(Header::decode(&bad), Err(HeaderError::BadChecksum { stored, computed }));
        assert_eq!(Header::decode(&edited(|raw| raw.endian_marker.reverse())), Err(HeaderError::WrongEndianness));
    }

    #[test]
    fn each_geometry_field_has_its_own_check() {
        let refused = |edit: fn(&mut RawHeader), detail| {
            assert_eq!(Header::decode(&edited(edit)), Err(HeaderError::BadGeometry(detail)));
        };
        refused(|raw| raw.header_size = 1024.into(), "header size is not 512");
        refused(|raw| raw.header_size = 511.into(), "header size is not 512");
        refused(|raw| raw.entry_size = 128.into(), "catalog record size is not 256");
        refused(|raw| raw.catalog_offset = 4096.into(), "catalog does not follow the header");
        refused(|raw| raw.catalog_offset = 0.into(), "catalog does not follow the header");
        refused(|raw| raw.catalog_slots = 0.into(), "catalog slot count out of range");
        let too_many = |raw: &mut RawHeader| {
            raw.catalog_slots = (MAX_SLOTS + 1).into();
            raw.data_offset = Header::data_offset_for(MAX_SLOTS + 1).into();
        };
        refused(too_many, "catalog slot count out of range");
        refused(|raw| raw.data_offset = 8192.into(), "data area does not follow the catalog");
        refused(|raw| raw.data_offset = 20481.into(), "data area does not follow the catalog");
        refused(|raw| raw.catalog_slots = 79.into(), "data area does not follow the catalog");
        // The largest catalog there is, and the smallest.
        let most = edited(|raw| {
            raw.catalog_slots = MAX_SLOTS.into();
            raw.data_offset = Header::data_offset_for(MAX_SLOTS).into();
        });
        assert_eq!(Header::decode(&most).map(|h| h.catalog_slots), Ok(MAX_SLOTS));
        let one = Header::new(1, 1 << 20, 0);
        assert_eq!(Header::decode(&one.encode()), Ok(one));
        // Flags and the reserved bytes are under the checksum, but not checked: later versions
        // may use them.
        let flagged = edited(|raw| raw.flags = 1.into());
        assert_eq!(Header::decode(&flagged), Ok(Header::new(64, 1 << 20, 42)));
    }

    #[test]
    fn live_checks() {
        let h = Header::new(64, 1 << 20, 0);
        let min = h.min_capacity();
        let cap = 1 << 20;
        assert_eq!(h.check_live(cap, h.data_offset, cap), Ok(()));
        // The capacity: up to the file's length, and at least the minimum.
        assert_eq!(h.check_live(cap, cap, cap), Ok(()));
        assert_eq!(
            h.check_live(cap, h.data_offset, cap - 1),
            Err(LiveError::FileShorterThanCapacity { capacity: cap, file_len: cap - 1 })
        );
        assert_eq!(h.check_live(cap, h.data_offset, cap + 1), Ok(()));
        assert_eq!(h.check_live(min, h.data_offset, min), Ok(()));
        assert_eq!(
            h.check_live(min - 1, h.data_offset, min),
            Err(LiveError::Impossible("capacity is smaller than header and catalog"))
        );
        // The allocation end: inside the data area, up to the capacity.
        let outside = Err(LiveError::Impossible("allocation end lies outside the data area"));
        assert_eq!(h.check_live(cap, h.data_offset - 1, cap), outside);
        assert_eq!(h.check_live(cap, 0, cap), outside);
        assert_eq!(h.check_live(cap, cap + 1, 2 * cap), outside);
        assert_eq!(h.check_live(cap, u64::MAX, cap), outside);
    }
}
