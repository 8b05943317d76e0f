//! Damaged, foreign and missing files give typed errors: never a panic, never `Ok`, and a refused
//! file is left as it was ("bad input loses nothing"; only the open state, which the first opener
//! of a format-v2 store resets, may change).
//!
//! A format-v2 store checks its header, open state, live words and index table at open, and each
//! entry block when it is first used: listing the entries (`Store::entries`, which `shmstore
//! verify` runs) checks them all. Each check has a test here that a crafted file fails.

mod common;

use std::fs;
use std::mem::discriminant;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{active_data_offset, poke, raw_record, raw_records, temp_store, Rng};
use common::{ALLOC_END_OFFSET, BLOCK_STATIC_OFFSET, BLOCK_STATIC_SIZE, CAPACITY_OFFSET, INDEX_ROOT_OFFSET};
use shmstore::format::checksum::{checksum64, hash64};
use shmstore::format::entry::Entry;
use shmstore::format::v2::block;
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
/// Where allocation starts in a new store: after the header and the first index table.
const DATA_OFFSET: u64 = 4096 + 64 + 64 * 16;
/// The open state: reset by the first opener (with the live word `admin_epoch`), so a refused open
/// may change it.
const OPEN_STATE: std::ops::Range<usize> = 256..512;

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

/// Opens the store and lists its entries, which checks every entry block.
fn open_and_list(opened: shmstore::Result<Store>) -> shmstore::Result<Store> {
    let store = opened?;
    store.entries()?;
    Ok(store)
}

/// Whether `a` and `b` are the same file but for the open state.
fn same_but_open_state(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.len() < OPEN_STATE.end {
        return a == b;
    }
    // The reset also records its epoch in the live word `admin_epoch` (bytes 592..600).
    a[..OPEN_STATE.start] == b[..OPEN_STATE.start]
        && a[OPEN_STATE.end..592] == b[OPEN_STATE.end..592]
        && a[600..] == b[600..]
}

/// Opens the file every way there is, and lists its entries; each must fail with the same kind of
/// error, and the file must be unchanged afterwards (but for the open state). Returns the error
/// of `Store::open`. (An open with a capacity above the file's would grow the store before its
/// entry blocks are checked, which happens lazily: those opens are asked for the file's own
/// capacity, or an initial one that an existing file ignores.)
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
    // In OFD lock mode: in robust mode (the default) an open that gets as far as locking an entry
    // also initialises lock words in the file (the admin mutex, entries' mutexes at a new lock
    // epoch), which are no more the file's contents than the open state is.
    let ofd = || {
        let mut options = Store::options();
        options.lock_mode(shmstore::LockMode::Ofd);
        options
    };
    let err = expect_err(open_and_list(ofd().open(path)), what);
    let mut others = vec![
        expect_err(open_and_list(Store::options().read_only(true).open(path)), what),
        expect_err(open_and_list(ofd().capacity(CAPACITY).open(path)), what),
    ];
    if creating {
        // What `Store::open_or_create(path, 4 * CAPACITY)` does, in OFD mode.
        others.push(expect_err(open_and_list(ofd().create(true).initial_capacity(4 * CAPACITY).open(path)), what));
        others.push(expect_err(open_and_list(ofd().create(true).initial_capacity(4 * CAPACITY).open(path)), what));
    }
    for other in others {
        assert_eq!(discriminant(&other), discriminant(&err), "{what}: {err:?} vs {other:?}");
    }
    assert!(same_but_open_state(&fs::read(path).unwrap(), &before), "{what}: a refused open changed the file");
    // The message is written for people: it names the file.
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{what}: {err}");
    err
}

fn flip(path: &Path, at: u64, mask: u8) {
    let mut b = [0u8];
    fs::File::open(path).unwrap().read_exact_at(&mut b, at).unwrap();
    poke(path, at, &[b[0] ^ mask]);
}

