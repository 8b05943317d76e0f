//! A thread never waits for itself: re-entrant reads are granted even while a writer is queued,
//! and a request that could never be granted (a write while the thread holds the entry, a read
//! while it writes it) fails at once with `Error::WouldDeadlock`, also across two `Store`s of one
//! file. And no caller's code runs under the catalog lock, so an `init` closure may use the store.
//!
//! Every scenario runs on a thread of its own that the test waits for with a generous bound: a
//! hang detector, so that a regression fails the test instead of hanging the suite. No test relies
//! on timing; waiting for a writer to queue polls for a state that a lock-free probe can see.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::temp_store;
use shmstore::{Error, LockMode, SharedLayout, Store};

/// How long a scenario may take before it counts as hung. Never a synchronisation.
const PATIENCE: Duration = Duration::from_secs(60);

const CAPACITY: u64 = 1 << 20;

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Counter {
    n: u64,
}

/// Updated in place through read guards; `load()` takes the shared lock.
#[derive(SharedLayout)]
#[repr(C)]
struct Hits {
    n: AtomicU64,
}

/// Runs `f` on a thread of its own and returns what it returns, re-raising its panic; fails the
/// test if it has not returned within [`PATIENCE`] (the thread is then left hanging, and the test
/// process ends it when it exits).
fn without_hanging<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("{what} did not return within {PATIENCE:?}: deadlocked"),
    }
}

/// Checks that `result` is the `WouldDeadlock` of entry `name`, for `requested` while the thread
/// holds `held`, and that its message says what to do.
#[track_caller]
fn assert_deadlock<T>(result: shmstore::Result<T>, name: &str, held: &str, requested: &str) {
    match result {
        Err(e @ Error::WouldDeadlock { .. }) => {
            let Error::WouldDeadlock { name: n, held: h, requested: r } = &e else { unreachable!() };
            assert_eq!((n.as_str(), *h, *r), (name, held, requested));
            let message = e.to_string();
            assert!(message.contains(&format!("`{name}`")), "{message}");
            assert!(message.contains("release the guard you hold on this entry first"), "{message}");
        }
        Err(other) => panic!("expected WouldDeadlock ({requested} `{name}` holding {held}), got {other}"),
        Ok(_) => panic!("expected WouldDeadlock ({requested} `{name}` holding {held}), but it was granted"),
    }
}

const READ_HELD: &str = "a read guard on it";
const WRITE_HELD: &str = "a write guard on it";
const WANT_WRITE: &str = "a write lock on";
const WANT_READ: &str = "a read lock on";

fn store_with_entries() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    store_with_entries_in(LockMode::Robust)
}

/// The entries, in a store whose processes lock in `mode`. The tests of read guards on the
/// double-buffered `counter` run in OFD mode, where such a guard holds the shared lock; in robust
/// mode it is a lock-free copy of the last commit, which waits for nobody and holds off nobody
/// (see `a_read_guard_of_an_object_is_a_copy_in_robust_mode`).
fn store_with_entries_in(mode: LockMode) -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let (dir, path) = temp_store();
    let store = Store::options().create(true).capacity(CAPACITY).lock_mode(mode).open(&path).unwrap();
    store.object_or_init("counter", || Counter { n: 7 }).unwrap();
    store.object_or_init("hits", || Hits { n: AtomicU64::new(3) }).unwrap();
    store.array_or_init::<u64>("samples", 16, 5).unwrap();
    store.bytes_or_init("region", 64).unwrap();
    (dir, path, store)
}

// ---------------------------------------------------------------------------------------------
// Re-entrant reads with a writer queued in between.

