//! Structure-aware fuzzing of shmstore: the shared harness of the fuzz targets.
//!
//! Random byte mutation of a store file is nearly useless: the header and every catalog record
//! carry checksums, so almost every mutant is refused before any interesting code runs. These
//! targets mutate *decoded* fields instead (live words, record fields, names, schema trees, data
//! bytes) and write them back with valid checksums, through `shmstore::format`; then they drive
//! the public API over the result. The invariant is the library's promise for bad input: errors
//! are fine, a panic, abort, hang, unbounded allocation or sanitizer report is a bug.
//!
//! The harness is also compiled into the root package's `tests/fuzz_regressions.rs` (by path), so
//! that every crash found can be replayed by `cargo test`.

#![allow(clippy::too_many_lines)]

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use shmstore::format::checksum::checksum64;
use shmstore::format::entry::Entry;
use shmstore::format::schema::{self, Schema, SchemaField, SchemaKind, SchemaVariant};
use shmstore::format::v2::block::{self as blk, BLOCK_SIZE, FUTEX, MOVED_TO, SEQ, STATIC_OFFSET, STATIC_SIZE, WAITERS};
use shmstore::format::v2::header::{
    Header, ALLOC_END as ALLOC_END_OFFSET, CAPACITY as CAPACITY_OFFSET, ENTRY_COUNT as ENTRY_COUNT_OFFSET,
    GENERATION as GENERATION_OFFSET, INDEX_ROOT,
};
use shmstore::format::{diff, value};
use shmstore::{FixedStr, LockMode, Primitive, SharedArray, SharedBytes, SharedLayout, Store};

// ---------------------------------------------------------------------------------------------
// The types the seed store holds, and that the targets open entries with.

/// An enum with a gap in its discriminants, so that most bytes are invalid.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    /// 0.
    #[default]
    Idle,
    /// 1.
    Busy,
    /// 7.
    Done = 7,
}

/// A double-buffered object with a `bool`, an enum and text: every kind of validated field.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Config {
    /// A plain integer.
    pub port: u16,
    /// Valid only as 0 or 1.
    pub verbose: bool,
    /// Valid only as 0, 1 or 7.
    pub mode: Mode,
    /// Explicit padding.
    pub _pad: [u8; 4],
    /// A word.
    pub max: u64,
    /// UTF-8 text.
    pub name: FixedStr<16>,
}

/// An object holding atomics: one slot, changed in place.
#[derive(SharedLayout, Default)]
#[repr(C)]
pub struct Counters {
    /// A counter.
    pub hits: AtomicU64,
    /// A flag, valid only as 0 or 1.
    pub ready: AtomicBool,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

/// A plain array element.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Point {
    /// x.
    pub x: i32,
    /// y.
    pub y: i32,
}

/// A nested layout, for schemas only.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Nested {
    /// An array of structs.
    pub points: [Point; 3],
    /// An array of enums.
    pub modes: [Mode; 4],
    /// An array of bools.
    pub flags: [bool; 4],
    /// A struct with validated fields.
    pub config: Config,
}

/// The seed store's entries: (name, what it is).
pub const SEED_NAMES: [&str; 9] = ["config", "counters", "nums", "points", "flags", "modes", "blob", "old", "wide"];

/// The seed store's catalog size.
pub const SEED_SLOTS: u32 = 16;
/// The seed store's capacity.
pub const SEED_CAPACITY: u64 = 32 * 1024;

// ---------------------------------------------------------------------------------------------
// Where the fuzzed files live: one directory per process, in /dev/shm when there is one.

/// `/dev/shm/shmstore-fuzz-PID` (or the same in the temporary directory): libFuzzer ends the
/// process with `exit`, so nothing removes it then; instead, each new process removes the
/// directories of processes that are gone.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("shmstore-fuzz-")).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("shmstore-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

/// The path a target writes its file to (one per process and thread, reused for every input: the
/// regression tests replay inputs on several threads of one process at once).
pub fn scratch_path(name: &str) -> PathBuf {
    thread_local! {
        static THREAD: u64 = {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
    }
    scratch_dir().join(format!("{}.{name}", THREAD.with(|t| *t)))
}

/// The bytes of the seed store, built once per process through the public API: objects (one
/// with a `bool` and an enum), an object holding atomics, arrays, a byte region and a migrated
/// entry.
pub fn seed() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        check_record_offsets();
        let path = scratch_path("seed.shm");
        let _ = std::fs::remove_file(&path);
        build_seed(&path).expect("the seed store builds");
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).expect("the seed store reads back");
        let _ = std::fs::remove_file(&path);
        bytes
    })
}

fn build_seed(path: &Path) -> shmstore::Result<()> {
    let store = Store::options().create(true).capacity(SEED_CAPACITY).max_entries(SEED_SLOTS).open(path)?;
    let config = store.object_or_init("config", || Config {
        port: 8080,
        verbose: true,
        mode: Mode::Done,
        _pad: [0; 4],
        max: 10,
        name: FixedStr::new("edge").unwrap(),
    })?;
    config.update(|c| c.max += 1)?;
    let counters = store.object_or_init("counters", Counters::default)?;
    counters.read()?.hits.fetch_add(3, Ordering::Relaxed);
    store.array_or_init("nums", 16, 7u32)?.write_at(3, &[1, 2, 3])?;
    store.array_or_init("points", 4, Point { x: 1, y: -1 })?;
    store.array_or_init("flags", 8, true)?;
    store.array_or_init("modes", 4, Mode::Busy)?;
    store.bytes_or_init("blob", 100)?.write_at(10, b"hello")?;
    store.object_or_init("old", || 41u32)?.store(42)?;
    store.migrate("old", |x: u32| u64::from(x))?;
    store.object_or_init("wide", || [Point::default(); 3])?;
    store.flush()
}

// ---------------------------------------------------------------------------------------------
// Field mutations, applied to the decoded fields of a file image and written back with valid
// checksums.

/// A new value for a field, often derived from the old one or from another record.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Val {
    /// 0.
    Zero,
    /// 1.
    One,
    /// All ones.
    Max,
    /// A small number.
    Small(u8),
    /// The old value plus a signed delta.
    Add(i16),
    /// `2^n`.
    Pow2(u8),
    /// `2^n` plus a small signed delta.
    NearPow2(u8, i8),
    /// Anything.
    Raw(u64),
    /// The same field of another record (overlapping ranges, shared lock bytes, same names).
    Like(u8),
    /// Another field of another record.
    Other(u8, RecordField),
}

/// A field of a record's static part (checksummed).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    /// `kind`.
    Kind,
    /// `slot_count`.
    SlotCount,
    /// `name_len`.
    NameLen,
    /// `version`.
    Version,
    /// `fingerprint`.
    Fingerprint,
    /// `elem_size`.
    ElemSize,
    /// `elem_align`.
    ElemAlign,
    /// `count`.
    Count,
    /// `data_offset`.
    DataOffset,
    /// `slot_stride`.
    SlotStride,
    /// `schema_offset`.
    SchemaOffset,
    /// `schema_len`.
    SchemaLen,
    /// `serial` (format v1's `lock_offset` lay here).
    LockOffset,
}

impl RecordField {
    /// Offset and width of the field inside a block's static part (docs/format.md, minus 192).
    fn span(self) -> (usize, usize) {
        match self {
            RecordField::Kind => (0, 1),
            RecordField::SlotCount => (1, 1),
            RecordField::NameLen => (2, 2),
            RecordField::Version => (4, 4),
            RecordField::Fingerprint => (72, 8),
            RecordField::ElemSize => (80, 8),
            RecordField::ElemAlign => (88, 8),
            RecordField::Count => (96, 8),
            RecordField::DataOffset => (104, 8),
            RecordField::SlotStride => (112, 8),
            RecordField::SchemaOffset => (120, 8),
            RecordField::SchemaLen => (128, 8),
            RecordField::LockOffset => (136, 8),
        }
    }
}

