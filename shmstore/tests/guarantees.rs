//! Guarantees of the README that no other test pinned: the shared `flock` every open store holds,
//! the syncing of in-place entries under `Durability::PowerLoss`, and `Error::BeyondMapping`.
//! (The fallback of `load()` to the shared lock after `OPTIMISTIC_TRIES` lost races is pinned by a
//! unit test in `src/object.rs`, which needs a test-only hook inside the read.)

use std::fs::{File, TryLockError};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use shmstore::{Durability, Error, SharedLayout, Store};

/// The environment variable that turns this test binary into the `flock` probe.
const PROBE_VAR: &str = "SHMSTORE_TEST_FLOCK_PROBE";

/// The probe, run as a separate process by [`exclusive_flock_in_another_process`]: tries to take
/// the exclusive `flock` of the file named in [`PROBE_VAR`] without waiting, as a tool that wants to
/// shrink or replace a store file must, and prints `@@locked` or `@@busy`.
#[test]
#[ignore = "entry point for the child process of `an_open_store_holds_a_shared_flock`"]
fn flock_probe() {
    let Some(path) = std::env::var_os(PROBE_VAR) else { return };
    let file = File::open(path).expect("the probe opens the store file");
    match file.try_lock() {
        Ok(()) => println!("\n@@locked"),
        Err(TryLockError::WouldBlock) => println!("\n@@busy"),
        Err(TryLockError::Error(e)) => panic!("flock failed: {e}"),
    }
}

/// Whether another process can take the exclusive `flock` of `path` right now.
fn exclusive_flock_in_another_process(path: &Path) -> bool {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["flock_probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(PROBE_VAR, path)
        .output()
        .expect("run the probe process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the probe failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    match (stdout.contains("@@locked"), stdout.contains("@@busy")) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("the probe answered neither: {stdout}"),
    }
}

/// Every open store, and every handle that outlives it, holds a shared `flock` on the file, so
/// that a tool that must take the exclusive one before shrinking or replacing the file cannot pull
/// pages out from under a live mapping (which would be `SIGBUS`).
#[test]
fn an_open_store_holds_a_shared_flock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.shm");
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let counter = store.object_or_init("counter", || 0u64).unwrap();
    assert!(!exclusive_flock_in_another_process(&path), "refused while the store is open");
    drop(store);
    assert!(!exclusive_flock_in_another_process(&path), "refused while a handle keeps the store open");
    drop(counter);
    assert!(exclusive_flock_in_another_process(&path), "granted once the store and its handles are gone");

    let reader = Store::options().read_only(true).open(&path).unwrap();
    assert!(!exclusive_flock_in_another_process(&path), "a read-only store holds it too");
    reader.close().unwrap();
    assert!(exclusive_flock_in_another_process(&path), "granted after close()");
}

/// Bytes of the mappings of `path` in this process whose pages are dirty, i.e. changed in memory
/// and not yet written back to the file (`Shared_Dirty + Private_Dirty` of `/proc/self/smaps`).
/// `msync` writes pages back and marks them clean, so this is how the test sees a sync happen,
/// in the kernel rather than through a hook.
fn dirty_bytes(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let name = path.to_str().unwrap();
    let mut ours = false;
    let mut dirty_kib = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
            // A mapping's header line: `start-end perms offset dev inode [path]`.
            ours = fields.get(5) == Some(&name);
        } else if ours && matches!(fields.first(), Some(&"Shared_Dirty:" | &"Private_Dirty:")) {
            dirty_kib += fields[1].parse::<u64>().unwrap();
        }
    }
    dirty_kib * 1024
}

#[derive(SharedLayout)]
#[repr(C)]
struct Counters {
    hits: AtomicU64,
    bytes: [u64; 1023],
}

const PAGE: u64 = 4096;

