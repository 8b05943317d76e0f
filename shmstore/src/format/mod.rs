//! The on-disk format, as pure code over byte slices: no I/O, no mapping, no locks.
//!
//! A store file is laid out as
//!
//! ```text
//! [ header: 512 bytes ][ catalog: max_entries x 256-byte entry records ][ data ... ]
//! ```
//!
//! - [`header`]: magic, format version, byte-order marker, geometry, checksum, then a live part of
//!   atomics (capacity, growth generation, allocation end) that changes while the store is in use.
//! - [`entry`]: one catalog record per named entry, found by hashing the name (open addressing
//!   with linear probing), each with its own checksum over the fields that never change, and a live
//!   part (sequence word, futex word) for commits and change notification.
//! - [`catalog_check`]: what the records of a catalog must satisfy together (no two claim the
//!   same bytes, each uses the lock its slot implies), checked when a store is opened.
//! - [`schema`]: the compact encoding of an entry's layout descriptor, stored in the data area, so
//!   that tools can decode an entry without its Rust type.
//!
//! `docs/format.md` is the byte-by-byte specification.

pub mod catalog_check;
pub mod checksum;
pub mod diff;
pub mod entry;
pub mod header;
pub mod schema;
pub mod v2;
pub mod value;

/// FNV-1a over `bytes`: the checksum of headers and records. It detects torn writes and stray
/// bytes, which is all these small fixed-size blocks need.
pub fn checksum(bytes: &[u8]) -> u64 {
    crate::layout::fnv1a(bytes)
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}
