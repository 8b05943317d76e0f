//! `shmstore::compact`: the file shrinks to what its entries need and every entry keeps its value;
//! it is refused while another process has the store open and keeps openers out while it runs;
//! and a SIGKILL at any instant of it leaves a store that opens and holds every entry.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{child_args, emit, wait_eof, ChildProc, Rng};
use shmstore::{Error, FixedStr, SharedLayout, Store};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 1)]
struct SettingsV1 {
    level: u32,
    name: FixedStr<12>,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 2)]
struct SettingsV2 {
    level: u64,
    name: FixedStr<16>,
}

/// Elements of the sparse array: 32 MiB of `u64`, of which only the first and last pages are
/// ever written.
const SPARSE_LEN: usize = 4 << 20;

fn settings() -> SettingsV2 {
    SettingsV2 { level: 7, name: FixedStr::new("compacted").unwrap() }
}

fn series(i: usize) -> f64 {
    i as f64 * 0.5 - 3.0
}

/// A 64 MiB store holding an object written many times, a migrated entry, a resized array, a
/// sparse one (holes in the middle), a renamed byte region, and the space of a removed array.
fn make_store(path: &Path) {
    let store = Store::open_or_create(path, 64 << 20).unwrap();
    let counter = store.object_or_init("counter", || 0u64).unwrap();
    for _ in 0..100 {
        counter.update(|c| *c += 1).unwrap();
    }
    store.object_or_init("settings", || SettingsV1 { level: 7, name: FixedStr::new("compacted").unwrap() }).unwrap();
    store
        .migrate("settings", |old: SettingsV1| SettingsV2 {
            level: old.level.into(),
            name: FixedStr::new(old.name.as_str()).unwrap(),
        })
        .unwrap();
    // Written at 20,000 elements, then cut to 10,000: the old data goes to the free list.
    let mut dense = store.array_or_init("series", 20_000, 0.0f64).unwrap();
    dense.write_at(0, &(0..20_000).map(series).collect::<Vec<_>>()).unwrap();
    dense.resize(10_000, 0.0).unwrap();
    let sparse = store.array_or_init("sparse", SPARSE_LEN, 0u64).unwrap();
    sparse.write_at(0, &[11; 512]).unwrap();
    sparse.write_at(SPARSE_LEN - 512, &[22; 512]).unwrap();
    store.bytes_or_init("draft", 3000).unwrap().write_at(100, b"payload").unwrap();
    store.rename("draft", "blob").unwrap();
    // 8 MiB written and removed: free space, and a tombstone in the index.
    store.array_or_init("doomed", 1 << 20, 7u64).unwrap();
    store.remove("doomed").unwrap();
    store.close().unwrap();
}

/// Every entry of `make_store`, through the typed API; the store may hold others too.
fn check_store(path: &Path) {
    check_store_with(path, 10_000);
}

/// [`check_store`], with `series` resized to `series_len` elements since (the first 10,000 keep
/// their values).
fn check_store_with(path: &Path, series_len: usize) {
    let store = Store::open(path).unwrap();
    let names: Vec<String> = store.entries().unwrap().into_iter().map(|e| e.name).collect();
    for name in ["blob", "counter", "series", "settings", "sparse"] {
        assert!(names.iter().any(|n| n == name), "`{name}` is missing: {names:?}");
    }
    assert_eq!(store.object::<u64>("counter").unwrap().load().unwrap(), 100);
    assert_eq!(store.object::<SettingsV2>("settings").unwrap().load().unwrap(), settings());
    assert!(matches!(store.object::<SettingsV1>("settings"), Err(Error::LayoutMismatch { .. })));
    let series_entry = store.array::<f64>("series").unwrap();
    assert_eq!(series_entry.len(), series_len);
    let mut got = vec![0.0; 10_000];
    series_entry.read_at(0, &mut got).unwrap();
    assert!(got.iter().enumerate().all(|(i, &v)| v == series(i)), "series differs");
    let sparse = store.array::<u64>("sparse").unwrap();
    assert_eq!(sparse.len(), SPARSE_LEN);
    let mut edge = vec![0u64; 1024];
    sparse.read_at(0, &mut edge).unwrap();
    assert!(edge[..512].iter().all(|&v| v == 11) && edge[512..].iter().all(|&v| v == 0));
    sparse.read_at(SPARSE_LEN - 1024, &mut edge).unwrap();
    assert!(edge[..512].iter().all(|&v| v == 0) && edge[512..].iter().all(|&v| v == 22));
    let mut middle = vec![1u64; 1024];
    sparse.read_at(SPARSE_LEN / 2, &mut middle).unwrap();
    assert!(middle.iter().all(|&v| v == 0));
    for gone in ["doomed", "draft"] {
        assert!(matches!(store.bytes(gone), Err(Error::NotFound { .. })), "{gone}");
    }
    let mut blob = vec![1u8; 3000];
    store.bytes("blob").unwrap().read_at(0, &mut blob).unwrap();
    assert_eq!(&blob[100..107], b"payload");
    assert!(blob[..100].iter().chain(&blob[107..]).all(|&b| b == 0));
}

