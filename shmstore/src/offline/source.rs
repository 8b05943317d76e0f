//! Reading every entry of a store file that no process has open, for a rewrite: the current
//! record of each name (the end of its migration chain), its commit sequence, and where its data
//! and schema lie, from a file of format version 1 or 2.
//!
//! Everything is read with positional reads through the rewrite's own descriptor (no mapping),
//! checked as an opener checks it (header, live words, every record or block, no two entries
//! claiming the same bytes, every schema decodes), and bounded: records and index slots are read a
//! chunk at a time, schemas one at a time (each at most `MAX_SCHEMA_LEN` bytes), and data never
//! (the image writer copies data and schemas file to file). Memory grows with the number of
//! entries only.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::catalog_check::{check_catalog, CatalogError, Record};
use crate::format::checksum::hash64;
use crate::format::entry::{self, Entry, EntryError};
use crate::format::header::{self as v1, HeaderError, LiveError};
use crate::format::schema::{self, MAX_SCHEMA_LEN};
use crate::format::v2::header::{self as v2, LockMode, OpenState};
use crate::format::v2::{block, index};

/// One entry to carry over.
#[derive(Debug, Clone)]
pub(crate) struct SourceEntry {
    /// Its static fields, where the source has them (`lock_offset` means nothing here).
    pub entry: Entry,
    /// Its commit sequence word: the active slot of a double-buffered object is `seq & 1`.
    pub seq: u64,
    /// Version 2's `interrupted` word (0 for version 1, which has none).
    pub interrupted: u32,
}

/// A store's entries and the facts a rewrite carries over.
#[derive(Debug)]
pub(crate) struct Source {
    /// The format version of the file.
    pub version: u32,
    /// When the store was created.
    pub created_unix_nanos: u64,
    /// The cap on entries a version-2 store was created with (0 for none). A version-1 store's
    /// catalog size was a limit of its format, not a cap its user chose: 0.
    pub max_entries: u32,
    /// The lock mode of a version-2 store whose open state is intact.
    pub lock_mode: Option<LockMode>,
    /// The entries, in catalog (version 1) or index (version 2) order.
    pub entries: Vec<SourceEntry>,
    /// Records or blocks that are not carried over: the superseded records of migrations and the
    /// shadow records of migrations that never committed (version 1).
    pub dropped: usize,
}

/// How many catalog records or index slots are read at once.
const CHUNK_RECORDS: u64 = 4096;

/// Reads the store in `file` (found at `path`), of whatever format version this build knows.
pub(crate) fn read(path: &Path, file: &File) -> Result<Source> {
    let file_len = file.metadata().map_err(|e| Error::Io { op: "stat", path: path.to_owned(), source: e })?.len();
    let mut prefix = [0u8; 12];
    let got = read_upto(path, file, &mut prefix, 0)?;
    match v2::peek_version(&prefix[..got]).map_err(|e| header_error(path, e))? {
        v1::FORMAT_VERSION => read_v1(path, file, file_len),
        v2::FORMAT_VERSION => read_v2(path, file, file_len),
        found => Err(Error::UnsupportedFormat { path: path.to_owned(), found, supported: v2::FORMAT_VERSION }),
    }
}

