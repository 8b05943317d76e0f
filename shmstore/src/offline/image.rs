//! Writing a complete version-2 store, without holes, from the entries of a [`Source`]: the
//! image that `compact` and `upgrade` rename over the original.
//!
//! The image is laid out from the start of the data area: the index table (room for every entry
//! at a load of at most one half, its `used` word counting them), the entries' blocks one after
//! another (64-aligned), then each object's data (aligned to `max(align, 64)`) and each array's
//! or byte region's (aligned to `max(align, 4096)`), each followed by its schema (8-aligned), as
//! the allocator places them, so that a later removal gives data and schema back as one extent.
//! Data keeps its slot stride. Nothing is free, nothing is
//! leaked: `alloc_end` is the end of the last schema rounded up to 64 bytes, and the capacity
//! (and file length) that rounded up to a page (at least a store's minimum). Data is copied file to file, keeping holes.
//!
//! Every entry keeps its name, kind, layout (fingerprint, version, sizes, schema), commit
//! sequence (so a double-buffered object keeps its active slot) and, from version 2, its
//! `interrupted` flag. Entries get serials `1..=n` in order; block mutexes are left zero with
//! lock epoch 0, so that the first process to use one after the first opener's reset initialises
//! it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::source::Source;
use crate::error::{Error, Result};
use crate::format::checksum::hash64;
use crate::format::entry::{Entry, EntryKind};
use crate::format::v2::header::{self as v2, LockMode, OpenState, LOCK_ABI_LEN};
use crate::format::v2::{block, index};
use crate::sys;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Image {
    /// The new file's length (and capacity).
    pub len: u64,
    /// Bytes of entry data copied (holes excluded).
    pub copied: u64,
}

/// Where one entry goes in the image.
struct Placed {
    block: u64,
    entry: Entry,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_next_multiple_of(a)
}

/// The slot count of the image's index for `n` entries: the smallest power of two (at least
/// [`index::MIN_SLOTS`]) that holds them at a load of at most one half.
fn index_slots(n: u64) -> Option<u64> {
    let slots = n.checked_add(1)?.checked_mul(2)?.checked_next_power_of_two()?.max(index::MIN_SLOTS);
    (slots <= index::MAX_SLOTS).then_some(slots)
}

/// Where every entry goes, and where allocation ends: the blocks one after another, then each
/// object's data followed by its schema, then each array's or byte region's (page-aligned) data
/// followed by its schema. A schema right after its data, as the allocator places it, makes the
/// two one extent, which a later removal gives back whole.
fn place(source: &Source) -> Option<(u64, Vec<Placed>, u64)> {
    let slots = index_slots(source.entries.len() as u64)?;
    let mut at = v2::DATA_OFFSET.checked_add(index::table_len(slots))?;
    let mut placed = Vec::with_capacity(source.entries.len());
    for s in &source.entries {
        let block = align_up(at, block::BLOCK_ALIGN)?;
        at = block.checked_add(block::BLOCK_SIZE)?;
        placed.push(Placed { block, entry: Entry { lock_offset: v2::entry_lock_byte(block), ..s.entry.clone() } });
    }
    let data_and_schema = |at: &mut u64, p: &mut Placed| -> Option<()> {
        let align = match p.entry.kind {
            EntryKind::Object => p.entry.elem_align.max(64),
            _ => p.entry.elem_align.max(4096),
        };
        let range = p.entry.data_range()?;
        p.entry.data_offset = align_up(*at, align)?;
        p.entry.schema_offset = align_up(p.entry.data_offset.checked_add(range.end - range.start)?, 8)?;
        *at = p.entry.schema_offset.checked_add(p.entry.schema_len)?;
        Some(())
    };
    for p in placed.iter_mut().filter(|p| p.entry.kind == EntryKind::Object) {
        data_and_schema(&mut at, p)?;
    }
    for p in placed.iter_mut().filter(|p| p.entry.kind != EntryKind::Object) {
        data_and_schema(&mut at, p)?;
    }
    Some((slots, placed, at))
}

