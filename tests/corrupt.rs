//! Damaged, foreign and missing files give typed errors: never a panic, never `Ok`, and a refused
//! file is left exactly as it was ("bad input loses nothing").

mod common;

use std::fs;
use std::mem::discriminant;
use std::path::{Path, PathBuf};

use common::{active_data_offset, poke, raw_record, raw_records, temp_store, Rng};
use common::{ALLOC_END_OFFSET, CAPACITY_OFFSET, RECORD_STATIC_OFFSET, RECORD_STATIC_SIZE};
use shmstore::{Error, FixedStr, SharedLayout, Store};

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
    let before = fs::read(path).unwrap();
    let err = expect_err(Store::open(path), what);
    let others = [
        expect_err(Store::open_or_create(path, 4 * CAPACITY), what),
        expect_err(Store::options().read_only(true).open(path), what),
        expect_err(Store::options().capacity(4 * CAPACITY).open(path), what),
        expect_err(Store::options().create(true).capacity(4 * CAPACITY).open(path), what),
    ];
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

    for (at, value, what) in [
        (16, 1024u32.to_le_bytes().to_vec(), "header size"),
        (36, 512u32.to_le_bytes().to_vec(), "record size"),
        (24, 4096u64.to_le_bytes().to_vec(), "catalog offset"),
        (32, 0u32.to_le_bytes().to_vec(), "zero catalog slots"),
        (32, u32::MAX.to_le_bytes().to_vec(), "huge catalog"),
        (32, 2u32.to_le_bytes().to_vec(), "catalog slots not matching the data offset"),
        (40, 8192u64.to_le_bytes().to_vec(), "data offset"),
    ] {
        rewrite_header(&path, at, &value);
        match refuse(&path, what) {
            Error::Corrupt { detail, .. } => assert!(!detail.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
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
        assert!(matches!(refuse(&path, what), Error::Corrupt { .. }), "{what}");
        restore();
    }
    // Inside the data area, but below the entries already allocated.
    set(ALLOC_END_OFFSET, DATA_OFFSET);
    match refuse(&path, "alloc_end below the entries") {
        Error::Corrupt { detail, .. } => assert!(detail.contains("beyond the allocated space"), "{detail}"),
        other => panic!("alloc_end below the entries: {other:?}"),
    }
    restore();

    set(CAPACITY_OFFSET, len * 2);
    match refuse(&path, "capacity beyond the file") {
        Error::Truncated { expected, actual, .. } => assert_eq!((expected, actual), (len * 2, len)),
        other => panic!("capacity beyond the file: {other:?}"),
    }
    restore();
    set(CAPACITY_OFFSET, 100);
    assert!(matches!(refuse(&path, "capacity below the header"), Error::Corrupt { .. }));
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
        match refuse(&path, what) {
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
    match refuse(&path, "empty file") {
        Error::NotAStore { reason, .. } => assert!(reason.contains("0 bytes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "an empty file is not turned into a store");
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
            e @ Error::Io { .. } => {
                assert!(e.to_string().contains("store.shm"), "{what}: {e}");
                let Error::Io { path, source, .. } = e else { unreachable!() };
                assert_eq!(path, sub, "{what}");
                assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory, "{what}");
            }
            other => panic!("{what}: expected Io(IsADirectory), got {other:?}"),
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
    let flags_record = raw_record(&path, "flags");
    let le = |v: u64| v.to_le_bytes().to_vec();
    let cases: Vec<(u64, usize, Vec<u8>, &str)> = vec![
        (ids.offset, 0, vec![3], "unknown kind"),
        (ids.offset, 0, vec![1], "array record marked as an object of 16 elements"),
        (ids.offset, 1, vec![2], "array with two slots"),
        (ids.offset, 2, 65u16.to_le_bytes().to_vec(), "name longer than 64 bytes"),
        (ids.offset, 2, 0u16.to_le_bytes().to_vec(), "empty name"),
        (ids.offset, 8, vec![0x01], "control character in the name"),
        (ids.offset, 8, vec![0xff], "name not UTF-8"),
        (ids.offset, 80, le(6), "element size not a multiple of the alignment"),
        (ids.offset, 88, le(3), "alignment not a power of two"),
        (ids.offset, 88, le(8192), "alignment above a page"),
        (ids.offset, 96, le(u64::MAX / 2), "element count overflowing"),
        (ids.offset, 96, le(1 << 40), "data past the end of the file"),
        (ids.offset, 96, le(1000), "data past the allocation end"),
        (ids.offset, 104, le(0), "data inside the header"),
        (ids.offset, 104, le(DATA_OFFSET + 2), "misaligned data"),
        (ids.offset, 112, le(64), "single slot with a stride"),
        (ids.offset, 120, le(100), "schema inside the header"),
        (ids.offset, 128, le(0), "empty schema"),
        (ids.offset, 128, le(u64::MAX), "schema length overflowing"),
        (ids.offset, 136, le(0), "lock outside the lock area"),
        (ids.offset, 136, le((1 << 62) + 65), "lock beyond the catalog's locks"),
        (flags_record.offset, 112, le(8), "object slots overlapping"),
        (flags_record.offset, 96, le(2), "object with two elements"),
    ];
    for (record, at, bytes, what) in cases {
        rewrite_record(&path, record, at, &bytes);
        match refuse(&path, what) {
            Error::Corrupt { detail, .. } => assert!(!detail.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        poke(&path, 0, &good);
    }
    assert!(fs::read(&path).unwrap() == good);
    Store::open(&path).unwrap();
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
    let result = Store::open(&path).and_then(|s| s.object::<Flags>("flags")).and_then(|f| f.load());
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
}
