//! Growth that every process sees, and huge sparse stores.
//!
//! The multi-process tests spawn this test binary again as child processes (see `child_main`).

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{emit, temp_store, wait_for, ChildArgs, ChildProc};
use shmstore::{Error, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Row {
    id: u64,
    check: u64,
}

impl Row {
    fn new(id: u64) -> Row {
        Row { id, check: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
    }
}

/// Where every test starts: 64 KiB, so that a few entries make it grow.
const SMALL: u64 = 64 * 1024;
/// Each created array, big enough that every few of them force a growth.
const ARRAY_LEN: usize = 40_000;

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "grower" => role_grower(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Opens the store at its small size, creates `arg` arrays (growing it several times), and
/// reports the capacity after each one.
fn role_grower(args: &ChildArgs) {
    let count: u64 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    wait_for("go");
    for i in 0..count {
        let rows = store.array_or_init(&format!("rows{i}"), ARRAY_LEN, Row::default()).unwrap();
        rows.write_at(0, &[Row::new(i)]).unwrap();
        rows.set(ARRAY_LEN - 1, Row::new(i + 1000)).unwrap();
        emit(format!("created {i} {}", store.capacity()));
    }
    emit("done");
}

#[test]
fn another_process_grows_the_store_and_this_one_adopts_it() {
    let (_dir, path) = temp_store();
    // Process B (this one) opens the store at its small size and takes handles first.
    let store = Store::open_or_create(&path, SMALL).unwrap();
    let counter = store.object_or_init("counter", || 7u64).unwrap();
    let first = store.array_or_init("first", 16, Row::new(1)).unwrap();
    let generation = store.info().generation;
    assert_eq!(store.capacity(), SMALL);

    // Process A creates arrays until the store has grown several times.
    const ARRAYS: u64 = 12;
    let mut grower = ChildProc::spawn("grower", &path, &ARRAYS.to_string());
    grower.send("go");
    let mut capacities = Vec::new();
    for i in 0..ARRAYS {
        let line = grower.expect("created");
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(i.to_string().as_str()));
        capacities.push(words.next().unwrap().parse::<u64>().unwrap());
    }
    grower.expect("done");
    grower.finish();
    capacities.dedup();
    assert!(capacities.len() >= 3, "the store grew only {} times: {capacities:?}", capacities.len() - 1);
    assert!(capacities.windows(2).all(|w| w[0] < w[1]), "capacity never shrinks: {capacities:?}");

    // B adopts the new size on its next access: its old handles keep working ...
    assert_eq!(counter.load().unwrap(), 7);
    counter.store(8).unwrap();
    assert_eq!(first.get(15).unwrap(), Row::new(1));
    first.set(0, Row::new(2)).unwrap();
    // ... and it reads every entry A created, including those far past its first mapping.
    for i in 0..ARRAYS {
        let rows = store.array::<Row>(&format!("rows{i}")).unwrap();
        assert_eq!(rows.len(), ARRAY_LEN);
        assert_eq!(rows.get(0).unwrap(), Row::new(i));
        assert_eq!(rows.get(ARRAY_LEN - 1).unwrap(), Row::new(i + 1000));
        assert_eq!(rows.read().unwrap()[1], Row::default());
    }
    let info = store.info();
    assert_eq!(info.capacity, *capacities.last().unwrap());
    assert!(info.generation >= generation + 3, "growth bumps the generation: {info:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), info.capacity);
    assert_eq!(store.entries().unwrap().len(), ARRAYS as usize + 2);

    // A fresh process view agrees.
    let fresh = Store::open(&path).unwrap();
    assert_eq!(fresh.object::<u64>("counter").unwrap().load().unwrap(), 8);
    assert_eq!(fresh.array::<Row>("first").unwrap().get(0).unwrap(), Row::new(2));
}

#[test]
fn guards_taken_before_growth_stay_valid() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, SMALL).unwrap();
    let first = store.array_or_init("first", 64, Row::new(3)).unwrap();
    let before = first.read().unwrap();
    // This thread's own growth remaps while the guard points into the first mapping.
    let big = store.array_or_init("big", 100_000, Row::new(4)).unwrap();
    assert!(store.capacity() > SMALL);
    assert!(before.iter().all(|r| *r == Row::new(3)), "the old mapping stays valid under the guard");
    drop(before);
    assert_eq!(big.get(99_999).unwrap(), Row::new(4));
    assert_eq!(first.get(63).unwrap(), Row::new(3));
}

#[test]
fn growth_stops_at_the_maximum_capacity() {
    let (_dir, path) = temp_store();
    let max = 512 * 1024;
    let store = Store::options().create(true).capacity(SMALL).max_capacity(max).open(&path).unwrap();
    let mut created = 0;
    let err = loop {
        match store.array_or_init(&format!("a{created}"), 4096, Row::default()) {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created < 1000, "never refused");
    };
    assert!(matches!(err, Error::StoreFull { .. }), "{err:?}");
    assert!(err.to_string().contains("max_capacity"), "{err}");
    assert!(created > 3, "it grew before refusing: {created} entries");
    assert!(store.capacity() <= max);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), store.capacity());
}

