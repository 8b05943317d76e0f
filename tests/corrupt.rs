//! Damaged, foreign and missing files give typed errors: never a panic, never `Ok`, and a refused
//! file is left exactly as it was ("bad input loses nothing").

mod common;

use std::fs;
use std::mem::discriminant;
use std::path::{Path, PathBuf};

use common::{active_data_offset, poke, raw_record, raw_records, temp_store, Rng};
use common::{
    ALLOC_END_OFFSET, CAPACITY_OFFSET, CATALOG_OFFSET, RECORD_SIZE, RECORD_STATIC_OFFSET, RECORD_STATIC_SIZE,
};
use shmstore::format::entry::{lock_offset_for, Entry};
use shmstore::format::header::Header;
use shmstore::{EntryKind, Error, FixedStr, Schema, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
enum Mode {
    #[default]
    Off = 0,
    On = 1,
    Auto = 4,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Flags {
    count: u32,
    enabled: bool,
    mode: Mode,
    _pad: [u8; 2],
    label: FixedStr<8>,
}

const ENABLED_AT: u64 = 4;
const MODE_AT: u64 = 5;
const LABEL_AT: u64 = 8;

const CAPACITY: u64 = 64 * 1024;
/// Where data starts with the default 64 catalog slots: 512 + 64 * 256, rounded up to 4096.
const DATA_OFFSET: u64 = 20480;

fn flags() -> Flags {
    Flags { count: 42, enabled: true, mode: Mode::Auto, _pad: [0; 2], label: FixedStr::new("primary").unwrap() }
}

/// A valid store with an object and two arrays, closed.
fn build() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    store.object_or_init("flags", flags).unwrap();
    store.array_or_init::<u32>("ids", 16, 9).unwrap().write_at(0, &[1, 2, 3]).unwrap();
    store.array_or_init::<bool>("bits", 8, true).unwrap();
    store.close().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), CAPACITY);
    (dir, path)
}

fn expect_err<T: std::fmt::Debug>(result: shmstore::Result<T>, what: &str) -> Error {
    match result {
        Err(e) => e,
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
    }
}

/// Opens the file every way there is; each must fail with the same kind of error, and the file
/// must be byte-for-byte unchanged afterwards. Returns the error of `Store::open`.
fn refuse(path: &Path, what: &str) -> Error {
    refuse_with(path, what, true)
}

/// Like [`refuse`], but without the opens that may create: an empty file is adopted as a new
/// store by those (as .NET does), and refused only by the others.
fn refuse_without_create(path: &Path, what: &str) -> Error {
    refuse_with(path, what, false)
}

fn refuse_with(path: &Path, what: &str, creating: bool) -> Error {
    let before = fs::read(path).unwrap();
    let err = expect_err(Store::open(path), what);
    let mut others = vec![
        expect_err(Store::options().read_only(true).open(path), what),
        expect_err(Store::options().capacity(4 * CAPACITY).open(path), what),
    ];
    if creating {
        others.push(expect_err(Store::open_or_create(path, 4 * CAPACITY), what));
        others.push(expect_err(Store::options().create(true).capacity(4 * CAPACITY).open(path), what));
    }
    for other in others {
        assert_eq!(discriminant(&other), discriminant(&err), "{what}: {err:?} vs {other:?}");
    }
    assert!(fs::read(path).unwrap() == before, "{what}: a refused open changed the file");
    // The message is written for people: it names the file.
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{what}: {err}");
    err
}

fn flip(path: &Path, at: u64, mask: u8) {
    let mut b = [0u8];
    use std::os::unix::fs::FileExt;
    fs::File::open(path).unwrap().read_exact_at(&mut b, at).unwrap();
    poke(path, at, &[b[0] ^ mask]);
}

// ---------------------------------------------------------------------------------------------
// The header.

#[test]
fn every_flipped_header_byte_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    for at in 0..128u64 {
        for mask in [0x01u8, 0x80] {
            flip(&path, at, mask);
            let what = format!("header byte {at} ^ {mask:#04x}");
            let err = refuse(&path, &what);
            match at {
                0..=7 => assert!(matches!(err, Error::NotAStore { .. }), "{what}: {err:?}"),
                8..=11 => {
                    let mut version = [1u8, 0, 0, 0];
                    version[at as usize - 8] ^= mask;
                    match err {
                        Error::UnsupportedFormat { found, supported, .. } => {
                            assert_eq!(found, u32::from_le_bytes(version), "{what}");
                            assert_eq!(supported, 1, "{what}");
                        }
                        other => panic!("{what}: {other:?}"),
                    }
                }
                // The byte-order marker, geometry, times, reserved bytes and the checksum itself
                // are all covered by the checksum, which is checked first.
                _ => match err {
                    Error::BadChecksum { what: block, .. } => assert!(block.contains("header"), "{what}: {block}"),
                    other => panic!("{what}: {other:?}"),
                },
            }
            flip(&path, at, mask);
        }
    }
    assert!(fs::read(&path).unwrap() == good);
    assert_eq!(Store::open(&path).unwrap().object::<Flags>("flags").unwrap().load().unwrap(), flags());
}

/// Rewrites a header field and fixes up the checksum (FNV-1a over bytes 0..120, at 120..128).
fn rewrite_header(path: &Path, at: usize, bytes: &[u8]) {
    let mut header = fs::read(path).unwrap()[..128].to_vec();
    header[at..at + bytes.len()].copy_from_slice(bytes);
    let sum = shmstore::format::checksum(&header[..120]);
    header[120..].copy_from_slice(&sum.to_le_bytes());
    poke(path, 0, &header);
}

