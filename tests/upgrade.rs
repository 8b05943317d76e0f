//! `shmstore::upgrade`: the golden version-1 store (a copy of `tests/golden/v1.shm`, never the
//! original) converted to version 2 reads back value for value through the typed API, and a
//! SIGKILL at any instant of an upgrade leaves the version-1 store or the version-2 one, whole.

mod common;

#[path = "common/golden_types.rs"]
mod golden_types;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{child_args, emit, wait_eof, ChildProc, Rng};
use golden_types::*;
use shmstore::{Error, Store};

fn samples() -> Vec<f64> {
    (0..100).map(|i| f64::from(i) * 0.25).collect()
}

fn blob() -> Vec<u8> {
    (0..=255u8).cycle().take(1000).collect()
}

/// A copy of the golden version-1 store in a new temporary directory.
fn golden_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.shm");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.shm"), &path).unwrap();
    (dir, path)
}

/// The format version of the file at `path`.
fn format_version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"SHMSTORE", "{} is not a store", path.display());
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

/// Every value of the golden store, through the typed API of `store` (read-only or not).
fn check_golden(store: &Store) {
    let mut names: Vec<String> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["blob", "config", "counters", "limits", "points", "samples"]);

    let cfg = store.object::<Config>("config").unwrap();
    assert_eq!(cfg.load().unwrap(), v1_config());
    assert_eq!(cfg.read().unwrap().name, "edge-1");

    let raw = store.read_raw("counters", 0, 1).unwrap();
    assert_eq!(u64::from_ne_bytes(raw[..8].try_into().unwrap()), 17);
    assert_eq!(u64::from_ne_bytes(raw[8..16].try_into().unwrap()), 4);

    let mut got = vec![0.0f64; 100];
    store.array::<f64>("samples").unwrap().read_at(0, &mut got).unwrap();
    assert_eq!(got, samples());

    let points = store.array::<Point>("points").unwrap();
    assert_eq!(&*points.read().unwrap(), &[Point { x: 0, y: 0 }, Point { x: 1, y: 2 }, Point { x: 3, y: 4 }]);

    let mut bytes = vec![0u8; 1000];
    store.bytes("blob").unwrap().read_at(0, &mut bytes).unwrap();
    assert_eq!(bytes, blob());

    let limits = store.object::<LimitsV2>("limits").unwrap();
    assert_eq!(limits.load().unwrap(), LimitsV2 { max_conn: 100, timeout_ms: 250 });
    assert!(matches!(store.object::<LimitsV1>("limits"), Err(Error::LayoutMismatch { .. })));
}

/// Checks the store at `path` after a possibly interrupted upgrade: it is the version-1 store
/// (opened read-only) or the version-2 one (opened read-write), and holds every golden value.
/// Returns its format version.
fn check_either(path: &Path) -> u32 {
    let version = format_version(path);
    match version {
        1 => check_golden(&Store::options().read_only(true).open(path).unwrap()),
        2 => check_golden(&Store::open(path).unwrap()),
        other => panic!("format version {other}"),
    }
    version
}

/// The names in `dir` other than `keep`.
fn others(dir: &Path, keep: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep)
        .collect();
    names.sort();
    names
}

/// Runs this file's tests one at a time. A store's locks belong to its open file description,
/// and a child process that another test thread is starting holds copies of every descriptor
/// until it `exec`s: a store this process has just closed can then still look open to a rewrite
/// (which correctly says [`shmstore::Error::InUse`]). Serialising the tests keeps that window out
/// of the assertions.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_upgraded_golden_store_reads_back_through_the_typed_api_and_takes_writes() {
    let _serial = serial();
    let (dir, path) = golden_copy();
    let report = shmstore::upgrade(&path).unwrap();
    assert_eq!((report.from_version, report.rewritten, report.entries, report.dropped_records), (1, true, 6, 1));
    assert_eq!(format_version(&path), 2);
    assert_eq!(others(dir.path(), "v1.shm"), Vec::<String>::new());

    let store = Store::open(&path).unwrap();
    check_golden(&store);
    // Read-write now: the atomics, commits and new entries work.
    let counters = store.object::<Counters>("counters").unwrap();
    assert_eq!(counters.read().unwrap().hits.fetch_add(1, Ordering::SeqCst), 17);
    let cfg = store.object::<Config>("config").unwrap();
    cfg.update(|c| c.port = 9090).unwrap();
    store.object_or_init("fresh", || 5u32).unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Config>("config").unwrap().load().unwrap().port, 9090);
    assert_eq!(store.object::<u32>("fresh").unwrap().load().unwrap(), 5);
    assert_eq!(store.read_raw("counters", 0, 1).unwrap()[..8], 18u64.to_ne_bytes());
}

