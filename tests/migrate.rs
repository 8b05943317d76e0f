//! `Store::migrate`: converting an entry from one layout to another, across real processes and
//! across `SIGKILL`s of the migrating process.
//!
//! Every multi-process test here spawns this test binary again as child processes (see
//! `child_main`) and talks to them over stdin/stdout, as in `tests/multiprocess.rs`.
//!
//! # Environment
//!
//! - `SHMSTORE_SOAK_MIGRATIONS=N`: how many times the kill test
//!   (`killing_the_migrating_process_at_random_instants_...`) kills a process in the middle of its
//!   migrations (default 150, about 5 s in a debug build on 2 cores). For a soak, e.g.
//!   `SHMSTORE_SOAK_MIGRATIONS=2000 cargo test --test migrate killing -- --nocapture`.
//! - `SHMSTORE_MIGRATE_SEED=S`: the seed of the kill schedule; the default is fixed, and the seed
//!   in use is printed.
//!
//! Run with `--nocapture` to see the numbers (kills, where they landed, migrations committed).

mod common;

use std::fmt::Debug;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{emit, exit_when_stdin_closes, temp_store, wait_eof, wait_for, ChildArgs, ChildProc, Rng};
use shmstore::{EntryKind, Error, FixedStr, Migration, SharedLayout, Store};

const CAPACITY: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The layouts.

/// The configuration as an older build stored it.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
#[shared(version = 1)]
struct ConfigV1 {
    port: u32,
    workers: u32,
    limit: u64,
}

/// The next build's configuration: two fields added, with defaults.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
#[shared(version = 2)]
struct ConfigV2 {
    port: u32,
    workers: u32,
    limit: u64,
    timeout_ms: u64,
    name: FixedStr<16>,
}

/// Neither V1 nor V2.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Unrelated {
    a: u16,
    b: u16,
}

const V1_VALUE: ConfigV1 = ConfigV1 { port: 8080, workers: 12, limit: 0xdead_beef_cafe };

fn upgrade(old: ConfigV1) -> ConfigV2 {
    ConfigV2 {
        port: old.port,
        workers: old.workers,
        limit: old.limit,
        timeout_ms: 5000,
        name: FixedStr::new("default").unwrap(),
    }
}

/// One element of the array the kill test migrates back and forth: element `i` is
/// `x == i, y == 2 * i`, in whichever layout.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
struct A {
    x: u32,
    y: u32,
}

/// The same values as [`A`], wider and in the other order.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
struct B {
    y: u64,
    x: u64,
}

fn a_to_b(a: A) -> B {
    B { y: u64::from(a.y), x: u64::from(a.x) }
}

fn b_to_a(b: B) -> A {
    A { x: u32::try_from(b.x).unwrap(), y: u32::try_from(b.y).unwrap() }
}

fn a_at(i: usize) -> A {
    A { x: i as u32, y: 2 * i as u32 }
}

/// A bystander entry of the kill test, which no migration may touch.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Meta {
    magic: u64,
    generation: u64,
}

const META_MAGIC: u64 = 0x6d69_6772_6174_6521;

/// How a result looks on the wire between a child and the parent: `ok VALUE`, `mismatch EXPECTED
/// -> FOUND` (types, versions and fingerprints), or `error MESSAGE`.
fn outcome<T: Debug>(result: shmstore::Result<T>) -> String {
    match result {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::LayoutMismatch {
            expected_type,
            expected_version,
            expected_fingerprint,
            found_type,
            found_version,
            found_fingerprint,
            ..
        }) => format!(
            "mismatch {expected_type} v{expected_version} {expected_fingerprint:016x} -> \
             {found_type} v{found_version} {found_fingerprint:016x}"
        ),
        Err(e) => format!("error {e}"),
    }
}

/// What [`outcome`] says of a V1 handle (or lookup) meeting the entry after its migration to V2.
fn v1_meets_v2() -> String {
    format!(
        "mismatch ConfigV1 v1 {:016x} -> ConfigV2 v2 {:016x}",
        ConfigV1::LAYOUT.fingerprint,
        ConfigV2::LAYOUT.fingerprint
    )
}

fn new_config_store(path: &Path) -> Store {
    let store = Store::open_or_create(path, CAPACITY).unwrap();
    store.object_or_init("config", || V1_VALUE).unwrap();
    store.array_or_init::<u64>("other", 4, 7).unwrap();
    store
}