/// A live word of a record (native-endian, not checksummed).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RecordWord {
    /// `state`.
    State,
    /// `seq`.
    Seq,
    /// `futex`.
    Futex,
    /// `waiters`.
    Waiters,
    /// `moved_to`.
    MovedTo,
}

/// A live word of the header.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HeaderWord {
    /// `capacity`.
    Capacity,
    /// `generation`.
    Generation,
    /// `alloc_end`.
    AllocEnd,
    /// `entry_count`.
    EntryCount,
}

/// A field of the header's static part.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HeaderField {
    /// `catalog_slots`.
    CatalogSlots,
    /// `data_offset`.
    DataOffset,
    /// `initial_capacity`.
    InitialCapacity,
    /// `created_unix_nanos`.
    Created,
}

/// A change to a record's name bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum NameEdit {
    /// These bytes (cut to 64), and their length.
    Set(Vec<u8>),
    /// The name of another record (two live records with one name).
    SameAs(u8),
    /// One byte changed in place.
    Byte(u8, u8),
}

/// A structural change to a decoded schema, at a node reached by a path of child indices.
#[derive(Arbitrary, Debug, Clone)]
pub enum SchemaChange {
    /// Rename the type.
    TypeName(String),
    /// Change the size.
    Size(Val),
    /// Change the alignment.
    Align(Val),
    /// Change the declared version.
    Version(u32),
    /// Change the stored fingerprint.
    Fingerprint(u64),
    /// Change an array's length.
    ArrayLen(Val),
    /// Rename a field.
    FieldName(u8, String),
    /// Move a field.
    FieldOffset(u8, Val),
    /// Remove a field.
    RemoveField(u8),
    /// Duplicate a field.
    DuplicateField(u8),
    /// Swap two fields.
    SwapFields(u8, u8),
    /// Rename a variant.
    VariantName(u8, String),
    /// Change a variant's value.
    VariantValue(u8, Val),
    /// Remove a variant.
    RemoveVariant(u8),
    /// Add a variant.
    AddVariant(String, u64),
    /// Change an enum's representation.
    Repr(u8),
    /// Change a scalar's primitive (or turn the node into one).
    Prim(u8),
    /// Make the node atomic over a primitive.
    Atomic(u8),
    /// Change a `FixedStr`'s capacity.
    Capacity(Val),
    /// Wrap the node in an array.
    WrapInArray(u64),
    /// Replace the node with one of the real layouts.
    Replace(u8),
    /// Nest the node as the only field of a struct.
    WrapInStruct(String),
}

/// A change to a schema tree: where, what, and whether to repair fingerprints afterwards (so that
/// the change reaches the checks behind the fingerprint check).
#[derive(Arbitrary, Debug, Clone)]
pub struct SchemaEdit {
    /// Child indices from the root (fields, or the element of an array), each taken modulo.
    pub path: Vec<u8>,
    /// The change.
    pub change: SchemaChange,
    /// Recompute every fingerprint bottom-up afterwards.
    pub fix_fingerprints: bool,
}

/// How a record's schema is changed.
#[derive(Arbitrary, Debug, Clone)]
pub struct RecordSchema {
    /// The structural edits, in order (applied to the decoded schema, then re-encoded).
    pub edits: Vec<SchemaEdit>,
    /// Also store the new root fingerprint and version in the record, so that the entry can match
    /// a type again.
    pub update_record: bool,
    /// Write the new encoding at the end of the allocated space (and move `alloc_end`) rather
    /// than over the old one.
    pub relocate: bool,
}

/// One mutation of a file image.
#[derive(Arbitrary, Debug, Clone)]
pub enum Mutation {
    /// A live header word.
    HeaderLive(HeaderWord, Val),
    /// A static header field, re-encoded with a valid checksum.
    HeaderStatic(HeaderField, Val),
    /// A static record field, re-encoded with a valid checksum.
    Record(u8, RecordField, Val),
    /// A record's name, re-encoded with a valid checksum.
    RecordName(u8, NameEdit),
    /// A live record word.
    RecordLive(u8, RecordWord, Val),
    /// A whole record copied over another slot.
    CopyRecord(u8, u8),
    /// A record's schema, decoded, changed and re-encoded.
    Schema(u8, RecordSchema),
    /// A raw byte of a record's encoded schema.
    SchemaByte(u8, u16, u8),
    /// Data bytes (invalid `bool`s and enums, torn values), relative to a record's data.
    Data(u8, u16, Vec<u8>),
    /// The file's length.
    FileLen(Val),
}

/// A file image being mutated.
pub struct Image {
    /// The bytes of the file.
    pub bytes: Vec<u8>,
    /// Set when a mutation asks for a file longer than the image (a sparse file); the extra
    /// bytes are zero.
    pub file_len: u64,
}

/// The longest sparse file a mutation may ask for.
const MAX_FILE_LEN: u64 = 1 << 34;
/// The most bytes of a file image kept in memory.
const MAX_IMAGE: u64 = 1 << 20;

fn get_le(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(src) = bytes.get(at..at + width) {
        buf[..width].copy_from_slice(src);
    }
    u64::from_le_bytes(buf)
}

fn put_le(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    if let Some(dst) = bytes.get_mut(at..at + width) {
        dst.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

fn get_ne(bytes: &[u8], at: usize, width: usize) -> u64 {
    match width {
        4 => bytes.get(at..at + 4).map_or(0, |b| u64::from(u32::from_ne_bytes(b.try_into().unwrap()))),
        _ => bytes.get(at..at + 8).map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap())),
    }
}

fn put_ne(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    match width {
        4 => {
            if let Some(b) = bytes.get_mut(at..at + 4) {
                b.copy_from_slice(&(value as u32).to_ne_bytes());
            }
        }
        _ => {
            if let Some(b) = bytes.get_mut(at..at + 8) {
                b.copy_from_slice(&value.to_ne_bytes());
            }
        }
    }
}

impl Val {
    fn apply(self, old: u64, image: &Image, field: Option<RecordField>) -> u64 {
        match self {
            Val::Zero => 0,
            Val::One => 1,
            Val::Max => u64::MAX,
            Val::Small(n) => u64::from(n),
            Val::Add(d) => old.wrapping_add(d as i64 as u64),
            Val::Pow2(n) => 1u64.wrapping_shl(u32::from(n % 64)),
            Val::NearPow2(n, d) => 1u64.wrapping_shl(u32::from(n % 64)).wrapping_add(d as i64 as u64),
            Val::Raw(v) => v,
            Val::Like(slot) => field.map_or(old, |f| image.record_field(slot, f)),
            Val::Other(slot, f) => image.record_field(slot, f),
        }
    }
}

impl Image {
    /// The seed store's image.
    pub fn seed() -> Image {
        let bytes = seed().to_vec();
        Image { file_len: bytes.len() as u64, bytes }
    }

    /// The header, if it still decodes.
    pub fn header(&self) -> Option<Header> {
        Header::decode(&self.bytes).ok()
    }

    /// The offset of the seed store's entry block number `slot % blocks` (by offset).
    fn record(&self, slot: u8) -> usize {
        let blocks = seed_blocks();
        blocks[usize::from(slot) % blocks.len()] as usize
    }