#[test]
fn header_with_valid_checksum_but_bad_contents_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let restore = || poke(&path, 0, &good[..128]);

    rewrite_header(&path, 8, &2u32.to_le_bytes());
    match refuse(&path, "format version 2") {
        Error::UnsupportedFormat { found: 2, supported: 1, .. } => {}
        other => panic!("format version 2: {other:?}"),
    }
    restore();

    let mut marker = good[12..16].to_vec();
    marker.reverse();
    rewrite_header(&path, 12, &marker);
    assert!(matches!(refuse(&path, "byte order"), Error::WrongEndianness { .. }));
    restore();

    for (at, value, detail) in [
        (16, 1024u32.to_le_bytes().to_vec(), "header size is not 512"),
        (36, 512u32.to_le_bytes().to_vec(), "catalog record size is not 256"),
        (24, 4096u64.to_le_bytes().to_vec(), "catalog does not follow the header"),
        (32, 0u32.to_le_bytes().to_vec(), "catalog slot count out of range"),
        (32, u32::MAX.to_le_bytes().to_vec(), "catalog slot count out of range"),
        (32, 2u32.to_le_bytes().to_vec(), "data area does not follow the catalog"),
        (40, 8192u64.to_le_bytes().to_vec(), "data area does not follow the catalog"),
    ] {
        rewrite_header(&path, at, &value);
        assert_eq!(corrupt_detail(&path, detail), format!("header: {detail}"));
        restore();
    }
    assert!(fs::read(&path).unwrap() == good);
    Store::open(&path).unwrap();
}

#[test]
fn live_header_words_out_of_range_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let len = good.len() as u64;
    let restore = || poke(&path, 0, &good[..512]);
    let set = |offset: u64, value: u64| poke(&path, offset, &value.to_ne_bytes());

    for (alloc_end, what) in
        [(len + 4096, "alloc_end beyond the file"), (u64::MAX, "alloc_end at u64::MAX"), (0, "alloc_end zero")]
    {
        set(ALLOC_END_OFFSET, alloc_end);
        assert_eq!(corrupt_detail(&path, what), "allocation end lies outside the data area");
        restore();
    }
    // Just outside the data area, on either side.
    set(ALLOC_END_OFFSET, DATA_OFFSET - 1);
    assert_eq!(corrupt_detail(&path, "alloc_end before the data area"), "allocation end lies outside the data area");
    restore();
    set(ALLOC_END_OFFSET, len + 1);
    assert_eq!(corrupt_detail(&path, "alloc_end one past the capacity"), "allocation end lies outside the data area");
    restore();

    set(CAPACITY_OFFSET, len * 2);
    match refuse(&path, "capacity beyond the file") {
        Error::Truncated { expected, actual, .. } => assert_eq!((expected, actual), (len * 2, len)),
        other => panic!("capacity beyond the file: {other:?}"),
    }
    restore();
    set(CAPACITY_OFFSET, 100);
    assert_eq!(corrupt_detail(&path, "capacity below the header"), "capacity is smaller than header and catalog");
    restore();

    assert!(fs::read(&path).unwrap() == good);
    Store::open(&path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Truncation and foreign contents.

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn truncated_files_are_refused() {
    for (len, what) in [(0, "empty"), (100, "shorter than the header")] {
        let (_dir, path) = build();
        truncate(&path, len);
        let err = if len == 0 { refuse_without_create(&path, what) } else { refuse(&path, what) };
        match err {
            Error::NotAStore { reason, .. } => assert!(reason.contains(&format!("{len} bytes")), "{what}: {reason}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), len, "{what}: the file was not grown");
    }
    for (len, expected, what) in [
        (128, DATA_OFFSET + 64, "only the static header"),
        (4096, DATA_OFFSET + 64, "part of the catalog"),
        (DATA_OFFSET, DATA_OFFSET + 64, "no data area"),
        (CAPACITY / 2, CAPACITY, "half"),
        (CAPACITY - 1, CAPACITY, "one byte short"),
    ] {
        let (_dir, path) = build();
        truncate(&path, len);
        match refuse(&path, what) {
            Error::Truncated { expected: e, actual, .. } => assert_eq!((e, actual), (expected, len), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), len, "{what}: the file was not grown");
    }
}

#[test]
fn zeroed_file_is_not_a_store() {
    let (_dir, path) = build();
    fs::write(&path, vec![0u8; CAPACITY as usize]).unwrap();
    assert!(matches!(refuse(&path, "zeroed"), Error::NotAStore { .. }));
}

#[test]
fn random_files_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let mut rng = Rng::new(0x5eed_0001);
    let mut bytes = vec![0u8; good.len()];
    for case in 0..100 {
        rng.fill(&mut bytes);
        if case % 2 == 1 {
            // Half the cases keep a valid magic, so they get past the first check.
            bytes[..8].copy_from_slice(b"SHMSTORE");
        }
        fs::write(&path, &bytes).unwrap();
        let err = refuse(&path, &format!("random case {case}"));
        if case % 2 == 0 {
            assert!(matches!(err, Error::NotAStore { .. }), "case {case}: {err:?}");
        } else {
            assert!(matches!(err, Error::UnsupportedFormat { .. } | Error::BadChecksum { .. }), "case {case}: {err:?}");
        }
    }
}

#[test]
fn random_catalog_behind_a_valid_header_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let mut rng = Rng::new(0x5eed_0002);
    for case in 0..100 {
        let mut bytes = good.clone();
        // Keep the header (static and live parts), randomise the catalog and everything after it.
        rng.fill(&mut bytes[512..]);
        fs::write(&path, &bytes).unwrap();
        let err = refuse(&path, &format!("random catalog case {case}"));
        assert!(matches!(err, Error::Corrupt { .. } | Error::BadChecksum { .. }), "case {case}: {err:?}");
    }
}

#[test]
fn random_data_area_never_panics() {
    // The catalog is intact, so the store opens; every access then gives a value or a typed error.
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let mut rng = Rng::new(0x5eed_0003);
    let mut invalid = 0;
    for case in 0..100 {
        let mut bytes = good.clone();
        rng.fill(&mut bytes[DATA_OFFSET as usize..]);
        fs::write(&path, &bytes).unwrap();
        let store = Store::open(&path).unwrap_or_else(|e| panic!("case {case}: {e}"));
        // Schemas are random now: listing reports that, or lists what is there.
        match store.entries() {
            Ok(entries) => assert_eq!(entries.len(), 3, "case {case}"),
            Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "case {case}: {e:?}"),
        }
        match store.object::<Flags>("flags").and_then(|f| f.load()) {
            Ok(_) => {}
            Err(Error::InvalidValue { .. }) => invalid += 1,
            Err(e) => panic!("case {case}: {e:?}"),
        }
        let bits = store.array::<bool>("bits").unwrap();
        for i in 0..bits.len() {
            assert!(matches!(bits.get(i), Ok(_) | Err(Error::InvalidValue { .. })), "case {case}");
        }
        assert_eq!(store.array::<u32>("ids").unwrap().read().unwrap().len(), 16);
    }
    assert!(invalid > 90, "random bytes should almost never be a valid Flags ({invalid} invalid of 100)");
}