/// Asserts that every way of opening and listing `path` refuses it as corrupt, and returns the
/// detail.
#[track_caller]
fn corrupt_detail(path: &Path, what: &str) -> String {
    match refuse(path, what) {
        Error::Corrupt { detail, .. } => detail,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The header.

#[test]
fn every_flipped_header_byte_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    for at in 0..256u64 {
        for mask in [0x01u8, 0x80] {
            flip(&path, at, mask);
            let what = format!("header byte {at} ^ {mask:#04x}");
            let err = refuse(&path, &what);
            match at {
                0..=7 => assert!(matches!(err, Error::NotAStore { .. }), "{what}: {err:?}"),
                8..=11 => {
                    let mut version = [2u8, 0, 0, 0];
                    version[at as usize - 8] ^= mask;
                    match err {
                        Error::UnsupportedFormat { found, supported, .. } => {
                            assert_eq!(found, u32::from_le_bytes(version), "{what}");
                            assert_eq!(supported, 2, "{what}");
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
    assert!(same_but_open_state(&fs::read(&path).unwrap(), &good));
    assert_eq!(Store::open(&path).unwrap().object::<Flags>("flags").unwrap().load().unwrap(), flags());
}

/// A damaged open state (a reset cut short) is rewritten by the first opener that may write; a
/// read-only opener cannot, and refuses it.
#[test]
fn a_damaged_open_state_is_reset_by_the_first_writer() {
    let (_dir, path) = build();
    flip(&path, 300, 0x01);
    match expect_err(Store::options().read_only(true).open(&path), "read-only") {
        Error::Corrupt { detail, .. } => assert_eq!(detail, "header: the open state's checksum does not match"),
        other => panic!("{other:?}"),
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Flags>("flags").unwrap().load().unwrap(), flags());
    drop(store);
    Store::options().read_only(true).open(&path).unwrap();
    // An unknown lock mode, sealed, is refused by everyone.
    let mut state = fs::read(&path).unwrap()[OPEN_STATE].to_vec();
    state[..4].copy_from_slice(&9u32.to_le_bytes());
    let sum = checksum64(&state[..248]);
    state[248..].copy_from_slice(&sum.to_le_bytes());
    poke(&path, 256, &state);
    let detail = match expect_err(Store::options().read_only(true).open(&path), "lock mode 9") {
        Error::Corrupt { detail, .. } => detail,
        other => panic!("{other:?}"),
    };
    assert_eq!(detail, "header: the open state names unknown lock mode 9");
}

/// Rewrites a header field and fixes up the checksum (checksum64 over bytes 0..248, at 248).
fn rewrite_header(path: &Path, at: usize, bytes: &[u8]) {
    let mut header = fs::read(path).unwrap()[..256].to_vec();
    header[at..at + bytes.len()].copy_from_slice(bytes);
    let sum = checksum64(&header[..248]);
    header[248..].copy_from_slice(&sum.to_le_bytes());
    poke(path, 0, &header);
}

#[test]
fn header_with_valid_checksum_but_bad_contents_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let restore = || poke(&path, 0, &good[..256]);

    rewrite_header(&path, 8, &3u32.to_le_bytes());
    match refuse(&path, "format version 3") {
        Error::UnsupportedFormat { found: 3, supported: 2, .. } => {}
        other => panic!("format version 3: {other:?}"),
    }
    restore();

    let mut marker = good[12..16].to_vec();
    marker.reverse();
    rewrite_header(&path, 12, &marker);
    assert!(matches!(refuse(&path, "byte order"), Error::WrongEndianness { .. }));
    restore();

    for (at, value, detail) in [
        (16, 512u32.to_le_bytes().to_vec(), "header size is not 4096"),
        (20, 256u32.to_le_bytes().to_vec(), "entry block size is not 384"),
        (24, 8192u64.to_le_bytes().to_vec(), "data area does not follow the header"),
        (24, 0u64.to_le_bytes().to_vec(), "data area does not follow the header"),
    ] {
        rewrite_header(&path, at, &value);
        assert_eq!(corrupt_detail(&path, detail), format!("header: {detail}"));
        restore();
    }
    assert!(same_but_open_state(&fs::read(&path).unwrap(), &good));
    Store::open(&path).unwrap();
}

#[test]
fn live_header_words_out_of_range_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let len = good.len() as u64;
    let restore = || poke(&path, 512, &good[512..4096]);
    let set = |offset: u64, value: u64| poke(&path, offset, &value.to_ne_bytes());

    for (alloc_end, what) in
        [(len + 4096, "alloc_end beyond the file"), (u64::MAX, "alloc_end at u64::MAX"), (0, "alloc_end zero")]
    {
        set(ALLOC_END_OFFSET, alloc_end);
        assert_eq!(corrupt_detail(&path, what), "allocation end lies outside the data area");
        restore();
    }
    // Just outside the data area, on either side.
    set(ALLOC_END_OFFSET, 4095);
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
    assert_eq!(corrupt_detail(&path, "capacity below the minimum"), "capacity is smaller than a store's minimum");
    restore();

    for (root, what) in [(0, "index root zero"), (4100, "index root misaligned"), (len - 64, "index root at the end")] {
        set(INDEX_ROOT_OFFSET, root);
        assert_eq!(corrupt_detail(&path, what), "index root lies outside the data area", "{what}");
        restore();
    }
    // An index root in the data area, but not at an index table.
    set(INDEX_ROOT_OFFSET, DATA_OFFSET);
    assert!(corrupt_detail(&path, "index root off the table").contains("index table"));
    restore();

    assert!(same_but_open_state(&fs::read(&path).unwrap(), &good));
    Store::open(&path).unwrap();
}

#[test]
fn a_damaged_index_table_header_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    flip(&path, 4096 + 2, 0x01);
    assert_eq!(
        corrupt_detail(&path, "magic"),
        "the index table has no SHMINDX2 or SHMINDEX magic (index table at byte 4096)"
    );
    poke(&path, 0, &good);
    flip(&path, 4096 + 8, 0x01);
    assert_eq!(
        corrupt_detail(&path, "slots"),
        "the index table header's checksum does not match (index table at byte 4096)"
    );
    poke(&path, 0, &good);
    // A slot count that is sealed but impossible.
    let mut header = good[4096..4096 + 64].to_vec();
    header[8..16].copy_from_slice(&48u64.to_le_bytes());
    let sum = checksum64(&header[..16]);
    header[16..24].copy_from_slice(&sum.to_le_bytes());
    poke(&path, 4096, &header);
    assert_eq!(corrupt_detail(&path, "48 slots"), "the index table claims 48 slots (index table at byte 4096)");
}

// ---------------------------------------------------------------------------------------------
// Truncation and foreign contents.

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn truncated_files_are_refused() {
    for (len, what) in [(0, "empty"), (100, "shorter than the header"), (200, "shorter than the static header")] {
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
        (256, 8192, "only the static header"),
        (4096, 8192, "only the header"),
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
            // Half the cases keep a valid magic and version, so they get past the first checks.
            bytes[..8].copy_from_slice(b"SHMSTORE");
            bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        }
        fs::write(&path, &bytes).unwrap();
        let err = refuse(&path, &format!("random case {case}"));
        if case % 2 == 0 {
            assert!(matches!(err, Error::NotAStore { .. }), "case {case}: {err:?}");
        } else {
            assert!(matches!(err, Error::BadChecksum { .. }), "case {case}: {err:?}");
        }
    }
}

#[test]
fn random_index_and_blocks_behind_a_valid_header_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let mut rng = Rng::new(0x5eed_0002);
    for case in 0..100 {
        let mut bytes = good.clone();
        // Keep the header (static part, open state, live words), randomise everything after it.
        rng.fill(&mut bytes[4096..]);
        fs::write(&path, &bytes).unwrap();
        let err = refuse(&path, &format!("random index case {case}"));
        assert!(matches!(err, Error::Corrupt { .. } | Error::BadChecksum { .. }), "case {case}: {err:?}");
    }
}

#[test]
fn random_data_never_panics() {
    // The index and the blocks are intact, so the store opens; every access then gives a value
    // or a typed error.
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let records = raw_records(&path);
    let mut rng = Rng::new(0x5eed_0003);
    let mut invalid = 0;
    for case in 0..100 {
        let mut bytes = good.clone();
        for r in &records {
            let data =
                r.data_offset as usize..(r.data_offset + r.elem_size * r.count * u64::from(r.slot_count)) as usize;
            rng.fill(&mut bytes[data]);
            rng.fill(&mut bytes[r.schema_offset as usize..(r.schema_offset + r.schema_len) as usize]);
        }
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
// Entry blocks.

#[test]
fn every_flipped_block_byte_is_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let records = raw_records(&path);
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        assert_eq!(record.state, 1);
        for i in 0..BLOCK_STATIC_SIZE {
            let at = record.offset + BLOCK_STATIC_OFFSET + i;
            flip(&path, at, 0x01);
            let what = format!("block of `{}` (at {}) static byte {i}", record.name, record.offset);
            match refuse(&path, &what) {
                Error::BadChecksum { what: block, .. } => {
                    assert_eq!(block, format!("the entry block at byte {}", record.offset), "{what}")
                }
                other => panic!("{what}: {other:?}"),
            }
            flip(&path, at, 0x01);
        }
    }
    assert!(same_but_open_state(&fs::read(&path).unwrap(), &good));
    Store::open(&path).unwrap();
}

#[test]
fn block_states() {
    let (_dir, path) = build();
    let record = raw_record(&path, "ids");
    // 1 live; 0 free, 2 an uncommitted shadow, 4 removed are not found; 3 forwards; others are
    // not states.
    for state in [5u32, 7, u32::MAX] {
        poke(&path, record.offset, &state.to_ne_bytes());
        assert_eq!(
            corrupt_detail(&path, &format!("state {state}")),
            format!("entry block at byte {} has unknown state {state}", record.offset)
        );
    }
    for state in [0u32, 2, 4] {
        poke(&path, record.offset, &state.to_ne_bytes());
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.array::<u32>("ids"), Err(Error::NotFound { .. })), "state {state}");
        assert_eq!(store.entries().unwrap().len(), 2, "state {state}");
    }
    // Forwarding to itself loops.
    poke(&path, record.offset, &3u32.to_ne_bytes());
    poke(&path, record.offset + 32, &record.offset.to_ne_bytes());
    assert_eq!(
        corrupt_detail(&path, "a loop"),
        format!("the chain of replaced entry blocks from byte {} loops", record.offset)
    );
    poke(&path, record.offset + 32, &0u64.to_ne_bytes());
    poke(&path, record.offset, &1u32.to_ne_bytes());
    assert_eq!(Store::open(&path).unwrap().array::<u32>("ids").unwrap().get(0).unwrap(), 1);
    // A live serial that is not the block's own.
    poke(&path, record.offset + 8, &999u64.to_ne_bytes());
    let detail = corrupt_detail(&path, "serial");
    assert!(detail.contains("in its static part but 999 live"), "{detail}");
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

/// The block of entry `name` (its offset, serial and static part), read with the format module
/// and without reading the data area, so that huge sparse files stay cheap.
fn record(path: &Path, name: &str) -> (u64, u64, Entry) {
    let file = fs::File::open(path).unwrap();
    let mut head = vec![0u8; 4096];
    file.read_exact_at(&mut head, 0).unwrap();
    let root = common::read_u64_ne(&head, INDEX_ROOT_OFFSET as usize);
    let mut table = vec![0u8; 64 + 16 * 64];
    file.read_exact_at(&mut table, root).unwrap();
    let slots = common::read_u64_le(&table, 8);
    table.resize(64 + 16 * slots as usize, 0);
    file.read_exact_at(&mut table, root).unwrap();
    for i in 0..slots as usize {
        let at = common::read_u64_ne(&table, 64 + 16 * i);
        if at < 2 {
            continue;
        }
        let mut raw = vec![0u8; block::STATIC_SIZE];
        file.read_exact_at(&mut raw, at + block::STATIC_OFFSET).unwrap();
        if let Ok(b) = block::decode(&raw, at, u64::MAX) {
            if b.entry.name == name {
                return (at, b.serial, b.entry);
            }
        }
    }
    panic!("no valid block named `{name}`")
}

/// Decodes the block of entry `name`, lets `edit` change it, and writes it back encoded by the
/// format module, with a valid checksum. Returns its offset.
fn edit_record(path: &Path, name: &str, edit: impl FnOnce(&mut Entry)) -> u64 {
    let (at, serial, mut entry) = record(path, name);
    edit(&mut entry);
    poke(path, at + block::STATIC_OFFSET, &block::encode(&entry, serial));
    at
}

/// Rewrites bytes of a block's static part and fixes up its checksum (checksum64 over its first
/// 184 bytes, stored little-endian in its last 8).
fn rewrite_record(path: &Path, at: u64, offset: usize, bytes: &[u8]) {
    let start = (at + BLOCK_STATIC_OFFSET) as usize;
    let mut part = fs::read(path).unwrap()[start..start + BLOCK_STATIC_SIZE as usize].to_vec();
    part[offset..offset + bytes.len()].copy_from_slice(bytes);
    let sum = checksum64(&part[..184]);
    part[184..].copy_from_slice(&sum.to_le_bytes());
    poke(path, start as u64, &part);
}

/// The bytes entry `name` uses: (data, schema).
fn ranges(path: &Path, name: &str) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let (_, _, e) = record(path, name);
    (e.data_range().unwrap(), e.schema_range().unwrap())
}