/// One thread (the holder) takes a read with `hold`; another thread then blocks in `write` of the
/// same entry; once the writer is queued (seen when `probe`, a non-blocking read from a thread
/// that holds nothing, is refused with `WouldBlock`: only a queued writer refuses a reader while
/// the entry is read-locked), the holder reads again with `again`, which must be granted. Then the
/// holder lets go and the writer gets its turn.
fn reentrant_read_past_a_queued_writer<G: 'static>(
    what: &str,
    hold: impl FnOnce() -> G + Send + 'static,
    again: impl FnOnce() -> shmstore::Result<()> + Send + 'static,
    write: impl FnOnce() -> shmstore::Result<()> + Send + 'static,
    probe: impl Fn() -> shmstore::Result<()>,
) {
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let guard = hold();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let again = again();
            drop(guard);
            again
        }));
        let _ = done_tx.send(result);
    });
    held_rx.recv_timeout(PATIENCE).expect("the holder took its first read");
    assert!(probe().is_ok(), "{what}: nothing refuses a reader before the writer queues");

    let (writer_tx, writer_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = writer_tx.send(panic::catch_unwind(AssertUnwindSafe(write)));
    });
    // Wait until the writer is queued behind the holder's read: a state the test then exercises.
    let start = Instant::now();
    loop {
        match probe() {
            Err(Error::WouldBlock { .. }) => break,
            Ok(()) => {
                assert!(start.elapsed() < PATIENCE, "{what}: the writer never queued");
                std::thread::yield_now();
            }
            Err(e) => panic!("{what}: probe: {e}"),
        }
    }
    go_tx.send(()).unwrap();
    match done_rx.recv_timeout(PATIENCE) {
        Ok(Ok(again)) => again.unwrap_or_else(|e| panic!("{what}: the re-entrant read was refused: {e}")),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("{what}: the re-entrant read hung behind the queued writer"),
    }
    match writer_rx.recv_timeout(PATIENCE) {
        Ok(Ok(written)) => written.unwrap_or_else(|e| panic!("{what}: the writer failed: {e}")),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("{what}: the writer never got the lock after the holder let go"),
    }
}

#[test]
fn a_second_read_guard_is_granted_while_a_writer_waits() {
    let (_dir, _path, store) = store_with_entries_in(LockMode::Ofd);
    let counter = store.object::<Counter>("counter").unwrap();
    let (h, a, w) = (counter.clone(), counter.clone(), counter.clone());
    reentrant_read_past_a_queued_writer(
        "read() then read()",
        move || {
            // The guard borrows its handle; leaking the handle lets the guard outlive this closure.
            let h: &'static shmstore::Shared<Counter> = Box::leak(Box::new(h));
            h.read().unwrap()
        },
        move || a.read().map(|g| assert_eq!(g.n, 7)),
        move || w.update(|c| c.n += 1),
        || counter.try_read().map(drop),
    );
    assert_eq!(counter.load().unwrap().n, 8, "the writer committed after the reads");
}

/// The second and third reads are `try_read` and `read_timeout`, alive at once with the first:
/// they must not fail with `WouldBlock` or `Timeout` either.
#[test]
fn try_read_and_read_timeout_are_reentrant_too() {
    let (_dir, _path, store) = store_with_entries_in(LockMode::Ofd);
    let counter = store.object::<Counter>("counter").unwrap();
    let (h, w) = (counter.clone(), counter.clone());
    let (probe, again) = (counter.clone(), counter.clone());
    let (first_tx, first_rx) = mpsc::channel();
    reentrant_read_past_a_queued_writer(
        "read() then try_read() and read_timeout()",
        move || {
            let h: &'static shmstore::Shared<Counter> = Box::leak(Box::new(h));
            let guard = h.read().unwrap();
            first_tx.send(guard.n).unwrap();
            guard
        },
        move || {
            let a = again.try_read()?;
            let b = again.read_timeout(Duration::from_millis(1))?;
            assert_eq!((a.n, b.n), (7, 7));
            Ok(())
        },
        move || w.store(Counter { n: 9 }),
        || probe.try_read().map(drop),
    );
    assert_eq!(first_rx.recv().unwrap(), 7);
    assert_eq!(counter.load().unwrap().n, 9);
}

