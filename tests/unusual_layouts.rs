//! Every shape of type that `#[derive(SharedLayout)]` accepts can be stored, read back after a
//! reopen, and listed by `Store::entries` (which decodes the stored schema).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::temp_store;
use shmstore::{EntryKind, Error, FixedStr, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(transparent)]
struct Meters(u64);

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Tuple(u32, u16, u8, bool);

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C, align(16))]
struct Aligned16 {
    x: u64,
    _pad: [u8; 8],
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(C, align(4096))]
struct PageAligned {
    x: u64,
    _pad: [u8; 4088],
}

#[derive(SharedLayout)]
#[repr(C)]
struct Atomics {
    hits: AtomicU32,
    on: AtomicBool,
    _pad: [u8; 3],
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u64)]
enum Wide {
    #[default]
    Small = 0,
    Large = 1 << 40,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Nested {
    label: FixedStr<16>,
    wide: Wide,
    inner: [Tuple; 2],
}

/// A packed struct whose fields the derive accepts (each is at an offset its type's alignment
/// divides).
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C, packed)]
struct Packed {
    b: u32,
    a: u16,
    c: u8,
    d: u8,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C, packed(2))]
struct Packed2 {
    b: u32,
    a: u16,
}

/// Alignment above a page: accepted by the derive.
#[derive(SharedLayout, Clone, Copy)]
#[repr(C, align(8192))]
struct OverAligned {
    x: u64,
    _pad: [u8; 8184],
}

type W<T> = [T; 1];
type X2<T> = W<W<T>>;
type X4<T> = X2<X2<T>>;
type X8<T> = X4<X4<T>>;
type X16<T> = X8<X8<T>>;
/// `u8` inside 31 levels of arrays.
type Deep31 = X16<X8<X4<X2<W<u8>>>>>;
/// `u8` inside 32 levels of arrays.
type Deep32 = W<Deep31>;

fn nested() -> Nested {
    Nested {
        label: FixedStr::new("sixteen bytes!!!").unwrap(),
        wide: Wide::Large,
        inner: [Tuple(1, 2, 3, true), Tuple(4, 5, 6, false)],
    }
}

#[test]
fn every_accepted_shape_round_trips_and_is_listed() {
    let (_dir, path) = temp_store();
    {
        let store = Store::open_or_create(&path, 1 << 20).unwrap();
        store.object_or_init("meters", || Meters(5)).unwrap();
        store.object_or_init("tuple", || Tuple(1, 2, 3, true)).unwrap();
        store.object_or_init("aligned16", || Aligned16 { x: 16, _pad: [0; 8] }).unwrap();
        store.object_or_init("page", || PageAligned { x: 4096, _pad: [0; 4088] }).unwrap();
        store
            .object_or_init("atomics", || Atomics { hits: AtomicU32::new(1), on: AtomicBool::new(true), _pad: [0; 3] })
            .unwrap();
        store.object_or_init("wide", || Wide::Large).unwrap();
        store.array_or_init("nested", 3, nested()).unwrap();
        store.array_or_init("strs", 4, FixedStr::<16>::new("hi").unwrap()).unwrap();
        store.array_or_init::<[u16; 3]>("triples", 2, [7, 8, 9]).unwrap();
        store.close().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Meters>("meters").unwrap().load().unwrap(), Meters(5));
    assert_eq!(store.object::<Tuple>("tuple").unwrap().load().unwrap(), Tuple(1, 2, 3, true));
    assert_eq!(store.object::<Aligned16>("aligned16").unwrap().load().unwrap().x, 16);
    assert_eq!(store.object::<PageAligned>("page").unwrap().read().unwrap().x, 4096);
    let atomics = store.object::<Atomics>("atomics").unwrap();
    atomics.read().unwrap().hits.fetch_add(1, Ordering::SeqCst);
    assert_eq!(atomics.read().unwrap().hits.load(Ordering::SeqCst), 2);
    assert!(atomics.read().unwrap().on.load(Ordering::SeqCst));
    assert_eq!(store.object::<Wide>("wide").unwrap().load().unwrap(), Wide::Large);
    assert_eq!(store.array::<Nested>("nested").unwrap().get(2).unwrap(), nested());
    assert_eq!(store.array::<FixedStr<16>>("strs").unwrap().get(3).unwrap(), "hi");
    assert_eq!(store.array::<[u16; 3]>("triples").unwrap().get(1).unwrap(), [7, 8, 9]);

    let entries = store.entries().expect("a store written by shmstore lists");
    let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} not listed"));
    assert_eq!(entries.len(), 9);
    assert_eq!(find("meters").type_name, "Meters");
    assert_eq!(find("tuple").type_name, "Tuple");
    assert_eq!((find("aligned16").align, find("page").align), (16, 4096));
    assert_eq!(find("atomics").slots, 1, "objects holding atomics are updated in place");
    assert_eq!(find("meters").slots, 2);
    assert_eq!(find("wide").elem_size, 8);
    assert_eq!(
        (find("nested").kind, find("nested").len, find("nested").type_name.as_str()),
        (EntryKind::Array, 3, "Nested")
    );
    assert_eq!(find("strs").type_name, "FixedStr<16>");
    assert_eq!(find("triples").type_name, "[u16; 3]");
}

