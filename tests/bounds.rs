//! Limits: array bounds, entry names, capacity, catalog size, read-only stores.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{dir_listing, temp_store};
use shmstore::{Error, SharedArray, SharedLayout, Store, MAX_NAME_LEN};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Hits {
    n: AtomicU64,
}

const MIB: u64 = 1 << 20;
/// Where allocation starts in a new store: after the 4096-byte header and the first index table
/// (64 slots of 16 bytes after a 64-byte table header).
const DATA_OFFSET: u64 = 4096 + 64 + 64 * 16;
/// The smallest store: header and first index table, rounded up to 8 KiB.
const MIN_CAPACITY: u64 = 8192;

fn len_of(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

// ---------------------------------------------------------------------------------------------
// Array bounds.

fn ten() -> (tempfile::TempDir, Store, SharedArray<u32>) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let arr = store.array_or_init::<u32>("arr", 10, 0).unwrap();
    arr.write_at(0, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    (dir, store, arr)
}

#[track_caller]
fn assert_oob(result: shmstore::Result<()>, what: &str, start: u64, end: u64, len: u64) {
    match result {
        Err(e @ Error::OutOfBounds { .. }) => {
            let message = e.to_string();
            let Error::OutOfBounds { name, what: w, start: s, end: en, len: l } = e else { unreachable!() };
            assert_eq!((name.as_str(), w, s, en, l), ("arr", what, start, end, len));
            assert!(message.contains("arr") && message.contains(&len.to_string()), "{message}");
        }
        other => panic!("expected OutOfBounds {what} {start}..{end}, got {other:?}"),
    }
}

const ORIGINAL: [u32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

#[test]
fn write_at_past_the_end_writes_nothing() {
    let (_dir, _store, arr) = ten();
    assert_oob(arr.write_at(8, &[100, 101, 102]), "write_at", 8, 11, 10);
    assert_oob(arr.write_at(10, &[100]), "write_at", 10, 11, 10);
    assert_oob(arr.write_at(11, &[]), "write_at", 11, 11, 10);
    assert_oob(arr.write_at(0, &[7; 11]), "write_at", 0, 11, 10);
    assert_oob(arr.write_at(usize::MAX, &[100]), "write_at", u64::MAX, u64::MAX, 10);
    assert_oob(arr.write_at(usize::MAX, &[]), "write_at", u64::MAX, u64::MAX, 10);
    assert_oob(arr.write_at(usize::MAX - 1, &[100, 101, 102]), "write_at", u64::MAX - 1, u64::MAX, 10);
    assert_eq!(*arr.read().unwrap(), ORIGINAL, "a refused write_at changed the array");
    // Right at the end is fine.
    arr.write_at(10, &[]).unwrap();
    arr.write_at(7, &[70, 80, 90]).unwrap();
    assert_eq!(arr.read().unwrap()[7..], [70, 80, 90]);
}

#[test]
fn read_at_past_the_end_reads_nothing() {
    let (_dir, _store, arr) = ten();
    let mut buf = [u32::MAX; 3];
    assert_oob(arr.read_at(8, &mut buf), "read_at", 8, 11, 10);
    assert_oob(arr.read_at(usize::MAX, &mut buf[..1]), "read_at", u64::MAX, u64::MAX, 10);
    assert_oob(arr.read_at(11, &mut []), "read_at", 11, 11, 10);
    assert_eq!(buf, [u32::MAX; 3], "a refused read_at filled the buffer");
    arr.read_at(10, &mut []).unwrap();
    arr.read_at(7, &mut buf).unwrap();
    assert_eq!(buf, [7, 8, 9]);
}

#[test]
fn get_set_and_update_past_the_end_fail() {
    let (_dir, _store, arr) = ten();
    assert_oob(arr.get(10).map(drop), "index", 10, 11, 10);
    assert_oob(arr.get(usize::MAX).map(drop), "index", u64::MAX, u64::MAX, 10);
    assert_oob(arr.set(10, 1), "index", 10, 11, 10);
    assert_oob(arr.set(usize::MAX, 1), "index", u64::MAX, u64::MAX, 10);
    assert_oob(arr.update(9, 2, |_| panic!("the closure must not run")), "update", 9, 11, 10);
    assert_oob(arr.update(usize::MAX, 1, |_| panic!("the closure must not run")), "update", u64::MAX, u64::MAX, 10);
    assert_eq!(*arr.read().unwrap(), ORIGINAL);
    assert_eq!(arr.get(9).unwrap(), 9);
    arr.set(9, 99).unwrap();
    assert_eq!(arr.update(8, 2, |xs| xs.iter().sum::<u32>()).unwrap(), 8 + 99);
}

#[test]
fn neighbouring_entries_are_untouched_by_refused_writes() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let a = store.array_or_init::<u8>("a", 3, 1).unwrap();
    let b = store.array_or_init::<u8>("b", 3, 2).unwrap();
    let before = fs::read(&path).unwrap();
    assert!(matches!(a.write_at(1, &[9, 9, 9]), Err(Error::OutOfBounds { .. })));
    assert!(matches!(a.set(3, 9), Err(Error::OutOfBounds { .. })));
    assert!(fs::read(&path).unwrap() == before, "a refused write changed the file");
    assert_eq!((a.read().unwrap().to_vec(), b.read().unwrap().to_vec()), (vec![1, 1, 1], vec![2, 2, 2]));
}

#[test]
fn zero_length_arrays() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let empty = store.array_or_init::<u64>("empty", 0, 7).unwrap();
    let empty_bools = store.array_or_init::<bool>("empty-bools", 0, true).unwrap();
    let neighbour = store.array_or_init::<u64>("neighbour", 2, 5).unwrap();
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
    assert!(empty.read().unwrap().is_empty());
    assert!(empty.write().unwrap().is_empty());
    assert!(empty_bools.read().unwrap().is_empty());
    empty.write_at(0, &[]).unwrap();
    empty.read_at(0, &mut []).unwrap();
    match empty.write_at(0, &[1]) {
        Err(Error::OutOfBounds { name, start, end, len, .. }) => {
            assert_eq!((name.as_str(), start, end, len), ("empty", 0, 1, 0))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(empty.get(0), Err(Error::OutOfBounds { .. })));
    assert!(matches!(empty.set(0, 1), Err(Error::OutOfBounds { .. })));
    assert_eq!(*neighbour.read().unwrap(), [5, 5]);

    let info = store.entries().unwrap().into_iter().find(|e| e.name == "empty").unwrap();
    assert_eq!((info.len, info.bytes, info.elem_size), (0, 0, 8));
    drop((empty, empty_bools, neighbour, store));
    let store = Store::open(&path).unwrap();
    assert_eq!(store.array::<u64>("empty").unwrap().len(), 0);
    assert_eq!(*store.array::<u64>("neighbour").unwrap().read().unwrap(), [5, 5]);
}

#[test]
fn array_or_init_opens_an_existing_array_at_its_own_length() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    store.array_or_init::<u16>("arr", 4, 3).unwrap();
    let again = store.array_or_init::<u16>("arr", 100, 9).unwrap();
    assert_eq!(again.len(), 4);
    assert_eq!(*again.read().unwrap(), [3; 4]);
}

