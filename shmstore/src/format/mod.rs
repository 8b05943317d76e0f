//! The on-disk format, as pure code over byte slices: no I/O, no mapping, no locks.
//!
//! Format version 2 (what this build writes), in [`v2`]:
//!
//! ```text
//! [ header: 4096 bytes ][ data area: index tables, entry blocks, data, schemas, free extents ... ]
//! ```
//!
//! - [`v2::header`]: the static part (magic, version, byte-order marker, geometry, checksum), the
//!   open state (lock mode, epoch; reset by the first opener), the live words (capacity, growth
//!   generation, allocation end, index root, catalog sequence, free lists) and the lock bytes;
//! - [`v2::index`]: the open-addressing table of `(block, hash)` slots that finds an entry by name;
//! - [`v2::block`]: one 384-byte entry block per entry: live words, then a checksummed static part;
//! - [`v2::free`]: the header of a free extent or block;
//! - [`checksum`](mod@checksum): `checksum64` and `hash64`, word at a time.
//!
//! Format version 1 (read-only): [`header`], [`entry`] (a fixed catalog of 256-byte records) and
//! [`catalog_check`]. Both versions share [`schema`] (the compact encoding of an entry's layout
//! descriptor, stored in the data area), [`value`] and [`diff`].
//!
//! `docs/format.md` (version 2) and `docs/format-v1.md` are the byte-by-byte specifications.

pub mod catalog_check;
pub mod checksum;
pub mod diff;
pub mod entry;
pub mod header;
pub mod schema;
pub mod v2;
pub mod value;

/// FNV-1a over `bytes`: the checksum of format-v1 headers and records. (Format v2 uses
/// [`checksum::checksum64`].)
pub fn checksum(bytes: &[u8]) -> u64 {
    crate::layout::fnv1a(bytes)
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}
