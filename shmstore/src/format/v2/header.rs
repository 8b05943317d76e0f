//! The header of a version-2 store: the first [`HEADER_SIZE`] bytes (a page).
//!
//! - a **static part** (`0..256`), written at creation and checksummed;
//! - an **open state** (`256..512`), written only by a resetting opener (the first process to
//!   open the store), checksummed;
//! - **live words** (`512..1024`), native-endian atomics, bounds-checked instead of checksummed;
//! - the **reader table** (`1024..3072`) of robust lock mode.
//!
//! Integers of the static part and the open state are little-endian.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::format::checksum::checksum64;
use crate::format::header::{HeaderError, LiveError, ENDIAN_MARKER, MAGIC};

/// The format version this module reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Total size of the header.
pub const HEADER_SIZE: u64 = 4096;
/// Where the data area starts.
pub const DATA_OFFSET: u64 = HEADER_SIZE;
/// Size of the static part, checksum included.
pub const STATIC_SIZE: usize = 256;
/// Offset of the open state.
pub const OPEN_STATE_OFFSET: u64 = 256;
/// Size of the open state, checksum included.
pub const OPEN_STATE_SIZE: usize = 256;

/// Live `capacity` (`AtomicU64`): bytes of the file the store uses.
pub const CAPACITY: u64 = 512;
/// Live `generation` (`AtomicU64`): bumped whenever the capacity grows.
pub const GENERATION: u64 = 520;
/// Live `alloc_end` (`AtomicU64`): the end of bump-allocated space.
pub const ALLOC_END: u64 = 528;
/// Live `entry_count` (`AtomicU64`): live entries (informational).
pub const ENTRY_COUNT: u64 = 536;
/// Live `index_root` (`AtomicU64`): offset of the current index table.
pub const INDEX_ROOT: u64 = 544;
/// Live `catalog_seq` (`AtomicU64`): bumped by every catalog change.
pub const CATALOG_SEQ: u64 = 552;
/// Live `free_extents` (`AtomicU64`): the first free data extent, 0 if none.
pub const FREE_EXTENTS: u64 = 560;
/// Live `free_blocks` (`AtomicU64`): the first free entry block, 0 if none.
pub const FREE_BLOCKS: u64 = 568;
/// Live `free_bytes` (`AtomicU64`): bytes on the two free lists (informational).
pub const FREE_BYTES: u64 = 576;
/// Live `next_serial` (`AtomicU64`): the serial of the next entry (starts at 1).
pub const NEXT_SERIAL: u64 = 584;
/// Live `admin_epoch` (`AtomicU64`): the `lock_epoch` at which the admin mutex was initialised.
pub const ADMIN_EPOCH: u64 = 592;
/// The admin mutex (robust mode): 64 bytes.
pub const ADMIN_MUTEX: u64 = 640;
/// Size of the room for the admin mutex.
pub const ADMIN_MUTEX_SIZE: u64 = 64;
/// The reader table (robust mode).
pub const READER_TABLE: u64 = 1024;
/// Slots of the reader table.
pub const READER_SLOTS: u32 = 128;
/// Size of one reader-table slot: `pid: u32`, `state: u32`, `registered_unix_nanos: u64`.
pub const READER_SLOT_SIZE: u64 = 16;

/// The *open byte*: every opener holds an OFD lock on it, exclusively while it resets the open
/// state, shared afterwards for as long as it has the store mapped.
pub const OPEN_BYTE: u64 = 1 << 60;
/// Reader slot `i` of robust mode is owned through an exclusive OFD lock on `READER_LOCK_BASE + i`.
pub const READER_LOCK_BASE: u64 = 1 << 61;
/// The admin lock byte of OFD mode; entry locks follow it (see [`entry_lock_byte`]).
pub const LOCK_BASE: u64 = 1 << 62;

/// The OFD lock byte of the entry whose block is at `block`: `2^62 + block / 64`, derived, never
/// stored. Blocks lie in the data area (from 4096), so it never is the admin byte.
pub fn entry_lock_byte(block: u64) -> u64 {
    LOCK_BASE + block / 64
}

/// How the entries' writers exclude each other, as recorded in the open state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// A robust process-shared pthread mutex per entry, in its block (code 1).
    Robust,
    /// Kernel OFD byte-range locks at `2^62` (admin) and `2^62 + block/64` (entries) (code 2).
    Ofd,
}

