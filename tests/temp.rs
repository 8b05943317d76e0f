//! Temporary named stores (`Store::create_temp`, `open_temp`, `open_or_create_temp`, `clean_temp`):
//! sharing by name between real processes, removal when the last process closes or dies, the
//! close-versus-open race, and the checks on names and on the files found at a store's path.
//!
//! Every test keeps its stores in a directory of its own (`SHMSTORE_TEMP_DIR`) under a name of its
//! own. The variable is process-wide, so this process sets it only around library calls, under a
//! mutex (see `in_dir`); children set it once at start from the directory they are given.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{emit, wait_eof, wait_for, ChildArgs, ChildProc};
use shmstore::{Error, FixedStr, SharedLayout, Store, MAX_TEMP_NAME_LEN, TEMP_DIR_VAR};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Message {
    text: FixedStr<64>,
    counter: u64,
}

fn message(text: &str, counter: u64) -> Message {
    Message { text: FixedStr::new(text).unwrap(), counter }
}

const CAPACITY: u64 = 1 << 20;

/// Serialises the changes to `SHMSTORE_TEMP_DIR` in this process.
static ENV: Mutex<()> = Mutex::new(());

/// Runs `f` (which opens, creates or cleans temporary stores) with `SHMSTORE_TEMP_DIR` set to
/// `dir`. Only opening reads the variable: a store remembers its path, so dropping one later,
/// outside `in_dir`, is fine.
fn in_dir<R>(dir: &Path, f: impl FnOnce() -> R) -> R {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var(TEMP_DIR_VAR, dir);
    let result = f();
    std::env::remove_var(TEMP_DIR_VAR);
    result
}

/// A name no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Where the temporary store `name` lives in `dir`.
fn region(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("shmstore.{name}"))
}

/// A fresh temporary-store directory.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Spawns a child in `role` whose temporary-store directory is `dir`.
fn spawn(role: &str, dir: &Path, arg: &str) -> ChildProc {
    ChildProc::spawn(role, dir, arg)
}

/// The mappings of `path` in this process, from `/proc/self/maps`: `(inode, deleted)` for each.
fn mappings_of(path: &Path) -> Vec<(u64, bool)> {
    let path = fs::canonicalize(path).expect("canonical path");
    let path = path.to_str().expect("UTF-8 path");
    let deleted = format!("{path} (deleted)");
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|line| {
            // `address perms offset dev inode   pathname`, the pathname padded with spaces.
            let mut fields = line.splitn(6, ' ');
            let inode: u64 = fields.nth(4)?.parse().ok()?;
            let name = fields.next()?.trim_start();
            (name == path || name == deleted).then_some((inode, name == deleted))
        })
        .collect()
}