// ---------------------------------------------------------------------------------------------
// Catalog records.

#[test]
fn every_flipped_catalog_record_byte_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let records = raw_records(&path);
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        assert_eq!(record.state, 1);
        for i in 0..RECORD_STATIC_SIZE {
            let at = record.offset + RECORD_STATIC_OFFSET + i;
            flip(&path, at, 0x01);
            let what = format!("record `{}` (slot {}) static byte {i}", record.name, record.slot);
            match refuse(&path, &what) {
                Error::BadChecksum { what: block, .. } => {
                    assert!(block.contains(&format!("slot {}", record.slot)), "{what}: {block}")
                }
                other => panic!("{what}: {other:?}"),
            }
            flip(&path, at, 0x01);
        }
    }
    assert!(fs::read(&path).unwrap() == good);
    Store::open(&path).unwrap();
}

#[test]
fn unknown_record_state_is_refused() {
    let (_dir, path) = build();
    let record = raw_record(&path, "ids");
    // 0 is empty, 1 live, 2 the shadow of a migration (an orphan one is harmless); the rest are not states.
    for state in [3u32, 7, u32::MAX] {
        poke(&path, record.offset, &state.to_ne_bytes());
        match refuse(&path, &format!("state {state}")) {
            Error::Corrupt { detail, .. } => assert!(detail.contains(&format!("slot {}", record.slot)), "{detail}"),
            other => panic!("state {state}: {other:?}"),
        }
    }
    poke(&path, record.offset, &1u32.to_ne_bytes());
    assert_eq!(Store::open(&path).unwrap().array::<u32>("ids").unwrap().get(0).unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Invalid values inside entries.

#[test]
fn invalid_bool_in_an_object_is_an_invalid_value_naming_the_field() {
    let (_dir, path) = build();
    let store = Store::open(&path).unwrap();
    let f = store.object::<Flags>("flags").unwrap();
    let at = active_data_offset(&path, "flags");
    poke(&path, at + ENABLED_AT, &[7]);

    let err = expect_err(f.load(), "load");
    let message = err.to_string();
    match err {
        Error::InvalidValue { name, type_name, invalid } => {
            assert_eq!(name, "flags");
            assert_eq!(type_name, "Flags");
            assert_eq!(invalid.path, "value.enabled");
            assert!(invalid.detail.contains('7'), "{}", invalid.detail);
        }
        other => panic!("{other:?}"),
    }
    assert!(message.contains("value.enabled"), "{message}");
    assert!(message.contains("flags"), "{message}");
    // Every way in validates, the write paths included (a guard is a `&mut Flags`).
    assert!(matches!(f.read(), Err(Error::InvalidValue { .. })));
    assert!(matches!(f.try_read(), Err(Error::InvalidValue { .. })));
    assert!(matches!(f.write(), Err(Error::InvalidValue { .. })));
    assert!(matches!(f.update(|v| v.count), Err(Error::InvalidValue { .. })));
    // A fresh open too, and the failed accesses left the lock free.
    assert!(matches!(
        Store::open(&path).unwrap().object::<Flags>("flags").unwrap().load(),
        Err(Error::InvalidValue { .. })
    ));

    // Repaired from outside, the rest of the value is as it was.
    poke(&path, at + ENABLED_AT, &[0]);
    assert_eq!(f.load().unwrap(), Flags { enabled: false, ..flags() });
    f.try_write().unwrap().enabled = true;
    assert_eq!(f.load().unwrap(), flags());

    // Or repaired through the API: `store` replaces the value without reading the bad bytes. (The
    // commit above flipped the active slot.)
    let at = active_data_offset(&path, "flags");
    poke(&path, at + ENABLED_AT, &[9]);
    assert!(matches!(f.load(), Err(Error::InvalidValue { .. })));
    f.store(flags()).unwrap();
    assert_eq!(f.load().unwrap(), flags());
}

#[test]
fn invalid_enum_and_text_name_their_fields() {
    let (_dir, path) = build();
    let store = Store::open(&path).unwrap();
    let f = store.object::<Flags>("flags").unwrap();
    let at = active_data_offset(&path, "flags");

    poke(&path, at + MODE_AT, &[9]);
    match f.load() {
        Err(e @ Error::InvalidValue { .. }) => {
            assert!(e.to_string().contains("value.mode"), "{e}");
            let Error::InvalidValue { invalid, .. } = e else { unreachable!() };
            assert_eq!(invalid.path, "value.mode");
            assert!(invalid.detail.contains('9') && invalid.detail.contains("Mode"), "{}", invalid.detail);
        }
        other => panic!("{other:?}"),
    }
    poke(&path, at + MODE_AT, &[4]);
    assert_eq!(f.load().unwrap().mode, Mode::Auto);

    poke(&path, at + LABEL_AT + 1, &[0xff]);
    match f.load() {
        Err(Error::InvalidValue { invalid, .. }) => assert_eq!(invalid.path, "value.label"),
        other => panic!("{other:?}"),
    }
    // Text followed by garbage after its terminating NUL is invalid too.
    poke(&path, at + LABEL_AT, b"ab\0c\0\0\0\0");
    match f.load() {
        Err(Error::InvalidValue { invalid, .. }) => assert_eq!(invalid.path, "value.label"),
        other => panic!("{other:?}"),
    }
    poke(&path, at + LABEL_AT, b"ab\0\0\0\0\0\0");
    assert_eq!(f.load().unwrap().label, "ab");
}

#[test]
fn invalid_element_of_an_array_is_named_by_index() {
    let (_dir, path) = build();
    let store = Store::open(&path).unwrap();
    let bits = store.array::<bool>("bits").unwrap();
    let at = raw_record(&path, "bits").data_offset;
    poke(&path, at + 3, &[2]);

    match bits.get(3) {
        Err(Error::InvalidValue { name, invalid, .. }) => {
            assert_eq!(name, "bits");
            assert_eq!(invalid.path, "value[3]");
        }
        other => panic!("{other:?}"),
    }
    match bits.read() {
        Err(e @ Error::InvalidValue { .. }) => assert!(e.to_string().contains("value[3]"), "{e}"),
        other => panic!("{:?}", other.map(|g| g.to_vec())),
    }
    let mut buf = [false; 2];
    match bits.read_at(2, &mut buf) {
        Err(Error::InvalidValue { invalid, .. }) => assert_eq!(invalid.path, "value[3]"),
        other => panic!("{other:?}"),
    }
    // Only the elements asked for are validated: the rest of the array stays usable.
    assert!(bits.get(2).unwrap());
    let mut buf = [false; 3];
    bits.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [true; 3]);
    bits.write_at(4, &[false; 4]).unwrap();
    poke(&path, at + 3, &[1]);
    assert_eq!(*bits.read().unwrap(), [true, true, true, true, false, false, false, false]);
}

#[test]
fn invalid_field_inside_an_array_of_structs_has_a_full_path() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let arr = store.array_or_init("rows", 5, flags()).unwrap();
    let at = raw_record(&path, "rows").data_offset + 2 * std::mem::size_of::<Flags>() as u64;
    poke(&path, at + ENABLED_AT, &[0x80]);
    match arr.get(2) {
        Err(Error::InvalidValue { invalid, type_name, .. }) => {
            assert_eq!(invalid.path, "value[2].enabled");
            assert_eq!(type_name, "Flags");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(arr.get(1).unwrap(), flags());
    assert_eq!(arr.get(3).unwrap(), flags());
}

// ---------------------------------------------------------------------------------------------
// Files that are not stores at all.

#[test]
fn missing_file_is_file_not_found() {
    let (dir, path) = temp_store();
    for result in [
        Store::open(&path),
        Store::options().read_only(true).open(&path),
        Store::options().capacity(CAPACITY).open(&path),
    ] {
        match result {
            Err(Error::FileNotFound { path: p }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
    }
    assert!(!path.exists(), "opening without create must not create");
    assert!(common::dir_listing(dir.path()).is_empty());
}

#[test]
fn empty_file_is_not_a_store() {
    let (_dir, path) = temp_store();
    fs::write(&path, b"").unwrap();
    match refuse_without_create(&path, "empty file") {
        Error::NotAStore { reason, .. } => {
            assert!(reason.contains("0 bytes") && reason.contains("with a capacity"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "without a capacity, an empty file is not turned into a store");
}

#[test]
fn text_files_are_not_stores() {
    let (_dir, path) = temp_store();
    for text in ["hello\n".to_owned(), "All work and no play makes Jack a dull boy.\n".repeat(200)] {
        fs::write(&path, &text).unwrap();
        assert!(matches!(refuse(&path, "text"), Error::NotAStore { .. }));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn a_directory_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("store.shm");
    fs::create_dir(&sub).unwrap();
    for (result, what) in [
        (Store::open(&sub), "open"),
        (Store::open_or_create(&sub, CAPACITY), "open_or_create"),
        (Store::options().read_only(true).open(&sub), "read-only open"),
    ] {
        match expect_err(result, what) {
            e @ Error::NotRegularFile { .. } => {
                assert!(e.to_string().contains("store.shm"), "{what}: {e}");
                assert!(e.to_string().contains("is a directory"), "{what}: {e}");
                let Error::NotRegularFile { path, .. } = e else { unreachable!() };
                assert_eq!(path, sub, "{what}");
            }
            other => panic!("{what}: expected NotRegularFile, got {other:?}"),
        }
    }
    assert!(sub.is_dir());
    assert_eq!(fs::read_dir(&sub).unwrap().count(), 0);
}

#[test]
fn creating_in_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("store.shm");
    match Store::open_or_create(&path, CAPACITY) {
        Err(Error::Io { op, path: p, source }) => {
            assert_eq!((op, p), ("create", path.clone()));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Store::open(&path), Err(Error::FileNotFound { .. })));
    assert!(common::dir_listing(dir.path()).is_empty());
}

/// Rewrites bytes of a record's static part and fixes up its checksum (FNV-1a over the first 168
/// bytes of the static part, stored little-endian in its last 8).
fn rewrite_record(path: &Path, record_offset: u64, at: usize, bytes: &[u8]) {
    let start = (record_offset + RECORD_STATIC_OFFSET) as usize;
    let mut part = fs::read(path).unwrap()[start..start + RECORD_STATIC_SIZE as usize].to_vec();
    part[at..at + bytes.len()].copy_from_slice(bytes);
    let sum = shmstore::format::checksum(&part[..168]);
    part[168..].copy_from_slice(&sum.to_le_bytes());
    poke(path, start as u64, &part);
}

#[test]
fn records_with_valid_checksums_but_impossible_contents_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let ids = raw_record(&path, "ids");
    let le = |v: u64| v.to_le_bytes().to_vec();
    // Fields an `Entry` cannot hold, written byte by byte (with the checksum fixed up).
    let raw_cases: Vec<(usize, Vec<u8>, &str, &str)> = vec![
        (0, vec![4], "unknown entry kind", "unknown kind"),
        (0, vec![0], "unknown entry kind", "kind zero"),
        (2, 65u16.to_le_bytes().to_vec(), "entry name is not valid", "name longer than 64 bytes"),
        (8, vec![0xff], "entry name is not valid", "name not UTF-8"),
    ];
    for (at, bytes, detail, what) in raw_cases {
        rewrite_record(&path, ids.offset, at, &bytes);
        assert_eq!(corrupt_detail(&path, what), format!("entry in catalog slot {}: {detail}", ids.slot), "{what}");
        poke(&path, 0, &good);
    }
    assert_eq!(le(1).len(), 8);

    // Everything else, through the format module: decode the record, change a field, encode it
    // with a valid checksum. Each case names the check that must refuse it.
    type Edit = fn(&mut Entry);
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("ids", |e| e.name.clear(), "entry name is not valid"),
        ("ids", |e| e.name = "i\u{1}s".into(), "entry name is not valid"),
        ("ids", |e| e.kind = EntryKind::Object, "slot count or element count does not fit the entry kind"),
        ("ids", |e| e.slot_count = 2, "slot count or element count does not fit the entry kind"),
        ("ids", |e| e.kind = EntryKind::Bytes, "slot count or element count does not fit the entry kind"),
        ("ids", |e| e.elem_size = 6, "element size is not a multiple of its alignment"),
        ("ids", |e| e.elem_align = 3, "element alignment is not a power of two up to 4096"),
        ("ids", |e| e.elem_align = 0, "element alignment is not a power of two up to 4096"),
        ("ids", |e| (e.elem_align, e.elem_size) = (8192, 8192), "element alignment is not a power of two up to 4096"),
        ("ids", |e| e.count = u64::MAX / 2, "entry size overflows"),
        ("ids", |e| e.data_offset = 0, "data lies before the data area or is misaligned"),
        ("ids", |e| e.data_offset = DATA_OFFSET - 64, "data lies before the data area or is misaligned"),
        ("ids", |e| e.data_offset += 2, "data lies before the data area or is misaligned"),
        ("ids", |e| e.slot_stride = 64, "single-slot entry has a slot stride"),
        ("ids", |e| e.schema_offset = 100, "schema lies outside the data area"),
        ("ids", |e| e.schema_len = 0, "schema lies outside the data area"),
        ("ids", |e| e.schema_len = u64::MAX, "entry size overflows"),
        ("ids", |e| e.schema_offset = e.data_offset + 8, "schema overlaps the entry's data"),
        ("ids", |e| e.lock_offset = 0, "lock offset is not the one its catalog slot implies"),
        ("ids", |e| e.lock_offset = (1 << 62) + 65, "lock offset is not the one its catalog slot implies"),
        ("ids", |e| e.lock_offset -= 1, "lock offset is not the one its catalog slot implies"),
        ("ids", |e| e.lock_offset += 1, "lock offset is not the one its catalog slot implies"),
        ("flags", |e| e.slot_stride = 8, "object slots overlap"),
        ("flags", |e| e.slot_stride = 72, "object slots are not whole cache lines"),
        ("flags", |e| e.slot_stride = 128, "schema overlaps the entry's data"),
        ("flags", |e| e.count = 2, "slot count or element count does not fit the entry kind"),
        ("flags", |e| e.slot_count = 3, "slot count or element count does not fit the entry kind"),
        ("flags", |e| e.data_offset += 2, "data lies before the data area or is misaligned"),
    ];
    for (name, edit, detail) in cases {
        let slot = edit_record(&path, name, edit);
        let what = format!("{name}: {detail}");
        assert_eq!(corrupt_detail(&path, &what), format!("entry in catalog slot {slot}: {detail}"), "{what}");
        poke(&path, 0, &good);
    }
    assert!(fs::read(&path).unwrap() == good);
    Store::open(&path).unwrap();
}

/// The decoded record of entry `name` and its slot, read with the format module (reading only the
/// header and the catalog, so that huge sparse files stay cheap).
fn record(path: &Path, name: &str) -> (u32, Entry) {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).unwrap();
    let mut head = vec![0u8; 512];
    file.read_exact_at(&mut head, 0).unwrap();
    let header = Header::decode(&head).unwrap();
    let capacity = common::read_u64_ne(&head, CAPACITY_OFFSET as usize);
    let mut catalog = vec![0u8; (header.data_offset - CATALOG_OFFSET) as usize];
    file.read_exact_at(&mut catalog, CATALOG_OFFSET).unwrap();
    for slot in 0..header.catalog_slots {
        let at = (u64::from(slot) * RECORD_SIZE) as usize;
        if common::read_u32_ne(&catalog, at) == 0 {
            continue;
        }
        let bytes = &catalog[at + RECORD_STATIC_OFFSET as usize..][..RECORD_STATIC_SIZE as usize];
        if let Ok(entry) = Entry::decode(bytes, &header, slot, capacity) {
            if entry.name == name {
                return (slot, entry);
            }
        }
    }
    panic!("no valid record named `{name}`")
}

/// Decodes the record of entry `name`, lets `edit` change it, and writes it back encoded by the
/// format module, with a valid checksum. Returns its slot.
fn edit_record(path: &Path, name: &str, edit: impl FnOnce(&mut Entry)) -> u32 {
    let (slot, mut entry) = record(path, name);
    edit(&mut entry);
    let offset = CATALOG_OFFSET + u64::from(slot) * RECORD_SIZE + RECORD_STATIC_OFFSET;
    poke(path, offset, &entry.encode());
    slot
}

/// Asserts that every way of opening `path` refuses it as corrupt, and returns the detail.
#[track_caller]
fn corrupt_detail(path: &Path, what: &str) -> String {
    match refuse(path, what) {
        Error::Corrupt { detail, .. } => detail,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

/// The bytes entry `name` uses: (data, schema).
fn ranges(path: &Path, name: &str) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let (_, e) = record(path, name);
    (e.data_range().unwrap(), e.schema_range().unwrap())
}

// ---------------------------------------------------------------------------------------------
// The catalog as a whole: records that each look fine, but not together.

#[test]
fn overlapping_data_of_two_entries_is_refused_naming_both() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let (ids_slot, ids) = record(&path, "ids");
    let (flags_slot, flags) = record(&path, "flags");
    let (bits_slot, bits) = record(&path, "bits");

    // Unchecked, `bits` (bools) would be a view of `ids`'s bytes: a `&[bool]` over a `u32` that
    // `ids.write_at` can set to 7, and a live `&mut [u32]` and `&[bool]` of the same memory.
    edit_record(&path, "bits", |e| e.data_offset = ids.data_offset);
    let detail = corrupt_detail(&path, "bits inside ids");
    let expected = format!(
        "the data of entry `ids` (catalog slot {ids_slot}, bytes {}..{}) overlaps the data of entry `bits` (catalog slot {bits_slot}, bytes {}..{})",
        ids.data_offset,
        ids.data_offset + 64,
        ids.data_offset,
        ids.data_offset + 8,
    );
    assert_eq!(detail, expected);
    poke(&path, 0, &good);

    // One byte of overlap, in otherwise free space: `ids` moves there, and `bits` starts on its
    // last byte.
    let free = CAPACITY - 8192;
    edit_record(&path, "ids", |e| e.data_offset = free);
    edit_record(&path, "bits", |e| e.data_offset = free + 63);
    assert_eq!(
        corrupt_detail(&path, "one byte"),
        format!(
            "the data of entry `bits` (catalog slot {bits_slot}, bytes {}..{}) overlaps the data of entry `ids` (catalog slot {ids_slot}, bytes {free}..{})",
            free + 63,
            free + 71,
            free + 64
        )
    );
    // Moved one byte on, it touches without overlapping, and the store opens.
    edit_record(&path, "bits", |e| e.data_offset = free + 64);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.entry_info("bits").unwrap().data_offset, free + 64);
    assert_eq!(store.array::<u32>("ids").unwrap().len(), 16);
    drop(store);
    assert_eq!((bits.count, flags.count), (8, 1));
    let _ = flags_slot;
}

#[test]
fn schema_overlapping_data_is_refused_naming_both() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let (ids_slot, ids) = record(&path, "ids");
    let (flags_slot, flags) = record(&path, "flags");

    // The object's schema inside the array's data: a write to `ids` would rewrite it.
    edit_record(&path, "flags", |e| e.schema_offset = ids.data_offset + 8);
    let detail = corrupt_detail(&path, "schema inside another entry's data");
    assert_eq!(
        detail,
        format!(
            "the schema of entry `flags` (catalog slot {flags_slot}, bytes {}..{}) overlaps the data of entry `ids` (catalog slot {ids_slot}, bytes {}..{})",
            ids.data_offset + 8,
            ids.data_offset + 8 + flags.schema_len,
            ids.data_offset,
            ids.data_offset + 64
        )
    );
    poke(&path, 0, &good);

    // Two entries sharing one schema.
    edit_record(&path, "bits", |e| e.schema_offset = ids.schema_offset);
    let detail = corrupt_detail(&path, "shared schema");
    assert!(detail.contains("the schema of entry `ids`") && detail.contains("the schema of entry `bits`"), "{detail}");
    poke(&path, 0, &good);

    // And within one entry.
    let slot = edit_record(&path, "ids", |e| e.schema_offset = e.data_offset + 60);
    assert_eq!(
        corrupt_detail(&path, "own schema"),
        format!("entry in catalog slot {slot}: schema overlaps the entry's data")
    );
}

#[test]
fn a_shadow_record_overlapping_a_live_one_is_refused() {
    let (_dir, path) = build();
    let (ids_slot, ids) = record(&path, "ids");
    // A migration's orphan replacement record, claiming the bytes of `flags`.
    let flags = raw_record(&path, "flags");
    let free = (0..64u32).find(|s| raw_records(&path).iter().all(|r| r.slot != *s) && *s != ids_slot).unwrap();
    let shadow = Entry {
        lock_offset: lock_offset_for(free),
        data_offset: flags.data_offset,
        schema_offset: CAPACITY - 4096,
        ..ids
    };
    let at = CATALOG_OFFSET + u64::from(free) * RECORD_SIZE;
    poke(&path, at + RECORD_STATIC_OFFSET, &shadow.encode());
    poke(&path, at, &2u32.to_ne_bytes());
    let detail = corrupt_detail(&path, "shadow over flags");
    assert!(detail.contains(&format!("entry `flags` (catalog slot {}", flags.slot)), "{detail}");
    assert!(detail.contains(&format!("entry `ids` (catalog slot {free}")), "{detail}");
    // Elsewhere, in free space inside the capacity, the orphan is harmless and the store opens.
    let shadow = Entry { data_offset: CAPACITY - 8192, ..shadow };
    poke(&path, at + RECORD_STATIC_OFFSET, &shadow.encode());
    let store = Store::open(&path).unwrap();
    assert_eq!(store.entries().unwrap().len(), 3);
}

#[test]
fn a_lock_offset_of_another_slot_is_refused() {
    let (_dir, path) = build();
    let (flags_slot, _) = record(&path, "flags");
    // `ids` would lock the byte of `flags`: its writers would exclude each other's, not its own.
    let slot = edit_record(&path, "ids", |e| e.lock_offset = lock_offset_for(flags_slot));
    assert_eq!(
        corrupt_detail(&path, "lock of another slot"),
        format!("entry in catalog slot {slot}: lock offset is not the one its catalog slot implies")
    );
}

#[test]
fn live_entries_with_one_name_are_refused() {
    let (_dir, path) = build();
    let (ids_slot, _) = record(&path, "ids");
    let (bits_slot, _) = record(&path, "bits");
    edit_record(&path, "bits", |e| e.name = "ids".into());
    let (low, high) = (ids_slot.min(bits_slot), ids_slot.max(bits_slot));
    assert_eq!(
        corrupt_detail(&path, "two live `ids`"),
        format!("catalog slots {low} and {high} both hold a live entry named `ids`")
    );
}

/// Makes the file `len` bytes long (sparse) and sets its capacity and allocation end to match.
fn grow_sparse(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
    poke(path, CAPACITY_OFFSET, &len.to_ne_bytes());
    poke(path, ALLOC_END_OFFSET, &len.to_ne_bytes());
}

/// The detail of the `Corrupt` error with which every way of opening the (huge, sparse) file at
/// `path` refuses it, without reading the file's data area.
#[track_caller]
fn corrupt_detail_of_huge(path: &Path, what: &str) -> String {
    use std::os::unix::fs::FileExt;
    let catalog = || {
        let mut b = vec![0u8; DATA_OFFSET as usize];
        fs::File::open(path).unwrap().read_exact_at(&mut b, 0).unwrap();
        b
    };
    let before = catalog();
    let details: Vec<String> = [Store::open(path), Store::options().read_only(true).open(path)]
        .into_iter()
        .map(|result| match expect_err(result, what) {
            Error::Corrupt { detail, .. } => detail,
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        })
        .collect();
    assert_eq!(details[0], details[1], "{what}");
    assert!(catalog() == before, "{what}: a refused open changed the file");
    details[0].clone()
}

#[test]
fn a_huge_schema_length_is_refused_before_anything_is_allocated() {
    let (_dir, path) = build();
    // An 8 GiB sparse store whose `ids` claims a 6 GiB schema in otherwise unused space: inside
    // the capacity, overlapping nothing, so only the bound on schema lengths refuses it. Reading
    // it would allocate 6 GiB for `entries()`, `schema()` or `shmstore inspect`.
    grow_sparse(&path, 8 << 30);
    let mut sound = vec![0u8; DATA_OFFSET as usize];
    std::os::unix::fs::FileExt::read_exact_at(&fs::File::open(&path).unwrap(), &mut sound, 0).unwrap();
    let slot = edit_record(&path, "ids", |e| (e.schema_offset, e.schema_len) = (1 << 30, 6 << 30));
    let too_long = format!("entry in catalog slot {slot}: schema is longer than the format allows");
    assert_eq!(corrupt_detail_of_huge(&path, "6 GiB schema"), too_long);
    // The longest schema allowed is fine (and found not to be a schema only when it is read).
    let max = shmstore::format::schema::MAX_SCHEMA_LEN as u64;
    poke(&path, 0, &sound);
    edit_record(&path, "ids", |e| (e.schema_offset, e.schema_len) = (1 << 30, max));
    let store = Store::open(&path).unwrap();
    match store.schema("ids") {
        Err(Error::Corrupt { detail, .. }) => {
            assert!(detail.starts_with("schema of entry `ids`: not a schema"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    drop(store);
    edit_record(&path, "ids", |e| e.schema_len += 1);
    assert_eq!(corrupt_detail_of_huge(&path, "one byte too long"), too_long);
}

/// Replaces the stored schema of entry `name` with `schema` (encoded by the format module), in
/// place if it has the same length, else in unused space at the end of the store.
fn replace_schema(path: &Path, name: &str, schema: &Schema) {
    let bytes = schema.encode();
    let (_, entry) = record(path, name);
    if bytes.len() as u64 == entry.schema_len {
        poke(path, entry.schema_offset, &bytes);
    } else {
        let at = CAPACITY - 8192;
        poke(path, at, &bytes);
        edit_record(path, name, |e| (e.schema_offset, e.schema_len) = (at, bytes.len() as u64));
    }
}

#[test]
fn bad_names_in_a_schema_are_refused_by_whatever_reads_it() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let store = Store::open(&path).unwrap();
    let stored = store.schema("flags").unwrap();
    drop(store);
    let rename = |edit: &dyn Fn(&mut Schema)| {
        let mut s = stored.clone();
        edit(&mut s);
        s.fingerprint = s.compute_fingerprint();
        s
    };
    let cases: Vec<(Schema, &str)> = vec![
        (
            rename(&|s| {
                if let shmstore::SchemaKind::Struct { fields } = &mut s.kind {
                    fields[0].name = "co\nnt".into();
                }
            }),
            "root: the field name holds the control character '\\n'",
        ),
        (rename(&|s| s.type_name = "Fl\0gs".into()), "root: the type name holds the control character '\\0'"),
        (
            rename(&|s| s.type_name = "F".repeat(1025)),
            "the type name is 1025 bytes long, more than the 1024 bytes a name may take",
        ),
    ];
    for (schema, expected) in cases {
        replace_schema(&path, "flags", &schema);
        // The catalog is sound, so the store opens and typed access works; what reads the schema
        // says what is wrong with it.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.object::<Flags>("flags").unwrap().load().unwrap(), flags());
        for err in
            [store.schema("flags").unwrap_err(), store.entries().unwrap_err(), store.entry_info("flags").unwrap_err()]
        {
            match err {
                Error::Corrupt { detail, .. } => {
                    assert!(detail.starts_with("schema of entry `flags`: "), "{detail}");
                    assert!(detail.contains(expected), "{detail} lacks {expected}");
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        drop(store);
        poke(&path, 0, &good);
    }
}

// ---------------------------------------------------------------------------------------------
// An allocation end that lags the catalog, as an OS crash or a power loss can leave it.

#[test]
fn entries_past_a_lagging_allocation_end_are_kept_and_the_end_repaired() {
    let (_dir, path) = build();
    let highest = ["flags", "ids", "bits"]
        .iter()
        .map(|n| {
            let (d, s) = ranges(&path, n);
            d.end.max(s.end)
        })
        .max()
        .unwrap();
    let alloc_end = || common::read_u64_ne(&fs::read(&path).unwrap(), ALLOC_END_OFFSET as usize);
    assert_eq!(alloc_end(), highest, "the allocator ends at the last schema");
    // The header page lost its last update: the allocation end is back at the data area's start.
    poke(&path, ALLOC_END_OFFSET, &DATA_OFFSET.to_ne_bytes());
    let lagging = fs::read(&path).unwrap();

    // A reader accepts it as it is, and changes nothing.
    let reader = Store::options().read_only(true).open(&path).unwrap();
    assert_eq!(reader.entries().unwrap().len(), 3);
    assert_eq!(reader.object::<Flags>("flags").unwrap().load().unwrap(), flags());
    assert_eq!(reader.used(), DATA_OFFSET);
    drop(reader);
    assert!(fs::read(&path).unwrap() == lagging, "a read-only open wrote to the file");

    // A writer raises the end past every entry, so new entries never land on old ones.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.used(), highest);
    assert_eq!(alloc_end(), highest);
    let fresh = store.array_or_init::<u32>("fresh", 16, 0xffff_ffff).unwrap();
    assert!(store.entry_info("fresh").unwrap().data_offset >= highest);
    assert_eq!(fresh.get(15).unwrap(), 0xffff_ffff);
    assert_eq!(store.object::<Flags>("flags").unwrap().load().unwrap(), flags());
    assert_eq!(*store.array::<u32>("ids").unwrap().read().unwrap(), [1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
    assert_eq!(*store.array::<bool>("bits").unwrap().read().unwrap(), [true; 8]);
    drop((fresh, store));
    assert_eq!(Store::open(&path).unwrap().entries().unwrap().len(), 4);

    // Partly lagging: the end covers some entries but not the last; the end is raised the same.
    let (_dir, path) = build();
    let (ids_data, _) = ranges(&path, "ids");
    poke(&path, ALLOC_END_OFFSET, &ids_data.end.to_ne_bytes());
    assert_eq!(Store::open(&path).unwrap().used(), highest);

    // But an entry past the capacity is refused, lagging end or not.
    let (_dir, path) = build();
    poke(&path, ALLOC_END_OFFSET, &DATA_OFFSET.to_ne_bytes());
    let slot = edit_record(&path, "bits", |e| e.count = CAPACITY);
    let detail = corrupt_detail(&path, "past the capacity");
    assert!(detail.starts_with(&format!("entry in catalog slot {slot}: it ends at byte ")), "{detail}");
    assert!(detail.ends_with(&format!("past the store's {CAPACITY} bytes")), "{detail}");
}

#[test]
fn misaligned_second_slot_is_an_error_not_a_misaligned_reference() {
    let (_dir, path) = build();
    let record = raw_record(&path, "flags");
    assert_eq!(record.slot_count, 2, "objects without atomics are double-buffered");
    // A stride that passes the open-time checks (not overlapping) but misaligns slot 1, which an
    // odd sequence word selects.
    rewrite_record(&path, record.offset, 112, &(record.slot_stride + 1).to_le_bytes());
    poke(&path, record.offset + 192, &1u64.to_ne_bytes());
    assert_eq!(
        corrupt_detail(&path, "stride + 1"),
        format!("entry in catalog slot {}: object slots are not whole cache lines", record.slot)
    );
}