// ---------------------------------------------------------------------------------------------
// Names.

#[test]
fn invalid_names_are_refused_everywhere() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let used = store.used();
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let long_utf8 = "é".repeat(MAX_NAME_LEN / 2 + 1);
    for name in ["", long.as_str(), long_utf8.as_str(), "a\0b", "\0", "tab\there", "line\n", "\u{7f}del"] {
        let results = [
            store.object_or_init(name, Pair::default).map(drop),
            store.object::<Pair>(name).map(drop),
            store.array_or_init::<u8>(name, 4, 0).map(drop),
            store.array::<u8>(name).map(drop),
        ];
        for result in results {
            match result {
                Err(e @ Error::InvalidName { .. }) => {
                    let message = e.to_string();
                    let Error::InvalidName { name: n, reason } = e else { unreachable!() };
                    assert_eq!(n, name);
                    assert!(!reason.is_empty());
                    assert!(message.contains(&format!("{name:?}")), "{message}");
                }
                other => panic!("name {name:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
    match store.object_or_init(&long, Pair::default) {
        Err(Error::InvalidName { reason, .. }) => assert!(reason.contains("65") && reason.contains("64"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(store.entries().unwrap().is_empty(), "an invalid name created an entry");
    assert_eq!(store.used(), used, "an invalid name allocated space");
}

#[test]
fn names_up_to_64_bytes_work() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let ascii = "n".repeat(MAX_NAME_LEN);
    let utf8 = "é".repeat(MAX_NAME_LEN / 2);
    assert_eq!((ascii.len(), utf8.len()), (64, 64));
    for (i, name) in [ascii.as_str(), utf8.as_str(), "a", "données/ü", "with space", "日本語"].into_iter().enumerate()
    {
        store.object_or_init(name, || Pair { a: i as u64, b: 0 }).unwrap();
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Pair>(&ascii).unwrap().load().unwrap().a, 0);
    assert_eq!(store.object::<Pair>(&utf8).unwrap().load().unwrap().a, 1);
    assert_eq!(store.object::<Pair>("日本語").unwrap().load().unwrap().a, 5);
    let mut names: Vec<_> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    let mut expected =
        vec![ascii.clone(), utf8.clone(), "a".into(), "données/ü".into(), "with space".into(), "日本語".into()];
    expected.sort();
    assert_eq!(names, expected);
    // Names are exact: a prefix of a 64-byte name is another (missing) entry.
    assert!(matches!(store.object::<Pair>(&ascii[..63]), Err(Error::NotFound { .. })));
}

#[test]
fn missing_entries_are_not_found() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    store.object_or_init("present", Pair::default).unwrap();
    match store.object::<Pair>("absent") {
        Err(e @ Error::NotFound { .. }) => assert!(e.to_string().contains("absent"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.array::<u8>("absent"), Err(Error::NotFound { .. })));
}

// ---------------------------------------------------------------------------------------------
// Space: a full store, a full catalog.

#[test]
fn full_store_is_store_full_and_changes_nothing() {
    let (_dir, path) = temp_store();
    let capacity = 64 * 1024;
    // A store grows when an entry does not fit, up to its maximum capacity: cap it where it starts.
    let store = Store::options().create(true).capacity(capacity).max_capacity(capacity).open(&path).unwrap();
    let small = store.array_or_init::<u64>("small", 16, 3).unwrap();
    let used = store.used();
    let before = fs::read(&path).unwrap();

    let (needed, available, suggested) = match store.array_or_init::<u64>("big", 100_000, 1) {
        Err(e @ Error::StoreFull { .. }) => {
            let message = e.to_string();
            let Error::StoreFull { path: p, needed, available, capacity: c, suggested } = e else { unreachable!() };
            assert_eq!(p, path);
            assert_eq!(c, capacity);
            assert_eq!(available, capacity - used);
            assert!((800_000..800_000 + 4096).contains(&needed), "needed {needed}");
            assert!(suggested >= used + needed, "suggested {suggested} cannot fit {needed} more after {used}");
            assert!(suggested <= 2 * (used + needed), "suggested {suggested} is far more than needed");
            assert!(message.contains(&suggested.to_string()), "{message}");
            (needed, available, suggested)
        }
        other => panic!("expected StoreFull, got {:?}", other.map(|a| a.len())),
    };
    assert!(needed > available);
    assert_eq!(store.used(), used, "a refused entry allocated space");
    assert!(fs::read(&path).unwrap() == before, "a refused entry changed the file");
    assert!(matches!(store.array::<u64>("big"), Err(Error::NotFound { .. })));
    assert_eq!(store.entries().unwrap().len(), 1);
    // Smaller entries still fit.
    store.object_or_init("pair", Pair::default).unwrap();
    assert_eq!(*small.read().unwrap(), [3; 16]);

    // Impossible sizes are EntryTooLarge, not an overflow panic nor a max_capacity to raise.
    for len in [usize::MAX, usize::MAX / 8, usize::MAX / 8 + 1, 1 << 61] {
        match store.array_or_init::<u64>("huge", len, 1) {
            Err(e @ Error::EntryTooLarge { .. }) => {
                let message = e.to_string();
                assert!(message.contains("more than a store can hold"), "{message}");
                assert!(!message.contains("max_capacity"), "{message}");
            }
            other => panic!("len {len}: expected EntryTooLarge, got {:?}", other.map(|a| a.len())),
        }
    }
    assert_eq!(store.entries().unwrap().len(), 2);

    // The suggested maximum works, as the message says: the store grows to fit, within it.
    drop((small, store));
    let store = Store::options().max_capacity(suggested).open(&path).unwrap();
    assert_eq!(store.capacity(), capacity, "opening does not grow the store");
    let big = store
        .array_or_init::<u64>("big", 100_000, 1)
        .expect("reopened with Store::options().max_capacity(suggested), as StoreFull suggests, the entry must fit");
    assert!(store.capacity() > capacity && store.capacity() <= suggested, "grew to {}", store.capacity());
    assert_eq!(len_of(&path), store.capacity());
    assert_eq!(big.len(), 100_000);
    assert_eq!(big.get(99_999).unwrap(), 1);
    assert_eq!(*store.array::<u64>("small").unwrap().read().unwrap(), [3; 16]);
}

#[test]
fn a_store_filled_exactly_to_capacity_reopens() {
    let (_dir, path) = temp_store();
    // A byte region from the next page to the end: its data and schema (8-aligned) in whole
    // cache lines, then its 384-byte entry block, end exactly at the capacity.
    let schema_len = shmstore::format::schema::encode(&u8::LAYOUT).len() as u64;
    assert!(schema_len <= 64);
    let capacity = 64 * 1024 + 384;
    let store = Store::options().create(true).capacity(capacity).max_capacity(capacity).open(&path).unwrap();
    store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
    let start = store.used().next_multiple_of(4096);
    let len = capacity - 384 - 64 - start;
    let region = store.bytes_or_init("rest", len).unwrap();
    region.write_at(len - 3, b"end").unwrap();
    assert_eq!(store.used(), capacity, "the store is exactly full");
    assert!(matches!(store.object_or_init("more", || 1u8), Err(Error::StoreFull { .. })));
    drop((region, store));

    for read_only in [false, true] {
        let store = Store::options().read_only(read_only).open(&path).unwrap();
        assert_eq!((store.capacity(), store.used()), (capacity, capacity), "read_only: {read_only}");
        assert_eq!(store.entries().unwrap().len(), 2);
        let mut tail = [0u8; 3];
        store.bytes("rest").unwrap().read_at(len - 3, &mut tail).unwrap();
        assert_eq!(&tail, b"end");
        assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 1, b: 2 });
    }
    assert_eq!(len_of(&path), capacity);

    // One byte more and the entry would end past the capacity: refused, whatever the allocation
    // end says.
    use shmstore::format::v2::block;
    let at = Store::options().read_only(true).open(&path).unwrap().entry_info("rest").unwrap().record_offset;
    let bytes = fs::read(&path).unwrap();
    let static_part = &bytes[(at + block::STATIC_OFFSET) as usize..(at + block::BLOCK_SIZE) as usize];
    let mut rest = block::decode(static_part, at, capacity).unwrap();
    assert_eq!(at + block::BLOCK_SIZE, capacity, "the block is the last thing in the store");
    rest.entry.count = capacity + 1 - rest.entry.data_offset;
    common::poke(&path, at + block::STATIC_OFFSET, &block::encode(&rest.entry, rest.serial));
    match Store::options().read_only(true).open(&path).and_then(|s| s.bytes("rest")) {
        Err(Error::Corrupt { detail, .. }) => assert_eq!(
            detail,
            format!("entry block at byte {at}: it ends at byte {}, past the store's {capacity} bytes", capacity + 1)
        ),
        other => panic!("{other:?}"),
    }
}

/// Field names of 1000 bytes: long, but within the 1024 bytes a schema name may take.
const LONG_A: &str = match std::str::from_utf8(&[b'a'; 1000]) {
    Ok(s) => s,
    Err(_) => panic!("ASCII is UTF-8"),
};
const LONG_B: &str = match std::str::from_utf8(&[b'b'; 1000]) {
    Ok(s) => s,
    Err(_) => panic!("ASCII is UTF-8"),
};

/// Each level is a struct of two copies of the level below, in fields with long names: the
/// encoded schema doubles with each level, since every node is written out in full.
macro_rules! halves {
    ($($level:ident($below:ident, $size:expr);)*) => {$(
        const $level: shmstore::Layout = shmstore::Layout::new(
            "Halves",
            $size,
            1,
            1,
            shmstore::TypeKind::Struct {
                fields: &[
                    shmstore::Field { name: LONG_A, offset: 0, layout: &$below },
                    shmstore::Field { name: LONG_B, offset: $size / 2, layout: &$below },
                ],
            },
        );
    )*};
}

const LEVEL0: shmstore::Layout = u8::LAYOUT;
halves! {
    LEVEL1(LEVEL0, 2); LEVEL2(LEVEL1, 4); LEVEL3(LEVEL2, 8); LEVEL4(LEVEL3, 16); LEVEL5(LEVEL4, 32);
    LEVEL6(LEVEL5, 64); LEVEL7(LEVEL6, 128); LEVEL8(LEVEL7, 256); LEVEL9(LEVEL8, 512);
    LEVEL10(LEVEL9, 1024); LEVEL11(LEVEL10, 2048); LEVEL12(LEVEL11, 4096); LEVEL13(LEVEL12, 8192);
}

/// 8 KiB of bytes, described as a binary tree of structs 13 levels deep: a real layout, but one
/// whose encoded schema (about 17 MB) is longer than a store may record.
#[repr(C)]
struct Halves([u8; 8192]);

// SAFETY: `Halves` is 8192 `u8`s: size 8192 and alignment 1, as LEVEL13 says; it has no padding
// and no pointers; every byte pattern is a valid `[u8; 8192]` (and LEVEL13 describes every byte as
// a `u8`, so `validate` accepts them all); it has no drop glue.
unsafe impl SharedLayout for Halves {
    const LAYOUT: shmstore::Layout = LEVEL13;
}

#[test]
fn a_layout_whose_schema_is_too_long_is_refused_before_anything_is_allocated() {
    use shmstore::format::schema::{self, MAX_SCHEMA_LEN};
    let encoded = schema::encode(&Halves::LAYOUT).len();
    assert!(encoded > MAX_SCHEMA_LEN, "{encoded} bytes");
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    store.object_or_init("pair", Pair::default).unwrap();
    let used = store.used();
    let before = fs::read(&path).unwrap();
    match store.object_or_init("halves", || Halves([0; 8192])) {
        Err(Error::UnsupportedLayout { name, type_name, reason }) => {
            assert_eq!((name.as_str(), type_name.as_str()), ("halves", "Halves"));
            let expected =
                format!("schema is {encoded} bytes long, more than the {MAX_SCHEMA_LEN} bytes a schema may take");
            assert!(reason.contains(&expected), "{reason}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(store.used(), used, "a refused entry allocated space");
    assert!(fs::read(&path).unwrap() == before, "a refused entry changed the file");
    // One level less is within the bound.
    assert!(schema::encode(&LEVEL12).len() <= MAX_SCHEMA_LEN);
}

#[test]
fn grown_store_can_hold_more_at_once() {
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(64 * 1024).max_capacity(64 * 1024).open(&path).unwrap();
    store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
    assert!(matches!(store.array_or_init::<u8>("blob", 200_000, 0), Err(Error::StoreFull { .. })));
    drop(store);

    let store = Store::options().capacity(MIB).open(&path).unwrap();
    assert_eq!((store.capacity(), len_of(&path)), (MIB, MIB));
    let blob = store.array_or_init::<u8>("blob", 200_000, 0).expect("the store was grown to 1 MiB by this very open");
    blob.set(199_999, 7).unwrap();
    assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 1, b: 2 });
}

#[test]
fn growing_keeps_existing_data_and_persists() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 64 * 1024).unwrap();
    store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
    store.array_or_init::<u32>("arr", 100, 9).unwrap().set(50, 50).unwrap();
    drop(store);

    let store = Store::options().capacity(4 * MIB).open(&path).unwrap();
    assert_eq!(store.capacity(), 4 * MIB);
    assert_eq!(len_of(&path), 4 * MIB);
    assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 1, b: 2 });
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.capacity(), 4 * MIB);
    assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 1, b: 2 });
    let arr = store.array::<u32>("arr").unwrap();
    assert_eq!((arr.get(49).unwrap(), arr.get(50).unwrap()), (9, 50));
    // After a plain reopen, the new space is usable.
    store.array_or_init::<u8>("blob", 3 * MIB as usize, 1).unwrap().set(0, 2).unwrap();
}