/// A version-1 store: the header, the catalog records, their migration chains.
fn read_v1(path: &Path, file: &File, file_len: u64) -> Result<Source> {
    let mut head = [0u8; v1::HEADER_SIZE as usize];
    let got = read_upto(path, file, &mut head, 0)?;
    let header = v1::Header::decode(&head[..got]).map_err(|e| header_error(path, e))?;
    let capacity = ne_u64(&head, v1::CAPACITY_OFFSET);
    let alloc_end = ne_u64(&head, v1::ALLOC_END_OFFSET);
    header.check_live(capacity, alloc_end, file_len).map_err(|e| live_error(path, e))?;

    // Every record in use, each checked on its own, with its live words.
    let mut records = Vec::new();
    let mut live_words = Vec::new();
    let slots = u64::from(header.catalog_slots);
    let mut chunk = Vec::new();
    let mut first = 0;
    while first < slots {
        let n = CHUNK_RECORDS.min(slots - first);
        chunk.resize((n * entry::ENTRY_SIZE) as usize, 0);
        read_exact(path, file, &mut chunk, header.catalog_offset + first * entry::ENTRY_SIZE, "the catalog")?;
        for (i, rec) in chunk.chunks_exact(entry::ENTRY_SIZE as usize).enumerate() {
            let slot = (first + i as u64) as u32;
            let state = ne_u32(rec, 0);
            match state {
                entry::STATE_EMPTY => continue,
                entry::STATE_LIVE | entry::STATE_SHADOW => {}
                other => return Err(catalog_error(path, CatalogError::State { slot, state: other })),
            }
            let at = entry::STATIC_OFFSET as usize;
            let e = Entry::decode(&rec[at..at + entry::STATIC_SIZE], &header, slot, capacity)
                .map_err(|error| catalog_error(path, CatalogError::Record { slot, error }))?;
            records.push(Record { slot, state, entry: e });
            live_words.push((ne_u64(rec, entry::SEQ_OFFSET), ne_u32(rec, entry::MOVED_TO_OFFSET as usize)));
        }
        first += n;
    }
    check_catalog(&header, capacity, &records).map_err(|e| catalog_error(path, e))?;

    // Each live record's name resolves to the end of its migration chain (`moved_to` is 0, or
    // 1 + the slot of the replacing shadow record).
    let by_slot: std::collections::HashMap<u32, usize> = records.iter().enumerate().map(|(i, r)| (r.slot, i)).collect();
    let mut entries = Vec::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| r.state == entry::STATE_LIVE) {
        let mut at = i;
        let mut hops = 0;
        while let Some(next) = live_words[at].1.checked_sub(1) {
            let Some(&j) = by_slot.get(&next).filter(|&&j| records[j].state == entry::STATE_SHADOW) else {
                return Err(corrupt(
                    path,
                    format!("entry `{}` was migrated to catalog slot {next}, which holds no replacement", r.entry.name),
                ));
            };
            hops += 1;
            if hops > records.len() {
                return Err(corrupt(path, format!("the migration chain of entry `{}` loops", r.entry.name)));
            }
            at = j;
        }
        let current = &records[at];
        if current.entry.name != r.entry.name {
            return Err(corrupt(
                path,
                format!("entry `{}` was migrated to a record named `{}`", r.entry.name, current.entry.name),
            ));
        }
        entries.push(SourceEntry { entry: current.entry.clone(), seq: live_words[at].0, interrupted: 0 });
    }
    check_schemas(path, file, &entries)?;
    Ok(Source {
        version: v1::FORMAT_VERSION,
        created_unix_nanos: header.created_unix_nanos,
        max_entries: 0,
        lock_mode: None,
        dropped: records.len() - entries.len(),
        entries,
    })
}