/// An object holding atomics is changed in place through read guards, so code that holds one and
/// calls a helper taking another is the common case. (Its `load()` would take the shared lock too,
/// but needs `T: Copy`, which no type holding std atomics is.)
#[test]
fn a_second_read_of_an_atomics_object_is_granted_while_a_writer_waits() {
    let (_dir, _path, store) = store_with_entries();
    let hits = store.object::<Hits>("hits").unwrap();
    assert!(!hits.is_double_buffered(), "an object holding atomics is updated in place, under the shared lock");
    let (h, a, w, p) = (hits.clone(), hits.clone(), hits.clone(), hits.clone());
    reentrant_read_past_a_queued_writer(
        "read() then read()",
        move || {
            let h: &'static shmstore::Shared<Hits> = Box::leak(Box::new(h));
            let guard = h.read().unwrap();
            guard.n.fetch_add(1, Ordering::SeqCst);
            guard
        },
        move || a.read().map(|g| assert_eq!(g.n.fetch_add(1, Ordering::SeqCst), 4)),
        move || w.write().map(|g| g.n.store(10, Ordering::SeqCst)),
        move || p.try_read().map(drop),
    );
    assert_eq!(hits.read().unwrap().n.load(Ordering::SeqCst), 10);
}

#[test]
fn get_and_read_at_of_an_array_are_granted_under_its_read_guard_while_a_writer_waits() {
    let (_dir, _path, store) = store_with_entries();
    let samples = store.array::<u64>("samples").unwrap();
    let (h, a, w, p) = (samples.clone(), samples.clone(), samples.clone(), samples.clone());
    reentrant_read_past_a_queued_writer(
        "array read() then get() and read_at()",
        move || {
            let h: &'static shmstore::SharedArray<u64> = Box::leak(Box::new(h));
            h.read().unwrap()
        },
        move || {
            assert_eq!(a.get(3)?, 5);
            let mut out = [0u64; 4];
            a.read_at(2, &mut out)?;
            assert_eq!(out, [5; 4]);
            let view = a.view(4..8)?;
            assert_eq!(view.get(0)?, 5);
            Ok(())
        },
        move || w.write_at(0, &[1, 2]),
        move || p.try_read().map(drop),
    );
    assert_eq!(samples.get(1).unwrap(), 2);
}

#[test]
fn read_at_of_a_byte_region_is_granted_under_its_read_guard_while_a_writer_waits() {
    let (_dir, _path, store) = store_with_entries();
    let region = store.bytes("region").unwrap();
    let (h, a, w, p) = (region.clone(), region.clone(), region.clone(), region.clone());
    reentrant_read_past_a_queued_writer(
        "bytes read() then read_at()",
        move || {
            let h: &'static shmstore::SharedBytes = Box::leak(Box::new(h));
            h.read().unwrap()
        },
        move || {
            let mut out = [1u8; 8];
            a.read_at(0, &mut out)?;
            assert_eq!(out, [0; 8]);
            Ok(())
        },
        move || w.write_at(0, b"written"),
        move || p.try_read().map(drop),
    );
    let mut out = [0u8; 7];
    region.read_at(0, &mut out).unwrap();
    assert_eq!(&out, b"written");
}

/// The holder reads through one `Store`, a writer of the same `Store` queues, and the holder reads
/// again through a second `Store` of the same file: granted as well (the kernel holds the byte
/// shared for this process already).
#[test]
fn a_reentrant_read_through_a_second_store_of_the_file_is_granted() {
    let (_dir, path, store) = store_with_entries_in(LockMode::Ofd);
    let counter = store.object::<Counter>("counter").unwrap();
    let other = Store::open(&path).unwrap().object::<Counter>("counter").unwrap();
    let (h, w) = (counter.clone(), counter.clone());
    reentrant_read_past_a_queued_writer(
        "read() on one store, then read() on another",
        move || {
            let h: &'static shmstore::Shared<Counter> = Box::leak(Box::new(h));
            h.read().unwrap()
        },
        move || other.read().map(|g| assert_eq!(g.n, 7)),
        move || w.update(|c| c.n = 11),
        || counter.try_read().map(drop),
    );
    assert_eq!(counter.load().unwrap().n, 11);
}

// ---------------------------------------------------------------------------------------------
// Requests that can never be granted fail at once.

#[test]
fn a_write_while_this_thread_reads_fails_at_once() {
    a_write_while_this_thread_reads_fails_at_once_in(LockMode::Robust);
    a_write_while_this_thread_reads_fails_at_once_in(LockMode::Ofd);
}