/// Entries changed in place (arrays, and objects holding atomics) are synced after every change
/// under `Durability::PowerLoss`: their data pages are clean when the call returns. Only the
/// record's page, whose version word is bumped after the sync, may be dirty. The same changes
/// with `Durability::Process` leave the data pages dirty, which shows that the test can see them.
#[test]
fn power_loss_durability_syncs_in_place_entries() {
    // A disk file system, not tmpfs (whose pages are never written back, so never clean).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("durable.shm");
    let store = Store::open_or_create(&path, 4 << 20).unwrap();
    let samples = store.array_or_init::<u64>("samples", 16 * 1024, 0).unwrap(); // 128 KiB
    let counters = store.object_or_init("counters", || Counters { hits: AtomicU64::new(0), bytes: [0; 1023] }).unwrap();
    assert!(!counters.is_double_buffered());
    let data = vec![7u64; samples.len()];
    let size = data.len() as u64 * 8;

    // Each change, made first with `Process` and then with `PowerLoss`, from a clean mapping.
    type Change<'a> = Box<dyn Fn(Durability) + 'a>;
    let changes: Vec<(&str, u64, Change)> = vec![
        ("write_at", size, Box::new(|d| samples.clone().with_durability(d).write_at(0, &data).unwrap())),
        ("a write guard", size, Box::new(|d| samples.clone().with_durability(d).write().unwrap().fill(9))),
        (
            "update",
            size,
            Box::new(|d| samples.clone().with_durability(d).update(0, data.len(), |s| s.fill(3)).unwrap()),
        ),
        (
            "store of an object holding atomics",
            PAGE * 2,
            Box::new(|d| {
                let value = Counters { hits: AtomicU64::new(5), bytes: [1; 1023] };
                counters.clone().with_durability(d).store(value).unwrap()
            }),
        ),
        (
            "a write guard of an object holding atomics",
            PAGE * 2,
            Box::new(|d| counters.clone().with_durability(d).write().unwrap().bytes.fill(2)),
        ),
    ];
    for (what, data_bytes, change) in &changes {
        store.flush().unwrap();
        assert_eq!(dirty_bytes(&path), 0, "{what}: the mapping is clean after Store::flush");
        change(Durability::Process);
        let unsynced = dirty_bytes(&path);
        assert!(unsynced >= *data_bytes, "{what} with Process: only {unsynced} dirty bytes, expected {data_bytes}");

        store.flush().unwrap();
        change(Durability::PowerLoss);
        let synced = dirty_bytes(&path);
        assert!(synced <= PAGE, "{what} with PowerLoss left {synced} dirty bytes: more than the record's page");
    }
    assert_eq!(counters.read().unwrap().hits.load(Ordering::Relaxed), 5);
    assert!(samples.read().unwrap().iter().all(|&x| x == 3));
}

/// An entry that lies beyond this process's mapping is `Error::BeyondMapping`. It happens when
/// another process grew the store and the file is then not long enough to map the new size
/// (here: a tool cut it back to its old length, ignoring the `flock`), so this process keeps its
/// old mapping and must not touch the entry.
#[test]
fn an_entry_beyond_the_mapping_is_beyond_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grown.shm");
    let capacity = 1 << 20;
    let store = Store::open_or_create(&path, capacity).unwrap();
    let mapped = std::fs::metadata(&path).unwrap().len();
    store.object_or_init("small", || 1u64).unwrap();
    {
        // Another opener (its own mapping, as another process would have) grows the store.
        let grower = Store::open(&path).unwrap();
        let big = grower.array_or_init::<u64>("big", 2 * capacity as usize / 8, 5).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > mapped, "the store grew");
        assert_eq!(big.get(0).unwrap(), 5);
    }
    // The grower is gone; the file is cut back to the length this store mapped.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(mapped).unwrap();

    match store.array::<u64>("big") {
        Err(Error::BeyondMapping { name, mapped: m }) => assert_eq!((name.as_str(), m), ("big", mapped)),
        other => panic!("expected BeyondMapping, got {other:?}"),
    }
    let err = store.array::<u64>("big").unwrap_err().to_string();
    assert!(err.contains("reopen it with Store::open"), "{err}");
    // What lies inside the mapping still works.
    assert_eq!(store.object::<u64>("small").unwrap().load().unwrap(), 1);
}