    fn record_field(&self, slot: u8, field: RecordField) -> u64 {
        let (at, width) = field.span();
        get_le(&self.bytes, self.record(slot) + STATIC_OFFSET as usize + at, width)
    }

    /// Rewrites the checksum of the record at `record` (a byte offset).
    fn reseal(&mut self, record: usize) {
        let start = record + STATIC_OFFSET as usize;
        if let Some(stat) = self.bytes.get(start..start + STATIC_SIZE - 8) {
            let sum = checksum64(stat);
            put_le(&mut self.bytes, start + STATIC_SIZE - 8, 8, sum);
        }
    }

    /// The entry in `slot`, if its record decodes (against a capacity of anything).
    fn entry(&self, slot: u8) -> Option<Entry> {
        let at = self.record(slot);
        let start = at + STATIC_OFFSET as usize;
        blk::decode(self.bytes.get(start..)?, at as u64, u64::MAX).ok().map(|b| b.entry)
    }

    /// Applies one mutation.
    pub fn apply(&mut self, m: &Mutation) {
        match m {
            Mutation::HeaderLive(word, val) => {
                let (at, width) = match word {
                    HeaderWord::Capacity => (CAPACITY_OFFSET, 8),
                    HeaderWord::Generation => (GENERATION_OFFSET, 8),
                    HeaderWord::AllocEnd => (ALLOC_END_OFFSET, 8),
                    HeaderWord::EntryCount => (ENTRY_COUNT_OFFSET, 8),
                };
                let old = get_ne(&self.bytes, at as usize, width);
                let new = val.apply(old, self, None);
                put_ne(&mut self.bytes, at as usize, width, new);
            }
            Mutation::HeaderStatic(field, val) => {
                // Fields of the static header (docs/format.md), re-sealed: `CatalogSlots` is the
                // entry cap of format v2.
                let (at, width) = match field {
                    HeaderField::CatalogSlots => (48, 4),
                    HeaderField::DataOffset => (24, 8),
                    HeaderField::InitialCapacity => (32, 8),
                    HeaderField::Created => (40, 8),
                };
                let old = get_le(&self.bytes, at, width);
                let new = val.apply(old, self, None);
                put_le(&mut self.bytes, at, width, new);
                if let Some(stat) = self.bytes.get(..248) {
                    let sum = checksum64(stat);
                    put_le(&mut self.bytes, 248, 8, sum);
                }
            }
            Mutation::Record(slot, field, val) => {
                let record = self.record(*slot);
                let (at, width) = field.span();
                let at = record + STATIC_OFFSET as usize + at;
                let old = get_le(&self.bytes, at, width);
                let new = val.apply(old, self, Some(*field));
                put_le(&mut self.bytes, at, width, new);
                self.reseal(record);
            }
            Mutation::RecordName(slot, edit) => {
                let record = self.record(*slot);
                let name_at = record + STATIC_OFFSET as usize + 8;
                let (len_at, _) = RecordField::NameLen.span();
                let len_at = record + STATIC_OFFSET as usize + len_at;
                match edit {
                    NameEdit::Set(bytes) => {
                        let bytes = &bytes[..bytes.len().min(64)];
                        if let Some(dst) = self.bytes.get_mut(name_at..name_at + 64) {
                            dst.fill(0);
                            dst[..bytes.len()].copy_from_slice(bytes);
                        }
                        put_le(&mut self.bytes, len_at, 2, bytes.len() as u64);
                    }
                    NameEdit::SameAs(other) => {
                        let from = self.record(*other) + STATIC_OFFSET as usize;
                        let Some(name) = self.bytes.get(from + 8..from + 72).map(<[u8]>::to_vec) else { return };
                        let len = get_le(&self.bytes, from + 2, 2);
                        if let Some(dst) = self.bytes.get_mut(name_at..name_at + 64) {
                            dst.copy_from_slice(&name);
                        }
                        put_le(&mut self.bytes, len_at, 2, len);
                    }
                    NameEdit::Byte(at, byte) => {
                        if let Some(b) = self.bytes.get_mut(name_at + usize::from(*at % 64)) {
                            *b = *byte;
                        }
                    }
                }
                self.reseal(record);
            }
            Mutation::RecordLive(slot, word, val) => {
                let record = self.record(*slot);
                let (at, width) = match word {
                    RecordWord::State => (0, 4),
                    RecordWord::Seq => (SEQ as usize, 8),
                    RecordWord::Futex => (FUTEX as usize, 4),
                    RecordWord::Waiters => (WAITERS as usize, 4),
                    RecordWord::MovedTo => (MOVED_TO as usize, 8),
                };
                let old = get_ne(&self.bytes, record + at, width);
                let new = val.apply(old, self, None);
                put_ne(&mut self.bytes, record + at, width, new);
            }
            Mutation::CopyRecord(from, to) => {
                let (from, to) = (self.record(*from), self.record(*to));
                let Some(rec) = self.bytes.get(from..from + BLOCK_SIZE as usize).map(<[u8]>::to_vec) else { return };
                if let Some(dst) = self.bytes.get_mut(to..to + BLOCK_SIZE as usize) {
                    dst.copy_from_slice(&rec);
                }
            }
            Mutation::Schema(slot, edit) => self.edit_schema(*slot, edit),
            Mutation::SchemaByte(slot, at, xor) => {
                let start = self.record_field(*slot, RecordField::SchemaOffset);
                let len = self.record_field(*slot, RecordField::SchemaLen).max(1);
                let at = start.saturating_add(u64::from(*at) % len);
                if let Some(b) = usize::try_from(at).ok().and_then(|at| self.bytes.get_mut(at)) {
                    *b ^= xor | 1;
                }
            }
            Mutation::Data(slot, at, bytes) => {
                let start = self.record_field(*slot, RecordField::DataOffset);
                let len = self.entry(*slot).map_or(64, |e| e.data_len().max(1));
                let at = start.saturating_add(u64::from(*at) % len);
                if let Ok(at) = usize::try_from(at) {
                    let end = at.saturating_add(bytes.len().min(64)).min(self.bytes.len());
                    if at < end {
                        self.bytes[at..end].copy_from_slice(&bytes[..end - at]);
                    }
                }
            }
            Mutation::FileLen(val) => {
                let len = val.apply(self.file_len, self, None).min(MAX_FILE_LEN);
                self.file_len = len;
                self.bytes.truncate(len.min(MAX_IMAGE) as usize);
            }
        }
    }

