//! Robust lock mode across real processes: writers and readers killed holding locks, a file copied
//! while locked, openers refused for another lock ABI, PID namespace or mode, and the guards of
//! `interrupted()`. Every multi-process test spawns this test binary again as child processes (see
//! `child_main`) and talks to them over stdin/stdout.
//!
//! `SHMSTORE_SOAK_KILLS=N` sets how many SIGKILLs the array chaos test deals (default 100).

mod common;

use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::{emit, temp_store, wait_eof, wait_for, ChildArgs, ChildProc, Rng};
use shmstore::format::v2::header::{OpenState, OPEN_STATE_OFFSET, OPEN_STATE_SIZE, READER_SLOTS, READER_TABLE};
use shmstore::{Error, LockMode, SharedLayout, Store};

const CAPACITY: u64 = 4 << 20;
/// Elements of the test arrays.
const LEN: usize = 4096;
/// How long a lock may take to become free after its holder died: a hang detector, never a
/// synchronisation.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Counter {
    n: u64,
}

fn new_store(path: &Path, mode: LockMode) -> Store {
    let store = Store::options().create(true).capacity(CAPACITY).lock_mode(mode).open(path).unwrap();
    store.array_or_init::<u64>("samples", LEN, 0).unwrap();
    store.object_or_init("counter", || Counter { n: 1 }).unwrap();
    store
}