#[test]
fn allocate_reserves_disk_blocks_and_sparse_growth_does_not() {
    let (_dir, path) = temp_store();
    let sparse = Store::open_or_create(&path, SMALL).unwrap();
    sparse.array_or_init("zeros", 1 << 20, 0u64).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.len() >= 8 << 20);
    assert!(meta.blocks() * 512 < 1 << 20, "zero-initialised growth stays sparse: {} blocks", meta.blocks());
    drop(sparse);

    let (_dir2, path2) = temp_store();
    let dense = Store::options().create(true).capacity(SMALL).allocate(true).open(&path2).unwrap();
    dense.array_or_init("zeros", 1 << 20, 0u64).unwrap();
    let meta = std::fs::metadata(&path2).unwrap();
    assert!(meta.blocks() * 512 >= 8 << 20, "allocate(true) reserves the grown space: {} blocks", meta.blocks());
}

/// A store with an array far past 4 GiB, on a sparse file: created quickly, writes touch only
/// their pages, and never-written ranges read as zeros. (The README documents a 64 GiB run.)
#[test]
fn huge_sparse_array_beyond_4_gib() {
    let (_dir, path) = temp_store();
    const LEN: usize = 5 << 30; // 5 GiB of u8
    let started = Instant::now();
    let store = Store::open_or_create(&path, SMALL).unwrap();
    let huge = store.array_or_init("huge", LEN, 0u8).unwrap();
    let created = started.elapsed();
    assert!(created < Duration::from_secs(10), "creating a sparse 5 GiB array took {created:?}");
    assert!(store.capacity() > 5 << 30);

    let scattered = [0usize, 4096 * 1000 + 17, (1 << 32) - 1, 1 << 32, (1 << 32) + 12345, LEN - 1];
    for (i, &at) in scattered.iter().enumerate() {
        huge.set(at, i as u8 + 1).unwrap();
    }
    for (i, &at) in scattered.iter().enumerate() {
        assert_eq!(huge.get(at).unwrap(), i as u8 + 1, "offset {at}");
    }
    let mut untouched = vec![1u8; 1 << 16];
    huge.read_at(3 << 30, &mut untouched).unwrap();
    assert!(untouched.iter().all(|&b| b == 0), "never-written ranges read as zeros");
    assert!(matches!(huge.get(LEN), Err(Error::OutOfBounds { .. })));

    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.len() > 5 << 30);
    assert!(meta.blocks() * 512 < 64 << 20, "only touched pages use disk: {} bytes", meta.blocks() * 512);

    // Another process view (a fresh open) sees the values past 4 GiB.
    drop((huge, store));
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.array::<u8>("huge").unwrap().get((1 << 32) + 12345).unwrap(), 5);
}