/// A version-2 store: the header, the index, and the entry each slot resolves to as a lookup
/// resolves it ([`resolve`]).
fn read_v2(path: &Path, file: &File, file_len: u64) -> Result<Source> {
    let mut head = vec![0u8; v2::HEADER_SIZE as usize];
    let got = read_upto(path, file, &mut head, 0)?;
    let header = v2::Header::decode(&head[..got]).map_err(|e| header_error(path, e))?;
    let open = &head[v2::OPEN_STATE_OFFSET as usize..][..v2::OPEN_STATE_SIZE];
    let lock_mode = OpenState::decode(open).ok().map(|s| s.lock_mode);
    let live = v2::Live {
        capacity: ne_u64(&head, v2::CAPACITY),
        alloc_end: ne_u64(&head, v2::ALLOC_END),
        index_root: ne_u64(&head, v2::INDEX_ROOT),
    };
    v2::check_live(&live, file_len).map_err(|e| live_error(path, e))?;
    let capacity = live.capacity;
    let mut table = [0u8; index::HEADER_LEN as usize];
    read_exact(path, file, &mut table, live.index_root, "the index")?;
    let slots = index::decode_header(&table, live.index_root, capacity)
        .map_err(|e| corrupt(path, format!("index table at {}: {e}", live.index_root)))?;
    let mut blocks = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let mut chunk = Vec::new();
    let mut raw = [0u8; block::BLOCK_SIZE as usize];
    let mut first = 0;
    while first < slots {
        let n = CHUNK_RECORDS.min(slots - first);
        chunk.resize((n * index::SLOT_LEN) as usize, 0);
        read_exact(path, file, &mut chunk, live.index_root + index::slot_offset(first), "the index")?;
        for slot in chunk.chunks_exact(index::SLOT_LEN as usize) {
            let at = ne_u64(slot, index::SLOT_BLOCK);
            if at == index::EMPTY || at == index::TOMBSTONE {
                continue;
            }
            let Some(at) = resolve(path, file, at, capacity, &mut raw)? else { continue };
            let decoded =
                block::decode(&raw[block::STATIC_OFFSET as usize..], at, capacity).map_err(|error| match error {
                    EntryError::BadChecksum => {
                        Error::BadChecksum { path: path.to_owned(), what: format!("the entry block at {at}") }
                    }
                    other => corrupt(path, format!("entry block at {at}: {other}")),
                })?;
            // A slot found by another name's hash (the old name of a rename cut off before its
            // slot was tombstoned) does not find this entry; its own slot does.
            if hash64(&decoded.entry.name) != ne_u64(slot, index::SLOT_HASH) || !seen.insert(at) {
                continue;
            }
            entries.push(SourceEntry {
                entry: decoded.entry,
                seq: ne_u64(&raw, block::SEQ),
                interrupted: ne_u32(&raw, block::INTERRUPTED as usize),
            });
            blocks.push(at);
        }
        first += n;
    }
    check_disjoint(path, &entries, &blocks)?;
    check_schemas(path, file, &entries)?;
    Ok(Source {
        version: v2::FORMAT_VERSION,
        created_unix_nanos: header.created_unix_nanos,
        max_entries: header.max_entries,
        lock_mode,
        entries,
        dropped: 0,
    })
}

/// How many replacements (`moved_to` hops) a lookup follows from an index slot, as the runtime
/// does.
const MAX_HOPS: usize = 64;

/// The entry that the block at `at`, found in an index slot, is or was replaced by, as a lookup
/// resolves it: a live block, or a committed shadow (a replacement cut off after its commit point,
/// whose `moved_to` points back at a block that is `moved` to it); a `moved` block is followed to
/// its replacement; anything else (removed, free, an uncommitted shadow) is no entry. Leaves the
/// block's bytes in `raw`.
fn resolve(
    path: &Path,
    file: &File,
    mut at: u64,
    capacity: u64,
    raw: &mut [u8; block::BLOCK_SIZE as usize],
) -> Result<Option<u64>> {
    let in_bounds = |at: u64| block::block_in_bounds(at, capacity);
    for _ in 0..MAX_HOPS {
        if !in_bounds(at) {
            return Err(corrupt(path, format!("the catalog points at byte {at}, where no entry block can be")));
        }
        read_exact(path, file, raw, at, "an entry block")?;
        let moved_to = ne_u64(raw, block::MOVED_TO);
        match ne_u32(raw, block::STATE as usize) {
            block::STATE_LIVE => return Ok(Some(at)),
            block::STATE_SHADOW => {
                if !in_bounds(moved_to) {
                    return Ok(None);
                }
                let mut back = [0u8; 40];
                read_exact(path, file, &mut back, moved_to, "an entry block")?;
                let committed =
                    ne_u32(&back, block::STATE as usize) == block::STATE_MOVED && ne_u64(&back, block::MOVED_TO) == at;
                if !committed {
                    return Ok(None);
                }
                return Ok(Some(at));
            }
            block::STATE_MOVED => at = moved_to,
            _ => return Ok(None),
        }
    }
    Err(corrupt(path, format!("the chain of replaced entry blocks from byte {at} loops")))
}

/// Decodes every entry's schema, one at a time, as listing the entries does: a store whose
/// schemas do not decode is refused here, before anything is written, rather than copied into a
/// new store that could not list its entries either.
fn check_schemas(path: &Path, file: &File, entries: &[SourceEntry]) -> Result<()> {
    for e in entries {
        let e = &e.entry;
        // The decoders bounded `schema_len` by `MAX_SCHEMA_LEN` and placed it inside the store.
        let len = usize::try_from(e.schema_len).ok().filter(|&n| n <= MAX_SCHEMA_LEN);
        let Some(len) = len else {
            return Err(corrupt(path, format!("the schema of entry `{}` is longer than the format allows", e.name)));
        };
        let mut bytes = vec![0u8; len];
        read_exact(path, file, &mut bytes, e.schema_offset, "a schema")?;
        schema::decode(&bytes).map_err(|err| corrupt(path, format!("schema of entry `{}`: {err}", e.name)))?;
    }
    Ok(())
}