#[test]
fn blocks_with_valid_checksums_but_impossible_contents_are_refused() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let (ids, _, _) = record(&path, "ids");
    // Fields an `Entry` cannot hold, written byte by byte (with the checksum fixed up).
    let raw_cases: Vec<(usize, Vec<u8>, &str, &str)> = vec![
        (0, vec![4], "unknown entry kind", "unknown kind"),
        (0, vec![0], "unknown entry kind", "kind zero"),
        (2, 65u16.to_le_bytes().to_vec(), "entry name is not valid", "name longer than 64 bytes"),
        (8, vec![0xff], "entry name is not valid", "name not UTF-8"),
        (30, vec![b'x'], "entry name is not zero-padded", "bytes after the name"),
        (136, 0u64.to_le_bytes().to_vec(), "entry serial is 0", "serial zero"),
    ];
    for (at, bytes, detail, what) in raw_cases {
        rewrite_record(&path, ids, at, &bytes);
        assert_eq!(corrupt_detail(&path, what), format!("entry block at byte {ids}: {detail}"), "{what}");
        poke(&path, 0, &good);
    }

    // Everything else, through the format module: decode the block, change a field, encode it
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
        ("ids", |e| e.data_offset = 4096 - 64, "data lies before the data area or is misaligned"),
        ("ids", |e| e.data_offset += 2, "data lies before the data area or is misaligned"),
        ("ids", |e| e.slot_stride = 64, "single-slot entry has a slot stride"),
        ("ids", |e| e.schema_offset = 100, "schema lies outside the data area"),
        ("ids", |e| e.schema_len = 0, "schema lies outside the data area"),
        ("ids", |e| e.schema_len = u64::MAX, "entry size overflows"),
        ("ids", |e| e.schema_offset = e.data_offset + 8, "schema overlaps the entry's data"),
        ("flags", |e| e.slot_stride = 8, "object slots overlap"),
        ("flags", |e| e.slot_stride = 72, "object slots are not whole cache lines"),
        ("flags", |e| e.slot_stride = 128, "schema overlaps the entry's data"),
        ("flags", |e| e.count = 2, "slot count or element count does not fit the entry kind"),
        ("flags", |e| e.slot_count = 3, "slot count or element count does not fit the entry kind"),
        ("flags", |e| e.data_offset += 2, "data lies before the data area or is misaligned"),
    ];
    for (name, edit, detail) in cases {
        let at = edit_record(&path, name, edit);
        let what = format!("{name}: {detail}");
        assert_eq!(corrupt_detail(&path, &what), format!("entry block at byte {at}: {detail}"), "{what}");
        poke(&path, 0, &good);
    }
    // Data over its own block.
    let at = edit_record(&path, "ids", |e| e.data_offset = 0);
    poke(&path, 0, &good);
    edit_record(&path, "ids", |e| e.data_offset = at);
    assert_eq!(
        corrupt_detail(&path, "data over its own block"),
        format!("entry block at byte {at}: entry data or schema overlaps its own block")
    );
    poke(&path, 0, &good);
    assert!(same_but_open_state(&fs::read(&path).unwrap(), &good));
    Store::open(&path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Blocks that each look fine, but not together: the per-process interval set refuses them.

#[test]
fn overlapping_data_of_two_entries_is_refused_naming_both() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let (ids_at, _, ids) = record(&path, "ids");
    let (bits_at, _, _) = record(&path, "bits");

    // Unchecked, `bits` (bools) would be a view of `ids`'s bytes: a `&[bool]` over a `u32` that
    // `ids.write_at` can set to 7, and a live `&mut [u32]` and `&[bool]` of the same memory.
    edit_record(&path, "bits", |e| e.data_offset = ids.data_offset);
    let detail = corrupt_detail(&path, "bits inside ids");
    let one = format!("entry `bits` (block at byte {bits_at}) overlaps entry `ids` (block at byte {ids_at})");
    let other = format!("entry `ids` (block at byte {ids_at}) overlaps entry `bits` (block at byte {bits_at})");
    assert!(detail == one || detail == other, "{detail}");
    // The same through lookups, whichever is opened first.
    let store = Store::open(&path).unwrap();
    store.array::<u32>("ids").unwrap();
    assert!(matches!(store.array::<bool>("bits"), Err(Error::Corrupt { .. })));
    drop(store);
    poke(&path, 0, &good);

    // One byte of overlap, in otherwise free space: `ids` moves there, and `bits` starts on its
    // last byte.
    let free = CAPACITY - 8192;
    edit_record(&path, "ids", |e| e.data_offset = free);
    edit_record(&path, "bits", |e| e.data_offset = free + 63);
    assert!(corrupt_detail(&path, "one byte").contains("overlaps"));
    // Moved one byte on, it touches without overlapping, and the store opens.
    edit_record(&path, "bits", |e| e.data_offset = free + 64);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.entry_info("bits").unwrap().data_offset, free + 64);
    assert_eq!(store.array::<u32>("ids").unwrap().len(), 16);
    // Data over another entry's block (which holds its sequence and lock words).
    drop(store);
    poke(&path, 0, &good);
    edit_record(&path, "bits", |e| e.data_offset = ids_at);
    assert!(corrupt_detail(&path, "over a block").contains("overlaps"));
}