fn new_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.shm");
    make_store(&path);
    (dir, path)
}

/// The names in `dir` other than the store's.
fn others(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "c.shm")
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
fn compact_shrinks_the_file_keeps_every_entry_and_keeps_holes() {
    let _serial = serial();
    let (dir, path) = new_store();
    let before = std::fs::metadata(&path).unwrap();
    let report = shmstore::compact(&path).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert!(report.rewritten);
    assert_eq!(report.entries, 5);
    assert_eq!(Store::open(&path).unwrap().entries().unwrap().len(), 5);
    assert_eq!((report.len_before, report.len_after), (before.len(), after.len()));
    // The sparse array needs 32 MiB of the 64: the file shrinks by the rest.
    let sparse_bytes = (SPARSE_LEN * 8) as u64;
    assert!(after.len() < sparse_bytes + (1 << 20), "{} bytes after compaction", after.len());
    assert!(after.len() < before.len() - (16 << 20), "{} -> {}", before.len(), after.len());
    // The holes of the sparse array stay holes: far less than its 32 MiB is on disk.
    assert!(after.blocks() * 512 < 4 << 20, "{} bytes on disk", after.blocks() * 512);
    assert_eq!(report.disk_after, after.blocks() * 512);
    // The index table counts its used slots (a live word at byte 24 of its header), by which the
    // runtime decides when to grow it.
    let bytes = std::fs::read(&path).unwrap();
    let root = common::read_u64_ne(&bytes, common::INDEX_ROOT_OFFSET as usize) as usize;
    assert_eq!(common::read_u64_ne(&bytes, root + 24), 5, "the index's used count");
    assert_eq!(others(dir.path()), Vec::<String>::new());
    check_store(&path);

    // The compacted store grows again as it is used.
    let store = Store::open(&path).unwrap();
    store.array_or_init("more", 1 << 20, 1u8).unwrap();
    store.close().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > after.len());
    check_store(&path);
}