fn a_write_while_this_thread_reads_fails_at_once_in(mode: LockMode) {
    let (_dir, _path, store) = store_with_entries_in(mode);
    without_hanging("a write under a read guard", move || {
        let counter = store.object::<Counter>("counter").unwrap();
        let guard = counter.read().unwrap();
        if mode == LockMode::Robust {
            // A copy, holding no lock: writing is fine, and the guard keeps what it copied.
            counter.update(|c| c.n += 1).unwrap();
            assert_eq!((guard.n, counter.load().unwrap().n), (7, 8));
            counter.store(Counter { n: 7 }).unwrap();
        }
        let hits = store.object::<Hits>("hits").unwrap();
        let hits_guard = hits.read().unwrap();
        let refused = hits.write().map(drop);
        assert_deadlock(refused, "hits", READ_HELD, WANT_WRITE);
        drop(hits_guard);
        if mode == LockMode::Robust {
            drop(guard);
            return in_place_writes_under_read_guards_fail_at_once(&store);
        }
        assert_deadlock(counter.write().map(drop), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(counter.try_write().map(drop), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(counter.write_timeout(Duration::from_secs(3600)).map(drop), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(counter.store(Counter { n: 1 }), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(counter.update(|c| c.n += 1), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(store.migrate("counter", |c: Counter| c.n), "counter", READ_HELD, WANT_WRITE);
        // The guard still works, and nothing changed.
        assert_eq!(guard.n, 7);
        drop(guard);
        counter.update(|c| c.n += 1).unwrap();
        assert_eq!(counter.load().unwrap().n, 8);
        in_place_writes_under_read_guards_fail_at_once(&store);
    });
}

fn in_place_writes_under_read_guards_fail_at_once(store: &Store) {
    {
        let samples = store.array::<u64>("samples").unwrap();
        let guard = samples.read().unwrap();
        assert_deadlock(samples.write_at(0, &[1]), "samples", READ_HELD, WANT_WRITE);
        assert_deadlock(samples.set(0, 1), "samples", READ_HELD, WANT_WRITE);
        assert_deadlock(samples.view(0..4).unwrap().write().map(drop), "samples", READ_HELD, WANT_WRITE);
        drop(guard);
        samples.set(0, 1).unwrap();

        let region = store.bytes("region").unwrap();
        let guard = region.read().unwrap();
        assert_deadlock(region.write_at(0, b"x"), "region", READ_HELD, WANT_WRITE);
        let mut stream = region.stream();
        let err = std::io::Write::write(&mut stream, b"x").unwrap_err();
        assert!(err.to_string().contains("release the guard you hold"), "{err}");
        drop(guard);
        region.write_at(0, b"x").unwrap();
    }
}

#[test]
fn a_write_while_this_thread_writes_fails_at_once() {
    let (_dir, _path, store) = store_with_entries();
    without_hanging("a write under a write guard", move || {
        let counter = store.object::<Counter>("counter").unwrap();
        let mut guard = counter.write().unwrap();
        assert_deadlock(counter.try_write().map(drop), "counter", WRITE_HELD, WANT_WRITE);
        assert_deadlock(counter.store(Counter { n: 1 }), "counter", WRITE_HELD, WANT_WRITE);
        guard.n = 20;
        guard.commit().unwrap();
        assert_eq!(counter.load().unwrap().n, 20);
    });
}

#[test]
fn a_read_while_this_thread_writes_fails_at_once() {
    a_read_while_this_thread_writes_fails_at_once_in(LockMode::Robust);
    a_read_while_this_thread_writes_fails_at_once_in(LockMode::Ofd);
}

fn a_read_while_this_thread_writes_fails_at_once_in(mode: LockMode) {
    let (_dir, _path, store) = store_with_entries_in(mode);
    without_hanging("a read under a write guard", move || {
        let counter = store.object::<Counter>("counter").unwrap();
        let mut guard = counter.write().unwrap();
        if mode == LockMode::Ofd {
            assert_deadlock(counter.read().map(drop), "counter", WRITE_HELD, WANT_READ);
            assert_deadlock(counter.try_read().map(drop), "counter", WRITE_HELD, WANT_READ);
            let timed = counter.read_timeout(Duration::from_secs(3600)).map(drop);
            assert_deadlock(timed, "counter", WRITE_HELD, WANT_READ);
        } else {
            // A copy of the last commit, not of this thread's draft, with no lock to wait for.
            guard.n = 29;
            assert_eq!(counter.read().unwrap().n, 7);
            assert_eq!(counter.try_read().unwrap().n, 7);
        }
        // A double-buffered load needs no lock: it sees the last commit, not the guard's draft.
        guard.n = 30;
        assert_eq!(counter.load().unwrap().n, 7);
        drop(guard);
        assert_eq!(counter.read().unwrap().n, 30);

        let hits = store.object::<Hits>("hits").unwrap();
        let guard = hits.write().unwrap();
        assert_deadlock(hits.read().map(drop), "hits", WRITE_HELD, WANT_READ);
        drop(guard);
        assert_eq!(hits.read().unwrap().n.load(Ordering::SeqCst), 3);

        let samples = store.array::<u64>("samples").unwrap();
        let guard = samples.write().unwrap();
        assert_deadlock(samples.get(0), "samples", WRITE_HELD, WANT_READ);
        let mut out = [0u64; 2];
        assert_deadlock(samples.read_at(0, &mut out), "samples", WRITE_HELD, WANT_READ);
        assert_deadlock(store.read_raw("samples", 0, 1), "samples", WRITE_HELD, WANT_READ);
        drop(guard);
        assert_eq!(samples.get(0).unwrap(), 5);
    });
}

/// Two `Store`s of one file are two open file descriptions, which the kernel lets wait for each
/// other forever: the library refuses instead.
#[test]
fn two_stores_of_one_file_in_one_thread_never_wait_for_each_other() {
    let (_dir, path, store) = store_with_entries_in(LockMode::Ofd);
    without_hanging("two stores of one file", move || {
        let other = Store::open(&path).unwrap();
        let a = store.object::<Counter>("counter").unwrap();
        let b = other.object::<Counter>("counter").unwrap();

        let read = a.read().unwrap();
        assert_deadlock(b.write().map(drop), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(b.write_timeout(Duration::from_secs(3600)).map(drop), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(b.update(|c| c.n += 1), "counter", READ_HELD, WANT_WRITE);
        assert_deadlock(other.migrate("counter", |c: Counter| c.n), "counter", READ_HELD, WANT_WRITE);
        assert_eq!(b.read().unwrap().n, 7, "reading through the other store is re-entrant");
        drop(read);

        let mut write = a.write().unwrap();
        assert_deadlock(b.read().map(drop), "counter", WRITE_HELD, WANT_READ);
        assert_deadlock(b.try_write().map(drop), "counter", WRITE_HELD, WANT_WRITE);
        assert_deadlock(other.read_raw("counter", 0, 1), "counter", WRITE_HELD, WANT_READ);
        write.n = 40;
        drop(write);
        assert_eq!(b.read().unwrap().n, 40);
        b.update(|c| c.n += 1).unwrap();
        assert_eq!(a.load().unwrap().n, 41);
    });
}

/// The one re-entrant read that cannot be granted: through a second `Store` whose own writer is
/// already asking the kernel for the lock, which it gets only once this thread lets go of its
/// read through the first `Store` (that `Store`'s readers cannot share a kernel lock it does not
/// hold yet). Refused at once rather than waiting forever.
#[test]
fn a_reentrant_read_behind_a_kernel_waiting_writer_of_the_other_store_fails_at_once() {
    let (_dir, path, store) = store_with_entries_in(LockMode::Ofd);
    let a = store.object::<Counter>("counter").unwrap();
    let other = Store::open(&path).unwrap();
    let b = other.object::<Counter>("counter").unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let holder = a.clone();
    let reader = b.clone();
    std::thread::spawn(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let guard = holder.read().unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let again = reader.read().map(drop);
            drop(guard);
            again
        }));
        let _ = done_tx.send(result);
    });
    held_rx.recv_timeout(PATIENCE).unwrap();
    let writer = b.clone();
    let (written_tx, written_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = written_tx.send(writer.update(|c| c.n += 1));
    });
    // The writer of the second store is in the kernel's queue once a reader of that store, holding
    // nothing, is refused (before, it would take the kernel lock shared itself).
    let start = Instant::now();
    loop {
        match b.try_read() {
            Err(Error::WouldBlock { .. }) => break,
            Ok(_) => {
                assert!(start.elapsed() < PATIENCE, "the writer never queued");
                std::thread::yield_now();
            }
            Err(e) => panic!("probe: {e}"),
        }
    }
    go_tx.send(()).unwrap();
    match done_rx.recv_timeout(PATIENCE) {
        Ok(Ok(again)) => assert_deadlock(again, "counter", READ_HELD, WANT_READ),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("the re-entrant read through the other store hung behind its writer"),
    }
    written_rx.recv_timeout(PATIENCE).expect("the writer got the lock once the holder let go").unwrap();
    assert_eq!(a.load().unwrap().n, 8);
}

/// The registry is per thread: another thread's request for an entry this thread holds waits (or
/// is refused with `WouldBlock`), as it always did.
#[test]
fn another_thread_still_waits_for_the_holder() {
    let (_dir, path, store) = store_with_entries_in(LockMode::Ofd);
    let counter = store.object::<Counter>("counter").unwrap();
    let guard = counter.read().unwrap();
    let (same, other) = (counter.clone(), Store::open(&path).unwrap().object::<Counter>("counter").unwrap());
    without_hanging("another thread's try_write", move || {
        assert!(matches!(same.try_write().map(drop), Err(Error::WouldBlock { .. })));
        assert!(matches!(other.try_write().map(drop), Err(Error::WouldBlock { .. })));
        assert!(matches!(same.write_timeout(Duration::from_millis(1)).map(drop), Err(Error::Timeout { .. })));
        assert_eq!(same.try_read().unwrap().n, 7);
    });
    drop(guard);
}

/// `init` runs before the catalog lock is taken, so it may use the store: create entries (even the
/// one being created), open the store again, read other entries.
#[test]
fn an_init_closure_may_create_entries_and_read_others() {
    let (_dir, path, store) = store_with_entries();
    without_hanging("object_or_init inside object_or_init", move || {
        let outer = store
            .object_or_init("outer", || {
                let inner = store.object_or_init("inner", || 1u64).unwrap();
                let other = Store::open(&path).unwrap();
                let through_other = other.array_or_init::<u32>("inner2", 4, 9).unwrap();
                let counter = store.object::<Counter>("counter").unwrap();
                let n = counter.read().unwrap().n;
                inner.load().unwrap() + n + u64::from(through_other.get(0).unwrap())
            })
            .unwrap();
        assert_eq!(outer.load().unwrap(), 1 + 7 + 9);
        // An entry created meanwhile (here by `init` itself) is the one opened; `init`'s value is
        // dropped.
        let same = store
            .object_or_init("same", || {
                store.object_or_init("same", || 1u64).unwrap();
                2u64
            })
            .unwrap();
        assert_eq!(same.load().unwrap(), 1);
    });
}

/// Another thread's `init` waits for a guard this thread holds, and this thread creates an entry
/// before it lets go: had `init` run under the catalog lock, each would wait for the other.
#[test]
fn an_init_closure_waiting_for_a_guard_does_not_hold_up_entry_creation() {
    let (_dir, _path, store) = store_with_entries_in(LockMode::Ofd);
    without_hanging("entry creation while another thread's init waits for our guard", move || {
        let counter = store.object::<Counter>("counter").unwrap();
        let mut guard = counter.write().unwrap();
        let (in_init_tx, in_init_rx) = mpsc::channel();
        let creator = {
            let (store, counter) = (store.clone(), counter.clone());
            std::thread::spawn(move || {
                let derived = store.object_or_init("derived", || {
                    in_init_tx.send(()).unwrap();
                    counter.read().unwrap().n * 2
                });
                derived.map(|d| d.load().unwrap())
            })
        };
        in_init_rx.recv().unwrap();
        // The other thread is in `init`, about to wait for our guard: creating an entry does not
        // wait for it.
        store.object_or_init("other", || 1u64).unwrap();
        guard.n = 21;
        guard.commit().unwrap();
        assert_eq!(creator.join().unwrap().unwrap(), 42);
    });
}

// ---------------------------------------------------------------------------------------------
// Robust lock mode: the same rules on entries changed in place, whose read guards lock.

/// In robust mode a read guard of a double-buffered object is a copy of the last commit, taken
/// without a lock: writers of any thread go ahead while it lives, and it keeps what it copied.
#[test]
fn a_read_guard_of_an_object_is_a_copy_in_robust_mode() {
    let (_dir, path, store) = store_with_entries();
    let counter = store.object::<Counter>("counter").unwrap();
    let other = Store::open(&path).unwrap().object::<Counter>("counter").unwrap();
    let guard = counter.read().unwrap();
    without_hanging("writers under a robust-mode object read guard", move || {
        other.update(|c| c.n += 1).unwrap();
        other.try_write().unwrap().n += 1;
        assert_eq!(other.load().unwrap().n, 9);
    });
    assert_eq!(guard.n, 7);
    assert_eq!(counter.read().unwrap().n, 9);
}

/// Two stores of one file in one thread, robust mode, on an array: a write through one while
/// reading through the other is refused at once; a second read through the other is granted
/// while no writer waits.
#[test]
fn two_stores_of_one_file_never_wait_for_each_other_in_robust_mode() {
    let (_dir, path, store) = store_with_entries();
    without_hanging("two stores of one file, robust mode", move || {
        let other = Store::open(&path).unwrap();
        assert_eq!(other.lock_mode(), LockMode::Robust);
        let a = store.array::<u64>("samples").unwrap();
        let b = other.array::<u64>("samples").unwrap();
        let read = a.read().unwrap();
        assert_deadlock(b.write().map(drop), "samples", READ_HELD, WANT_WRITE);
        assert_deadlock(b.set(0, 1), "samples", READ_HELD, WANT_WRITE);
        assert_eq!(b.read().unwrap()[0], 5, "reading through the other store is re-entrant");
        drop(read);
        let write = a.write().unwrap();
        assert_deadlock(b.read().map(drop), "samples", WRITE_HELD, WANT_READ);
        assert_deadlock(b.get(0), "samples", WRITE_HELD, WANT_READ);
        drop(write);
        b.set(0, 6).unwrap();
        assert_eq!(a.get(0).unwrap(), 6);
    });
}

/// In robust mode each store of a file has its own reader slot, and a writer waits for every slot
/// of every reader. A re-entrant read through the second store while the second store's writer
/// waits for this thread's first read would make the two wait for each other: refused at once.
/// (In OFD mode the kernel lock of the first read would not cover the second store either:
/// `a_reentrant_read_behind_a_kernel_waiting_writer_of_the_other_store_fails_at_once`.)
#[test]
fn a_reentrant_read_through_a_second_store_behind_its_waiting_writer_fails_at_once_in_robust_mode() {
    let (_dir, path, store) = store_with_entries();
    let a = store.array::<u64>("samples").unwrap();
    let other = Store::open(&path).unwrap();
    let b = other.array::<u64>("samples").unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let (holder, reader) = (a.clone(), b.clone());
    std::thread::spawn(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let guard = holder.read().unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let again = reader.read().map(drop);
            drop(guard);
            again
        }));
        let _ = done_tx.send(result);
    });
    held_rx.recv_timeout(PATIENCE).unwrap();
    let writer = b.clone();
    let (written_tx, written_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = written_tx.send(writer.set(0, 8));
    });
    // The writer waits for the reader once a reader holding nothing is refused.
    let start = Instant::now();
    loop {
        match b.try_read() {
            Err(Error::WouldBlock { .. }) => break,
            Ok(_) => {
                assert!(start.elapsed() < PATIENCE, "the writer never queued");
                std::thread::yield_now();
            }
            Err(e) => panic!("probe: {e}"),
        }
    }
    go_tx.send(()).unwrap();
    match done_rx.recv_timeout(PATIENCE) {
        Ok(Ok(again)) => assert_deadlock(again, "samples", READ_HELD, WANT_READ),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("the re-entrant read through the other store hung behind its writer"),
    }
    written_rx.recv_timeout(PATIENCE).expect("the writer got in once the holder let go").unwrap();
    assert_eq!(a.get(0).unwrap(), 8);
}