#[test]
fn full_catalog_is_catalog_full() {
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(MIB).max_entries(2).open(&path).unwrap();
    assert_eq!(store.max_entries(), 2);
    store.object_or_init("a", || Pair { a: 1, b: 1 }).unwrap();
    store.array_or_init::<u8>("b", 4, 2).unwrap();
    let used = store.used();
    match store.object_or_init("c", Pair::default) {
        Err(e @ Error::CatalogFull { .. }) => {
            assert!(e.to_string().contains("max_entries"), "{e}");
            let Error::CatalogFull { path: p, max_entries } = e else { unreachable!() };
            assert_eq!((p, max_entries), (path.clone(), 2));
        }
        other => panic!("expected CatalogFull, got {other:?}"),
    }
    assert!(matches!(store.array_or_init::<u8>("d", 1, 0), Err(Error::CatalogFull { .. })));
    assert_eq!(store.used(), used);
    // Lookups in a full catalog still end: found, or not found.
    assert!(matches!(store.object::<Pair>("c"), Err(Error::NotFound { .. })));
    assert_eq!(store.object_or_init::<Pair>("a", || panic!("exists")).unwrap().load().unwrap(), Pair { a: 1, b: 1 });
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.max_entries(), 2, "max_entries is a property of the file");
    assert_eq!(store.entries().unwrap().len(), 2);
    assert!(matches!(store.object_or_init("c", Pair::default), Err(Error::CatalogFull { .. })));
    // max_entries is ignored when opening an existing store.
    let store = Store::options().max_entries(64).open(&path).unwrap();
    assert_eq!(store.max_entries(), 2);
}

