//! Sharing between real processes: every test here spawns this test binary again as child
//! processes (see `child_main`) and talks to them over stdin/stdout.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{emit, temp_store, wait_eof, wait_for, wait_line, ChildArgs, ChildProc};
use shmstore::{Error, FixedStr, LockMode, SharedLayout, Store, WaitedFor};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Counter {
    n: u64,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
enum Mode {
    #[default]
    Idle = 0,
    Serving = 4,
    Draining = 9,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Config {
    name: FixedStr<16>,
    port: u16,
    mode: Mode,
    verbose: bool,
    _pad: [u8; 4],
    max_conn: u64,
    ratio: f64,
}

/// Updated in place through read guards, by several processes at once.
#[derive(SharedLayout)]
#[repr(C)]
struct Hits {
    n: AtomicU64,
}

const CAPACITY: u64 = 1 << 20;

fn sample_config(name: &str, mode: Mode) -> Config {
    Config {
        name: FixedStr::new(name).unwrap(),
        port: 8080,
        mode,
        verbose: true,
        _pad: [0; 4],
        max_conn: 1 << 40,
        ratio: 0.625,
    }
}

fn samples() -> Vec<i64> {
    (0..100).map(|i| i * i - 500).collect()
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "count" => role_count(&args),
        "hold" => role_hold(&args),
        "read_config" => role_read_config(&args),
        "write_config" => role_write_config(&args),
        "race_create" => role_race_create(&args),
        "atomic_count" => role_atomic_count(&args),
        "create_many" => role_create_many(&args),
        "create_loop" => role_create_loop(&args),
        "grow_loop" => role_grow_loop(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Waits for "go", then increments the counter `arg` times.
fn role_count(args: &ChildArgs) {
    let iterations: u64 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    emit("waiting");
    wait_for("go");
    for _ in 0..iterations {
        counter.update(|c| c.n += 1).unwrap();
    }
    emit("done");
}

/// `arg` is `MODE:ENTRY:VALUE`, MODE one of `write`, `read`, `write-forever`. Takes the guard
/// (writing VALUE under a write guard), reports `ready <value seen>`, then holds it until the
/// parent sends `release` (never, for `write-forever`), reports `released`, and stays alive until
/// stdin closes, so that the lock is released by the guard and not by the process ending.
fn role_hold(args: &ChildArgs) {
    let mut parts = args.arg.split(':');
    let (mode, entry, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let value: u64 = value.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    if mode == "read-array" {
        let array = store.array::<u64>(entry).unwrap();
        let guard = array.read().unwrap();
        emit(format!("ready {}", guard[0]));
        wait_for("release");
        drop(guard);
        emit("released");
        wait_eof();
        return;
    }
    let obj = store.object::<Counter>(entry).unwrap();
    match mode {
        "read" => {
            let guard = obj.read().unwrap();
            emit(format!("ready {}", guard.n));
            wait_for("release");
            drop(guard);
        }
        "write" | "write-forever" => {
            let mut guard = obj.write().unwrap();
            guard.n = value;
            emit(format!("ready {}", guard.n));
            if mode == "write-forever" {
                // Only SIGKILL (or the parent disappearing) ends this.
                wait_eof();
                std::process::exit(3);
            }
            wait_for("release");
            drop(guard);
        }
        other => panic!("unknown hold mode {other}"),
    }
    emit("released");
    wait_eof();
}

/// Opens the existing store fresh and prints what it holds.
fn role_read_config(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let cfg = store.object::<Config>("config").unwrap().load().unwrap();
    emit(format!("config {cfg:?}"));
    let samples = store.array::<i64>("samples").unwrap();
    let values = samples.read().unwrap().to_vec();
    emit(format!("samples {} {}", values.len(), values.iter().sum::<i64>()));
    emit(format!("entries {}", store.entries().unwrap().len()));
}

/// Creates the store, writes a config and samples, and exits.
fn role_write_config(args: &ChildArgs) {
    let store = Store::open_or_create(&args.path, CAPACITY).unwrap();
    let cfg = store.object_or_init("config", Config::default).unwrap();
    cfg.store(sample_config(&args.arg, Mode::Draining)).unwrap();
    let arr = store.array_or_init::<i64>("samples", 100, 0).unwrap();
    arr.write_at(0, &samples()).unwrap();
    store.close().unwrap();
    emit("written");
}

/// Waits for "go", then creates (or opens) the store and the counter, and increments it once.
fn role_race_create(args: &ChildArgs) {
    emit("waiting");
    wait_for("go");
    let store = Store::open_or_create(&args.path, CAPACITY).unwrap();
    let counter = store.object_or_init("counter", Counter::default).unwrap();
    let seen = counter.update(|c| {
        c.n += 1;
        c.n
    });
    emit(format!("done {}", seen.unwrap()));
    // Keep the process (and its store) alive until the parent has heard from everybody.
    let _ = wait_line();
}

/// Waits for "go", then increments the atomic counter `arg` times, each under a read guard.
fn role_atomic_count(args: &ChildArgs) {
    let iterations: u64 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let hits = store.object::<Hits>("hits").unwrap();
    emit("waiting");
    wait_for("go");
    for _ in 0..iterations {
        hits.read().unwrap().n.fetch_add(1, Ordering::Relaxed);
    }
    emit("done");
}

/// `arg` is the child's number C. Waits for "go", then creates arrays `C-0`..`C-7`, array `C-K`
/// holding `100 + K` elements of value `C * 1000 + K`.
fn role_create_many(args: &ChildArgs) {
    let me: u32 = args.arg.parse().unwrap();
    // Opened before the race starts: this test is about allocation, not about opening (see
    // `opening_while_another_process_creates_entries_succeeds` for that).
    let store = Store::open(&args.path).unwrap();
    emit("waiting");
    wait_for("go");
    for k in 0..CREATED_PER_CHILD {
        let arr = store.array_or_init::<u32>(&format!("{me}-{k}"), 100 + k as usize, me * 1000 + k).unwrap();
        assert_eq!(arr.get(99 + k as usize).unwrap(), me * 1000 + k);
    }
    emit("done");
}

const CREATED_PER_CHILD: u32 = 8;

/// Waits for "go", then creates `arg` small objects one after the other.
fn role_create_loop(args: &ChildArgs) {
    let n: u32 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    emit("waiting");
    wait_for("go");
    for i in 0..n {
        store.object_or_init(&format!("obj-{i}"), || Counter { n: u64::from(i) }).unwrap();
    }
    emit("done");
}

/// Waits for "go", then grows the store `arg` times by a page, reopening it each time.
fn role_grow_loop(args: &ChildArgs) {
    let n: u64 = args.arg.parse().unwrap();
    let start = Store::open(&args.path).unwrap().capacity();
    emit("waiting");
    wait_for("go");
    for i in 1..=n {
        let store = Store::options().capacity(start + i * 4096).open(&args.path).unwrap();
        assert_eq!(store.capacity(), start + i * 4096);
    }
    emit("done");
}

// ---------------------------------------------------------------------------------------------
// The tests.

fn new_store_with_counters(path: &std::path::Path, names: &[&str]) -> Store {
    new_store_with_counters_in(path, names, LockMode::Robust)
}

/// A new store in lock mode `mode`, which the children follow (they open it while this process
/// has it open).
fn new_store_with_counters_in(path: &std::path::Path, names: &[&str], mode: LockMode) -> Store {
    let store = Store::options().create(true).capacity(CAPACITY).lock_mode(mode).open(path).unwrap();
    for name in names {
        store.object_or_init(name, Counter::default).unwrap();
    }
    store
}

#[test]
fn four_processes_count_to_forty_thousand() {
    const CHILDREN: usize = 4;
    const EACH: u64 = 10_000;
    let (_dir, path) = temp_store();
    let store = new_store_with_counters(&path, &["counter"]);
    let counter = store.object::<Counter>("counter").unwrap();

    let mut children: Vec<_> = (0..CHILDREN).map(|_| ChildProc::spawn("count", &path, &EACH.to_string())).collect();
    for child in &mut children {
        child.expect("waiting");
    }
    for child in &mut children {
        child.send("go");
    }
    for mut child in children {
        child.expect("done");
        assert!(child.finish().is_empty());
    }
    assert_eq!(counter.load().unwrap().n, CHILDREN as u64 * EACH);

    // A fresh open sees the same total.
    drop(counter);
    drop(store);
    assert_eq!(Store::open(&path).unwrap().object::<Counter>("counter").unwrap().load().unwrap().n, 40_000);
}

/// In both lock modes. In robust mode a read guard of a double-buffered object is a lock-free copy
/// of the last commit, so readers of `a` are not held up by its writer either.
#[test]
fn different_entries_proceed_in_parallel() {
    different_entries_proceed_in_parallel_in(LockMode::Robust);
    different_entries_proceed_in_parallel_in(LockMode::Ofd);
}

fn different_entries_proceed_in_parallel_in(mode: LockMode) {
    let (_dir, path) = temp_store();
    let store = new_store_with_counters_in(&path, &["a", "b"], mode);
    let a = store.object::<Counter>("a").unwrap();
    let b = store.object::<Counter>("b").unwrap();

    let mut child = ChildProc::spawn("hold", &path, "write:a:77");
    assert_eq!(child.expect("ready"), "77");

    // The child's lock on `a` does not hold up `b`.
    for i in 1..=100 {
        let mut guard = b.write_timeout(Duration::from_secs(1)).expect("entry b must not wait for entry a");
        guard.n = i;
    }
    assert_eq!(b.read_timeout(Duration::from_secs(1)).unwrap().n, 100);
    b.update(|c| c.n += 1).unwrap();
    assert_eq!(b.load().unwrap().n, 101);

    // But `a` itself is locked, for writers and readers.
    match a.try_write() {
        Err(Error::WouldBlock { name }) => assert_eq!(name, "a"),
        other => panic!("try_write on a held entry: {:?}", other.map(|g| *g)),
    }
    if mode == LockMode::Ofd {
        assert!(matches!(a.try_read(), Err(Error::WouldBlock { .. })));
    } else {
        assert_eq!(a.try_read().unwrap().n, 0, "a copy of the last commit, not of the writer's draft");
    }
    let timeout = Duration::from_millis(30);
    match a.write_timeout(timeout) {
        Err(Error::Timeout { name, waited, waited_for: WaitedFor::Lock }) => {
            assert_eq!(name, "a");
            assert_eq!(waited, timeout);
        }
        other => panic!("write_timeout on a held entry: {:?}", other.map(|g| *g)),
    }
    if mode == LockMode::Ofd {
        assert!(matches!(a.read_timeout(timeout), Err(Error::Timeout { .. })));
    }

    // Released by the guard (the child stays alive): now `a` can be taken, with the child's value.
    child.send("release");
    let mut guard = a.write_timeout(Duration::from_secs(5)).expect("a is free once the child releases it");
    assert_eq!(guard.n, 77);
    guard.n = 78;
    drop(guard);
    child.expect("released");
    assert_eq!(a.load().unwrap().n, 78);
    child.finish();
}

/// In both lock modes: in OFD mode the kernel drops a dead process's lock; in robust mode the next
/// locker is told that the mutex's owner died, and repairs it.
#[test]
fn lock_is_released_when_the_holder_is_killed() {
    lock_is_released_when_the_holder_is_killed_in(LockMode::Robust);
    lock_is_released_when_the_holder_is_killed_in(LockMode::Ofd);
}

fn lock_is_released_when_the_holder_is_killed_in(mode: LockMode) {
    let (_dir, path) = temp_store();
    let store = new_store_with_counters_in(&path, &["counter"], mode);
    let counter = store.object::<Counter>("counter").unwrap();

    let mut child = ChildProc::spawn("hold", &path, "write-forever:counter:5");
    assert_eq!(child.expect("ready"), "5");
    assert!(matches!(counter.try_write(), Err(Error::WouldBlock { .. })));
    if mode == LockMode::Ofd {
        assert!(matches!(counter.try_read(), Err(Error::WouldBlock { .. })));
    }

    let status = child.kill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the child must have died of SIGKILL, not exited: {status}");

    let start = Instant::now();
    let mut guard = counter.write_timeout(Duration::from_secs(1)).expect("the kernel releases a dead holder's lock");
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    guard.n += 1;
    drop(guard);
    // Readers and try_write work again too.
    drop(counter.try_write().unwrap());
    assert!(counter.try_read().is_ok());
    assert!(!counter.interrupted().unwrap(), "a double-buffered object's dead writer left nothing half done");
    assert_eq!(counter.load().unwrap().n, 1, "the dead writer's draft was never committed");
}

/// Read guards of an array (changed in place, so its guards lock in both modes) are shared across
/// processes, and exclude writers.
#[test]
fn array_readers_share_across_processes_in_both_modes() {
    for mode in [LockMode::Robust, LockMode::Ofd] {
        let (_dir, path) = temp_store();
        let store = new_store_with_counters_in(&path, &[], mode);
        let samples = store.array_or_init::<u64>("samples", 4, 12).unwrap();
        let mut child = ChildProc::spawn("hold", &path, "read-array:samples:0");
        assert_eq!(child.expect("ready"), "12");
        {
            let r1 = samples.try_read().expect("a reader in another process does not block readers");
            let r2 = samples.read_timeout(Duration::from_secs(1)).unwrap();
            assert_eq!((r1[0], r2[1]), (12, 12));
        }
        assert!(matches!(samples.try_write(), Err(Error::WouldBlock { .. })), "{mode:?}");
        assert!(matches!(samples.write_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
        child.send("release");
        child.expect("released");
        samples.try_write().expect("free after the reader released")[0] = 13;
        child.finish();
        assert_eq!(samples.get(0).unwrap(), 13);
    }
}

/// OFD mode: read guards of a double-buffered object hold the shared lock, in every process.
#[test]
fn readers_share_across_processes() {
    let (_dir, path) = temp_store();
    let store = new_store_with_counters_in(&path, &["counter"], LockMode::Ofd);
    let counter = store.object::<Counter>("counter").unwrap();
    counter.store(Counter { n: 12 }).unwrap();

    let mut child = ChildProc::spawn("hold", &path, "read:counter:0");
    assert_eq!(child.expect("ready"), "12");

    {
        let r1 = counter.try_read().expect("a reader in another process does not block readers");
        let r2 = counter.read_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!((r1.n, r2.n), (12, 12));
    }
    match counter.try_write() {
        Err(Error::WouldBlock { name }) => assert_eq!(name, "counter"),
        other => panic!("try_write while another process reads: {:?}", other.map(|g| *g)),
    }
    assert!(matches!(counter.write_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
    // Our failed write attempts must not have broken our own read access.
    assert_eq!(counter.try_read().unwrap().n, 12);

    child.send("release");
    child.expect("released");
    counter.try_write().expect("free after the reader released").n = 13;
    child.finish();
    assert_eq!(counter.load().unwrap().n, 13);
}

#[test]
fn data_persists_from_parent_to_a_fresh_process() {
    let (_dir, path) = temp_store();
    let expected = sample_config("eth0-primary", Mode::Serving);
    {
        let store = Store::open_or_create(&path, CAPACITY).unwrap();
        let cfg = store.object_or_init("config", Config::default).unwrap();
        cfg.store(expected).unwrap();
        let arr = store.array_or_init::<i64>("samples", 100, 0).unwrap();
        arr.write_at(0, &samples()).unwrap();
        store.close().unwrap();
        // `cfg` and `arr` drop here too: nothing of this process's store survives but the file.
    }
    let mut child = ChildProc::spawn("read_config", &path, "");
    assert_eq!(child.expect("config"), format!("{expected:?}"));
    assert_eq!(child.expect("samples"), format!("100 {}", samples().iter().sum::<i64>()));
    assert_eq!(child.expect("entries"), "2");
    child.finish();
}

#[test]
fn data_persists_from_a_child_to_the_parent() {
    let (_dir, path) = temp_store();
    let mut child = ChildProc::spawn("write_config", &path, "written-by-child");
    child.expect("written");
    child.finish();

    let store = Store::open(&path).unwrap();
    let cfg = store.object::<Config>("config").unwrap().load().unwrap();
    assert_eq!(cfg, sample_config("written-by-child", Mode::Draining));
    assert_eq!(cfg.name, "written-by-child");
    assert_eq!(cfg.mode, Mode::Draining);
    assert_eq!(store.array::<i64>("samples").unwrap().read().unwrap().to_vec(), samples());
}

#[test]
fn concurrent_creation_makes_one_store_and_one_entry() {
    const CHILDREN: usize = 4;
    for round in 0..3 {
        let (dir, path) = temp_store();
        let mut children: Vec<_> = (0..CHILDREN).map(|_| ChildProc::spawn("race_create", &path, "")).collect();
        for child in &mut children {
            child.expect("waiting");
        }
        assert!(!path.exists());
        for child in &mut children {
            child.send("go");
        }
        let mut seen: Vec<u64> = children.iter_mut().map(|c| c.expect("done").parse().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 4], "round {round}: every increment saw a distinct count");
        for child in children {
            child.finish();
        }

        let store = Store::open(&path).unwrap();
        assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap().n, CHILDREN as u64, "round {round}");
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), 1, "round {round}: {entries:?}");
        assert_eq!(entries[0].name, "counter");
        assert_eq!(store.capacity(), CAPACITY);
        // No temporary files are left behind by the losers of the creation race.
        assert_eq!(common::dir_listing(dir.path()), ["store.shm"], "round {round}");
    }
}

#[test]
fn atomics_under_read_guards_count_across_processes() {
    const CHILDREN: usize = 4;
    const EACH: u64 = 10_000;
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let hits = store.object_or_init("hits", || Hits { n: AtomicU64::new(0) }).unwrap();
    let mut children: Vec<_> =
        (0..CHILDREN).map(|_| ChildProc::spawn("atomic_count", &path, &EACH.to_string())).collect();
    for child in &mut children {
        child.expect("waiting");
    }
    // A read guard held here does not stop the children: they only take shared locks.
    let guard = hits.read().unwrap();
    for child in &mut children {
        child.send("go");
    }
    for child in &mut children {
        child.expect("done");
    }
    assert_eq!(guard.n.load(Ordering::SeqCst), CHILDREN as u64 * EACH);
    drop(guard);
    for child in children {
        child.finish();
    }
}

#[test]
fn processes_creating_different_entries_get_disjoint_space() {
    const CHILDREN: u32 = 4;
    let (_dir, path) = temp_store();
    drop(Store::open_or_create(&path, CAPACITY).unwrap());
    let mut children: Vec<_> = (0..CHILDREN).map(|c| ChildProc::spawn("create_many", &path, &c.to_string())).collect();
    for child in &mut children {
        child.expect("waiting");
    }
    for child in &mut children {
        child.send("go");
    }
    for mut child in children {
        child.expect("done");
        child.finish();
    }

    let store = Store::open(&path).unwrap();
    assert_eq!(store.entries().unwrap().len(), (CHILDREN * CREATED_PER_CHILD) as usize);
    for c in 0..CHILDREN {
        for k in 0..CREATED_PER_CHILD {
            let arr = store.array::<u32>(&format!("{c}-{k}")).unwrap();
            assert_eq!(arr.len(), 100 + k as usize);
            let expected = c * 1000 + k;
            assert!(
                arr.read().unwrap().iter().all(|&x| x == expected),
                "array {c}-{k} was overwritten by another entry"
            );
        }
    }
    // The data ranges recorded in the catalog do not overlap.
    let mut ranges: Vec<(u64, u64)> =
        common::raw_records(&path).iter().map(|r| (r.data_offset, r.data_offset + r.elem_size * r.count)).collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping entries: {pair:?}");
    }
    assert!(ranges.last().unwrap().1 <= store.used());
}

#[test]
fn opening_while_another_process_creates_entries_succeeds() {
    const CREATED: u32 = 1000;
    let (_dir, path) = temp_store();
    drop(Store::options().create(true).capacity(CAPACITY).max_entries(2048).open(&path).unwrap());
    let mut child = ChildProc::spawn("create_loop", &path, &CREATED.to_string());
    child.expect("waiting");
    child.send("go");
    let (mut opens, mut failures) = (0, Vec::new());
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < common::CHILD_PATIENCE, "the child never finished");
        let done = child.poll().is_some() || child.has_exited();
        match Store::open(&path) {
            Ok(store) => assert!(store.used() > 0),
            Err(e) => failures.push(e.to_string()),
        }
        opens += 1;
        if done {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {opens} opens failed while another process was creating entries, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    child.finish();
    assert_eq!(Store::open(&path).unwrap().entries().unwrap().len(), CREATED as usize);
}

#[test]
fn opening_while_another_process_grows_the_store_succeeds() {
    const GROWTHS: u64 = 1000;
    let (_dir, path) = temp_store();
    {
        let store = Store::open_or_create(&path, CAPACITY).unwrap();
        store.object_or_init("counter", || Counter { n: 7 }).unwrap();
    }
    let mut child = ChildProc::spawn("grow_loop", &path, &GROWTHS.to_string());
    child.expect("waiting");
    child.send("go");
    let (mut opens, mut failures) = (0, Vec::new());
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < common::CHILD_PATIENCE, "the child never finished");
        let done = child.poll().is_some() || child.has_exited();
        match Store::open(&path) {
            Ok(store) => {
                assert!(store.capacity() >= CAPACITY);
                assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap().n, 7);
            }
            Err(e) => failures.push(e.to_string()),
        }
        opens += 1;
        if done {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {opens} opens failed while another process was growing the store, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    child.finish();
    assert_eq!(Store::open(&path).unwrap().capacity(), CAPACITY + GROWTHS * 4096);
}