#[test]
fn schema_overlapping_data_is_refused_naming_both() {
    let (_dir, path) = build();
    let good = fs::read(&path).unwrap();
    let (_, _, ids) = record(&path, "ids");

    // The object's schema inside the array's data: a write to `ids` would rewrite it.
    edit_record(&path, "flags", |e| e.schema_offset = ids.data_offset + 8);
    let detail = corrupt_detail(&path, "schema inside another entry's data");
    assert!(
        detail.contains("entry `flags`") && detail.contains("entry `ids`") && detail.contains("overlaps"),
        "{detail}"
    );
    poke(&path, 0, &good);

    // Two entries sharing one schema.
    edit_record(&path, "bits", |e| e.schema_offset = ids.schema_offset);
    let detail = corrupt_detail(&path, "shared schema");
    assert!(detail.contains("entry `ids`") && detail.contains("entry `bits`"), "{detail}");
    poke(&path, 0, &good);

    // And within one entry.
    let at = edit_record(&path, "ids", |e| e.schema_offset = e.data_offset + 60);
    assert_eq!(
        corrupt_detail(&path, "own schema"),
        format!("entry block at byte {at}: schema overlaps the entry's data")
    );
}

#[test]
fn live_entries_with_one_name_are_refused() {
    let (_dir, path) = build();
    let (ids_at, _, _) = record(&path, "ids");
    let (bits_at, _, _) = record(&path, "bits");
    // Renamed in its block only, `bits` is found by neither name: its index slot holds the hash
    // of `bits`, a lookup of `ids` never reaches it, and a lookup of `bits` compares names.
    edit_record(&path, "bits", |e| e.name = "ids".into());
    let store = Store::open(&path).unwrap();
    assert!(matches!(store.array::<bool>("bits"), Err(Error::NotFound { .. })));
    assert_eq!(store.array::<u32>("ids").unwrap().len(), 16);
    drop(store);
    // With a second index slot under the hash of `ids` leading to it, two live entries share a
    // name: listing refuses the store.
    let root = common::read_u64_ne(&fs::read(&path).unwrap(), INDEX_ROOT_OFFSET as usize);
    let bytes = fs::read(&path).unwrap();
    let empty = (0..64u64).find(|i| common::read_u64_ne(&bytes, (root + 64 + 16 * i) as usize) == 0).unwrap();
    poke(&path, root + 64 + 16 * empty + 8, &hash64("ids").to_ne_bytes());
    poke(&path, root + 64 + 16 * empty, &bits_at.to_ne_bytes());
    let (low, high) = (ids_at.min(bits_at), ids_at.max(bits_at));
    assert_eq!(
        corrupt_detail(&path, "two live `ids`"),
        format!("entry blocks at bytes {low} and {high} are both live and named `ids`")
    );
}