#[test]
fn a_catalog_filled_to_the_last_slot_finds_every_entry() {
    // Names are placed by hash with linear probing: with every slot taken, probes wrap around the
    // end of the catalog and still find each name, and a missing name still ends.
    const SLOTS: u32 = 16;
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(MIB).max_entries(SLOTS).open(&path).unwrap();
    for i in 0..SLOTS {
        store.object_or_init(&format!("entry number {i}"), || Pair { a: u64::from(i), b: 0 }).unwrap();
    }
    assert!(matches!(store.object_or_init("one too many", Pair::default), Err(Error::CatalogFull { .. })));
    drop(store);
    let store = Store::open(&path).unwrap();
    for i in 0..SLOTS {
        assert_eq!(store.object::<Pair>(&format!("entry number {i}")).unwrap().load().unwrap().a, u64::from(i));
    }
    assert!(matches!(store.object::<Pair>("absent"), Err(Error::NotFound { .. })));
    assert_eq!(store.entries().unwrap().len(), SLOTS as usize);
}

#[test]
fn max_entries_out_of_range_is_invalid_options() {
    let (dir, path) = temp_store();
    for n in [0, (1 << 20) + 1, u32::MAX] {
        let result = Store::options().create(true).capacity(1 << 30).max_entries(n).open(&path);
        assert!(matches!(result, Err(Error::InvalidOptions(_))), "max_entries({n}): {result:?}");
    }
    assert!(dir_listing(dir.path()).is_empty(), "a refused create left files behind");
    // Other sizes work, and the first index table holds them at most half full: 2048 slots.
    let store = Store::options().create(true).capacity(MIB).max_entries(1000).open(&path).unwrap();
    assert_eq!(store.max_entries(), 1000);
    assert_eq!(store.used(), 4096 + 64 + 16 * 2048);
}