/// `name:type:version:len` of every entry, sorted by name, for comparing listings.
fn listing(store: &Store) -> Vec<String> {
    let mut entries: Vec<String> = store
        .entries()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}:v{}:{}", e.name, e.type_name, e.version, e.len))
        .collect();
    entries.sort();
    entries
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "old_handle" => role_old_handle(&args),
        "fresh_reader" => role_fresh_reader(&args),
        "waiter" => role_waiter(&args),
        "hold_v1_write" => role_hold_v1_write(&args),
        "migrator" => role_migrator(&args),
        "migrate_loop" => role_migrate_loop(&args),
        "verify_grid" => role_verify_grid(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Takes a V1 handle and loads it, reports `ready VALUE`, waits for `go` (sent once the parent has
/// migrated the entry to V2), then tries every access through the old handle and reports each.
fn role_old_handle(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let old = store.object::<ConfigV1>("config").unwrap();
    emit(format!("ready {:?}", old.load().unwrap()));
    wait_for("go");
    let changed = ConfigV1 { port: 666, ..V1_VALUE };
    emit(format!("load {}", outcome(old.load())));
    emit(format!("load_versioned {}", outcome(old.load_versioned().map(|(v, _)| v))));
    emit(format!("read {}", outcome(old.read().map(|g| *g))));
    emit(format!("try_read {}", outcome(old.try_read().map(|g| *g))));
    // Were these to succeed, the guard would commit `changed` when it drops.
    emit(format!(
        "write {}",
        outcome(old.write().map(|mut g| {
            *g = changed;
            *g
        }))
    ));
    emit(format!(
        "try_write {}",
        outcome(old.try_write().map(|mut g| {
            *g = changed;
            *g
        }))
    ));
    emit(format!("store {}", outcome(old.store(changed))));
    emit(format!("update {}", outcome(old.update(|c| c.port = 667))));
    // The same name looked up again in this process (whose name cache holds the old record).
    emit(format!("reopen {}", outcome(store.object::<ConfigV1>("config").map(|_| ()))));
    emit(format!("v2 {}", outcome(store.object::<ConfigV2>("config").and_then(|h| h.load()))));
}

/// Opens the store fresh and reports what the entry holds now.
fn role_fresh_reader(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    emit(format!("v2 {}", outcome(store.object::<ConfigV2>("config").and_then(|h| h.load()))));
    emit(format!("v1 {}", outcome(store.object::<ConfigV1>("config").map(|_| ()))));
    let info = store.entry_info("config").unwrap();
    emit(format!("info {} v{} {:016x} {}", info.type_name, info.version, info.fingerprint, info.slots));
    emit(format!("entries {}", listing(&store).join(" ")));
    emit(format!("count {}", store.info().entries));
}

/// Takes a V1 handle, reports `waiting`, and sleeps in `wait_for_change`; reports how it woke,
/// and then what a `load` through the same handle gives.
fn role_waiter(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let old = store.object::<ConfigV1>("config").unwrap();
    let (_, seen) = old.load_versioned().unwrap();
    emit("waiting");
    let started = Instant::now();
    let woke = old.wait_for_change(seen, common::CHILD_PATIENCE).map(|(v, _)| v);
    let waited = started.elapsed();
    emit(format!("woke {}", outcome(woke)));
    emit(format!("waited_ms {}", waited.as_millis()));
    emit(format!("load {}", outcome(old.load())));
    wait_eof();
}

/// Holds a V1 write guard with `port` changed to `arg`, until the parent sends `release`; then
/// commits it.
fn role_hold_v1_write(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let old = store.object::<ConfigV1>("config").unwrap();
    let mut guard = old.write().unwrap();
    guard.port = args.arg.parse().unwrap();
    emit("holding");
    wait_for("release");
    guard.commit().unwrap();
    emit("released");
    wait_eof();
}

/// Waits for `go`, migrates `config` from V1 to V2, and reports the result and the new value.
fn role_migrator(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    emit("ready");
    wait_for("go");
    let result = store.migrate("config", upgrade);
    emit(format!("migrated {}", outcome(result)));
    emit(format!("v2 {}", outcome(store.object::<ConfigV2>("config").and_then(|h| h.load()))));
}

const GRID: &str = "grid";
const GRID_LEN: usize = 20_000;

/// Migrates `grid` back and forth between A and B until killed, reporting `start N TARGET` before
/// each migration and `migrated N` after it. A full store or catalog is reported as `full`; the
/// child then waits to be killed.
fn role_migrate_loop(args: &ChildArgs) {
    exit_when_stdin_closes();
    let store = Store::open(&args.path).unwrap();
    emit("ready");
    for n in 0u64.. {
        let info = store.entry_info(GRID).unwrap();
        let to_b = info.fingerprint == A::LAYOUT.fingerprint && info.version == A::LAYOUT.version;
        emit(format!("start {n} {}", if to_b { "B" } else { "A" }));
        let result = if to_b { store.migrate(GRID, a_to_b) } else { store.migrate(GRID, b_to_a) };
        match result {
            Ok(Migration::Migrated) => emit(format!("migrated {n}")),
            Err(Error::StoreFull { .. } | Error::CatalogFull { .. }) => {
                emit("full");
                loop {
                    std::thread::park();
                }
            }
            other => panic!("migration {n} of {GRID}: {other:?}"),
        }
    }
}

/// Opens the store fresh and checks the kill test's invariants: `grid` holds all-A or all-B with
/// every element intact, is not left locked, and the entries are exactly `grid` and `meta`.
/// Reports `verified LAYOUT PROBLEMS`, then one `problem ...` line for each of the first few.
fn role_verify_grid(args: &ChildArgs) {
    let expected_generation: u64 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let mut problems: Vec<String> = Vec::new();

    let mut names: Vec<String> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    if names != [GRID, "meta"] {
        problems.push(format!("entries() lists {names:?}"));
    }
    if store.info().entries != 2 {
        problems.push(format!("info().entries is {}", store.info().entries));
    }
    match store.object::<Meta>("meta").and_then(|m| m.load()) {
        Ok(Meta { magic: META_MAGIC, generation }) if generation == expected_generation => {}
        other => problems.push(format!("meta is {other:?}")),
    }

    let info = store.entry_info(GRID).unwrap();
    if info.kind != EntryKind::Array || info.len != GRID_LEN as u64 {
        problems.push(format!("grid is {:?} of {} elements", info.kind, info.len));
    }
    let mut bad_elements = 0usize;
    let mut bad = |i: usize, what: String, problems: &mut Vec<String>| {
        bad_elements += 1;
        if problems.len() < 8 {
            problems.push(format!("grid[{i}] is {what}"));
        }
    };
    let layout = match (store.array::<A>(GRID), store.array::<B>(GRID)) {
        (Ok(grid), Err(Error::LayoutMismatch { .. })) => {
            // The killed migrator may have held the exclusive lock: the kernel released it.
            match grid.try_read() {
                Ok(elements) => {
                    if elements.len() != GRID_LEN {
                        problems.push(format!("grid as A has {} elements", elements.len()));
                    }
                    for (i, &e) in elements.iter().enumerate() {
                        if e != a_at(i) {
                            bad(i, format!("{e:?}"), &mut problems);
                        }
                    }
                }
                Err(e) => problems.push(format!("grid as A cannot be read at once: {e}")),
            }
            if info.type_name != "A" {
                problems.push(format!("grid holds A but entry_info says {}", info.type_name));
            }
            "A"
        }
        (Err(Error::LayoutMismatch { .. }), Ok(grid)) => {
            match grid.try_read() {
                Ok(elements) => {
                    if elements.len() != GRID_LEN {
                        problems.push(format!("grid as B has {} elements", elements.len()));
                    }
                    for (i, &e) in elements.iter().enumerate() {
                        if e != a_to_b(a_at(i)) {
                            bad(i, format!("{e:?}"), &mut problems);
                        }
                    }
                }
                Err(e) => problems.push(format!("grid as B cannot be read at once: {e}")),
            }
            if info.type_name != "B" {
                problems.push(format!("grid holds B but entry_info says {}", info.type_name));
            }
            "B"
        }
        (a, b) => {
            problems.push(format!("grid opens as A: {:?}; as B: {:?}", a.map(|_| ()), b.map(|_| ())));
            "?"
        }
    };
    let violations = problems.len() - problems.iter().filter(|p| p.starts_with("grid[")).count() + bad_elements;
    emit(format!("verified {layout} {violations}"));
    for p in &problems {
        emit(format!("problem {p}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Parent-side helpers.

/// Whether a thread of process `pid` waits for a lock of the store at `path`: blocked in
/// `fcntl(F_OFD_SETLKW)` (OFD lock mode), or asleep on a futex in the store's mapping (robust lock
/// mode: a mutex in the file). `None` if procfs does not tell.
fn blocked_in_lock_wait(pid: u32, path: &std::path::Path) -> Option<bool> {
    if common::asleep_in_shared_futex(pid, path) == Some(true) {
        return Some(true);
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut readable = false;
    for task in tasks.flatten() {
        let Ok(syscall) = std::fs::read_to_string(task.path().join("syscall")) else { continue };
        readable = true;
        let fields: Vec<&str> = syscall.split_whitespace().collect();
        let nr = fields.first().and_then(|nr| nr.parse::<i64>().ok());
        let cmd = fields.get(2).and_then(|f| i64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        if nr == Some(libc::SYS_fcntl) && cmd == Some(i64::from(libc::F_OFD_SETLKW)) {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// Polls [`blocked_in_lock_wait`] until it says yes, procfs cannot tell, or `patience` passes.
/// This only waits for the state the test then exercises; correctness never depends on it.
fn wait_until_blocked_in_lock_wait(pid: u32, path: &std::path::Path, patience: Duration) -> Option<bool> {
    let start = Instant::now();
    loop {
        match blocked_in_lock_wait(pid, path) {
            Some(false) if start.elapsed() < patience => std::thread::sleep(Duration::from_millis(1)),
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Old handles in other processes.

#[test]
fn a_v1_handle_in_another_process_fails_after_the_migration_and_a_fresh_process_reads_v2() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let mut child = ChildProc::spawn("old_handle", &path, "");
    assert_eq!(child.expect("ready"), format!("{V1_VALUE:?}"));

    assert_eq!(store.migrate("config", upgrade).unwrap(), Migration::Migrated);
    child.send("go");
    for op in ["load", "load_versioned", "read", "try_read", "write", "try_write", "store", "update", "reopen"] {
        assert_eq!(child.expect(op), v1_meets_v2(), "{op} through the V1 handle taken before the migration");
    }
    // The child's process-wide name cache still points at the old record; the lookup follows it.
    assert_eq!(child.expect("v2"), format!("ok {:?}", upgrade(V1_VALUE)));
    assert!(child.finish().is_empty());

    // None of the child's write attempts changed anything.
    let expected = upgrade(V1_VALUE);
    assert_eq!(store.object::<ConfigV2>("config").unwrap().load().unwrap(), expected);

    let mut fresh = ChildProc::spawn("fresh_reader", &path, "");
    assert_eq!(fresh.expect("v2"), format!("ok {expected:?}"));
    assert_eq!(fresh.expect("v1"), v1_meets_v2());
    assert_eq!(fresh.expect("info"), format!("ConfigV2 v2 {:016x} 2", ConfigV2::LAYOUT.fingerprint));
    assert_eq!(fresh.expect("entries"), format!("config:ConfigV2:v2:1 other:u64:v{}:4", u64::LAYOUT.version));
    assert_eq!(fresh.expect("count"), "2", "a migration adds no entry");
    assert!(fresh.finish().is_empty());
}

#[test]
fn a_waiter_on_the_old_handle_wakes_when_the_migration_commits() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let mut child = ChildProc::spawn("waiter", &path, "");
    child.expect("waiting");
    // Wait until it really sleeps in the store's futex (if procfs can tell), so that the
    // migration has a sleeper to wake rather than a waiter that has not started yet.
    let asleep = common::wait_until_asleep_in_shared_futex(child.id(), &path, common::CHILD_PATIENCE);
    assert_ne!(asleep, Some(false), "the waiter never went to sleep");

    let started = Instant::now();
    assert_eq!(store.migrate("config", upgrade).unwrap(), Migration::Migrated);
    // The waiter's own timeout is CHILD_PATIENCE (60 s): waking within a few seconds means the
    // migration woke it.
    assert_eq!(child.expect("woke"), v1_meets_v2());
    let latency = started.elapsed();
    assert!(latency < Duration::from_secs(10), "the waiter took {latency:?} to wake");
    let waited: u64 = child.expect("waited_ms").parse().unwrap();
    assert!(waited < 50_000, "the waiter slept {waited} ms: it timed out instead of being woken");
    assert_eq!(child.expect("load"), v1_meets_v2());
    assert!(child.finish().is_empty());
    eprintln!("waiter woke {latency:?} after the migration started (asleep in the futex: {asleep:?})");
}

/// A waiter that starts waiting after the migration, with the old handle's current version, must
/// learn of the migration at once, as every other access through the old handle does, rather than
/// sleep until its timeout (nobody will ever commit to the old record again).
#[test]
fn waiting_on_an_already_migrated_handle_fails_at_once() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let old = store.object::<ConfigV1>("config").unwrap();
    assert_eq!(store.migrate("config", upgrade).unwrap(), Migration::Migrated);
    let started = Instant::now();
    let result = old.wait_for_change(old.version(), Duration::from_secs(2)).map(|(v, _)| v);
    let waited = started.elapsed();
    assert_eq!(outcome(result), v1_meets_v2(), "after waiting {waited:?}");
}

#[test]
fn a_migration_waits_for_a_writer_in_another_process_and_converts_its_commit() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let mut holder = ChildProc::spawn("hold_v1_write", &path, "9090");
    holder.expect("holding");
    let mut migrator = ChildProc::spawn("migrator", &path, "");
    migrator.expect("ready");
    migrator.send("go");
    let blocked = wait_until_blocked_in_lock_wait(migrator.id(), &path, common::CHILD_PATIENCE);
    assert_ne!(blocked, Some(false), "the migrator never waited for the lock");
    // While the writer holds the lock, the migration cannot have committed.
    assert_eq!(migrator.poll(), None, "the migration went ahead while another process held a write guard");
    assert_eq!(store.object::<ConfigV1>("config").unwrap().load().unwrap(), V1_VALUE);

    holder.send("release");
    holder.expect("released");
    let expected = upgrade(ConfigV1 { port: 9090, ..V1_VALUE });
    assert_eq!(migrator.expect("migrated"), "ok Migrated");
    assert_eq!(migrator.expect("v2"), format!("ok {expected:?}"), "the migration converted the writer's commit");
    assert!(migrator.finish().is_empty());
    assert!(holder.finish().is_empty());
    assert_eq!(store.object::<ConfigV2>("config").unwrap().load().unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------
// SIGKILL during migrations.

/// The kill test's store: `grid` (A, element i = (i, 2i)) and the bystander `meta`.
///
/// Every migration allocates new space for the whole array and takes a catalog slot for its
/// replacement record, and neither is ever given back (a killed migration leaks both). So the
/// store is large (512 MiB, sparse on disk) and has 4096 catalog slots instead of the default 64,
/// and the supervisor starts a new store when either runs low.
fn new_soak_store(path: &Path, generation: u64) {
    const SOAK_CAPACITY: u64 = 512 << 20;
    const SOAK_MAX_ENTRIES: u32 = 4096;
    let store = Store::options().create(true).capacity(SOAK_CAPACITY).max_entries(SOAK_MAX_ENTRIES).open(path).unwrap();
    let grid = store.array_or_init::<A>(GRID, GRID_LEN, A::default()).unwrap();
    for (i, e) in grid.write().unwrap().iter_mut().enumerate() {
        *e = a_at(i);
    }
    store.object_or_init("meta", || Meta { magic: META_MAGIC, generation }).unwrap();
    store.close().unwrap();
}

/// Where one kill landed, judged from the child's last messages and the catalog.
#[derive(Debug, Default)]
struct KillTally {
    kills: usize,
    /// The child had reported `start` but not `migrated`: it was inside `migrate` (or about to be).
    in_flight: usize,
    /// The killed migration had committed but not yet reported it.
    after_commit: usize,
    /// The child had not yet started its first migration.
    before_first: usize,
    migrations: usize,
    stores: usize,
    full: usize,
}

#[test]
fn killing_the_migrating_process_at_random_instants_leaves_one_complete_layout() {
    let kills: usize = std::env::var("SHMSTORE_SOAK_MIGRATIONS")
        .map(|v| v.parse().expect("SHMSTORE_SOAK_MIGRATIONS must be a number"))
        .unwrap_or(150);
    let seed: u64 = std::env::var("SHMSTORE_MIGRATE_SEED")
        .map(|v| v.parse().expect("SHMSTORE_MIGRATE_SEED must be a number"))
        .unwrap_or(0x006d_6967_7261_7465);
    eprintln!("kill test: {kills} kills, seed {seed} (SHMSTORE_MIGRATE_SEED)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let store_path = |generation: u64| -> PathBuf { dir.path().join(format!("soak-{generation}.shm")) };
    let mut generation = 0;
    let mut path = store_path(generation);
    new_soak_store(&path, generation);
    let mut tally = KillTally { stores: 1, ..KillTally::default() };
    // Per migration: at most B's 320,000 bytes of data, page-aligned, plus its schema and block.
    const MIGRATION_BYTES: u64 = 330_000;
    // Migrations committed since the current store was made: its layout is A when even.
    let mut hops = 0usize;
    let mut violations = Vec::new();

    for round in 0..kills {
        let info = Store::open(&path).unwrap().info();
        if (info.capacity - info.used) / MIGRATION_BYTES < 16 {
            std::fs::remove_file(&path).unwrap();
            generation += 1;
            path = store_path(generation);
            new_soak_store(&path, generation);
            tally.stores += 1;
            hops = 0;
        }

        let mut child = ChildProc::spawn("migrate_loop", &path, "");
        child.expect("ready");
        // Chooses the instant of the kill; nothing depends on the child having reached any point.
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 30_001));
        let (status, stderr) = child.kill_and_stderr();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the migrating child ended by itself:\n{stderr}"
        );
        let messages = child.wait_exit().messages;
        tally.kills += 1;

        let reported = messages.iter().filter(|m| m.starts_with("migrated ")).count();
        let last = messages.last().map(String::as_str).unwrap_or("");
        let in_flight = last.starts_with("start ");

        let mut verifier = ChildProc::spawn("verify_grid", &path, &generation.to_string());
        let verdict = verifier.expect("verified");
        let problems = verifier.finish();
        let (layout, count) = verdict.split_once(' ').unwrap();
        let count: usize = count.parse().unwrap();
        // One atomic store commits a migration: every reported migration is committed, and at
        // most the one in flight is committed without being reported. The layout tells which.
        let layout_after = |n: usize| if (hops + n).is_multiple_of(2) { "A" } else { "B" };
        let committed = if layout == layout_after(reported) { reported } else { reported + 1 };
        tally.migrations += committed;
        tally.full += usize::from(last == "full");
        tally.before_first += usize::from(messages.is_empty());
        tally.in_flight += usize::from(in_flight);
        tally.after_commit += usize::from(committed == reported + 1);
        if committed == reported + 1 && !in_flight {
            violations
                .push(format!("round {round}: layout {layout} after {reported} reported migrations, none in flight"));
        }
        if count > 0 || layout != layout_after(committed) {
            violations.push(format!(
                "round {round} (kill after {last:?}): layout {layout}; {count} violations: {problems:#?}"
            ));
        }
        hops += committed;
    }
    eprintln!("kill test: {tally:?} in {:.1?}", started.elapsed());
    assert!(violations.is_empty(), "{} of {kills} kills left a bad store: {violations:#?}", violations.len());

    // After all that, the store still migrates normally, and the result is complete.
    let store = Store::open(&path).unwrap();
    let grid: Vec<A> = if hops.is_multiple_of(2) {
        assert_eq!(store.migrate(GRID, a_to_b).unwrap(), Migration::Migrated);
        assert_eq!(store.migrate(GRID, b_to_a).unwrap(), Migration::Migrated);
        store.array::<A>(GRID).unwrap().read().unwrap().to_vec()
    } else {
        assert_eq!(store.migrate(GRID, b_to_a).unwrap(), Migration::Migrated);
        store.array::<A>(GRID).unwrap().read().unwrap().to_vec()
    };
    assert!(grid.iter().enumerate().all(|(i, &e)| e == a_at(i)), "the last migrations corrupted the grid");
    assert_eq!(tally.kills, kills);
    if kills >= 50 {
        // The kills must land inside migrations, or this test shows nothing.
        assert!(tally.in_flight * 2 >= kills, "only {} of {kills} kills landed during a migration", tally.in_flight);
        assert!(tally.migrations > 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Single-process behaviour.

#[test]
fn migrating_twice_does_no_harm() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let calls = AtomicU64::new(0);
    let counted = |old: ConfigV1| {
        calls.fetch_add(1, Ordering::Relaxed);
        upgrade(old)
    };
    assert_eq!(store.migrate("config", counted).unwrap(), Migration::Migrated);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let v2 = store.object::<ConfigV2>("config").unwrap();
    let (value, version) = v2.load_versioned().unwrap();
    assert_eq!(value, upgrade(V1_VALUE));
    let (used, entries, info) = (store.used(), listing(&store), store.entry_info("config").unwrap());

    for _ in 0..3 {
        assert_eq!(store.migrate("config", counted).unwrap(), Migration::AlreadyMigrated);
    }
    // And from another open of the file, whose name cache is empty.
    let again = Store::open(&path).unwrap();
    assert_eq!(again.migrate("config", counted).unwrap(), Migration::AlreadyMigrated);

    assert_eq!(calls.load(Ordering::Relaxed), 1, "an entry already at V2 is not converted again");
    assert_eq!(v2.load_versioned().unwrap(), (value, version), "value or version changed");
    assert_eq!(store.used(), used, "a repeated migration allocated space");
    assert_eq!(listing(&store), entries);
    assert_eq!(store.entry_info("config").unwrap(), info);
    // The V2 handle still writes normally.
    v2.update(|c| c.timeout_ms = 250).unwrap();
    assert_eq!(again.object::<ConfigV2>("config").unwrap().load().unwrap().timeout_ms, 250);
}

#[test]
fn an_array_migrates_element_by_element() {
    const LEN: usize = 1000;
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let old = store.array_or_init::<A>("points", LEN, A::default()).unwrap();
    old.write_at(0, &(0..LEN).map(a_at).collect::<Vec<_>>()).unwrap();
    store.array_or_init::<A>("empty", 0, A::default()).unwrap();

    let mut seen = Vec::new();
    let result = store.migrate("points", |a: A| {
        seen.push(a);
        a_to_b(a)
    });
    assert_eq!(result.unwrap(), Migration::Migrated);
    assert_eq!(seen, (0..LEN).map(a_at).collect::<Vec<_>>(), "convert sees every element once, in order");

    let new = store.array::<B>("points").unwrap();
    assert_eq!(new.len(), LEN);
    let expected: Vec<B> = (0..LEN).map(|i| B { y: 2 * i as u64, x: i as u64 }).collect();
    assert_eq!(new.read().unwrap().to_vec(), expected);
    let info = store.entry_info("points").unwrap();
    assert_eq!((info.kind, info.len, info.type_name.as_str(), info.elem_size), (EntryKind::Array, LEN as u64, "B", 16));
    assert!(matches!(old.get(0), Err(Error::LayoutMismatch { .. })));
    assert!(matches!(store.array::<A>("points"), Err(Error::LayoutMismatch { .. })));
    // An object handle is still refused for an array.
    assert!(matches!(store.object::<B>("points"), Err(Error::KindMismatch { .. })));
    // And the migrated array is a normal array.
    new.set(3, B { y: 1, x: 2 }).unwrap();
    assert_eq!(Store::open(&path).unwrap().array::<B>("points").unwrap().get(3).unwrap(), B { y: 1, x: 2 });

    // An empty array migrates too, and stays empty.
    assert_eq!(store.migrate("empty", a_to_b).unwrap(), Migration::Migrated);
    assert_eq!(store.array::<B>("empty").unwrap().len(), 0);
}

#[test]
fn a_panic_inside_convert_changes_nothing() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let old = store.object::<ConfigV1>("config").unwrap();
    let grid = store.array_or_init::<A>("points", 100, A::default()).unwrap();
    grid.write_at(0, &(0..100).map(a_at).collect::<Vec<_>>()).unwrap();
    let (used, entries, version) = (store.used(), listing(&store), old.version());

    let panicked =
        catch_unwind(AssertUnwindSafe(|| store.migrate("config", |_: ConfigV1| -> ConfigV2 { panic!("boom") })));
    assert!(panicked.is_err());
    // An array whose conversion panics half way.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        store.migrate("points", |a: A| if a.x == 50 { panic!("boom at 50") } else { a_to_b(a) })
    }));
    assert!(panicked.is_err());

    assert_eq!(store.used(), used, "a failed migration allocated space");
    assert_eq!(listing(&store), entries);
    assert_eq!(old.load().unwrap(), V1_VALUE, "the old handle still reads the old value");
    assert_eq!(old.version(), version);
    assert_eq!(store.object::<ConfigV1>("config").unwrap().load().unwrap(), V1_VALUE);
    assert!(matches!(store.object::<ConfigV2>("config"), Err(Error::LayoutMismatch { .. })));
    assert_eq!(grid.read().unwrap().to_vec(), (0..100).map(a_at).collect::<Vec<_>>());
    // Unlocked, for this process and (through another open file description) for others.
    drop(old.try_write().expect("the entry is unlocked after the panic"));
    drop(grid.try_write().expect("the array is unlocked after the panic"));
    let other = Store::open(&path).unwrap();
    drop(other.object::<ConfigV1>("config").unwrap().try_write().expect("unlocked for other opens too"));
    drop(other.array::<A>("points").unwrap().try_write().expect("unlocked for other opens too"));

    // A later migration succeeds.
    assert_eq!(store.migrate("config", upgrade).unwrap(), Migration::Migrated);
    assert_eq!(store.object::<ConfigV2>("config").unwrap().load().unwrap(), upgrade(V1_VALUE));
    assert_eq!(store.migrate("points", a_to_b).unwrap(), Migration::Migrated);
    assert_eq!(other.array::<B>("points").unwrap().get(99).unwrap(), a_to_b(a_at(99)));
}

#[test]
fn migrating_an_entry_that_holds_neither_layout_is_a_layout_mismatch() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    store.object_or_init("unrelated", || Unrelated { a: 1, b: 2 }).unwrap();
    let (used, entries) = (store.used(), listing(&store));
    let result = store.migrate("unrelated", upgrade).map(|_| ());
    assert_eq!(
        outcome(result),
        format!(
            "mismatch ConfigV1 v1 {:016x} -> Unrelated v{} {:016x}",
            ConfigV1::LAYOUT.fingerprint,
            Unrelated::LAYOUT.version,
            Unrelated::LAYOUT.fingerprint
        )
    );
    assert_eq!(store.object::<Unrelated>("unrelated").unwrap().load().unwrap(), Unrelated { a: 1, b: 2 });
    assert_eq!((store.used(), listing(&store)), (used, entries));
}

#[test]
fn migrating_a_missing_or_invalid_name_fails() {
    let (_dir, path) = temp_store();
    let store = new_config_store(&path);
    let used = store.used();
    match store.migrate("nope", upgrade) {
        Err(Error::NotFound { name }) => assert_eq!(name, "nope"),
        other => panic!("migrating a missing entry: {other:?}"),
    }
    assert!(matches!(store.migrate("", upgrade), Err(Error::InvalidName { .. })));
    assert_eq!(store.used(), used);
}

#[test]
fn migrating_on_a_read_only_store_fails_and_changes_nothing() {
    let (_dir, path) = temp_store();
    drop(new_config_store(&path));
    let before = std::fs::read(&path).unwrap();
    let reader = Store::options().read_only(true).open(&path).unwrap();
    match reader.migrate("config", upgrade) {
        Err(e @ Error::ReadOnly { .. }) => assert!(e.to_string().contains("read-only"), "{e}"),
        other => panic!("migrating on a read-only store: {other:?}"),
    }
    // Even an entry already migrated, or a missing one, is refused the same way: a read-only
    // store cannot migrate anything.
    assert!(matches!(reader.migrate("nope", upgrade), Err(Error::ReadOnly { .. })));
    assert!(std::fs::read(&path).unwrap() == before, "a refused migration changed the file");
    assert_eq!(reader.object::<ConfigV1>("config").unwrap().load().unwrap(), V1_VALUE);
}

/// A migration replaces the entry's block: it needs no room in a catalog capped by
/// `max_entries`, and leaves the entry count as it was.
#[test]
fn migrating_in_a_full_catalog_works_and_keeps_the_count() {
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(CAPACITY).max_entries(3).open(&path).unwrap();
    store.object_or_init("config", || V1_VALUE).unwrap();
    store.array_or_init::<u64>("other", 4, 7).unwrap();
    store.object_or_init("third", || 3u64).unwrap();
    let old = store.object::<ConfigV1>("config").unwrap();
    assert_eq!(store.migrate("config", upgrade).unwrap(), Migration::Migrated);
    assert!(matches!(old.load(), Err(Error::LayoutMismatch { .. })));
    assert_eq!(store.info().entries, 3);
    assert!(matches!(store.object_or_init("fourth", || 4u64), Err(Error::CatalogFull { max_entries: 3, .. })));
    let other = Store::open(&path).unwrap();
    drop(other.object::<ConfigV2>("config").unwrap().try_write().expect("unlocked for other opens"));
}

/// A lock-free `load` through the old handle that races with the migration returns either the
/// entry's last value or `LayoutMismatch`: never an older value.
///
/// The old record's slots hold the last value (active) and the one before it (inactive). The
/// migration must not make a load that started before its commit read the inactive slot.
#[test]
fn a_load_racing_the_migration_never_returns_an_older_value() {
    const ROUNDS: u32 = 300;
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(8 << 20).max_entries(1024).open(&path).unwrap();
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("race-{round}");
        let old = store.object_or_init(&name, || ConfigV1 { port: 1, ..V1_VALUE }).unwrap();
        old.store(ConfigV1 { port: 2, ..V1_VALUE }).unwrap();
        old.store(ConfigV1 { port: 3, ..V1_VALUE }).unwrap();
        let spinning = Arc::new(AtomicBool::new(false));
        let reader = {
            let (old, spinning) = (old.clone(), spinning.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    match old.load() {
                        Ok(v) => {
                            if v.port != 3 {
                                seen.push(v.port);
                            }
                        }
                        Err(Error::LayoutMismatch { .. }) => return seen,
                        Err(e) => panic!("load: {e}"),
                    }
                    spinning.store(true, Ordering::Release);
                }
            })
        };
        while !spinning.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        assert_eq!(store.migrate(&name, upgrade).unwrap(), Migration::Migrated);
        let seen = reader.join().unwrap();
        if !seen.is_empty() {
            stale.push((round, seen));
        }
    }
    assert!(
        stale.is_empty(),
        "in {} of {ROUNDS} migrations a racing load of the old handle returned an older value \
         (port 2, the value before the last commit) instead of the last one (port 3): {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}