/// Writes the version-2 image of `source` (whose data is read from `src`) into the empty file
/// `dst` (found at `dst_path`; errors name `path`, the store being rewritten). `lock_mode` goes
/// into the open state, which the first opener resets.
pub(crate) fn write(path: &Path, source: &Source, src: &File, dst: &File, lock_mode: LockMode) -> Result<Image> {
    let io = |op, e| Error::Io { op, path: path.to_owned(), source: e };
    let too_big = || Error::Corrupt {
        path: path.to_owned(),
        detail: "its entries do not fit in a store of the largest size a file can have".into(),
    };
    let (slots, placed, end) = place(source).ok_or_else(too_big)?;
    // Allocation goes on from a cache line, as in a new store.
    let alloc_end = align_up(end, 64).ok_or_else(too_big)?;
    let capacity = align_up(alloc_end, 4096).ok_or_else(too_big)?.max(v2::min_capacity());
    dst.set_len(capacity).map_err(|e| disk_error(path, e))?;

    // Header: static part, open state, live words.
    let mut head = vec![0u8; v2::HEADER_SIZE as usize];
    let static_part = v2::Header {
        initial_capacity: capacity,
        created_unix_nanos: source.created_unix_nanos,
        max_entries: source.max_entries,
    };
    head[..v2::STATIC_SIZE].copy_from_slice(&static_part.encode());
    let open = OpenState {
        lock_mode,
        lock_abi: [0; LOCK_ABI_LEN],
        pidns_dev: 0,
        pidns_ino: 0,
        lock_epoch: 0,
        reset_unix_nanos: 0,
    };
    head[v2::OPEN_STATE_OFFSET as usize..][..v2::OPEN_STATE_SIZE].copy_from_slice(&open.encode());
    let n = placed.len() as u64;
    for (at, value) in [
        (v2::CAPACITY, capacity),
        (v2::GENERATION, 0),
        (v2::ALLOC_END, alloc_end),
        (v2::ENTRY_COUNT, n),
        (v2::INDEX_ROOT, v2::DATA_OFFSET),
        (v2::CATALOG_SEQ, 0),
        (v2::FREE_EXTENTS, 0),
        (v2::FREE_BLOCKS, 0),
        (v2::FREE_BYTES, 0),
        (v2::NEXT_SERIAL, n + 1),
        (v2::ADMIN_EPOCH, 0),
    ] {
        head[at as usize..][..8].copy_from_slice(&value.to_ne_bytes());
    }
    dst.write_all_at(&head, 0).map_err(|e| io("write", e))?;

    // The index: every entry by name hash, linear probing.
    let mut table = vec![0u8; index::table_len(slots) as usize];
    table[..index::HEADER_LEN as usize].copy_from_slice(&index::encode_header(slots));
    for p in &placed {
        let hash = hash64(&p.entry.name);
        let mut i = index::home(hash, slots);
        loop {
            let at = index::slot_offset(i) as usize;
            if table[at..at + 8].iter().all(|&b| b == 0) {
                table[at + index::SLOT_BLOCK as usize..][..8].copy_from_slice(&p.block.to_ne_bytes());
                table[at + index::SLOT_HASH as usize..][..8].copy_from_slice(&hash.to_ne_bytes());
                break;
            }
            i = (i + 1) & (slots - 1);
        }
    }
    // The table's live `used` word: the slots in use (live or tombstone), which decides when it
    // grows.
    table[index::USED as usize..][..8].copy_from_slice(&n.to_ne_bytes());
    dst.write_all_at(&table, v2::DATA_OFFSET).map_err(|e| io("write", e))?;

    // Blocks, data and schemas.
    let mut copied = 0;
    for ((p, s), serial) in placed.iter().zip(&source.entries).zip(1u64..) {
        let mut raw = [0u8; block::BLOCK_SIZE as usize];
        let live = |raw: &mut [u8], at: u64, bytes: &[u8]| raw[at as usize..][..bytes.len()].copy_from_slice(bytes);
        live(&mut raw, block::STATE, &block::STATE_LIVE.to_ne_bytes());
        live(&mut raw, block::SERIAL, &serial.to_ne_bytes());
        live(&mut raw, block::SEQ, &s.seq.to_ne_bytes());
        live(&mut raw, block::INTERRUPTED, &s.interrupted.to_ne_bytes());
        let static_part = block::encode(&p.entry, serial);
        raw[block::STATIC_OFFSET as usize..].copy_from_slice(&static_part);
        // The image must be what a reader accepts.
        match block::decode(&static_part, p.block, capacity) {
            Ok(b) if b.entry == p.entry && b.serial == serial => {}
            other => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    detail: format!("entry `{}` cannot be written as a version-2 block: {other:?}", p.entry.name),
                })
            }
        }
        dst.write_all_at(&raw, p.block).map_err(|e| io("write", e))?;
        // `place` computed both ranges already: they exist.
        let (Some(from), Some(schema)) = (s.entry.data_range(), s.entry.schema_range()) else { return Err(too_big()) };
        copied += sys::copy_sparse(src, from.start, dst, p.entry.data_offset, from.end - from.start)
            .map_err(|e| disk_error(path, e))?;
        sys::copy_sparse(src, schema.start, dst, p.entry.schema_offset, schema.end - schema.start)
            .map_err(|e| disk_error(path, e))?;
    }
    Ok(Image { len: capacity, copied })
}

/// The error for a failed write of the image.
fn disk_error(path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { path: path.to_owned(), requested: 0 },
        _ => Error::Io { op: "write", path: path.to_owned(), source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_holds_every_entry_at_half_load_or_less() {
        assert_eq!(index_slots(0), Some(64));
        assert_eq!(index_slots(31), Some(64));
        assert_eq!(index_slots(32), Some(128));
        assert_eq!(index_slots(10_000), Some(32_768));
        for n in [0, 1, 31, 32, 33, 1000, 10_000] {
            let slots = index_slots(n).unwrap();
            assert!(!index::must_grow(n, slots), "{n} entries in {slots} slots");
        }
        assert_eq!(index_slots(1 << 26), None);
    }
}
