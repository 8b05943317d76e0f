//! `fork()` without `exec`: a child shares its parent's open file descriptions, and with them the
//! parent's locks, so a `Store` it inherits must refuse to lock (`Error::Forked`), and dropping
//! inherited guards and stores in the child must leave the parent's locks and files alone. A child
//! that opens the store again is excluded from its parent like any other process.
//!
//! Each test spawns this test binary again in a role (see `child_main`), a process that runs
//! nothing else, and that role forks with `libc::fork`. The forked grandchild does its part and
//! leaves with `_exit` and a status the role checks; the test itself checks, from its own process,
//! what a third process sees of the locks.

mod common;

use std::os::unix::fs::MetadataExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use common::{emit, temp_store, wait_eof, wait_for, ChildArgs, ChildProc};
use shmstore::{Error, LockMode, SharedLayout, Store, TEMP_DIR_VAR};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Counter {
    n: u64,
}

const CAPACITY: u64 = 1 << 20;

/// How many `update()`s the parent and the child each make in the counting test.
const UPDATES: u64 = 20_000;

/// A fresh store with `counter` holding `n`.
fn store_with_counter(path: &Path, n: u64) {
    let store = Store::open_or_create(path, CAPACITY).unwrap();
    store.object_or_init("counter", || Counter { n }).unwrap().store(Counter { n }).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Forking.

/// Forks. The child runs `child` and leaves with `_exit(status)` (99 if `child` panicked), without
/// returning, unwinding or running destructors; the parent gets the child's pid. `child` is dropped
/// unused in the parent, so it must not own anything whose drop matters: borrow instead.
fn fork(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: `fork` has no memory-safety preconditions of its own. The child runs only `child`
    // and then `_exit`s; the role processes that call this have no other thread doing work (the
    // harness's main thread only waits for the test), so no lock the child needs (the allocator's,
    // which glibc resets in the child anyway) can be held by a thread that does not exist there.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let status = panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: `_exit` ends the process at once; nothing of the parent's is touched.
        unsafe { libc::_exit(status) }
    }
    pid
}