// ---------------------------------------------------------------------------------------------
// Capacity rules.

#[test]
fn new_file_without_capacity_is_capacity_required() {
    let (dir, path) = temp_store();
    match Store::options().create(true).open(&path) {
        Err(e @ Error::CapacityRequired { .. }) => {
            assert!(e.to_string().contains("capacity"), "{e}");
            let Error::CapacityRequired { path: p } = e else { unreachable!() };
            assert_eq!(p, path);
        }
        other => panic!("expected CapacityRequired, got {other:?}"),
    }
    assert!(dir_listing(dir.path()).is_empty(), "no file may be left behind");
}

#[test]
fn capacity_below_the_minimum_is_rounded_up() {
    let (_dir, path) = temp_store();
    for requested in [0, 100, 4096, MIN_CAPACITY - 1] {
        let store = Store::open_or_create(&path, requested).unwrap();
        assert_eq!((store.capacity(), store.used()), (MIN_CAPACITY, DATA_OFFSET), "capacity {requested}");
        assert_eq!(len_of(&path), MIN_CAPACITY);
        drop(store);
        fs::remove_file(&path).unwrap();
        // An explicit capacity of a new file is rounded up too, and not then refused as a shrink.
        let store = Store::options().create(true).capacity(requested).open(&path).unwrap();
        assert_eq!(store.capacity(), MIN_CAPACITY, "capacity {requested}");
        drop(store);
        fs::remove_file(&path).unwrap();
    }
    // A small cap keeps the smallest index table, and the minimum.
    let small = Store::options().create(true).capacity(4096).max_entries(1).open(&path).unwrap();
    assert_eq!(small.capacity(), MIN_CAPACITY);
    drop(small);
    fs::remove_file(&path).unwrap();

    // Exactly the minimum works.
    let store = Store::open_or_create(&path, MIN_CAPACITY).unwrap();
    assert_eq!((store.capacity(), store.used()), (MIN_CAPACITY, DATA_OFFSET));
    assert_eq!(len_of(&path), MIN_CAPACITY);
}