/// Asserts that every mapping of the store `path` in this process is of the file `path` names now.
fn assert_mapped_file_is_linked(path: &Path) {
    let linked = fs::symlink_metadata(path).expect("the store's path exists after opening it").ino();
    let maps = mappings_of(path);
    assert!(
        !maps.is_empty(),
        "no mapping of {} in:\n{}",
        path.display(),
        fs::read_to_string("/proc/self/maps").unwrap()
    );
    for (inode, deleted) in maps {
        assert!(
            !deleted && inode == linked,
            "attached to a removed store: mapping of inode {inode} (deleted: {deleted}), path names inode {linked}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    // The directory comes in as the "path": the whole child uses it.
    std::env::set_var(TEMP_DIR_VAR, &args.path);
    match args.role.as_str() {
        "round_trip" => role_round_trip(&args),
        "hold" => role_hold(&args),
        "create_and_wait" => role_create_and_wait(&args),
        "cycle" => role_cycle(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Opens the store `arg` by name, reports the message the parent left, answers, and stays until
/// stdin closes.
fn role_round_trip(args: &ChildArgs) {
    let store = Store::open_temp(&args.arg).unwrap();
    let got = store.object::<Message>("to_child").unwrap().load().unwrap();
    emit(format!("got {} {}", got.counter, got.text));
    store.object_or_init("to_parent", Message::default).unwrap().store(message("hello parent", 77)).unwrap();
    emit("wrote");
    wait_eof();
}

/// Opens the store `arg` by name, reports `ready`, closes it on `close` and reports `closed`, then
/// waits for stdin to close.
fn role_hold(args: &ChildArgs) {
    let store = Store::open_temp(&args.arg).unwrap();
    let hits = store.object::<u64>("hits").unwrap();
    hits.update(|h| *h += 1).unwrap();
    emit("ready");
    wait_for("close");
    drop((store, hits));
    emit("closed");
    wait_eof();
}

/// Opens or creates the store `arg`, writes to it, reports `ready` and waits to be killed.
fn role_create_and_wait(args: &ChildArgs) {
    let store = Store::open_or_create_temp(&args.arg, CAPACITY).unwrap();
    store.object_or_init("hits", || 0u64).unwrap().update(|h| *h += 1).unwrap();
    emit("ready");
    wait_eof();
}

/// `arg` is `NAME:ID:MILLIS:MODE`. After `go`, for MILLIS milliseconds (and at least 20 rounds):
/// open the store (MODE `create`: open_or_create_temp; `open`: open_temp, skipping rounds where it
/// is missing), check that this process maps the file the name refers to, write a token through
/// it and check that a fresh opener sees it, then close both. Reports `done ROUNDS REMOVED`.
fn role_cycle(args: &ChildArgs) {
    let parts: Vec<&str> = args.arg.split(':').collect();
    let (name, id, millis, mode) = (parts[0], parts[1], parts[2].parse::<u64>().unwrap(), parts[3]);
    let entry = format!("token{id}");
    emit("waiting");
    wait_for("go");
    let start = Instant::now();
    let (mut rounds, mut removed) = (0u64, 0u64);
    let mut rng = common::Rng::new(u64::from(std::process::id()));
    let enough = |rounds| rounds >= 20 || start.elapsed() > Duration::from_secs(30);
    while !enough(rounds) || start.elapsed() < Duration::from_millis(millis) {
        let store = match mode {
            "create" => Store::open_or_create_temp(name, CAPACITY).unwrap(),
            _ => match Store::open_temp(name) {
                Ok(store) => store,
                Err(Error::TempNotFound { .. }) => continue,
                Err(e) => panic!("open_temp: {e}"),
            },
        };
        rounds += 1;
        let path = store.path().to_owned();
        assert_mapped_file_is_linked(&path);
        let token = (std::process::id() as u64) << 32 | rounds;
        let cell = store.object_or_init(&entry, || 0u64).unwrap();
        cell.store(token).unwrap();
        let fresh = Store::open_temp(name).expect("a fresh opener finds the store this process holds");
        assert_eq!(fresh.info().created_unix_nanos, store.info().created_unix_nanos, "a different store");
        assert_eq!(fresh.object::<u64>(&entry).unwrap().load().unwrap(), token);
        assert_mapped_file_is_linked(&path);
        drop((fresh, cell, store));
        if !path.exists() {
            removed += 1;
        }
        // Gaps with nobody holding the store make last closes (and so removals) frequent.
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 200));
    }
    emit(format!("done {rounds} {removed}"));
    wait_eof();
}

// ---------------------------------------------------------------------------------------------
// Sharing by name.

#[test]
fn a_store_created_in_one_process_is_opened_by_name_in_another() {
    let dir = temp_dir();
    let name = unique("round-trip");
    let store = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap();
    assert_eq!(store.path(), region(dir.path(), &name));
    assert_eq!(store.capacity(), CAPACITY);
    store.object_or_init("to_child", Message::default).unwrap().store(message("Hello World", 41)).unwrap();

    let mut child = spawn("round_trip", dir.path(), &name);
    assert_eq!(child.expect("got"), "41 Hello World");
    child.expect("wrote");
    assert_eq!(store.object::<Message>("to_parent").unwrap().load().unwrap(), message("hello parent", 77));
    child.finish();

    // The child has closed it; this process is the last one.
    assert!(region(dir.path(), &name).exists());
    drop(store);
    assert!(!region(dir.path(), &name).exists(), "the last close removes the store");
    assert_eq!(common::dir_listing(dir.path()), Vec::<std::ffi::OsString>::new());
}

#[test]
fn the_store_is_removed_when_the_last_of_several_processes_closes_it() {
    let dir = temp_dir();
    let name = unique("last-close");
    let path = region(dir.path(), &name);
    let store = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap();
    let hits = store.object_or_init("hits", || 0u64).unwrap();
    let mut children: Vec<ChildProc> = (0..3).map(|_| spawn("hold", dir.path(), &name)).collect();
    for child in &mut children {
        child.expect("ready");
    }
    assert_eq!(hits.load().unwrap(), 3);

    // The creator leaves first: the children keep it.
    drop(store);
    assert!(path.exists(), "removed while a handle still holds it");
    drop(hits);
    assert!(path.exists(), "removed while other processes hold it");

    let last = children.len() - 1;
    for (i, mut child) in children.into_iter().enumerate() {
        child.send("close");
        child.expect("closed");
        if i < last {
            assert!(path.exists(), "removed while {} processes still hold it", last - i);
            let again = in_dir(dir.path(), || Store::open_temp(&name)).unwrap();
            assert_eq!(again.object::<u64>("hits").unwrap().load().unwrap(), 3);
        } else {
            assert!(!path.exists(), "the last process to close it did not remove it");
        }
        child.finish();
    }
    let err = in_dir(dir.path(), || Store::open_temp(&name)).unwrap_err();
    assert!(matches!(err, Error::TempNotFound { .. }), "{err}");
}

#[test]
fn handles_keep_the_store_alive_after_the_store_value_is_dropped() {
    let dir = temp_dir();
    let name = unique("handles");
    let path = region(dir.path(), &name);
    let store = in_dir(dir.path(), || Store::open_or_create_temp(&name, CAPACITY)).unwrap();
    let clone = store.clone();
    let cell = store.object_or_init("n", || 5u32).unwrap();
    drop(store);
    drop(clone);
    assert!(path.exists());
    assert_eq!(cell.load().unwrap(), 5);
    drop(cell);
    assert!(!path.exists());
}

#[test]
fn open_temp_of_a_missing_name_says_there_is_no_shared_memory() {
    let dir = temp_dir();
    let name = unique("missing");
    let err = in_dir(dir.path(), || Store::open_temp(&name)).unwrap_err();
    match &err {
        Error::TempNotFound { name: n } => assert_eq!(n, &name),
        other => panic!("expected TempNotFound, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("no shared memory"), "{text}");
    assert!(text.contains(&name) && text.contains("Store::create_temp"), "{text}");
    assert_eq!(common::dir_listing(dir.path()).len(), 0, "open_temp created something");
}

#[test]
fn open_options_apply_to_temporary_stores() {
    let dir = temp_dir();
    let name = unique("options");
    let opts = || {
        let mut o = Store::options();
        o.create(true).capacity(CAPACITY).max_entries(300).max_capacity(2 * CAPACITY);
        o
    };
    let store = in_dir(dir.path(), || opts().open_temp(&name)).unwrap();
    assert_eq!(store.max_entries(), 300, "max_entries applies when the store is created");
    assert_eq!(store.capacity(), CAPACITY);
    // max_capacity applies to this opener: the store may grow, but only that far.
    assert!(matches!(store.array_or_init::<u8>("big", (4 * CAPACITY) as usize, 0), Err(Error::StoreFull { .. })));
    store.array_or_init::<u8>("fits", CAPACITY as usize, 0).unwrap();
    assert!(store.capacity() > CAPACITY && store.capacity() <= 2 * CAPACITY);

    // Without create(true) it only opens; a missing name is "no shared memory".
    let opened = in_dir(dir.path(), || Store::options().open_temp(&name)).unwrap();
    assert_eq!(opened.max_entries(), 300);
    let err = in_dir(dir.path(), || Store::options().open_temp(&unique("absent"))).unwrap_err();
    assert!(matches!(err, Error::TempNotFound { .. }), "{err}");
    // Creating needs a capacity, and temporary stores are always read-write.
    let err = in_dir(dir.path(), || Store::options().create(true).open_temp(&unique("nocap"))).unwrap_err();
    assert!(matches!(err, Error::CapacityRequired { .. }), "{err}");
    let err = in_dir(dir.path(), || Store::options().read_only(true).open_temp(&name)).unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    drop((store, opened));
    assert_eq!(common::dir_listing(dir.path()).len(), 0, "the last close removed it");
}

#[test]
fn capacity_rules_follow_file_stores() {
    let dir = temp_dir();
    let name = unique("capacity");
    let store = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap();
    // open_temp and open_or_create_temp open an existing store at its own size.
    let opened = in_dir(dir.path(), || Store::open_temp(&name)).unwrap();
    assert_eq!(opened.capacity(), CAPACITY);
    let other = in_dir(dir.path(), || Store::open_or_create_temp(&name, 1 << 16)).unwrap();
    assert_eq!(other.capacity(), CAPACITY);
    // A capacity below what the header and first index table need (.NET's common 4096) is rounded up.
    let tiny = in_dir(dir.path(), || Store::create_temp(&unique("tiny"), 4096)).unwrap();
    assert_eq!(tiny.capacity(), 8192);
    tiny.object_or_init("n", || 7u64).unwrap();
    drop((store, opened, other, tiny));
    assert_eq!(common::dir_listing(dir.path()).len(), 0);
}

#[test]
fn create_temp_refuses_a_store_in_use_and_replaces_a_leftover() {
    let dir = temp_dir();
    let name = unique("exists");
    let store = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap();
    store.object_or_init("kept", || 1u8).unwrap();
    let err = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap_err();
    assert!(matches!(err, Error::TempExists { .. }), "{err}");
    assert!(err.to_string().contains("Store::open_temp"), "{err}");
    // The failed create did not disturb it.
    assert_eq!(store.object::<u8>("kept").unwrap().load().unwrap(), 1);

    // A process that created a store and was killed leaves a leftover; create_temp replaces it.
    let leftover = unique("leftover");
    let mut child = spawn("create_and_wait", dir.path(), &leftover);
    child.expect("ready");
    child.kill();
    assert!(region(dir.path(), &leftover).exists());
    let fresh = in_dir(dir.path(), || Store::create_temp(&leftover, CAPACITY)).unwrap();
    assert!(fresh.entries().unwrap().is_empty(), "the leftover's entries survived");
}

// ---------------------------------------------------------------------------------------------
// Processes that die.

#[test]
fn a_store_whose_last_holder_was_killed_is_missing_for_open_temp() {
    let dir = temp_dir();
    let name = unique("killed-open");
    let path = region(dir.path(), &name);
    // Two holders, both killed: the kernel drops their locks, but nobody removes the file.
    let mut creator = spawn("create_and_wait", dir.path(), &name);
    creator.expect("ready");
    let mut second = spawn("create_and_wait", dir.path(), &name);
    second.expect("ready");
    creator.kill();
    assert!(path.exists());
    // One holder left: the store is still there for openers.
    let store = in_dir(dir.path(), || Store::open_temp(&name)).unwrap();
    assert_eq!(store.object::<u64>("hits").unwrap().load().unwrap(), 2);
    drop(store);
    assert!(path.exists(), "removed while the second child holds it");
    second.kill();
    assert!(path.exists(), "a SIGKILLed process cannot remove anything");

    let err = in_dir(dir.path(), || Store::open_temp(&name)).unwrap_err();
    assert!(matches!(err, Error::TempNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no shared memory"), "{err}");
    assert!(!path.exists(), "open_temp did not remove the leftover");
    assert_eq!(common::dir_listing(dir.path()).len(), 0);
}

#[test]
fn a_store_whose_last_holder_was_killed_is_recreated_fresh() {
    let dir = temp_dir();
    let name = unique("killed-recreate");
    let path = region(dir.path(), &name);
    let mut child = spawn("create_and_wait", dir.path(), &name);
    child.expect("ready");
    let old = in_dir(dir.path(), || Store::open_temp(&name)).unwrap();
    let old_created = old.info().created_unix_nanos;
    drop(old);
    child.kill();
    assert!(path.exists());

    let store = in_dir(dir.path(), || Store::open_or_create_temp(&name, CAPACITY)).unwrap();
    assert!(store.entries().unwrap().is_empty(), "opened the dead processes' store");
    assert_ne!(store.info().created_unix_nanos, old_created);
    assert_mapped_file_is_linked(&path);
    drop(store);
    assert!(!path.exists());
}

#[test]
fn clean_temp_removes_leftovers_and_nothing_else() {
    let dir = temp_dir();
    let (dead_a, dead_b, live) = (unique("dead-a"), unique("dead-b"), unique("live"));
    let mut children: Vec<ChildProc> =
        [&dead_a, &dead_b].iter().map(|name| spawn("create_and_wait", dir.path(), name)).collect();
    for child in &mut children {
        child.expect("ready");
        child.kill();
    }
    let store = in_dir(dir.path(), || Store::create_temp(&live, CAPACITY)).unwrap();
    // Files that are not temporary stores of this user are not touched.
    fs::write(dir.path().join("unrelated.txt"), b"keep me").unwrap();
    fs::write(dir.path().join("shmstore."), b"not a valid name").unwrap();

    let mut expected = vec![dead_a.clone(), dead_b.clone()];
    expected.sort();
    assert_eq!(in_dir(dir.path(), Store::clean_temp).unwrap(), expected);
    assert!(!region(dir.path(), &dead_a).exists());
    assert!(!region(dir.path(), &dead_b).exists());
    assert!(region(dir.path(), &live).exists(), "clean_temp removed a store in use");
    assert!(dir.path().join("unrelated.txt").exists());
    assert!(dir.path().join("shmstore.").exists());
    assert_eq!(in_dir(dir.path(), Store::clean_temp).unwrap(), Vec::<String>::new());
    drop(store);
    assert!(!region(dir.path(), &live).exists());
}

// ---------------------------------------------------------------------------------------------
// The close-versus-open race.

/// Processes open and close the same store as fast as they can, so that closes (which remove the
/// store when they are the last) keep racing with opens. No opener ever ends up attached to a
/// removed store: each one checks its own mappings against the path, and that a fresh opener sees
/// what it wrote.
#[test]
fn openers_racing_with_the_last_close_never_attach_to_a_removed_store() {
    let dir = temp_dir();
    let name = unique("race");
    let modes = ["create", "create", "open"];
    let mut children: Vec<ChildProc> = modes
        .iter()
        .enumerate()
        .map(|(id, mode)| spawn("cycle", dir.path(), &format!("{name}:{id}:1500:{mode}")))
        .collect();
    for child in &mut children {
        child.expect("waiting");
    }
    for child in &mut children {
        child.send("go");
    }
    let (mut removed, mut rounds) = (0, 0);
    for child in &mut children {
        let done = child.expect("done");
        let counts: Vec<u64> = done.split(' ').map(|n| n.parse().unwrap()).collect();
        rounds += counts[0];
        removed += counts[1];
    }
    for child in children {
        child.finish();
    }
    eprintln!("{removed} removals in {rounds} rounds");
    assert!(rounds >= 60, "{rounds} rounds");
    assert!(removed > 0, "no close ever removed the store: the race was not exercised");
    // The last close removed it, and no creation left anything behind.
    assert_eq!(common::dir_listing(dir.path()), Vec::<std::ffi::OsString>::new());
}

/// The same race between threads of one process (each open has its own file descriptor, and so its
/// own locks, like a separate process). Opens are serialised by `in_dir`; closes are not, so they
/// race with the opens.
#[test]
fn threads_racing_with_the_last_close_never_attach_to_a_removed_store() {
    let dir = temp_dir();
    let dir_path = Arc::new(dir.path().to_owned());
    let name = Arc::new(unique("thread-race"));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (dir, name, stop) = (dir_path.clone(), name.clone(), stop.clone());
            std::thread::spawn(move || {
                let entry = format!("token{t}");
                let mut rounds = 0u64;
                while rounds < 20 || !stop.load(Ordering::Relaxed) {
                    rounds += 1;
                    let store = in_dir(&dir, || Store::open_or_create_temp(&name, CAPACITY)).unwrap();
                    let token = t << 32 | rounds;
                    let cell = store.object_or_init(&entry, || 0u64).unwrap();
                    cell.store(token).unwrap();
                    let fresh = in_dir(&dir, || Store::open_temp(&name)).expect("a fresh opener finds it");
                    assert_eq!(fresh.info().created_unix_nanos, store.info().created_unix_nanos);
                    assert_eq!(fresh.object::<u64>(&entry).unwrap().load().unwrap(), token);
                    drop((fresh, cell, store));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(common::dir_listing(dir.path()), Vec::<std::ffi::OsString>::new());
}

// ---------------------------------------------------------------------------------------------
// Names and files.

#[test]
fn invalid_names_are_refused_with_the_reason() {
    let dir = temp_dir();
    let long = "n".repeat(MAX_TEMP_NAME_LEN + 1);
    let cases: [(&str, &str); 7] = [
        ("a/b", "`/`"),
        ("..", "reserved"),
        (".", "reserved"),
        ("", "empty"),
        ("a\0b", "NUL"),
        ("tab\there", "control character"),
        (&long, "bytes long"),
    ];
    for (name, phrase) in cases {
        for result in [
            in_dir(dir.path(), || Store::create_temp(name, CAPACITY)),
            in_dir(dir.path(), || Store::open_temp(name)),
            in_dir(dir.path(), || Store::open_or_create_temp(name, CAPACITY)),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::InvalidTempName { .. }), "{name:?}: {err}");
            let text = err.to_string();
            assert!(text.contains(phrase), "{name:?}: {text}");
            assert!(text.contains(": "), "the message says what to do: {text}");
        }
    }
    assert_eq!(common::dir_listing(dir.path()).len(), 0);
    // The longest allowed name works.
    let longest = "n".repeat(MAX_TEMP_NAME_LEN);
    let store = in_dir(dir.path(), || Store::create_temp(&longest, CAPACITY)).unwrap();
    assert!(region(dir.path(), &longest).exists());
    drop(store);
}

#[test]
fn a_symlink_at_the_store_path_is_refused() {
    let dir = temp_dir();
    let name = unique("symlink");
    let target = dir.path().join("target");
    std::os::unix::fs::symlink(&target, region(dir.path(), &name)).unwrap();
    for result in [
        in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)),
        in_dir(dir.path(), || Store::open_temp(&name)),
        in_dir(dir.path(), || Store::open_or_create_temp(&name, CAPACITY)),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::UnsafeTempRegion { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    assert!(!target.exists(), "the symlink was followed");

    // Also when it points at an existing store file.
    let real = dir.path().join("real.shm");
    drop(Store::open_or_create(&real, CAPACITY).unwrap());
    let other = unique("symlink-to-store");
    std::os::unix::fs::symlink(&real, region(dir.path(), &other)).unwrap();
    let err = in_dir(dir.path(), || Store::open_temp(&other)).unwrap_err();
    assert!(matches!(err, Error::UnsafeTempRegion { .. }), "{err}");
    // clean_temp does not follow it either.
    assert_eq!(in_dir(dir.path(), Store::clean_temp).unwrap(), Vec::<String>::new());
    assert!(real.exists());
}

#[test]
fn only_regular_files_of_this_user_are_opened() {
    let dir = temp_dir();
    let as_dir = unique("dir");
    fs::create_dir(region(dir.path(), &as_dir)).unwrap();
    let err = in_dir(dir.path(), || Store::open_or_create_temp(&as_dir, CAPACITY)).unwrap_err();
    assert!(matches!(err, Error::UnsafeTempRegion { .. }), "{err}");

    let fifo = unique("fifo");
    let c_path = std::ffi::CString::new(region(dir.path(), &fifo).into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = in_dir(dir.path(), || Store::open_temp(&fifo)).unwrap_err();
    assert!(matches!(err, Error::UnsafeTempRegion { .. }), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");

    // Another user's store (only root can make one here).
    let foreign = unique("foreign");
    let path = region(dir.path(), &foreign);
    drop(Store::open_or_create(&path, CAPACITY).unwrap());
    if std::os::unix::fs::chown(&path, Some(65534), Some(65534)).is_ok() {
        for result in [
            in_dir(dir.path(), || Store::open_temp(&foreign)),
            in_dir(dir.path(), || Store::open_or_create_temp(&foreign, CAPACITY)),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::UnsafeTempRegion { .. }), "{err}");
            assert!(err.to_string().contains("belongs to user 65534"), "{err}");
        }
        assert_eq!(in_dir(dir.path(), Store::clean_temp).unwrap(), Vec::<String>::new());
        assert!(path.exists(), "another user's file was removed");
    }
}

#[test]
fn stores_are_created_with_mode_0600() {
    let dir = temp_dir();
    let name = unique("mode");
    let store = in_dir(dir.path(), || Store::create_temp(&name, CAPACITY)).unwrap();
    let mode = fs::metadata(store.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "mode {mode:o}");
    // No staging directory is left behind.
    assert_eq!(common::dir_listing(dir.path()), [std::ffi::OsString::from(format!("shmstore.{name}"))]);
}

#[test]
fn a_missing_temp_dir_is_reported() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dir");
    let err = in_dir(&missing, || Store::open_or_create_temp("x", CAPACITY)).unwrap_err();
    assert!(matches!(err, Error::TempDir { .. }), "{err}");
    assert!(err.to_string().contains("SHMSTORE_TEMP_DIR"), "{err}");
    assert!(!missing.exists());
}