#[test]
fn compact_is_refused_while_another_process_has_the_store_open() {
    let _serial = serial();
    let (_dir, path) = new_store();
    let mut holder = ChildProc::spawn("hold", &path, "");
    holder.expect("holding");
    // Read once the holder has opened it (its open resets the header's open state).
    let pristine = std::fs::read(&path).unwrap();
    let err = shmstore::compact(&path).unwrap_err();
    match &err {
        Error::InUse { action: "compact", holders, .. } => {
            assert!(holders.iter().any(|(pid, _)| *pid == holder.id()), "{err}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(err.to_string().contains(&format!("process {}", holder.id())), "{err}");
    assert!(std::fs::read(&path).unwrap() == pristine, "a refused compaction must not touch the file");
    holder.finish();
    shmstore::compact(&path).unwrap();
    check_store(&path);
}

#[test]
fn openers_are_kept_out_while_compact_runs() {
    let _serial = serial();
    let (_dir, path) = new_store();
    // At the first durability call of the compaction (the new file's fsync), try to open the
    // store: the compaction holds it exclusively.
    // The hook sees the syncs of every store of this process: it acts on this test's only.
    let tried = std::sync::Arc::new(AtomicBool::new(false));
    let seen = tried.clone();
    let target = path.clone();
    let dir = path.parent().unwrap().canonicalize().unwrap();
    shmstore::__private::set_sync_hook(Some(Box::new(move |event| {
        if event.path.starts_with(&dir) && !seen.swap(true, Ordering::SeqCst) {
            let err = Store::open(&target).unwrap_err();
            assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        }
    })));
    let result = shmstore::compact(&path);
    shmstore::__private::set_sync_hook(None);
    result.unwrap();
    assert!(tried.load(Ordering::SeqCst));
    check_store(&path);
}

/// A compacted store reuses the space of what is removed from it afterwards, like any other:
/// the image lays each entry's schema right after its data, as the allocator does, so that a
/// removal gives back one extent.
#[test]
fn space_removed_after_compaction_is_reused() {
    let _serial = serial();
    let (_dir, path) = new_store();
    shmstore::compact(&path).unwrap();
    let store = Store::open(&path).unwrap();
    let used = store.used();
    store.remove("series").unwrap();
    store.remove("counter").unwrap();
    store.array_or_init("series-2", 10_000, 1.0f64).unwrap();
    store.object_or_init("counter-2", || 5u64).unwrap();
    assert_eq!(store.used(), used, "the removed entries' space was not reused");
}

/// A resize cut off after its commit point (the old block `moved`, the new one still a shadow
/// pointing back at it) is the entry for lookups, and so for compaction too.
#[test]
fn compact_keeps_a_replacement_cut_off_after_its_commit_point() {
    let _serial = serial();
    let (_dir, path) = new_store();
    let store = Store::open(&path).unwrap();
    let old_at = store.entry_info("series").unwrap().record_offset;
    let mut growing = store.array::<f64>("series").unwrap();
    growing.resize(12_000, -1.0).unwrap();
    let new_at = store.entry_info("series").unwrap().record_offset;
    drop((growing, store));
    // Undo the last step of the resize: the new block is a shadow again, pointing back.
    common::poke(&path, new_at, &2u32.to_ne_bytes());
    common::poke(&path, new_at + 32, &old_at.to_ne_bytes());

    shmstore::compact(&path).unwrap();
    let store = Store::open(&path).unwrap();
    let resized = store.array::<f64>("series").unwrap();
    assert_eq!(resized.len(), 12_000);
    let mut tail = vec![0.0; 2];
    resized.read_at(9_999, &mut tail).unwrap();
    assert_eq!(tail, [series(9_999), -1.0]);
    drop((resized, store));
    check_store_with(&path, 12_000);
}

/// A rename cut off before the old name's index slot was tombstoned: that slot still leads (via
/// `moved_to`) to the renamed entry, which lookups of the old name refuse by its name. Compaction
/// keeps the entry once, under its new name.
#[test]
fn compact_keeps_a_rename_cut_off_before_its_old_slot_was_cleared() {
    let _serial = serial();
    let (_dir, path) = new_store();
    let store = Store::open(&path).unwrap();
    store.object_or_init("draft", || 41u32).unwrap();
    let old_at = store.entry_info("draft").unwrap().record_offset;
    store.rename("draft", "final").unwrap();
    drop(store);
    // Put the old block back into the tombstoned slot of `draft`.
    let bytes = std::fs::read(&path).unwrap();
    let root = common::read_u64_ne(&bytes, common::INDEX_ROOT_OFFSET as usize);
    let slots = common::read_u64_le(&bytes, root as usize + 8);
    let hash = shmstore::format::checksum::hash64("draft");
    let slot = (0..slots)
        .map(|i| root + 64 + 16 * ((hash + i) & (slots - 1)))
        .find(|&at| common::read_u64_ne(&bytes, at as usize + 8) == hash)
        .expect("the slot of `draft`");
    assert_eq!(common::read_u64_ne(&bytes, slot as usize), 1, "a tombstone");
    common::poke(&path, slot, &old_at.to_ne_bytes());
    let store = Store::open(&path).unwrap();
    assert!(matches!(store.object::<u32>("draft"), Err(Error::NotFound { .. })));
    assert_eq!(store.object::<u32>("final").unwrap().load().unwrap(), 41);
    drop(store);

    let report = shmstore::compact(&path).unwrap();
    assert_eq!(report.entries, 6);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<u32>("final").unwrap().load().unwrap(), 41);
    assert!(matches!(store.object::<u32>("draft"), Err(Error::NotFound { .. })));
    assert_eq!(store.entries().unwrap().len(), 6);
    drop(store);
    check_store(&path);
}

/// Randomly damaged copies of the golden stores (both formats): a rewrite either refuses the file
/// with an error and leaves it as it was, or writes a store that opens; it never panics.
#[test]
fn damaged_stores_are_refused_or_rewritten_into_stores_that_open() {
    let _serial = serial();
    let rounds: u64 = std::env::var("SHMSTORE_OFFLINE_FUZZ").map_or(150, |v| v.parse().unwrap());
    let mut rng = Rng::new(0x0064_616d_6167_6564);
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = std::collections::HashMap::new();
    for golden in ["v1.shm", "v2.shm"] {
        let pristine = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden)).unwrap();
        // Where the structures lie: the header, the catalog or index and blocks, the schemas.
        let span = pristine.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
        for round in 0..rounds {
            let mut bytes = pristine.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % span) as usize;
                if rng.next_u64().is_multiple_of(2) {
                    bytes[at] ^= 1 << (rng.next_u64() % 8);
                } else {
                    let at = at & !7;
                    let word = match rng.next_u64() % 4 {
                        0 => 0,
                        1 => u64::MAX,
                        2 => rng.next_u64() % (2 * pristine.len() as u64),
                        _ => rng.next_u64(),
                    };
                    let end = (at + 8).min(bytes.len());
                    bytes[at..end].copy_from_slice(&word.to_ne_bytes()[..end - at]);
                }
            }
            let path = dir.path().join(format!("{golden}.{round}"));
            std::fs::write(&path, &bytes).unwrap();
            let outcome = match shmstore::compact(&path) {
                Err(e) => {
                    assert!(std::fs::read(&path).unwrap() == bytes, "{golden} round {round}: {e} changed the file");
                    // The source reader refuses what the runtime would refuse, before the new
                    // store's own check has to.
                    assert!(!e.to_string().contains("this is a bug"), "{golden} round {round}: {e}");
                    format!("refused: {}", error_kind(&e))
                }
                Ok(_) => {
                    let store = Store::open(&path).unwrap_or_else(|e| panic!("{golden} round {round}: {e}"));
                    let _ = store.entries();
                    "rewritten".to_owned()
                }
            };
            *outcomes.entry(outcome).or_insert(0) += 1;
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temporary files left behind");
    eprintln!("{outcomes:?}");
    assert!(outcomes.contains_key("rewritten") && outcomes.len() > 2, "{outcomes:?}");
}