    fn edit_schema(&mut self, slot: u8, edit: &RecordSchema) {
        let record = self.record(slot);
        let at = self.record_field(slot, RecordField::SchemaOffset);
        let len = self.record_field(slot, RecordField::SchemaLen);
        let Some(bytes) = usize::try_from(at)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(at, len)| self.bytes.get(at..at.checked_add(len)?))
        else {
            return;
        };
        let Ok(mut schema) = schema::decode(bytes) else { return };
        for e in &edit.edits {
            apply_schema_edit(&mut schema, e);
        }
        let encoded = schema.encode();
        let (target, alloc_end) = if edit.relocate {
            let end = get_ne(&self.bytes, ALLOC_END_OFFSET as usize, 8);
            let Some(start) = end.checked_next_multiple_of(8) else { return };
            let Some(new_end) = start.checked_add(encoded.len() as u64) else { return };
            (start, Some(new_end))
        } else {
            (at, None)
        };
        let Some(dst) = usize::try_from(target).ok().and_then(|t| self.bytes.get_mut(t..t.checked_add(encoded.len())?))
        else {
            return;
        };
        dst.copy_from_slice(&encoded);
        if let Some(end) = alloc_end {
            put_ne(&mut self.bytes, ALLOC_END_OFFSET as usize, 8, end);
        }
        let start = record + STATIC_OFFSET as usize;
        let (o, w) = RecordField::SchemaOffset.span();
        put_le(&mut self.bytes, start + o, w, target);
        let (o, w) = RecordField::SchemaLen.span();
        put_le(&mut self.bytes, start + o, w, encoded.len() as u64);
        if edit.update_record {
            let (o, w) = RecordField::Fingerprint.span();
            put_le(&mut self.bytes, start + o, w, schema.fingerprint);
            let (o, w) = RecordField::Version.span();
            put_le(&mut self.bytes, start + o, w, u64::from(schema.version));
            let (o, w) = RecordField::ElemSize.span();
            put_le(&mut self.bytes, start + o, w, schema.size);
            let (o, w) = RecordField::ElemAlign.span();
            put_le(&mut self.bytes, start + o, w, schema.align);
        }
        self.reseal(record);
    }

    /// Writes the image to `path` (replacing the file), extended to `file_len` (sparse).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let file = FsOpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        file.write_all_at(&self.bytes, 0)?;
        file.set_len(self.file_len)?;
        Ok(())
    }

    /// Writes the image over the file at `path` in place, as a writer that ignores the locks
    /// would: a store that has the file mapped sees the new bytes at once. The length is kept.
    pub fn write_in_place(&self, path: &Path) -> std::io::Result<()> {
        let file = FsOpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        let n = (self.bytes.len() as u64).min(len) as usize;
        file.write_all_at(&self.bytes[..n], 0)
    }
}

/// The entry blocks of the seed store, by offset: what `Mutation`s address as "slots".
pub fn seed_blocks() -> &'static [u64] {
    static BLOCKS: OnceLock<Vec<u64>> = OnceLock::new();
    BLOCKS.get_or_init(|| {
        let bytes = seed();
        let root = get_ne(bytes, INDEX_ROOT as usize, 8) as usize;
        let slots = get_le(bytes, root + 8, 8) as usize;
        let mut blocks: Vec<u64> =
            (0..slots).map(|i| get_ne(bytes, root + 64 + 16 * i, 8)).filter(|&b| b > 1).collect();
        blocks.sort_unstable();
        blocks.dedup();
        assert!(!blocks.is_empty(), "the seed store has entries");
        blocks
    })
}

/// Checks, once, that the record offsets above are where `block::encode` puts each field: a
/// format change that moves them fails here, loudly, instead of silently fuzzing the wrong bytes.
fn check_record_offsets() {
    let e = Entry {
        name: "abc".into(),
        kind: shmstore::EntryKind::Array,
        slot_count: 1,
        version: 0x0506_0708,
        fingerprint: 0x1111,
        elem_size: 0x2222,
        elem_align: 0x2,
        count: 0x3333,
        data_offset: 0x4444,
        slot_stride: 0,
        schema_offset: 0x5555,
        schema_len: 0x6666,
        lock_offset: 0,
    };
    let bytes = blk::encode(&e, 0x7777);
    let want = [
        (RecordField::Kind, 2),
        (RecordField::SlotCount, 1),
        (RecordField::NameLen, 3),
        (RecordField::Version, 0x0506_0708),
        (RecordField::Fingerprint, 0x1111),
        (RecordField::ElemSize, 0x2222),
        (RecordField::ElemAlign, 2),
        (RecordField::Count, 0x3333),
        (RecordField::DataOffset, 0x4444),
        (RecordField::SlotStride, 0),
        (RecordField::SchemaOffset, 0x5555),
        (RecordField::SchemaLen, 0x6666),
        (RecordField::LockOffset, 0x7777),
    ];
    for (field, value) in want {
        let (at, width) = field.span();
        assert_eq!(get_le(&bytes, at, width), value, "block field {field:?} moved in the format");
    }
    assert_eq!(&bytes[8..11], b"abc");
}

// ---------------------------------------------------------------------------------------------
// Schema edits.

/// The layouts whose schemas seed the schema target, as schemas.
pub fn base_schemas() -> &'static [Schema] {
    static BASES: OnceLock<Vec<Schema>> = OnceLock::new();
    BASES.get_or_init(|| {
        vec![
            Schema::from(&Config::LAYOUT),
            Schema::from(&Counters::LAYOUT),
            Schema::from(&Point::LAYOUT),
            Schema::from(&Nested::LAYOUT),
            Schema::from(&Mode::LAYOUT),
            Schema::from(&<[Point; 3]>::LAYOUT),
            Schema::from(&u64::LAYOUT),
            Schema::from(&bool::LAYOUT),
            Schema::from(&FixedStr::<16>::LAYOUT),
            Schema::from(&AtomicU64::LAYOUT),
        ]
    })
}

fn prim(code: u8) -> Primitive {
    Primitive::ALL[usize::from(code) % Primitive::ALL.len()]
}

fn node_at<'a>(mut node: &'a mut Schema, path: &[u8]) -> &'a mut Schema {
    for &step in path {
        // Decide with a shared borrow first, so that the mutable one is taken only once.
        let has_child = match &node.kind {
            SchemaKind::Array { .. } => true,
            SchemaKind::Struct { fields } => !fields.is_empty(),
            _ => false,
        };
        if !has_child {
            break;
        }
        node = match &mut node.kind {
            SchemaKind::Array { elem, .. } => elem,
            SchemaKind::Struct { fields } => {
                let i = usize::from(step) % fields.len();
                &mut fields[i].schema
            }
            _ => unreachable!("checked above"),
        };
    }
    node
}

fn fix_fingerprints(node: &mut Schema) {
    match &mut node.kind {
        SchemaKind::Array { elem, .. } => fix_fingerprints(elem),
        SchemaKind::Struct { fields } => fields.iter_mut().for_each(|f| fix_fingerprints(&mut f.schema)),
        _ => {}
    }
    node.fingerprint = node.compute_fingerprint();
}

/// How deep a schema nests (so that edits cannot build trees deeper than the decoder allows by
/// much, which would only make the encoder recurse for nothing).
fn depth(node: &Schema) -> usize {
    1 + match &node.kind {
        SchemaKind::Array { elem, .. } => depth(elem),
        SchemaKind::Struct { fields } => fields.iter().map(|f| depth(&f.schema)).max().unwrap_or(0),
        _ => 0,
    }
}

/// How many nodes and variants a schema tree has.
fn nodes(node: &Schema) -> usize {
    1 + match &node.kind {
        SchemaKind::Array { elem, .. } => nodes(elem),
        SchemaKind::Struct { fields } => fields.iter().map(|f| nodes(&f.schema)).sum(),
        SchemaKind::Enum { variants, .. } => variants.len(),
        _ => 0,
    }
}

/// The most nodes and variants an edited tree may reach: duplicated fields of duplicated structs
/// grow it exponentially, repairing fingerprints costs its size times its depth, and a harness
/// that spends seconds on its own trees only finds its own slowness.
const MAX_NODES: usize = 512;