#[test]
fn capacity_below_an_existing_file_is_refused_and_the_file_kept() {
    let (_dir, path) = temp_store();
    Store::open_or_create(&path, MIB).unwrap().object_or_init("pair", || Pair { a: 4, b: 5 }).unwrap();
    let before = fs::read(&path).unwrap();
    for requested in [MIB / 2, MIB - 1, MIN_CAPACITY] {
        match Store::options().capacity(requested).open(&path) {
            Err(e @ Error::CapacityTooSmall { .. }) => {
                assert!(e.to_string().contains("never shrinks"), "{e}");
                let Error::CapacityTooSmall { requested: r, minimum, shrink, .. } = e else { unreachable!() };
                assert_eq!((r, minimum, shrink), (requested, MIB, true));
            }
            other => panic!("capacity {requested}: expected CapacityTooSmall, got {other:?}"),
        }
        assert_eq!(len_of(&path), MIB);
    }
    assert!(fs::read(&path).unwrap() == before);
    // Equal is fine.
    let store = Store::options().capacity(MIB).open(&path).unwrap();
    assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 4, b: 5 });
}

#[test]
fn open_or_create_ignores_capacity_for_an_existing_file() {
    let (_dir, path) = temp_store();
    Store::open_or_create(&path, MIB).unwrap().object_or_init("pair", || Pair { a: 4, b: 5 }).unwrap();
    for capacity in [4 * MIB, MIB / 2, 1, 0] {
        let store = Store::open_or_create(&path, capacity).unwrap();
        assert_eq!(store.capacity(), MIB, "open_or_create({capacity})");
        assert_eq!(store.object::<Pair>("pair").unwrap().load().unwrap(), Pair { a: 4, b: 5 });
        let store = Store::options().create(true).initial_capacity(capacity).open(&path).unwrap();
        assert_eq!(store.capacity(), MIB, "initial_capacity({capacity})");
        assert_eq!(len_of(&path), MIB);
    }
}