impl LockMode {
    /// The code stored in the open state.
    pub fn code(self) -> u32 {
        match self {
            LockMode::Robust => 1,
            LockMode::Ofd => 2,
        }
    }

    /// The mode of a stored code.
    pub fn from_code(code: u32) -> Option<LockMode> {
        match code {
            1 => Some(LockMode::Robust),
            2 => Some(LockMode::Ofd),
            _ => None,
        }
    }

    /// `"robust"` or `"ofd"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Robust => "robust",
            LockMode::Ofd => "ofd",
        }
    }
}

/// The static part, exactly as stored.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    format_version: U32,
    endian_marker: [u8; 4],
    header_size: U32,
    block_size: U32,
    data_offset: U64,
    initial_capacity: U64,
    created_unix_nanos: U64,
    max_entries: U32,
    reserved: [u8; 196],
    checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == STATIC_SIZE);

/// The static header of a version-2 store, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The capacity the file was created with.
    pub initial_capacity: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_nanos: u64,
    /// The cap on the number of entries set at creation
    /// ([`OpenOptions::max_entries`](crate::OpenOptions::max_entries)), 0 for none.
    pub max_entries: u32,
}

/// The format version of a store file, from its first 12 bytes, whatever the version:
/// [`HeaderError::TooShort`] or [`HeaderError::BadMagic`] if it is no store at all.
pub fn peek_version(bytes: &[u8]) -> Result<u32, HeaderError> {
    let Some(prefix) = bytes.get(..12) else { return Err(HeaderError::TooShort { len: bytes.len() as u64 }) };
    if prefix[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    Ok(u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")))
}

impl Header {
    /// Encodes the static part, checksum included.
    pub fn encode(&self) -> [u8; STATIC_SIZE] {
        let mut raw = RawHeader {
            magic: MAGIC,
            format_version: FORMAT_VERSION.into(),
            endian_marker: ENDIAN_MARKER.to_ne_bytes(),
            header_size: (HEADER_SIZE as u32).into(),
            block_size: (super::block::BLOCK_SIZE as u32).into(),
            data_offset: DATA_OFFSET.into(),
            initial_capacity: self.initial_capacity.into(),
            created_unix_nanos: self.created_unix_nanos.into(),
            max_entries: self.max_entries.into(),
            reserved: [0; 196],
            checksum: 0.into(),
        };
        raw.checksum = checksum64(&raw.as_bytes()[..STATIC_SIZE - 8]).into();
        let mut out = [0u8; STATIC_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and checks the static part from the first bytes of a file: magic, version,
    /// checksum, byte order, geometry.
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        let version = peek_version(bytes)?;
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        let Some(raw) = bytes.get(..STATIC_SIZE).and_then(|b| RawHeader::read_from_bytes(b).ok()) else {
            return Err(HeaderError::TooShort { len: bytes.len() as u64 });
        };
        let computed = checksum64(&raw.as_bytes()[..STATIC_SIZE - 8]);
        if raw.checksum.get() != computed {
            return Err(HeaderError::BadChecksum { stored: raw.checksum.get(), computed });
        }
        if raw.endian_marker != ENDIAN_MARKER.to_ne_bytes() {
            return Err(HeaderError::WrongEndianness);
        }
        if u64::from(raw.header_size.get()) != HEADER_SIZE {
            return Err(HeaderError::BadGeometry("header size is not 4096"));
        }
        if u64::from(raw.block_size.get()) != super::block::BLOCK_SIZE {
            return Err(HeaderError::BadGeometry("entry block size is not 384"));
        }
        if raw.data_offset.get() != DATA_OFFSET {
            return Err(HeaderError::BadGeometry("data area does not follow the header"));
        }
        Ok(Header {
            initial_capacity: raw.initial_capacity.get(),
            created_unix_nanos: raw.created_unix_nanos.get(),
            max_entries: raw.max_entries.get(),
        })
    }
}

/// The smallest capacity of a store: the header and the first index table, rounded up to 8 KiB.
pub fn min_capacity() -> u64 {
    let end = DATA_OFFSET + super::index::table_len(super::index::MIN_SLOTS);
    end.next_multiple_of(8192)
}

/// The open state, exactly as stored.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawOpenState {
    lock_mode: U32,
    reader_slots: U32,
    lock_abi: [u8; LOCK_ABI_LEN],
    pidns_dev: U64,
    pidns_ino: U64,
    lock_epoch: U64,
    reset_unix_nanos: U64,
    reserved: [u8; 160],
    checksum: U64,
}

const _: () = assert!(std::mem::size_of::<RawOpenState>() == OPEN_STATE_SIZE);

/// Room for the lock-ABI tag.
pub const LOCK_ABI_LEN: usize = 48;

/// The open state: how the store's locks work, written by the opener that reset them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenState {
    /// The lock mode.
    pub lock_mode: LockMode,
    /// The lock-ABI tag, zero-padded ASCII (all zero in OFD mode).
    pub lock_abi: [u8; LOCK_ABI_LEN],
    /// `st_dev` of the resetting process's PID namespace (robust mode; 0 otherwise).
    pub pidns_dev: u64,
    /// `st_ino` of the same.
    pub pidns_ino: u64,
    /// Incremented by every reset.
    pub lock_epoch: u64,
    /// Time of the last reset, nanoseconds since the Unix epoch.
    pub reset_unix_nanos: u64,
}

/// Why an open state was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenStateError {
    /// The checksum does not match: a reset was torn, or the bytes were damaged.
    BadChecksum,
    /// The lock mode is not one this build knows.
    UnknownLockMode(u32),
    /// The reader-table size is not [`READER_SLOTS`].
    ReaderSlots(u32),
    /// The lock-ABI tag is not zero-padded ASCII.
    BadLockAbi,
}