/// Makes the file `len` bytes long (sparse) and sets its capacity and allocation end to match.
fn grow_sparse(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
    poke(path, CAPACITY_OFFSET, &len.to_ne_bytes());
    poke(path, ALLOC_END_OFFSET, &len.to_ne_bytes());
}

/// The detail of the `Corrupt` error with which every way of opening and listing the (huge,
/// sparse) file at `path` refuses it, without reading the file's data area.
#[track_caller]
fn corrupt_detail_of_huge(path: &Path, what: &str) -> String {
    let details: Vec<String> = [Store::open(path), Store::options().read_only(true).open(path)]
        .into_iter()
        .map(|result| match expect_err(open_and_list(result), what) {
            Error::Corrupt { detail, .. } => detail,
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        })
        .collect();
    assert_eq!(details[0], details[1], "{what}");
    details[0].clone()
}

#[test]
fn a_huge_schema_length_is_refused_before_anything_is_allocated() {
    let (_dir, path) = build();
    // An 8 GiB sparse store whose `ids` claims a 6 GiB schema in otherwise unused space: inside
    // the capacity, overlapping nothing, so only the bound on schema lengths refuses it. Reading
    // it would allocate 6 GiB for `entries()`, `schema()` or `shmstore inspect`.
    let (ids_at, _, _) = record(&path, "ids");
    let sound_block = {
        let mut b = vec![0u8; 384];
        fs::File::open(&path).unwrap().read_exact_at(&mut b, ids_at).unwrap();
        b
    };
    grow_sparse(&path, 8 << 30);
    let at = edit_record(&path, "ids", |e| (e.schema_offset, e.schema_len) = (1 << 30, 6 << 30));
    let too_long = format!("entry block at byte {at}: schema is longer than the format allows");
    assert_eq!(corrupt_detail_of_huge(&path, "6 GiB schema"), too_long);
    // The longest schema allowed is fine (and found not to be a schema only when it is read).
    let max = shmstore::format::schema::MAX_SCHEMA_LEN as u64;
    poke(&path, ids_at, &sound_block);
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
    let (_, _, entry) = record(path, name);
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
// An allocation end that lags the entries (a crafted file: a writer with power-loss durability
// syncs the allocation end before it publishes an entry).

#[test]
fn a_lagging_allocation_end_never_hands_out_an_entrys_bytes() {
    let (_dir, path) = build();
    let highest = ["flags", "ids", "bits"]
        .iter()
        .map(|n| {
            let (d, s) = ranges(&path, n);
            d.end.max(s.end)
        })
        .max()
        .unwrap();
    assert!(common::read_u64_ne(&fs::read(&path).unwrap(), ALLOC_END_OFFSET as usize) >= highest);
    poke(&path, ALLOC_END_OFFSET, &DATA_OFFSET.to_ne_bytes());
    let lagging = fs::read(&path).unwrap();

    // A reader accepts it as it is, and changes nothing.
    let reader = Store::options().read_only(true).open(&path).unwrap();
    assert_eq!(reader.entries().unwrap().len(), 3);
    assert_eq!(reader.object::<Flags>("flags").unwrap().load().unwrap(), flags());
    drop(reader);
    assert!(fs::read(&path).unwrap() == lagging, "a read-only open wrote to the file");

    // A writer that uses the entries refuses to allocate over them.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.entries().unwrap().len(), 3);
    match store.array_or_init::<u32>("fresh", 16, 0xffff_ffff) {
        Err(Error::Corrupt { detail, .. }) => {
            assert!(detail.contains("the allocator would hand out bytes"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.object::<Flags>("flags").unwrap().load().unwrap(), flags());
    assert_eq!(*store.array::<u32>("ids").unwrap().read().unwrap(), [1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
    assert_eq!(*store.array::<bool>("bits").unwrap().read().unwrap(), [true; 8]);
}

#[test]
fn misaligned_second_slot_is_an_error_not_a_misaligned_reference() {
    let (_dir, path) = build();
    let record = raw_record(&path, "flags");
    assert_eq!(record.slot_count, 2, "objects without atomics are double-buffered");
    // A stride that would misalign slot 1, which an odd sequence word selects.
    rewrite_record(&path, record.offset, 112, &(record.slot_stride + 1).to_le_bytes());
    poke(&path, record.offset + 16, &1u64.to_ne_bytes());
    assert_eq!(
        corrupt_detail(&path, "stride + 1"),
        format!("entry block at byte {}: object slots are not whole cache lines", record.offset)
    );
}