/// Refuses two entries with the same name, or whose blocks, data or schemas overlap (each
/// block's own checks make sure that its data and schema do not overlap it).
fn check_disjoint(path: &Path, entries: &[SourceEntry], blocks: &[u64]) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    let mut ranges = Vec::new();
    for (e, &at) in entries.iter().zip(blocks) {
        ranges.push((at..at + block::BLOCK_SIZE, e.entry.name.as_str()));
    }
    for e in entries {
        if !names.insert(e.entry.name.as_str()) {
            return Err(corrupt(path, format!("two entries are named `{}`", e.entry.name)));
        }
        let data = e
            .entry
            .data_range()
            .ok_or_else(|| corrupt(path, format!("entry `{}` has impossible sizes", e.entry.name)))?;
        let schema = e
            .entry
            .schema_range()
            .ok_or_else(|| corrupt(path, format!("entry `{}` has impossible sizes", e.entry.name)))?;
        ranges.push((data, e.entry.name.as_str()));
        ranges.push((schema, e.entry.name.as_str()));
    }
    ranges.sort_by_key(|(r, _)| (r.start, r.end));
    for pair in ranges.windows(2) {
        let ((a, first), (b, second)) = (&pair[0], &pair[1]);
        if b.start < a.end && !a.is_empty() && !b.is_empty() {
            return Err(corrupt(
                path,
                format!("entries `{first}` and `{second}` claim the same bytes ({}..{})", b.start, a.end.min(b.end)),
            ));
        }
    }
    Ok(())
}

fn ne_u64(bytes: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn ne_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads up to `buf.len()` bytes at `offset`; returns how many there were before the end of the
/// file.
fn read_upto(path: &Path, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io { op: "read", path: path.to_owned(), source: e }),
        }
    }
    Ok(n)
}

/// Reads `buf.len()` bytes at `offset`, which the checks placed inside the file; `what` names
/// the structure for the error if the file ends first.
fn read_exact(path: &Path, file: &File, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
    if read_upto(path, file, buf, offset)? < buf.len() {
        return Err(corrupt(path, format!("the file ends inside {what}")));
    }
    Ok(())
}

fn corrupt(path: &Path, detail: String) -> Error {
    Error::Corrupt { path: path.to_owned(), detail }
}

fn catalog_error(path: &Path, e: CatalogError) -> Error {
    match e {
        CatalogError::Record { slot, error: EntryError::BadChecksum } => {
            Error::BadChecksum { path: path.to_owned(), what: format!("the entry in catalog slot {slot}") }
        }
        other => corrupt(path, other.to_string()),
    }
}

fn header_error(path: &Path, e: HeaderError) -> Error {
    let path: PathBuf = path.to_owned();
    match e {
        HeaderError::TooShort { len } => Error::NotAStore { path, reason: format!("it is only {len} bytes long") },
        HeaderError::BadMagic => Error::NotAStore { path, reason: "it does not start with the shmstore magic".into() },
        HeaderError::UnsupportedVersion { found } => {
            Error::UnsupportedFormat { path, found, supported: v2::FORMAT_VERSION }
        }
        HeaderError::WrongEndianness => Error::WrongEndianness { path },
        HeaderError::BadChecksum { .. } => Error::BadChecksum { path, what: "the header".into() },
        HeaderError::BadGeometry(detail) => Error::Corrupt { path, detail: format!("header: {detail}") },
    }
}

fn live_error(path: &Path, e: LiveError) -> Error {
    match e {
        LiveError::FileShorterThanCapacity { capacity, file_len } => {
            Error::Truncated { path: path.to_owned(), expected: capacity, actual: file_len }
        }
        LiveError::Impossible(detail) => corrupt(path, detail.into()),
    }
}