#[test]
fn existing_file_opens_at_its_own_length() {
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, 3 * MIB).unwrap());
    let store = Store::open(&path).unwrap();
    assert_eq!((store.capacity(), store.used(), store.max_entries()), (3 * MIB, DATA_OFFSET, u32::MAX));
    assert_eq!(store.path(), path);
    assert!(!store.is_read_only());
}

// ---------------------------------------------------------------------------------------------
// Read-only stores.

fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    store.object_or_init("pair", || Pair { a: 1, b: 2 }).unwrap();
    store.array_or_init::<u32>("arr", 4, 8).unwrap();
    store.object_or_init("hits", || Hits { n: AtomicU64::new(3) }).unwrap();
    store.close().unwrap();
    (dir, path)
}

#[track_caller]
fn assert_read_only<T: std::fmt::Debug>(result: shmstore::Result<T>, path: &Path) {
    match result {
        Err(e @ Error::ReadOnly { .. }) => {
            assert!(e.to_string().contains("read-only"), "{e}");
            let Error::ReadOnly { path: p, action } = e else { unreachable!() };
            assert_eq!(p, path);
            assert!(!action.is_empty());
        }
        other => panic!("expected ReadOnly, got {other:?}"),
    }
}

#[test]
fn read_only_store_reads_but_refuses_writes() {
    let (_dir, path) = populated();
    let before = fs::read(&path).unwrap();
    let store = Store::options().read_only(true).open(&path).unwrap();
    assert!(store.is_read_only());
    let pair = store.object::<Pair>("pair").unwrap();
    assert_eq!(pair.load().unwrap(), Pair { a: 1, b: 2 });
    assert_eq!(pair.try_read().unwrap().b, 2);
    let arr = store.array::<u32>("arr").unwrap();
    assert_eq!(*arr.read().unwrap(), [8; 4]);
    assert_eq!(arr.get(3).unwrap(), 8);
    assert_eq!(store.entries().unwrap().len(), 3);

    assert_read_only(pair.write().map(|g| *g), &path);
    assert_read_only(pair.try_write().map(|g| *g), &path);
    assert_read_only(pair.write_timeout(std::time::Duration::from_secs(1)).map(|g| *g), &path);
    assert_read_only(pair.store(Pair::default()), &path);
    assert_read_only(pair.update::<()>(|_| panic!("the closure must not run")), &path);
    assert_read_only(arr.set(0, 1), &path);
    assert_read_only(arr.write_at(0, &[1, 2]), &path);
    assert_read_only(arr.write().map(|g| g.len()), &path);
    assert_read_only(arr.update::<()>(0, 1, |_| panic!("the closure must not run")), &path);
    // Atomics can be written through a shared reference, so even a read guard is refused.
    assert_read_only(store.object::<Hits>("hits").unwrap().read().map(|g| g.n.load(Ordering::Relaxed)), &path);

    // Creating is refused (a missing name is not silently "not found": the store is read-only);
    // an existing name opens.
    assert_read_only(store.object_or_init("new", Pair::default).map(drop), &path);
    assert_read_only(store.array_or_init::<u8>("new-arr", 3, 0).map(drop), &path);
    assert!(matches!(store.object::<Pair>("new"), Err(Error::NotFound { .. })));
    assert_eq!(store.object_or_init::<Pair>("pair", || panic!("exists")).unwrap().load().unwrap(), Pair { a: 1, b: 2 });
    store.flush().unwrap();
    drop((pair, arr, store));
    assert!(fs::read(&path).unwrap() == before, "a read-only store changed the file");
}