impl std::fmt::Display for OpenStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenStateError::BadChecksum => f.write_str("the open state's checksum does not match"),
            OpenStateError::UnknownLockMode(code) => write!(f, "the open state names unknown lock mode {code}"),
            OpenStateError::ReaderSlots(n) => write!(f, "the open state has {n} reader slots instead of 128"),
            OpenStateError::BadLockAbi => f.write_str("the open state's lock-ABI tag is not zero-padded ASCII"),
        }
    }
}

impl OpenState {
    /// The lock-ABI tag as text (up to its first zero byte).
    pub fn lock_abi_str(&self) -> &str {
        let end = self.lock_abi.iter().position(|&b| b == 0).unwrap_or(LOCK_ABI_LEN);
        std::str::from_utf8(&self.lock_abi[..end]).unwrap_or("")
    }

    /// Encodes the open state, checksum included.
    pub fn encode(&self) -> [u8; OPEN_STATE_SIZE] {
        let mut raw = RawOpenState {
            lock_mode: self.lock_mode.code().into(),
            reader_slots: READER_SLOTS.into(),
            lock_abi: self.lock_abi,
            pidns_dev: self.pidns_dev.into(),
            pidns_ino: self.pidns_ino.into(),
            lock_epoch: self.lock_epoch.into(),
            reset_unix_nanos: self.reset_unix_nanos.into(),
            reserved: [0; 160],
            checksum: 0.into(),
        };
        raw.checksum = checksum64(&raw.as_bytes()[..OPEN_STATE_SIZE - 8]).into();
        let mut out = [0u8; OPEN_STATE_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and checks the open state (bytes `256..512` of the file).
    pub fn decode(bytes: &[u8]) -> Result<OpenState, OpenStateError> {
        let raw = bytes
            .get(..OPEN_STATE_SIZE)
            .and_then(|b| RawOpenState::read_from_bytes(b).ok())
            .ok_or(OpenStateError::BadChecksum)?;
        if raw.checksum.get() != checksum64(&raw.as_bytes()[..OPEN_STATE_SIZE - 8]) {
            return Err(OpenStateError::BadChecksum);
        }
        let lock_mode =
            LockMode::from_code(raw.lock_mode.get()).ok_or(OpenStateError::UnknownLockMode(raw.lock_mode.get()))?;
        if raw.reader_slots.get() != READER_SLOTS {
            return Err(OpenStateError::ReaderSlots(raw.reader_slots.get()));
        }
        let end = raw.lock_abi.iter().position(|&b| b == 0).unwrap_or(LOCK_ABI_LEN);
        if !raw.lock_abi[..end].iter().all(|b| b.is_ascii_graphic()) || raw.lock_abi[end..].iter().any(|&b| b != 0) {
            return Err(OpenStateError::BadLockAbi);
        }
        Ok(OpenState {
            lock_mode,
            lock_abi: raw.lock_abi,
            pidns_dev: raw.pidns_dev.get(),
            pidns_ino: raw.pidns_ino.get(),
            lock_epoch: raw.lock_epoch.get(),
            reset_unix_nanos: raw.reset_unix_nanos.get(),
        })
    }
}

/// The live words a reader checks against the file before it trusts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// `capacity`.
    pub capacity: u64,
    /// `alloc_end`.
    pub alloc_end: u64,
    /// `index_root`.
    pub index_root: u64,
}

/// Checks the live words against a file of `file_len` bytes: `data_offset <= alloc_end <=
/// capacity <= file_len`, and `index_root` a 64-aligned offset with room for a table header
/// inside `[data_offset, capacity)`. (The table itself is checked by
/// [`index::decode_header`](super::index::decode_header).)
pub fn check_live(live: &Live, file_len: u64) -> Result<(), LiveError> {
    if live.capacity > file_len {
        return Err(LiveError::FileShorterThanCapacity { capacity: live.capacity, file_len });
    }
    if live.capacity < min_capacity() {
        return Err(LiveError::Impossible("capacity is smaller than a store's minimum"));
    }
    if live.alloc_end < DATA_OFFSET || live.alloc_end > live.capacity {
        return Err(LiveError::Impossible("allocation end lies outside the data area"));
    }
    if live.index_root < DATA_OFFSET
        || !live.index_root.is_multiple_of(64)
        || live
            .index_root
            .checked_add(super::index::table_len(super::index::MIN_SLOTS))
            .is_none_or(|end| end > live.capacity)
    {
        return Err(LiveError::Impossible("index root lies outside the data area"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> [u8; STATIC_SIZE] {
        Header { initial_capacity: 1 << 20, created_unix_nanos: 42, max_entries: 300 }.encode()
    }

    fn fix(mut bytes: [u8; STATIC_SIZE]) -> [u8; STATIC_SIZE] {
        let sum = checksum64(&bytes[..STATIC_SIZE - 8]);
        bytes[STATIC_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
        bytes
    }

    #[test]
    fn round_trip_and_pinned_layout() {
        let h = Header { initial_capacity: 1 << 20, created_unix_nanos: 42, max_entries: 300 };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Ok(h));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(&bytes[..8], b"SHMSTORE");
        assert_eq!(u32_at(8), 2);
        assert_eq!(&bytes[12..16], &0x0102_0304u32.to_ne_bytes());
        assert_eq!((u32_at(16), u32_at(20)), (4096, 384));
        assert_eq!((u64_at(24), u64_at(32), u64_at(40)), (4096, 1 << 20, 42));
        assert_eq!(u32_at(48), 300, "max_entries");
        assert!(bytes[52..248].iter().all(|&b| b == 0));
        assert_eq!(u64_at(248), checksum64(&bytes[..248]));
        assert_eq!(min_capacity(), 8192);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = good();
        for i in 0..STATIC_SIZE {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(Header::decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn each_check_refuses() {
        assert_eq!(Header::decode(&good()[..11]), Err(HeaderError::TooShort { len: 11 }));
        assert_eq!(Header::decode(&good()[..100]), Err(HeaderError::TooShort { len: 100 }));
        let mut bad = good();
        bad[1] = b'X';
        assert_eq!(Header::decode(&bad), Err(HeaderError::BadMagic));
        for version in [1, 3, 99] {
            let mut bad = good();
            bad[8..12].copy_from_slice(&u32::to_le_bytes(version));
            assert_eq!(Header::decode(&fix(bad)), Err(HeaderError::UnsupportedVersion { found: version }));
        }
        let mut bad = good();
        bad[100] = 1;
        assert!(matches!(Header::decode(&bad), Err(HeaderError::BadChecksum { .. })));
        let mut bad = good();
        bad[12..16].reverse();
        assert_eq!(Header::decode(&fix(bad)), Err(HeaderError::WrongEndianness));
        let geometry = |at: usize, value: &[u8], detail| {
            let mut bad = good();
            bad[at..at + value.len()].copy_from_slice(value);
            assert_eq!(Header::decode(&fix(bad)), Err(HeaderError::BadGeometry(detail)));
        };
        geometry(16, &512u32.to_le_bytes(), "header size is not 4096");
        geometry(20, &256u32.to_le_bytes(), "entry block size is not 384");
        geometry(24, &8192u64.to_le_bytes(), "data area does not follow the header");
        assert_eq!(peek_version(&good()), Ok(2));
    }

    fn state() -> OpenState {
        let mut lock_abi = [0; LOCK_ABI_LEN];
        lock_abi[..6].copy_from_slice(b"x86_64");
        OpenState {
            lock_mode: LockMode::Robust,
            lock_abi,
            pidns_dev: 4,
            pidns_ino: 4026531836,
            lock_epoch: 7,
            reset_unix_nanos: 99,
        }
    }

    #[test]
    fn open_state_round_trip_and_refusals() {
        let s = state();
        let bytes = s.encode();
        assert_eq!(OpenState::decode(&bytes), Ok(s));
        assert_eq!(s.lock_abi_str(), "x86_64");
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 128);
        assert_eq!(u64::from_le_bytes(bytes[72..80].try_into().unwrap()), 7, "lock_epoch at 328");
        for i in 0..OPEN_STATE_SIZE {
            let mut bad = bytes;
            bad[i] ^= 4;
            assert!(OpenState::decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
        let fix = |mut b: [u8; OPEN_STATE_SIZE]| {
            let sum = checksum64(&b[..OPEN_STATE_SIZE - 8]);
            b[OPEN_STATE_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
            b
        };
        let mut bad = bytes;
        bad[0] = 3;
        assert_eq!(OpenState::decode(&fix(bad)), Err(OpenStateError::UnknownLockMode(3)));
        let mut bad = bytes;
        bad[4] = 64;
        assert_eq!(OpenState::decode(&fix(bad)), Err(OpenStateError::ReaderSlots(64)));
        let mut bad = bytes;
        bad[8] = b' ';
        assert_eq!(OpenState::decode(&fix(bad)), Err(OpenStateError::BadLockAbi));
        let mut bad = bytes;
        bad[40] = b'a';
        assert_eq!(OpenState::decode(&fix(bad)), Err(OpenStateError::BadLockAbi));
        assert_eq!(OpenState::decode(&[0; OPEN_STATE_SIZE]), Err(OpenStateError::BadChecksum));
        assert_eq!(LockMode::from_code(2), Some(LockMode::Ofd));
        assert_eq!(LockMode::Ofd.as_str(), "ofd");
    }

    #[test]
    fn live_words_are_checked_against_the_file() {
        let ok = Live { capacity: 1 << 20, alloc_end: 8192, index_root: 4096 };
        assert_eq!(check_live(&ok, 1 << 20), Ok(()));
        assert_eq!(
            check_live(&ok, 4096),
            Err(LiveError::FileShorterThanCapacity { capacity: 1 << 20, file_len: 4096 })
        );
        let refused = |live: Live, detail| assert_eq!(check_live(&live, 1 << 30), Err(LiveError::Impossible(detail)));
        refused(Live { capacity: 4096, ..ok }, "capacity is smaller than a store's minimum");
        refused(Live { alloc_end: 4095, ..ok }, "allocation end lies outside the data area");
        refused(Live { alloc_end: (1 << 20) + 1, ..ok }, "allocation end lies outside the data area");
        refused(Live { index_root: 0, ..ok }, "index root lies outside the data area");
        refused(Live { index_root: 4100, ..ok }, "index root lies outside the data area");
        refused(Live { index_root: (1 << 20) - 64, ..ok }, "index root lies outside the data area");
        refused(Live { index_root: u64::MAX - 63, ..ok }, "index root lies outside the data area");
    }

    #[test]
    fn lock_bytes() {
        assert_eq!(entry_lock_byte(4096), (1 << 62) + 64);
        assert!(entry_lock_byte(DATA_OFFSET) > LOCK_BASE);
        assert!(OPEN_BYTE < READER_LOCK_BASE && READER_LOCK_BASE + u64::from(READER_SLOTS) < LOCK_BASE);
    }
}