/// The value every element of `samples` holds after a whole write of generation `g`.
fn pattern(g: u64) -> Vec<u64> {
    vec![g; LEN]
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "half_write" => role_half_write(&args),
        "read_and_hang" => role_read_and_hang(&args),
        "hold_all" => role_hold_all(&args),
        "wait_change" => role_wait_change(&args),
        "array_writer" => role_array_writer(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Takes the array's write guard, writes generation 7 into its first half, reports `halfway` and
/// waits to be killed.
fn role_half_write(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let mut guard = samples.write().unwrap();
    guard[..LEN / 2].fill(7);
    emit("halfway");
    wait_eof();
    std::process::exit(3);
}

/// Takes a read guard on the array, reports `reading PID` and waits to be killed.
fn role_read_and_hang(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let guard = samples.read().unwrap();
    emit(format!("reading {}", guard[0]));
    wait_eof();
    std::process::exit(3);
}

/// Takes the write guards of the array and of the object, changes both, reports `holding` and
/// waits to be killed.
fn role_hold_all(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let samples = store.array::<u64>("samples").unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    let mut array = samples.write().unwrap();
    let mut object = counter.write().unwrap();
    array[0] = 99;
    object.n = 99;
    emit("holding");
    wait_eof();
    std::process::exit(3);
}

/// Reports `waiting VERSION`, sleeps until the counter changes, reports `changed N VERSION`.
fn role_wait_change(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let counter = store.object::<Counter>("counter").unwrap();
    let (_, seen) = counter.load_versioned().unwrap();
    emit(format!("waiting {}", seen.get()));
    let (value, version) = counter.wait_for_change(seen, Duration::from_secs(60)).unwrap();
    emit(format!("changed {} {}", value.n, version.get()));
    wait_for("bye");
}

/// Elements of the chaos test's array: 1 MiB, so that a whole write takes long enough for kills
/// to land inside it.
const BIG: usize = 1 << 17;

/// `arg` is a seed. Writes whole generations into the array `big` with `write_at`, write guards
/// (element by element) and `update`, as fast as it can, until it is killed.
fn role_array_writer(args: &ChildArgs) {
    common::exit_when_stdin_closes();
    let store = Store::open(&args.path).unwrap();
    let big = store.array::<u64>("big").unwrap();
    let mut rng = Rng::new(args.arg.parse().unwrap());
    let whole = |g| vec![g; BIG];
    emit("ready");
    loop {
        let g = rng.next_u64() % 1000 + 1;
        match rng.next_u64() % 3 {
            0 => big.write_at(0, &whole(g)).unwrap(),
            1 => {
                let mut guard = big.write().unwrap();
                for v in guard.iter_mut() {
                    *v = std::hint::black_box(g);
                }
            }
            _ => big.update(0, BIG, |s| s.fill(g)).unwrap(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writers and readers killed holding locks.

/// A writer killed halfway through a write guard on an array leaves half a write, no lock held,
/// and (in robust mode) the array marked interrupted, whoever locks it first: a writer, or a
/// reader clearing the dead writer's `writer` word. Cleared on request. In OFD mode the kernel
/// frees the lock silently and the flag stays clear.
#[test]
fn a_writer_killed_mid_write_is_recovered_and_marks_the_array_interrupted() {
    for (mode, first) in [(LockMode::Robust, "writer"), (LockMode::Robust, "reader"), (LockMode::Ofd, "writer")] {
        let (_dir, path) = temp_store();
        let store = new_store(&path, mode);
        let samples = store.array::<u64>("samples").unwrap();
        let mut child = ChildProc::spawn("half_write", &path, "");
        child.expect("halfway");
        assert!(matches!(samples.try_write(), Err(Error::WouldBlock { .. })), "{mode:?}: the child holds it");
        assert!(!samples.interrupted().unwrap());
        assert_eq!(child.kill().signal(), Some(libc::SIGKILL));

        let seen = match first {
            "writer" => samples.write_timeout(PATIENCE).expect("the dead writer's lock is free").to_vec(),
            _ => samples.read_timeout(PATIENCE).expect("the dead writer's flag is cleared").to_vec(),
        };
        let half: Vec<u64> = [vec![7; LEN / 2], vec![0; LEN / 2]].concat();
        assert_eq!(seen, half, "{mode:?}: what a reader sees after a writer died mid-write: the half it wrote");
        assert_eq!(samples.interrupted().unwrap(), mode == LockMode::Robust, "{mode:?} {first}");
        // Also seen by a fresh process (here: another store), and cleared by the application.
        let again = Store::open(&path).unwrap().array::<u64>("samples").unwrap();
        assert_eq!(again.interrupted().unwrap(), mode == LockMode::Robust);
        samples.write_at(0, &pattern(1)).unwrap();
        samples.clear_interrupted().unwrap();
        assert!(!again.interrupted().unwrap());
        assert_eq!(again.read().unwrap().to_vec(), pattern(1));
    }
}

/// A reader killed inside a read guard holds a writer off only until the writer finds its slot's
/// owner dead: its bit is cleared and the write goes through. The dead reader's slot stays out of
/// use (it may still be set in entries nobody has written since) until the next reset.
#[test]
fn a_reader_killed_inside_a_guard_is_reclaimed() {
    let (_dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    let samples = store.array::<u64>("samples").unwrap();
    let mut child = ChildProc::spawn("read_and_hang", &path, "");
    child.expect("reading");
    let pid = child.id();
    assert!(matches!(samples.try_write(), Err(Error::WouldBlock { .. })), "a live reader is waited for");
    assert!(matches!(samples.write_timeout(Duration::from_millis(30)), Err(Error::Timeout { .. })));
    assert_eq!(child.kill().signal(), Some(libc::SIGKILL));
    samples.write_timeout(PATIENCE).expect("the dead reader's bit is reclaimed")[0] = 5;
    assert!(!samples.interrupted().unwrap(), "a dead reader changed nothing");
    assert_eq!(samples.get(0).unwrap(), 5);
    let slots = reader_slots(&path);
    assert!(slots.iter().any(|&(p, taken)| p == pid && taken), "the dead reader's slot stays taken: {slots:?}");
    // Closing every store of the file and opening it again resets the table.
    drop((samples, store));
    let store = common::alone(&path, || Store::open(&path).unwrap());
    store.array::<u64>("samples").unwrap().read().unwrap();
    let slots = reader_slots(&path);
    assert!(slots.iter().all(|&(p, _)| p != pid), "the reset freed the dead reader's slot: {slots:?}");
}

/// `(pid, taken)` of every reader-table slot whose pid is set.
fn reader_slots(path: &Path) -> Vec<(u32, bool)> {
    let bytes = std::fs::read(path).unwrap();
    (0..READER_SLOTS as usize)
        .map(|i| READER_TABLE as usize + 16 * i)
        .map(|at| (common::read_u32_ne(&bytes, at), common::read_u32_ne(&bytes, at + 4) != 0))
        .filter(|&(pid, _)| pid != 0)
        .collect()
}

/// A file copied while a process held locks in it carries mutexes locked by a thread that no
/// kernel will ever report dead (and could one day be reused). Its first opener resets every lock,
/// so nothing hangs; the original recovers as usual, its dead writer's object draft never having
/// been committed.
#[test]
fn a_file_copied_while_locked_opens_without_hanging() {
    let (dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    let mut child = ChildProc::spawn("hold_all", &path, "");
    child.expect("holding");
    let copy = dir.path().join("copy.shm");
    std::fs::copy(&path, &copy).unwrap();
    assert_eq!(child.kill().signal(), Some(libc::SIGKILL));
    drop(store);

    let copied = Store::open(&copy).unwrap();
    assert_eq!(copied.lock_mode(), LockMode::Robust);
    let (samples, counter) = (copied.array::<u64>("samples").unwrap(), copied.object::<Counter>("counter").unwrap());
    let mut array = samples.try_write().expect("the copy's stale array lock was reset, not waited for");
    assert_eq!(array[0], 99, "the dead writer's in-place change is in the copy");
    array[0] = 1;
    drop(array);
    counter.try_write().expect("the copy's stale object lock was reset, not waited for").n += 1;
    assert_eq!(counter.load().unwrap().n, 2, "the dead writer's object draft was never committed");
    assert!(samples.try_read().is_ok());

    let original = Store::open(&path).unwrap();
    original.object::<Counter>("counter").unwrap().write_timeout(PATIENCE).unwrap().n = 3;
    assert_eq!(original.object::<Counter>("counter").unwrap().load().unwrap().n, 3);
}

// ---------------------------------------------------------------------------------------------
// Refused openers.

/// The store's open state, as its resetting opener wrote it.
fn open_state(path: &Path) -> OpenState {
    let bytes = std::fs::read(path).unwrap();
    OpenState::decode(&bytes[OPEN_STATE_OFFSET as usize..][..OPEN_STATE_SIZE]).unwrap()
}

/// Writes `state` as the store's open state, checksum included: what an opener of another libc,
/// or in another PID namespace, would have recorded.
fn write_open_state(path: &Path, state: &OpenState) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&state.encode(), OPEN_STATE_OFFSET).unwrap();
}

#[track_caller]
fn assert_mismatch(result: shmstore::Result<Store>, says: &str) {
    match result {
        Err(e @ Error::LockModeMismatch { .. }) => {
            let message = e.to_string();
            assert!(message.contains(says), "{message}");
            assert!(message.contains("lock_mode(LockMode::Ofd)"), "the error says what to do: {message}");
        }
        Err(e) => panic!("expected LockModeMismatch ({says}), got {e}"),
        Ok(_) => panic!("expected LockModeMismatch ({says}), but the store opened"),
    }
}

/// While the store is open in robust mode, openers whose mutexes would not interoperate are
/// refused before they touch a lock: another lock-ABI tag (a musl build against a glibc one),
/// another PID namespace (another container), or another mode asked for. A read-only opener,
/// which never writes a lock word, is let in; and once everyone has closed the store, the next
/// opener resets it and records its own tag.
#[test]
fn openers_that_cannot_share_the_mutexes_are_refused() {
    let (_dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    Store::open(&path).unwrap();

    assert_mismatch(Store::options().lock_mode(LockMode::Ofd).open(&path), "in robust lock mode");

    let original = open_state(&path);
    let tag = "x86_64-linux-musl/pthread_mutex_t=40/kind=0x84";
    let mut musl = original;
    musl.lock_abi = [0; 48];
    musl.lock_abi[..tag.len()].copy_from_slice(tag.as_bytes());
    write_open_state(&path, &musl);
    assert_mismatch(Store::open(&path), tag);
    assert!(Store::options().read_only(true).open(&path).is_ok(), "a read-only opener locks nothing");

    let container = OpenState { pidns_ino: original.pidns_ino ^ 0x5a5a, ..original };
    write_open_state(&path, &container);
    assert_mismatch(Store::options().lock_mode(LockMode::Robust).open(&path), "PID namespace");
    write_open_state(&path, &original);
    Store::open(&path).expect("the recorded tag and namespace are this process's again");

    // Nobody left: the next opener resets and records its own.
    write_open_state(&path, &musl);
    drop(store);
    let store = common::alone(&path, || Store::open(&path).unwrap());
    assert_eq!(store.lock_mode(), LockMode::Robust);
    assert_eq!(open_state(&path).lock_abi, original.lock_abi, "the reset recorded this build's tag");
    assert!(open_state(&path).lock_epoch > original.lock_epoch);
    Store::open(&path).unwrap();
    drop(store);
    // And the first opener may choose OFD mode, which the others then follow.
    let ofd = common::alone(&path, || Store::options().lock_mode(LockMode::Ofd).open(&path).unwrap());
    assert_eq!(Store::open(&path).unwrap().lock_mode(), LockMode::Ofd);
    assert_mismatch(Store::options().lock_mode(LockMode::Robust).open(&path), "in ofd lock mode");
    drop(ofd);
}

// ---------------------------------------------------------------------------------------------
// Change notification and read-only mappings.

/// `wait_for_change` wakes a waiter in another process from the same commit path in both modes.
#[test]
fn wait_for_change_wakes_another_process_in_both_modes() {
    for mode in [LockMode::Robust, LockMode::Ofd] {
        let (_dir, path) = temp_store();
        let store = new_store(&path, mode);
        let counter = store.object::<Counter>("counter").unwrap();
        let mut child = ChildProc::spawn("wait_change", &path, "");
        let seen: u64 = child.expect("waiting").parse().unwrap();
        // Only waits for the state the test exercises (the child asleep), never for correctness.
        common::wait_until_asleep_in_shared_futex(child.id(), &path, PATIENCE);
        counter.update(|c| c.n = 42).unwrap();
        assert_eq!(child.expect("changed"), format!("42 {}", seen + 1), "{mode:?}");
        child.send("bye");
        child.finish();
    }
}

/// A read-only mapping cannot write a mutex: in robust mode it reads arrays by optimistic copies,
/// and a writer holding the array makes it wait (here: time out), never see a half-done write.
#[test]
fn a_read_only_store_reads_without_locking_in_robust_mode() {
    let (_dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    let samples = store.array::<u64>("samples").unwrap();
    samples.write_at(0, &pattern(4)).unwrap();
    let reader = Store::options().read_only(true).open(&path).unwrap();
    assert_eq!(reader.lock_mode(), LockMode::Robust);
    let copy = reader.array::<u64>("samples").unwrap();
    assert_eq!(copy.read().unwrap().to_vec(), pattern(4));
    assert_eq!(copy.get(17).unwrap(), 4);
    assert_eq!(reader.read_raw("samples", 0, 2).unwrap(), [4u64.to_ne_bytes(), 4u64.to_ne_bytes()].concat());
    assert_eq!(reader.object::<Counter>("counter").unwrap().read().unwrap().n, 1);

    let mut guard = samples.write().unwrap();
    guard[..LEN / 2].fill(5);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(copy.try_read(), Err(Error::WouldBlock { .. })));
            assert!(matches!(copy.read_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
        });
    });
    drop(guard);
    let seen = copy.read().unwrap().to_vec();
    assert_eq!(seen, [vec![5; LEN / 2], vec![4; LEN / 2]].concat());
}

// ---------------------------------------------------------------------------------------------
// kill -9 chaos on an array.

/// A writer writes whole generations into an array while the test SIGKILLs it at a random instant
/// (inside a lock or unlock call, inside a write, or between writes), and restarts it once it has
/// looked. After every kill the array can be locked again (no stuck lock), and a torn array (a mix
/// of generations) is always marked interrupted: a reader never sees half a write without being
/// told. The test then repairs it and clears the flag. (One writer at a time, so that the test is
/// the first to lock the array after a kill and sees what the dead writer left.)
#[test]
fn kill_9_chaos_on_an_array_never_hides_a_torn_write() {
    let kills: u64 = std::env::var("SHMSTORE_SOAK_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(100);
    let (_dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    let samples = store.array_or_init::<u64>("big", BIG, 1).unwrap();
    let mut rng = Rng::new(0x5eed_0bad_c0de);
    let (mut torn, mut interrupted) = (0u64, 0u64);
    for k in 0..kills {
        let mut writer = ChildProc::spawn("array_writer", &path, &rng.next_u64().to_string());
        writer.expect("ready");
        // Random timing (this sleep only randomises when the kill lands).
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 3000));
        assert_eq!(writer.kill().signal(), Some(libc::SIGKILL), "the writer ended by itself before kill {k}");
        // A reader's look first (clearing a dead writer's flag), then a writer's: both get in.
        let seen =
            samples.read_timeout(PATIENCE).unwrap_or_else(|e| panic!("kill {k}: the lock is stuck: {e}")).to_vec();
        let whole = seen.iter().all(|&v| v == seen[0]);
        let flagged = samples.interrupted().unwrap();
        assert!(
            whole || flagged,
            "kill {k}: a torn array ({}..{}) without the interrupted flag",
            seen[0],
            seen[BIG - 1]
        );
        torn += u64::from(!whole);
        let mut guard = samples.write_timeout(PATIENCE).unwrap_or_else(|e| panic!("kill {k}: stuck: {e}"));
        if flagged {
            interrupted += 1;
            let g = guard[0];
            guard.fill(g);
            drop(guard);
            samples.clear_interrupted().unwrap();
        }
    }
    println!("array chaos: {kills} kills, {interrupted} left the array interrupted, {torn} of them torn");
    assert!(torn > 0 || kills < 50, "no kill landed inside a write: the test did not exercise recovery");
    let last = samples.read().unwrap();
    assert!(last.iter().all(|&v| v == last[0]));
}

/// A read-only process that opens a store first, while it holds locks of processes that are gone
/// (here: a writer killed mid-write, and nobody else left), neither waits for them (a stale
/// `writer` word with no read-write process around is a dead writer's) nor keeps a later
/// read-write opener from resetting them: the reset happens, the writer gets in, and the
/// read-only process goes on reading.
#[test]
fn a_read_only_first_opener_neither_waits_for_nor_pins_dead_locks() {
    let (_dir, path) = temp_store();
    drop(new_store(&path, LockMode::Robust));
    let mut child = ChildProc::spawn("half_write", &path, "");
    child.expect("halfway");
    assert_eq!(child.kill().signal(), Some(libc::SIGKILL));

    let reader = Store::options().read_only(true).open(&path).unwrap();
    let samples = reader.array::<u64>("samples").unwrap();
    let seen = samples.read_timeout(PATIENCE).expect("a dead writer's word is not waited for").to_vec();
    assert_eq!(seen, [vec![7; LEN / 2], vec![0; LEN / 2]].concat());

    let epoch = open_state(&path).lock_epoch;
    let writer = Store::open(&path).unwrap();
    assert!(open_state(&path).lock_epoch > epoch, "the read-write opener reset the locks");
    let array = writer.array::<u64>("samples").unwrap();
    array.try_write().expect("the dead writer's mutex was reset, not waited for")[0] = 1;
    assert_eq!(samples.get(0).unwrap(), 1);
    // A read-only process pins the mode: a read-write opener that asks for the other one while
    // everyone else is gone is refused.
    drop((array, writer));
    assert_mismatch(Store::options().lock_mode(LockMode::Ofd).open(&path), "in robust lock mode");
}

/// A write guard leaked with `mem::forget` keeps its mutex held, and on its thread's robust list,
/// which glibc updates when the thread locks and unlocks other robust mutexes. Dropping the store
/// then keeps its memory mapped (else those updates write into memory that is unmapped, or mapped
/// again for something else), and keeps it from being reset while this process lives (a reset
/// would initialise a mutex that is on the thread's list): the next opener finds the lock still
/// held by this thread. (Without the fix, the reset happened: the epoch assertion failed.)
#[test]
fn a_leaked_write_guard_outlives_its_store_safely() {
    let (_dir, path) = temp_store();
    let store = new_store(&path, LockMode::Robust);
    let counter = store.object::<Counter>("counter").unwrap();
    std::mem::forget(counter.write().unwrap());
    drop((counter, store));
    // This thread's next robust locks, in another store.
    let (_other_dir, other) = temp_store();
    let other = new_store(&other, LockMode::Robust);
    let c = other.object::<Counter>("counter").unwrap();
    for _ in 0..3 {
        c.update(|c| c.n += 1).unwrap();
    }
    assert_eq!(c.load().unwrap().n, 4);
    drop((c, other));
    // The first store again: not reset, and its leaked lock is this thread's.
    let epoch = open_state(&path).lock_epoch;
    let again = Store::open(&path).unwrap();
    assert_eq!(open_state(&path).lock_epoch, epoch, "no reset while this process holds a leaked lock");
    let counter = again.object::<Counter>("counter").unwrap();
    assert!(matches!(counter.try_write(), Err(Error::WouldDeadlock { .. })));
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(counter.try_write(), Err(Error::WouldBlock { .. }))));
    });
    assert_eq!(counter.load().unwrap().n, 1);
}