/// Applies one edit to a schema tree (a no-op where it does not fit).
pub fn apply_schema_edit(root: &mut Schema, edit: &SchemaEdit) {
    let big = nodes(root) > MAX_NODES;
    let too_deep = big || depth(root) > schema::MAX_DEPTH + 2;
    let node = node_at(root, &edit.path);
    let field_count = |node: &Schema| match &node.kind {
        SchemaKind::Struct { fields } => fields.len(),
        _ => 0,
    };
    let scratch = Image { bytes: Vec::new(), file_len: 0 };
    match &edit.change {
        SchemaChange::TypeName(name) => node.type_name = name.chars().take(80).collect(),
        SchemaChange::Size(v) => node.size = v.apply(node.size, &scratch, None),
        SchemaChange::Align(v) => node.align = v.apply(node.align, &scratch, None),
        SchemaChange::Version(v) => node.version = *v,
        SchemaChange::Fingerprint(f) => node.fingerprint = *f,
        SchemaChange::ArrayLen(v) => {
            if let SchemaKind::Array { len, .. } = &mut node.kind {
                *len = v.apply(*len, &scratch, None);
            }
        }
        SchemaChange::FieldName(i, name) => {
            let n = field_count(node);
            if let SchemaKind::Struct { fields } = &mut node.kind {
                if n > 0 {
                    fields[usize::from(*i) % n].name = name.chars().take(80).collect();
                }
            }
        }
        SchemaChange::FieldOffset(i, v) => {
            let n = field_count(node);
            if let SchemaKind::Struct { fields } = &mut node.kind {
                if n > 0 {
                    let f = &mut fields[usize::from(*i) % n];
                    f.offset = v.apply(f.offset, &scratch, None);
                }
            }
        }
        SchemaChange::RemoveField(i) => {
            let n = field_count(node);
            if let SchemaKind::Struct { fields } = &mut node.kind {
                if n > 0 {
                    fields.remove(usize::from(*i) % n);
                }
            }
        }
        SchemaChange::DuplicateField(i) => {
            let n = field_count(node);
            if let SchemaKind::Struct { fields } = &mut node.kind {
                if n > 0 && n < 64 && !big {
                    let f = fields[usize::from(*i) % n].clone();
                    fields.push(f);
                }
            }
        }
        SchemaChange::SwapFields(a, b) => {
            let n = field_count(node);
            if let SchemaKind::Struct { fields } = &mut node.kind {
                if n > 0 {
                    fields.swap(usize::from(*a) % n, usize::from(*b) % n);
                }
            }
        }
        SchemaChange::VariantName(i, name) => {
            if let SchemaKind::Enum { variants, .. } = &mut node.kind {
                let n = variants.len();
                if n > 0 {
                    variants[usize::from(*i) % n].name = name.chars().take(80).collect();
                }
            }
        }
        SchemaChange::VariantValue(i, v) => {
            if let SchemaKind::Enum { variants, .. } = &mut node.kind {
                let n = variants.len();
                if n > 0 {
                    let var = &mut variants[usize::from(*i) % n];
                    var.value = v.apply(var.value, &scratch, None);
                }
            }
        }
        SchemaChange::RemoveVariant(i) => {
            if let SchemaKind::Enum { variants, .. } = &mut node.kind {
                let n = variants.len();
                if n > 0 {
                    variants.remove(usize::from(*i) % n);
                }
            }
        }
        SchemaChange::AddVariant(name, value) => {
            if let SchemaKind::Enum { variants, .. } = &mut node.kind {
                if variants.len() < 300 && !big {
                    variants.push(SchemaVariant { name: name.chars().take(80).collect(), value: *value });
                }
            }
        }
        SchemaChange::Repr(code) => {
            if let SchemaKind::Enum { repr, .. } = &mut node.kind {
                *repr = prim(*code);
            }
        }
        SchemaChange::Prim(code) => node.kind = SchemaKind::Primitive(prim(*code)),
        SchemaChange::Atomic(code) => node.kind = SchemaKind::Atomic(prim(*code)),
        SchemaChange::Capacity(v) => {
            if let SchemaKind::FixedStr { capacity } = &mut node.kind {
                *capacity = v.apply(*capacity, &scratch, None);
            }
        }
        SchemaChange::WrapInArray(len) => {
            if !too_deep {
                let inner = node.clone();
                node.size = inner.size.wrapping_mul(*len);
                node.type_name = String::new();
                node.kind = SchemaKind::Array { elem: Box::new(inner), len: *len };
            }
        }
        SchemaChange::Replace(i) => {
            if !big {
                let bases = base_schemas();
                *node = bases[usize::from(*i) % bases.len()].clone();
            }
        }
        SchemaChange::WrapInStruct(name) => {
            if !too_deep {
                let inner = node.clone();
                node.type_name = name.chars().take(80).collect();
                node.kind =
                    SchemaKind::Struct { fields: vec![SchemaField { name: "inner".into(), offset: 0, schema: inner }] };
            }
        }
    }
    if edit.fix_fingerprints {
        fix_fingerprints(root);
    }
}