/// The variant name of an error, for tallies.
fn error_kind(e: &Error) -> String {
    format!("{e:?}").split([' ', '{', '(']).next().unwrap_or("").to_owned()
}

/// An opener that found the old file while compaction held it, and waits for it with a lock
/// timeout, ends up on the new file: once it gets the old file's lock it sees that the path names
/// another file, and opens that.
#[test]
fn an_opener_waiting_during_compact_opens_the_new_file() {
    let _serial = serial();
    let (_dir, path) = new_store();
    let real = path.canonicalize().unwrap();
    let dir = real.parent().unwrap().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let opener_path = path.clone();
    let started = std::sync::Arc::new(AtomicBool::new(false));
    let hook_started = started.clone();
    shmstore::__private::set_sync_hook(Some(Box::new(move |event| {
        // At the first sync of the new file, before the rename: start an opener and wait until
        // it has the old file open (a second descriptor of it in this process).
        if !event.path.starts_with(&dir) || hook_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (target, tx) = (opener_path.clone(), tx.clone());
        let finished = std::sync::Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        std::thread::spawn(move || {
            let store = Store::options().lock_timeout(Duration::from_secs(60)).open(&target);
            done.store(true, Ordering::SeqCst);
            tx.send(store.map(|s| (s.check().is_ok(), s.entries().map(|e| e.len())))).unwrap();
        });
        let open_descriptors = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
                .filter(|target| *target == real)
                .count()
        };
        // (An opener that gave up at once must not hang the test: it is checked below.)
        while open_descriptors() < 2 && !finished.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    })));
    let result = shmstore::compact(&path);
    shmstore::__private::set_sync_hook(None);
    let ino = std::fs::metadata(&path).unwrap().ino();
    result.unwrap();
    assert!(started.load(Ordering::SeqCst));
    let (linked, entries) = rx.recv().unwrap().unwrap();
    assert!(linked, "the opener kept the old, replaced file");
    assert_eq!(entries.unwrap(), 5);
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    check_store(&path);
}