/// Kills the upgrading child at a random instant, `rounds` times, each on a fresh copy; the
/// store must be one of the two, whole, every time, and the next upgrade must finish the job.
#[test]
fn killing_upgrade_at_random_instants_leaves_the_old_or_the_new_store_whole() {
    let _serial = serial();
    let rounds: u64 = std::env::var("SHMSTORE_UPGRADE_KILLS").map_or(40, |v| v.parse().unwrap());
    let mut rng = Rng::new(0x0075_7067_7261_6465);
    let mut seen = [0u32; 3];
    for round in 0..rounds {
        let (dir, path) = golden_copy();
        let mut child = ChildProc::spawn("upgrade", &path, "");
        child.expect("ready");
        // Chooses the instant of the kill; nothing depends on where the child is by then.
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 3000));
        child.kill();
        let version = check_either(&path);
        seen[version as usize] += 1;
        // The next upgrade removes what the killed one left, and finishes.
        let report = shmstore::upgrade(&path).unwrap();
        assert_eq!(report.rewritten, version == 1, "round {round}");
        assert_eq!(others(dir.path(), "v1.shm"), Vec::<String>::new(), "round {round}");
        check_either(&path);
    }
    eprintln!("kills left format 1 {} times and format 2 {} times", seen[1], seen[2]);
}

/// Kills the upgrading child right before and right after each of the calls that make the new
/// store durable and put it in place (`fsync` of the new file, rename, `fsync` of the directory),
/// through the library's sync hook.
#[test]
fn killing_upgrade_at_every_durability_point_leaves_the_old_or_the_new_store_whole() {
    let _serial = serial();
    let mut versions = Vec::new();
    for point in 0.. {
        let (dir, path) = golden_copy();
        let mut child = ChildProc::spawn("upgrade_die_at", &path, &point.to_string());
        child.expect("ready");
        let last = child.expect("");
        child.kill();
        if last == "survived" {
            // Past the last durability point: the upgrade finished.
            assert_eq!(check_either(&path), 2);
            break;
        }
        assert_eq!(last, "dying", "point {point}");
        versions.push(check_either(&path));
        shmstore::upgrade(&path).unwrap();
        assert_eq!(others(dir.path(), "v1.shm"), Vec::<String>::new());
        assert_eq!(check_either(&path), 2);
    }
    // Before the rename the old store is in place, after it the new one.
    assert!(versions.len() >= 4, "{versions:?}");
    assert!(versions.is_sorted() && versions.first() == Some(&1) && versions.last() == Some(&2), "{versions:?}");
}

#[test]
#[ignore = "a child process role, run by the tests above"]
fn child_main() {
    let Some(args) = child_args() else { return };
    match args.role.as_str() {
        "upgrade" => {
            emit("ready");
            shmstore::upgrade(&args.path).unwrap();
            emit("upgraded");
            wait_eof();
        }
        "upgrade_die_at" => {
            let point: usize = args.arg.parse().unwrap();
            let seen = std::sync::atomic::AtomicUsize::new(0);
            shmstore::__private::set_sync_hook(Some(Box::new(move |_event| {
                if seen.fetch_add(1, Ordering::SeqCst) == point {
                    emit("dying");
                    // SAFETY: `kill` of this process with SIGKILL: nothing runs after it.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            })));
            emit("ready");
            shmstore::upgrade(&args.path).unwrap();
            emit("survived");
            wait_eof();
        }
        other => panic!("unknown role {other}"),
    }
}