#[test]
fn read_only_store_sees_a_writer_and_cannot_grow() {
    let (_dir, path) = populated();
    let writer = Store::open(&path).unwrap();
    let reader = Store::options().read_only(true).open(&path).unwrap();
    let rp = reader.object::<Pair>("pair").unwrap();
    writer.object::<Pair>("pair").unwrap().store(Pair { a: 10, b: 20 }).unwrap();
    assert_eq!(rp.load().unwrap(), Pair { a: 10, b: 20 });
    writer.object::<Hits>("hits").unwrap().read().unwrap().n.fetch_add(1, Ordering::SeqCst);
    assert_eq!(writer.object::<Hits>("hits").unwrap().read().unwrap().n.load(Ordering::SeqCst), 4);

    assert_read_only(Store::options().read_only(true).capacity(2 * MIB).open(&path).map(drop), &path);
    assert_eq!(len_of(&path), MIB);
    // Its own length is fine, read-only.
    assert!(Store::options().read_only(true).capacity(MIB).open(&path).unwrap().is_read_only());
}

#[test]
fn create_and_read_only_together_are_invalid_options() {
    let (dir, path) = temp_store();
    for capacity in [None, Some(MIB)] {
        let mut opts = Store::options();
        opts.create(true).read_only(true);
        if let Some(c) = capacity {
            opts.capacity(c);
        }
        assert!(matches!(opts.open(&path), Err(Error::InvalidOptions(_))));
    }
    assert!(dir_listing(dir.path()).is_empty());
    // Even when the file exists.
    drop(Store::open_or_create(&path, MIB).unwrap());
    assert!(matches!(Store::options().create(true).read_only(true).open(&path), Err(Error::InvalidOptions(_))));
}