/// Kills the compacting child at random instants; after each kill the store opens and holds
/// every entry, and leftovers of the killed run are cleaned by the next one.
#[test]
fn killing_compact_at_random_instants_leaves_a_whole_store() {
    let _serial = serial();
    let rounds: u64 = std::env::var("SHMSTORE_COMPACT_KILLS").map_or(30, |v| v.parse().unwrap());
    let mut rng = Rng::new(0x0063_6f6d_7061_6374);
    let (dir, path) = new_store();
    let mut completed = 0;
    for round in 0..rounds {
        let mut child = ChildProc::spawn("compact_loop", &path, "");
        child.expect("ready");
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 20_000));
        child.kill();
        while let Some(msg) = child.poll() {
            completed += usize::from(msg.starts_with("compacted"));
        }
        check_store(&path);
        // Whatever the killed run left is a temporary file of a dead process.
        for name in others(dir.path()) {
            assert!(name.starts_with(".c.shm.") && name.ends_with(".upgrading"), "round {round}: {name}");
        }
    }
    shmstore::compact(&path).unwrap();
    assert_eq!(others(dir.path()), Vec::<String>::new());
    check_store(&path);
    eprintln!("{rounds} kills, {completed} compactions completed in between");
}

/// Kills the compacting child at each durability call (before and after the new file's fsync
/// and the directory's fsync, the rename lying between them).
#[test]
fn killing_compact_at_every_durability_point_leaves_a_whole_store() {
    let _serial = serial();
    let (dir, path) = new_store();
    let mut points = 0;
    loop {
        let ino = std::fs::metadata(&path).unwrap().ino();
        let mut child = ChildProc::spawn("compact_die_at", &path, &points.to_string());
        child.expect("ready");
        let last = child.expect("");
        child.kill();
        check_store(&path);
        if last == "survived" {
            assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino);
            break;
        }
        assert_eq!(last, "dying", "point {points}");
        points += 1;
    }
    assert!(points >= 4, "only {points} durability points");
    shmstore::compact(&path).unwrap();
    assert_eq!(others(dir.path()), Vec::<String>::new());
    check_store(&path);
}

#[test]
#[ignore = "a child process role, run by the tests above"]
fn child_main() {
    let Some(args) = child_args() else { return };
    match args.role.as_str() {
        "hold" => {
            let _store = Store::open(&args.path).unwrap();
            emit("holding");
            wait_eof();
        }
        "compact_loop" => {
            emit("ready");
            loop {
                let report = shmstore::compact(&args.path).unwrap();
                emit(format!("compacted {}", report.len_after));
            }
        }
        "compact_die_at" => {
            let point: usize = args.arg.parse().unwrap();
            let seen = AtomicUsize::new(0);
            shmstore::__private::set_sync_hook(Some(Box::new(move |_event| {
                if seen.fetch_add(1, Ordering::SeqCst) == point {
                    emit("dying");
                    // SAFETY: `kill` of this process with SIGKILL: nothing runs after it.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            })));
            emit("ready");
            shmstore::compact(&args.path).unwrap();
            emit("survived");
            wait_eof();
        }
        other => panic!("unknown role {other}"),
    }
}