#[test]
fn packed_structs_round_trip_and_are_listed() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let value = Packed { b: 0x0102_0304, a: 5, c: 6, d: 7 };
    store.object_or_init("packed", || value).unwrap();
    store.object_or_init("packed2", || Packed2 { b: 9, a: 10 }).unwrap();
    assert_eq!(store.object::<Packed>("packed").unwrap().load().unwrap(), value);
    assert_eq!(store.object::<Packed2>("packed2").unwrap().load().unwrap(), Packed2 { b: 9, a: 10 });
    let entries = store.entries().expect("entries() of a store holding a packed struct the derive accepted");
    let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.type_name.as_str(), e.align)).collect();
    assert!(names.contains(&("packed", "Packed", 1)), "{names:?}");
    assert!(names.contains(&("packed2", "Packed2", 2)), "{names:?}");
    // A mismatch names the stored packed type too.
    match store.object::<u64>("packed") {
        Err(Error::LayoutMismatch { found_type, .. }) => assert_eq!(found_type, "Packed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn over_aligned_type_is_refused_up_front() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("before", || Meters(1)).unwrap();
    // Refused up front with a typed error that says why, and nothing allocated: what must not
    // happen is an entry that is created, then fails every access and every later open.
    let used = store.used();
    match store.object_or_init("big", || OverAligned { x: 8, _pad: [0; 8184] }) {
        Err(Error::UnsupportedLayout { name, reason, .. }) => {
            assert_eq!(name, "big");
            assert!(reason.contains("aligned to 8192"), "{reason}");
        }
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
    assert_eq!(store.used(), used, "a refused entry allocates nothing");
    drop(store);
    let store = Store::open(&path).expect("the store still opens");
    assert_eq!(store.object::<Meters>("before").unwrap().load().unwrap(), Meters(1));
    store.entries().unwrap();
}

#[test]
fn too_deep_nesting_is_refused_and_the_store_stays_listable() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init::<Deep31>("deep31", Default::default).unwrap();
    assert_eq!(store.entries().unwrap().len(), 1);
    // One level more: either refused up front, or listed like the rest.
    // One level more than a stored schema may nest: refused before anything is written, so the
    // store stays listable.
    match store.object_or_init::<Deep32>("deep32", Default::default) {
        Err(Error::UnsupportedLayout { name, reason, .. }) => {
            assert_eq!(name, "deep32");
            assert!(reason.contains("deeper"), "{reason}");
        }
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
    assert_eq!(store.entries().unwrap().len(), 1);
}