/// Everything a tool does with a decoded schema: render it, diff it against real layouts, and
/// decode and validate values with it.
pub fn exercise_schema(s: &Schema, data: &[u8]) {
    let _ = s.to_string();
    let _ = s.display_name();
    let _ = s.compute_fingerprint();
    let _ = value::needs_validation(s);
    for base in base_schemas() {
        let d = diff::diff(s, base);
        let _ = d.to_string();
        let _ = (d.is_empty(), d.layout_identical());
        let d = diff::diff(base, s);
        let _ = d.to_string();
    }
    if let Ok(v) = value::decode(s, data) {
        let _ = v.to_string();
        let _ = v.has_invalid();
    }
    let _ = value::validate(s, data, "value");
    let mut found = 0;
    let _ = value::find_invalid_elements(s, data, "arr", 3, &mut |i| {
        found += 1;
        let _ = i.to_string();
        if found < 16 {
            std::ops::ControlFlow::Continue(())
        } else {
            std::ops::ControlFlow::Break(())
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Driving the API over a (possibly corrupt) store.

/// Every way the harness opens an entry.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `Shared<Config>`.
    Config,
    /// `Shared<Counters>`.
    Counters,
    /// `Shared<u32>`.
    U32,
    /// `Shared<u64>`.
    U64,
    /// `Shared<[Point; 3]>`.
    Wide,
    /// `SharedArray<u32>`.
    Nums,
    /// `SharedArray<Point>`.
    Points,
    /// `SharedArray<bool>`.
    Flags,
    /// `SharedArray<Mode>`.
    Modes,
    /// `SharedBytes`.
    Bytes,
}

/// Every type, for the targets that try them all.
pub const ALL_TYPES: [Ty; 10] =
    [Ty::Config, Ty::Counters, Ty::U32, Ty::U64, Ty::Wide, Ty::Nums, Ty::Points, Ty::Flags, Ty::Modes, Ty::Bytes];

/// An open entry of any of the harness's types.
pub enum Handle {
    /// An object.
    Config(shmstore::Shared<Config>),
    /// An object holding atomics.
    Counters(shmstore::Shared<Counters>),
    /// An object.
    U32(shmstore::Shared<u32>),
    /// An object.
    U64(shmstore::Shared<u64>),
    /// An object.
    Wide(shmstore::Shared<[Point; 3]>),
    /// An array.
    Nums(SharedArray<u32>),
    /// An array.
    Points(SharedArray<Point>),
    /// An array with invalid bit patterns.
    Flags(SharedArray<bool>),
    /// An array with invalid bit patterns.
    Modes(SharedArray<Mode>),
    /// A byte region.
    Bytes(SharedBytes),
}

/// Opens entry `name` as `ty`.
pub fn open_as(store: &Store, name: &str, ty: Ty) -> shmstore::Result<Handle> {
    Ok(match ty {
        Ty::Config => Handle::Config(store.object(name)?),
        Ty::Counters => Handle::Counters(store.object(name)?),
        Ty::U32 => Handle::U32(store.object(name)?),
        Ty::U64 => Handle::U64(store.object(name)?),
        Ty::Wide => Handle::Wide(store.object(name)?),
        Ty::Nums => Handle::Nums(store.array(name)?),
        Ty::Points => Handle::Points(store.array(name)?),
        Ty::Flags => Handle::Flags(store.array(name)?),
        Ty::Modes => Handle::Modes(store.array(name)?),
        Ty::Bytes => Handle::Bytes(store.bytes(name)?),
    })
}

/// A read or write an operation makes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Access {
    /// `load` / `get`.
    Load,
    /// `read()`, the guard dropped at once.
    Read,
    /// `store` / `set`.
    Store(u64),
    /// `update` / `update(index, len, ..)`.
    Update(u64),
    /// `write()`, changed and committed.
    Write(u64),
    /// `read_at(index, len)`.
    ReadAt(u16, u8),
    /// `write_at(index, len)`.
    WriteAt(u16, u8, u64),
    /// `view(range)` then a read and a write through it.
    View(u16, u16),
    /// `version()` and `wait_for_change` with a zero timeout.
    Version,
    /// A stream over a byte region: seek, read, write.
    Stream(u16, u8),
}

fn point(v: u64) -> Point {
    Point { x: v as i32, y: (v >> 32) as i32 }
}

fn mode(v: u64) -> Mode {
    [Mode::Idle, Mode::Busy, Mode::Done][(v % 3) as usize]
}

fn config(v: u64) -> Config {
    Config {
        port: v as u16,
        verbose: v & 1 == 1,
        mode: mode(v),
        _pad: [0; 4],
        max: v,
        name: FixedStr::new(if v & 2 == 0 { "a" } else { "bb" }).unwrap(),
    }
}

macro_rules! array_access {
    ($a:expr, $access:expr, $make:expr) => {{
        let a = $a;
        let make = $make;
        match $access {
            Access::Load => {
                let _ = a.get(0);
                let _ = a.get(a.len().saturating_sub(1));
            }
            Access::Read => {
                let _ = a.read().map(|g| g.len());
            }
            Access::Store(v) => {
                let _ = a.set((v % 64) as usize, make(v));
            }
            Access::Update(v) => {
                let _ = a.update((v % 8) as usize, ((v >> 8) % 8) as usize, |s| {
                    for x in s.iter_mut() {
                        *x = make(v);
                    }
                });
            }
            Access::Write(v) => {
                if let Ok(mut g) = a.write() {
                    if let Some(x) = g.first_mut() {
                        *x = make(v);
                    }
                }
            }
            Access::ReadAt(i, n) => {
                let mut out = vec![make(0); usize::from(n % 32)];
                let _ = a.read_at(usize::from(i), &mut out);
            }
            Access::WriteAt(i, n, v) => {
                let values = vec![make(v); usize::from(n % 32)];
                let _ = a.write_at(usize::from(i), &values);
            }
            Access::View(s, e) => {
                if let Ok(view) = a.view(usize::from(s)..usize::from(e)) {
                    let _ = view.read().map(|g| g.len());
                    let _ = view.get(0);
                    let _ = view.set(0, make(1));
                    let mut out = vec![make(0); 3];
                    let _ = view.read_at(1, &mut out);
                    let _ = view.write_at(1, &out);
                    let _ = view.view(1..).map(|v| v.len());
                }
            }
            Access::Version => {
                let v = a.version();
                let _ = a.wait_for_change(v, std::time::Duration::ZERO);
            }
            Access::Stream(..) => {}
        }
    }};
}

macro_rules! object_access {
    ($o:expr, $access:expr, $make:expr, $touch:expr) => {{
        let o = $o;
        let make = $make;
        let touch = $touch;
        match $access {
            Access::Load | Access::ReadAt(..) => {
                let _ = o.load_versioned();
            }
            Access::Read | Access::View(..) | Access::Stream(..) => {
                let _ = o.read().map(|g| touch(&*g));
            }
            Access::Store(v) | Access::WriteAt(_, _, v) => {
                let _ = o.store(make(v));
            }
            Access::Update(v) => {
                let _ = o.update(|x| *x = make(v));
            }
            Access::Write(v) => {
                if let Ok(mut g) = o.write() {
                    *g = make(v);
                    if v & 1 == 1 {
                        let _ = g.abort();
                    }
                }
            }
            Access::Version => {
                let v = o.version();
                let _ = o.wait_for_change(v, std::time::Duration::ZERO);
            }
        }
    }};
}

/// Performs `access` on `handle`. Guards never outlive the call, so the harness itself never asks
/// for a lock it already holds.
pub fn access(handle: &Handle, access: Access) {
    match handle {
        Handle::Config(o) => object_access!(o, access, config, |c: &Config| c.name.len()),
        Handle::U32(o) => object_access!(o, access, |v: u64| v as u32, |x: &u32| *x as usize),
        Handle::U64(o) => object_access!(o, access, |v: u64| v, |x: &u64| *x as usize),
        Handle::Wide(o) => object_access!(o, access, |v: u64| [point(v); 3], |x: &[Point; 3]| x[0].x as usize),
        Handle::Counters(o) => match access {
            Access::Load | Access::Read | Access::ReadAt(..) | Access::View(..) | Access::Stream(..) => {
                let _ = o.read().map(|c| (c.hits.load(Ordering::Relaxed), c.ready.load(Ordering::Relaxed)));
            }
            Access::Store(v) | Access::Update(v) | Access::Write(v) | Access::WriteAt(_, _, v) => {
                if let Ok(c) = o.read() {
                    c.hits.fetch_add(v, Ordering::Relaxed);
                    c.ready.store(v & 1 == 1, Ordering::Relaxed);
                }
                let _ = o.update(|c| *c.hits.get_mut() += 1);
            }
            Access::Version => {
                let _ = o.version();
            }
        },
        Handle::Nums(a) => array_access!(a, access, |v: u64| v as u32),
        Handle::Points(a) => array_access!(a, access, point),
        Handle::Flags(a) => array_access!(a, access, |v: u64| v & 1 == 1),
        Handle::Modes(a) => array_access!(a, access, mode),
        Handle::Bytes(b) => match access {
            Access::Load | Access::Read => {
                let _ = b.read().map(|g| g.len());
            }
            Access::ReadAt(i, n) => {
                let mut out = vec![0u8; usize::from(n)];
                let _ = b.read_at(u64::from(i), &mut out);
            }
            Access::WriteAt(i, n, v) => {
                let data = vec![v as u8; usize::from(n)];
                let _ = b.write_at(u64::from(i), &data);
            }
            Access::Store(v) | Access::Update(v) | Access::Write(v) => {
                if let Ok(mut g) = b.write() {
                    if let Some(x) = g.first_mut() {
                        *x = v as u8;
                    }
                }
            }
            Access::View(s, e) => {
                if let Ok(view) = b.view(u64::from(s)..u64::from(e)) {
                    let _ = view.read().map(|g| g.len());
                    let _ = view.set(0, 9);
                }
            }
            Access::Version => {
                let v = b.version();
                let _ = b.wait_for_change(v, std::time::Duration::ZERO);
            }
            Access::Stream(pos, n) => {
                use std::io::{Read as _, Seek, SeekFrom, Write as _};
                let mut s = b.stream();
                let _ = s.seek(SeekFrom::Start(u64::from(pos)));
                let mut buf = vec![0u8; usize::from(n)];
                let _ = s.read(&mut buf);
                let _ = s.write(&buf);
                let _ = s.seek(SeekFrom::End(-i64::from(n)));
                let _ = s.read(&mut buf);
            }
        },
    }
}

/// Everything read-only that a tool does with an open store: list, describe, and read raw.
pub fn survey(store: &Store) -> Vec<String> {
    let _ = store.info();
    let _ = (store.capacity(), store.used(), store.max_entries(), store.is_read_only());
    let mut names: Vec<String> = SEED_NAMES.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = store.entries() {
        for e in entries {
            let _ = (e.is_double_buffered(), e.kind.as_str());
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
    }
    for name in &names {
        let _ = store.entry_info(name);
        let schema = store.schema(name);
        if let Ok(s) = &schema {
            let _ = s.to_string();
            let _ = value::needs_validation(s);
        }
        if let (Ok(raw), Ok(s)) = (store.read_raw(name, 0, 4), &schema) {
            let _ = value::decode(s, raw.get(..s.size.min(raw.len() as u64) as usize).unwrap_or(&[]));
        }
        let _ = store.read_raw(name, u64::MAX, 2);
    }
    names
}

/// The type each seed entry was created with.
pub fn seed_type(name: &str) -> Option<Ty> {
    Some(match name {
        "config" => Ty::Config,
        "counters" => Ty::Counters,
        "nums" => Ty::Nums,
        "points" => Ty::Points,
        "flags" => Ty::Flags,
        "modes" => Ty::Modes,
        "blob" => Ty::Bytes,
        "old" => Ty::U64,
        "wide" => Ty::Wide,
        _ => return None,
    })
}

/// What the `open_store` target does with the store it opened.
#[derive(Arbitrary, Debug, Clone)]
pub struct Uses {
    /// Also open the file read-only and do it all again.
    pub read_only_too: bool,
    /// Entries (by index into the names the store lists), each opened as a type and used.
    pub uses: Vec<(u8, Ty, Access)>,
}

/// The `open_store` target: mutate the seed image, write it, open it (read-write, and read-only if
/// asked), list it, open every entry with the type it was created with and load it, then open
/// entries as the input says, with any type, and use them.
pub fn run_open_store(mutations: &[Mutation], uses: &Uses) {
    let mut image = Image::seed();
    for m in mutations.iter().take(16) {
        image.apply(m);
    }
    let path = scratch_path("open_store.shm");
    if image.write(&path).is_err() {
        return;
    }
    for read_only in [false, true] {
        if read_only && !uses.read_only_too {
            break;
        }
        let Ok(store) = Store::options().read_only(read_only).open(&path) else { continue };
        let names = survey(&store);
        if !read_only && std::env::var_os("SHMSTORE_FUZZ_NO_ORACLE").is_none() {
            check_handed_out(&store, &image, &names);
        }
        for name in &names {
            if let Some(handle) = seed_type(name).and_then(|ty| open_as(&store, name, ty).ok()) {
                access(&handle, Access::Load);
                access(&handle, Access::Read);
            }
        }
        for (i, ty, a) in uses.uses.iter().take(12) {
            let name = &names[usize::from(*i) % names.len()];
            if let Ok(handle) = open_as(&store, name, *ty) {
                access(&handle, *a);
            }
        }
        let _ = store.flush();
    }
}

/// The soundness oracle of `open_store`: what a store hands out must not alias.
///
/// Among the entries the store describes (so any safe call can open them): no two may share data
/// bytes (one could then be written through a `&mut [T]` while the other is read through a `&[U]`,
/// or a `bool` be written as 7), and no entry's data may overlap another's block (which holds its
/// sequence and lock words; format v2 derives the lock byte from the block's offset, so two
/// entries share a lock only if they share a block). A store that refuses such a file, at open or
/// when the entry is looked up, passes.
///
/// `SHMSTORE_FUZZ_NO_ORACLE=1` turns it off, to keep fuzzing for crashes while a known finding is
/// still open.
pub fn check_handed_out(store: &Store, _image: &Image, names: &[String]) {
    let mut seen: Vec<(String, u64, u64)> = Vec::new();
    for name in names {
        let Ok(info) = store.entry_info(name) else { continue };
        let (start, len) = (info.data_offset, info.bytes);
        for (other, o_start, o_len) in &seen {
            let disjoint = start.saturating_add(len) <= *o_start || o_start.saturating_add(*o_len) <= start;
            assert!(
                len == 0 || *o_len == 0 || disjoint,
                "the store hands out entries `{other}` ({o_start}+{o_len}) and `{name}` ({start}+{len}), whose data overlap"
            );
        }
        seen.push((name.clone(), start, len));
        // Its entry block holds its live words (sequence, lock state): no other entry's data
        // may overlap it either.
        seen.push((format!("the block of {name}"), info.record_offset, BLOCK_SIZE));
    }
}

/// The `schema_decode` target's input.
#[derive(Arbitrary, Debug)]
pub enum SchemaInput {
    /// Arbitrary bytes.
    Raw(Vec<u8>, Vec<u8>),
    /// A real layout's schema, changed structurally, re-encoded.
    Structured {
        /// Which base layout.
        base: u8,
        /// The edits.
        edits: Vec<SchemaEdit>,
        /// Raw byte flips of the re-encoding, by position.
        flips: Vec<(u16, u8)>,
        /// Bytes to decode values from.
        data: Vec<u8>,
    },
}

/// The `schema_decode` target.
pub fn run_schema(input: &SchemaInput) {
    match input {
        SchemaInput::Raw(bytes, data) => {
            if let Ok(s) = schema::decode(bytes) {
                exercise_schema(&s, data);
                assert_eq!(schema::decode(&s.encode()).as_ref(), Ok(&s), "a decoded schema re-encodes to itself");
            }
        }
        SchemaInput::Structured { base, edits, flips, data } => {
            let bases = base_schemas();
            let mut s = bases[usize::from(*base) % bases.len()].clone();
            for e in edits.iter().take(16) {
                apply_schema_edit(&mut s, e);
            }
            exercise_schema(&s, data);
            let mut bytes = s.encode();
            if bytes.len() > 1 << 20 {
                return;
            }
            for (at, xor) in flips.iter().take(4) {
                let n = bytes.len();
                bytes[usize::from(*at) % n] ^= xor;
            }
            if let Ok(decoded) = schema::decode(&bytes) {
                exercise_schema(&decoded, data);
                if flips.is_empty() {
                    assert_eq!(decoded, s, "a schema that decodes is the one that was encoded");
                }
                assert_eq!(schema::decode(&decoded.encode()).as_ref(), Ok(&decoded), "decode . encode is stable");
            }
        }
    }
}

/// One step of the `api_ops` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// `object_or_init` of a harness type.
    CreateObject(u8, Ty, u64),
    /// `array_or_init` of a harness type.
    CreateArray(u8, Ty, u16),
    /// `bytes_or_init`, up to 4 MiB (so that the store grows).
    CreateBytes(u8, u32),
    /// Open an entry and keep the handle.
    Open(u8, Ty),
    /// Use a kept handle.
    Access(u8, Access),
    /// Drop a kept handle.
    Drop(u8),
    /// `migrate` between harness types.
    Migrate(u8, Ty, Ty),
    /// Drop the store (handles keep it alive) and open it again.
    Reopen,
    /// Open a second store on the same file, used by the following steps until the next switch.
    Switch,
    /// List and describe everything.
    Survey,
    /// Mutate the file's bytes in place, as a writer that ignores the locks would.
    Mutate(Mutation),
    /// `flush`.
    Flush,
}

fn op_name(n: u8) -> String {
    match SEED_NAMES.get(usize::from(n)) {
        Some(name) => name.to_string(),
        None => format!("e{}", n % 24),
    }
}

fn migrate(store: &Store, name: &str, from: Ty, to: Ty) {
    macro_rules! to {
        ($old:ty, $conv:expr) => {{
            let conv = $conv;
            match to {
                Ty::U32 => store.migrate(name, |o: $old| conv(o) as u32).map(|_| ()),
                Ty::U64 => store.migrate(name, |o: $old| conv(o)).map(|_| ()),
                Ty::Config => store.migrate(name, |o: $old| config(conv(o))).map(|_| ()),
                Ty::Wide => store.migrate(name, |o: $old| [point(conv(o)); 3]).map(|_| ()),
                Ty::Nums => store.migrate(name, |o: $old| conv(o) as u32).map(|_| ()),
                Ty::Points => store.migrate(name, |o: $old| point(conv(o))).map(|_| ()),
                Ty::Flags => store.migrate(name, |o: $old| conv(o) & 1 == 1).map(|_| ()),
                Ty::Modes => store.migrate(name, |o: $old| mode(conv(o))).map(|_| ()),
                Ty::Counters => store
                    .migrate(name, |o: $old| Counters { hits: AtomicU64::new(conv(o)), ..Counters::default() })
                    .map(|_| ()),
                Ty::Bytes => store.migrate(name, |o: $old| conv(o) as u8).map(|_| ()),
            }
        }};
    }
    let _ = match from {
        Ty::U32 | Ty::Nums => to!(u32, u64::from),
        Ty::U64 => to!(u64, |x| x),
        Ty::Config => to!(Config, |c: Config| c.max),
        Ty::Wide => to!([Point; 3], |p: [Point; 3]| p[0].x as u64),
        Ty::Points => to!(Point, |p: Point| p.x as u64),
        Ty::Flags => to!(bool, u64::from),
        Ty::Modes => to!(Mode, |m: Mode| m as u64),
        Ty::Bytes => to!(u8, u64::from),
        Ty::Counters => to!(u64, |x| x),
    };
}

/// The `api_ops` target: a sequence of operations on a fresh store (a copy of the seed), with the
/// file's bytes mutated in place between steps.
pub fn run_api_ops(ops: &[Op]) {
    let path = scratch_path("api_ops.shm");
    if Image::seed().write(&path).is_err() {
        return;
    }
    // The file is changed between steps while the store is open, by a writer that takes no lock:
    // the threat model's "process that writes the file without shmstore's locks". In robust lock
    // mode such a writer can corrupt the robust-list pointers of a mutex this process holds, and
    // glibc then writes through them when it unlocks: no library can defend against that, and
    // the README says so (use OFD mode where untrusted processes can write the file). This target
    // therefore runs in OFD mode; `open_store` mutates files at rest, which robust mode's reset at
    // open defends against, and runs in the default mode.
    let open = || Store::options().max_capacity(64 << 20).lock_mode(LockMode::Ofd).open(&path);
    let Ok(first) = open() else { return };
    let mut stores = vec![first];
    let mut current = 0usize;
    let mut handles: Vec<Handle> = Vec::new();
    // A mutation is applied to the file as it is now, read back through the file.
    for op in ops.iter().take(64) {
        let store = &stores[current];
        match op {
            Op::CreateObject(n, ty, v) => {
                let name = op_name(*n);
                let _ = match ty {
                    Ty::Config => store.object_or_init(&name, || config(*v)).map(|_| ()),
                    Ty::Counters => store.object_or_init(&name, Counters::default).map(|_| ()),
                    Ty::U32 => store.object_or_init(&name, || *v as u32).map(|_| ()),
                    Ty::U64 => store.object_or_init(&name, || *v).map(|_| ()),
                    Ty::Wide => store.object_or_init(&name, || [point(*v); 3]).map(|_| ()),
                    _ => Ok(()),
                };
            }
            Op::CreateArray(n, ty, len) => {
                let (name, len) = (op_name(*n), usize::from(*len));
                let _ = match ty {
                    Ty::Nums | Ty::U32 => store.array_or_init(&name, len, 3u32).map(|_| ()),
                    Ty::Points => store.array_or_init(&name, len, point(5)).map(|_| ()),
                    Ty::Flags => store.array_or_init(&name, len, true).map(|_| ()),
                    Ty::Modes => store.array_or_init(&name, len, Mode::Done).map(|_| ()),
                    Ty::U64 => store.array_or_init(&name, len, 9u64).map(|_| ()),
                    _ => store.bytes_or_init(&name, len as u64).map(|_| ()),
                };
            }
            Op::CreateBytes(n, len) => {
                let _ = store.bytes_or_init(&op_name(*n), u64::from(*len % (4 << 20)));
            }
            Op::Open(n, ty) => {
                if handles.len() < 16 {
                    if let Ok(h) = open_as(store, &op_name(*n), *ty) {
                        handles.push(h);
                    }
                }
            }
            Op::Access(i, a) => {
                if !handles.is_empty() {
                    let n = handles.len();
                    access(&handles[usize::from(*i) % n], *a);
                }
            }
            Op::Drop(i) => {
                if !handles.is_empty() {
                    let n = handles.len();
                    handles.remove(usize::from(*i) % n);
                }
            }
            Op::Migrate(n, from, to) => migrate(store, &op_name(*n), *from, *to),
            Op::Reopen => {
                if let Ok(s) = open() {
                    stores[current] = s;
                }
            }
            Op::Switch => {
                if stores.len() < 2 {
                    if let Ok(s) = open() {
                        stores.push(s);
                    }
                }
                current = (current + 1) % stores.len();
            }
            Op::Survey => {
                survey(store);
            }
            Op::Mutate(m) => {
                let Ok(bytes) = std::fs::read(&path) else { continue };
                let len = bytes.len() as u64;
                if len > MAX_IMAGE {
                    continue;
                }
                let mut image = Image { bytes, file_len: len };
                // The file's length stays: a store never survives its file shrinking (SIGBUS, which
                // the shared `flock` exists to prevent), and no mapping outlives a longer one.
                if matches!(m, Mutation::FileLen(_)) {
                    continue;
                }
                image.apply(m);
                let _ = image.write_in_place(&path);
            }
            Op::Flush => {
                let _ = store.flush();
            }
        }
    }
}

/// Runs `target` on `data` exactly as its fuzz target does: the bytes are decoded into the
/// target's structured input with `arbitrary` (inputs that do not decode are skipped, as libFuzzer
/// skips them). For replaying crash files in tests.
pub fn replay(target: &str, data: &[u8]) {
    use arbitrary::Unstructured;
    match target {
        "open_store" => {
            if let Ok((mutations, uses)) = <(Vec<Mutation>, Uses)>::arbitrary_take_rest(Unstructured::new(data)) {
                run_open_store(&mutations, &uses);
            }
        }
        "schema_decode" => {
            if let Ok(input) = SchemaInput::arbitrary_take_rest(Unstructured::new(data)) {
                run_schema(&input);
            }
        }
        "api_ops" => {
            if let Ok(ops) = <Vec<Op>>::arbitrary_take_rest(Unstructured::new(data)) {
                run_api_ops(&ops);
            }
        }
        other => panic!("no fuzz target named {other}"),
    }
}

/// The structured input `data` decodes to for `target`, as `Debug` text: what a crash file means.
pub fn describe(target: &str, data: &[u8]) -> String {
    use arbitrary::Unstructured;
    let u = Unstructured::new(data);
    match target {
        "open_store" => format!("{:#?}", <(Vec<Mutation>, Uses)>::arbitrary_take_rest(u)),
        "schema_decode" => format!("{:#?}", SchemaInput::arbitrary_take_rest(u)),
        "api_ops" => format!("{:#?}", <Vec<Op>>::arbitrary_take_rest(u)),
        other => panic!("no fuzz target named {other}"),
    }
}