/// Waits for the child `pid` and returns its exit status; panics if it did not exit normally.
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: `waitpid` writes the status into the live local `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::EINTR), "waitpid: {err}");
    }
    assert!(libc::WIFEXITED(status), "the forked child did not exit normally (wait status {status:#x})");
    libc::WEXITSTATUS(status)
}

/// Something the forked child tries through what it inherited.
type Check<'a> = Box<dyn FnOnce() -> shmstore::Result<()> + 'a>;

/// In the forked child: runs `checks` in order, each of which must fail with `Error::Forked` (with
/// the advice to reopen); returns 0 if all did, else `10 * (index + 1) + how` for the first that
/// did not (`how`: 1 granted, 2 `WouldBlock`, 3 another error, 4 a `Forked` without the advice).
/// Granted guards are leaked, not dropped: dropping one could release the parent's lock.
fn all_forked(checks: Vec<(&'static str, Check<'_>)>) -> i32 {
    for (i, (_, check)) in checks.into_iter().enumerate() {
        let how = match check() {
            Err(e @ Error::Forked { .. }) if e.to_string().contains("open the store again in the child") => continue,
            Err(Error::Forked { .. }) => 4,
            Ok(()) => 1,
            Err(Error::WouldBlock { .. }) => 2,
            Err(_) => 3,
        };
        return 10 * (i as i32 + 1) + how;
    }
    0
}

/// The names of the checks, to decode a status of [`all_forked`].
fn explain(status: i32, names: &[&str]) -> String {
    if status == 99 {
        return "the forked child panicked".to_owned();
    }
    let name = names.get((status / 10) as usize - 1).copied().unwrap_or("?");
    let how = match status % 10 {
        1 => "was granted",
        2 => "failed with WouldBlock",
        3 => "failed with another error",
        _ => "failed with Forked, but without the advice",
    };
    format!("in the forked child, `{name}` {how} instead of failing with Error::Forked")
}

// ---------------------------------------------------------------------------------------------
// The roles.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "inherited_locks" => role_inherited_locks(&args),
        "drop_inherited_guard" => role_drop_inherited_guard(&args),
        "count_with_child" => role_count_with_child(&args),
        "drop_inherited_temp" => role_drop_inherited_temp(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Holds `counter`'s write guard (with an uncommitted draft of 100) and forks; the child tries
/// everything that locks or looks up through the inherited store, which must all fail with
/// `Forked`, and a lock-free `load()`, which must work and see the committed value. The parent's
/// guard is intact afterwards.
fn role_inherited_locks(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let mut guard = counter.write().unwrap();
    guard.n = 100;
    // Non-blocking requests first: against the old code they return at once (with `WouldBlock`, the
    // state the child copied from its parent, or granted: the child shares the parent's kernel
    // lock), so the child ends instead of hanging in the blocking ones.
    let checks: Vec<(&'static str, Check<'_>)> = vec![
        ("try_write", Box::new(|| counter.try_write().map(std::mem::forget))),
        ("try_read", Box::new(|| counter.try_read().map(std::mem::forget))),
        ("array try_write", Box::new(|| samples.try_write().map(std::mem::forget))),
        ("read_timeout", Box::new(|| counter.read_timeout(std::time::Duration::ZERO).map(std::mem::forget))),
        ("write", Box::new(|| counter.write().map(std::mem::forget))),
        ("read", Box::new(|| counter.read().map(std::mem::forget))),
        ("update", Box::new(|| counter.update(|c| c.n += 1))),
        ("store", Box::new(|| counter.store(Counter { n: 1 }))),
        ("array read", Box::new(|| samples.read().map(std::mem::forget))),
        ("array get", Box::new(|| samples.get(0).map(drop))),
        ("object lookup", Box::new(|| store.object::<Counter>("counter").map(drop))),
        ("object creation", Box::new(|| store.object_or_init("new", || 1u64).map(drop))),
        ("read_raw", Box::new(|| store.read_raw("counter", 0, 1).map(drop))),
        ("migrate", Box::new(|| store.migrate("counter", |c: Counter| c.n).map(drop))),
    ];
    let names: Vec<&str> = checks.iter().map(|(name, _)| *name).collect();
    // The closure owns `checks`; in this process it is dropped without running them.
    let counter_ref = &counter;
    let pid = fork(move || {
        let status = all_forked(checks);
        if status != 0 {
            return status;
        }
        // Lock-free reads need no lock: they see the last commit, not the parent's draft.
        match counter_ref.load() {
            Ok(Counter { n: 7 }) => 0,
            _ => 5,
        }
    });
    let status = wait(pid);
    assert_ne!(status, 5, "in the forked child, load() of the inherited handle did not return the committed 7");
    assert_eq!(status, 0, "{}", explain(status, &names));
    // The parent's guard was untouched by all that: it commits, and the store works as before.
    assert_eq!(guard.n, 100);
    guard.commit().unwrap();
    assert_eq!(counter.load().unwrap().n, 100);
    drop(counter.try_write().unwrap());
    assert!(store.object_or_init("new", || 1u64).is_ok());
    emit("done");
}

/// `arg` is `write` or `read`: takes that guard on `counter` (a write guard drafts 55), forks, and
/// the child drops its copy of the guard and exits. Then the parent reports `held`, keeps its guard
/// until the test sends `checked` (having seen, from its own process, that the lock is still
/// held), and releases it.
fn role_drop_inherited_guard(args: &ChildArgs) {
    let (guard, mode) = args.arg.split_once(':').unwrap();
    let mode = if mode == "ofd" { LockMode::Ofd } else { LockMode::Robust };
    let store = Store::options().lock_mode(mode).open(&args.path).unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let mut read = None;
    let mut read_array = None;
    let mut write = None;
    match guard {
        "read" => read = Some(counter.read().unwrap()),
        "read-array" => read_array = Some(samples.read().unwrap()),
        "write" => {
            let mut guard = counter.write().unwrap();
            guard.n = 55;
            write = Some(guard);
        }
        other => panic!("unknown guard {other}"),
    }
    let pid = fork(|| {
        drop(read.take());
        drop(read_array.take());
        drop(write.take());
        0
    });
    assert_eq!(wait(pid), 0, "the forked child failed to drop its copies");
    emit("held");
    wait_for("checked");
    if let Some(guard) = write {
        assert_eq!(guard.n, 55, "the parent's draft is intact");
        guard.commit().unwrap();
    }
    drop(read);
    drop(read_array);
    emit("released");
    wait_eof();
}

/// Forks; the child finds the inherited handle refusing to update, opens the store again and makes
/// [`UPDATES`] updates, while the parent makes as many through its own handle. Reports the count
/// the parent sees after the child exited.
fn role_count_with_child(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    let pid = fork(|| {
        match counter.update(|c| c.n += 1) {
            Err(Error::Forked { .. }) => {}
            Ok(()) => return 10,
            Err(_) => return 11,
        }
        let Ok(again) = Store::open(&args.path) else { return 12 };
        let Ok(mine) = again.object::<Counter>("counter") else { return 13 };
        for _ in 0..UPDATES {
            if mine.update(|c| c.n += 1).is_err() {
                return 14;
            }
        }
        0
    });
    for _ in 0..UPDATES {
        counter.update(|c| c.n += 1).unwrap();
    }
    let status = wait(pid);
    assert_eq!(status, 0, "the forked child failed (10: the inherited handle updated; 11-14: see the role)");
    emit(format!("count {}", counter.load().unwrap().n));
}

/// `path`'s directory is the temporary-store directory and `arg` the store's name. Creates the
/// temporary store with `value` = 7 and forks; the child drops its copy of the store and of the
/// handle and exits. Then the parent reports `ready` and keeps the store until the test sends
/// `checked`, closes it and reports `closed`.
fn role_drop_inherited_temp(args: &ChildArgs) {
    // This process runs this role only, and nothing else reads the environment meanwhile.
    std::env::set_var(TEMP_DIR_VAR, args.path.parent().unwrap());
    let mut store = Some(Store::create_temp(&args.arg, CAPACITY).unwrap());
    let mut value = Some(store.as_ref().unwrap().object_or_init("value", || 7u64).unwrap());
    let file = store.as_ref().unwrap().path().to_owned();
    // The child drops its copies of the only references to the store, as a closing process would.
    let pid = fork(|| {
        drop(value.take());
        drop(store.take());
        0
    });
    assert_eq!(wait(pid), 0, "the forked child failed to drop its copies");
    let (store, value) = (store.unwrap(), value.unwrap());
    assert!(file.exists(), "the forked child removed the temporary store");
    assert_eq!(value.load().unwrap(), 7);
    value.store(8).unwrap();
    emit("ready");
    wait_for("checked");
    drop((value, store));
    emit("closed");
    wait_eof();
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Before the fix, the child's `try_write` was granted while the parent held the write guard.
#[test]
fn a_forked_child_cannot_lock_through_an_inherited_store() {
    let (_dir, path) = temp_store();
    store_with_counter(&path, 7);
    Store::open(&path).unwrap().array_or_init::<u64>("samples", 8, 0).unwrap();
    let mut role = ChildProc::spawn("inherited_locks", &path, "");
    role.expect("done");
    role.finish();
    // Nothing the child did reached the file.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap().n, 100);
    assert_eq!(store.array::<u64>("samples").unwrap().get(0).unwrap(), 0);
}

/// A guard the parent holds at the `fork`, dropped by the child, stays held: a third process (this
/// test's) is still refused. Before the fix the child's drop released the parent's lock (and a
/// write guard's drop even committed the parent's draft). In both lock modes; in robust mode a
/// read guard on the (double-buffered) counter holds no lock, so the read guard is the array's.
fn a_guard_dropped_by_the_forked_child_stays_held(guard: &str, mode: LockMode) {
    let (_dir, path) = temp_store();
    store_with_counter(&path, 7);
    Store::open(&path).unwrap().array_or_init::<u64>("samples", 8, 0).unwrap();
    let mode_arg = if mode == LockMode::Ofd { "ofd" } else { "robust" };
    let mut role = ChildProc::spawn("drop_inherited_guard", &path, &format!("{guard}:{mode_arg}"));
    role.expect("held");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.lock_mode(), mode);
    let counter = store.object::<Counter>("counter").unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let refused = if guard == "read-array" { samples.try_write().map(drop) } else { counter.try_write().map(drop) };
    match refused {
        Err(Error::WouldBlock { .. }) => {}
        Ok(_) => panic!("the child's drop of its copy of the {guard} guard released the parent's lock"),
        Err(e) => panic!("try_write: {e}"),
    }
    if guard == "write" {
        match mode {
            LockMode::Ofd => {
                assert!(matches!(counter.try_read(), Err(Error::WouldBlock { .. })), "the write lock is held")
            }
            // A read guard is a copy of the last commit, not of the parent's draft.
            _ => assert_eq!(counter.try_read().unwrap().n, 7),
        }
        assert_eq!(counter.load().unwrap().n, 7, "the child's drop committed the parent's draft");
    }
    role.send("checked");
    role.expect("released");
    let expected = if guard == "write" { 55 } else { 7 };
    assert_eq!(counter.load().unwrap().n, expected);
    counter.try_write().expect("free once the parent released it").n += 1;
    assert_eq!(counter.load().unwrap().n, expected + 1);
    role.finish();
}

#[test]
fn a_write_guard_dropped_by_the_forked_child_stays_held() {
    a_guard_dropped_by_the_forked_child_stays_held("write", LockMode::Robust);
    a_guard_dropped_by_the_forked_child_stays_held("write", LockMode::Ofd);
}

#[test]
fn a_read_guard_dropped_by_the_forked_child_stays_held() {
    a_guard_dropped_by_the_forked_child_stays_held("read-array", LockMode::Robust);
    a_guard_dropped_by_the_forked_child_stays_held("read-array", LockMode::Ofd);
    a_guard_dropped_by_the_forked_child_stays_held("read", LockMode::Ofd);
}

/// A child that opens the store again is excluded from its parent: 2 × 20,000 updates make 40,000.
/// Before the fix the inherited handle was used, and shared the parent's lock.
#[test]
fn a_forked_child_that_opens_the_store_again_is_excluded_from_its_parent() {
    let (_dir, path) = temp_store();
    store_with_counter(&path, 0);
    let mut role = ChildProc::spawn("count_with_child", &path, "");
    assert_eq!(role.expect("count"), (2 * UPDATES).to_string());
    role.finish();
    assert_eq!(Store::open(&path).unwrap().object::<Counter>("counter").unwrap().load().unwrap().n, 2 * UPDATES);
}

/// A temporary store inherited by a forked child and dropped there is neither removed nor
/// unlocked: its parent still holds it (shared), another process opens it and sees its data, and
/// the parent's own close removes it as usual. Before the fix the child's drop took the shared
/// description's `flock` exclusively and removed the store under its parent.
#[test]
fn a_temporary_store_dropped_by_a_forked_child_stays() {
    let dir = tempfile::tempdir().unwrap();
    let name = "forked";
    let file = dir.path().join(format!("shmstore.{name}"));
    let mut role = ChildProc::spawn("drop_inherited_temp", &dir.path().join("unused"), name);
    role.expect("ready");
    assert!(file.exists());
    {
        let probe = std::fs::File::open(&file).unwrap();
        assert!(
            matches!(probe.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "the parent no longer holds the store's flock"
        );
        probe.try_lock_shared().expect("the store's flock is shared, not exclusive");
        // The same file, with the value the parent wrote after the child left.
        let store = Store::open(&file).unwrap();
        assert_eq!(store.object::<u64>("value").unwrap().load().unwrap(), 8);
        assert_eq!(std::fs::metadata(store.path()).unwrap().ino(), probe.metadata().unwrap().ino());
    }
    role.send("checked");
    role.expect("closed");
    assert!(!file.exists(), "the parent, the last holder, removes the store when it closes it");
    role.finish();
}
