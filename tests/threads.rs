//! Sharing between threads of one process: the in-process half of the locks.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::temp_store;
use shmstore::{Error, LockMode, Shared, SharedArray, SharedLayout, Store, WaitedFor};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Counter {
    n: u64,
    // Written together with `n` under one guard: a torn or unexclusive update shows as a mismatch.
    shadow: u64,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Hits {
    n: AtomicU64,
}

const THREADS: usize = 8;

/// A store in OFD lock mode, where a read guard of a double-buffered object holds the shared lock
/// (in robust mode it is a lock-free copy, and excludes no writer): the tests of guards on such
/// objects excluding each other use it. `tests/robust.rs` has the same for robust mode, on
/// entries changed in place, whose guards lock in both modes.
fn ofd_store(path: &std::path::Path) -> Store {
    Store::options().create(true).capacity(1 << 20).lock_mode(LockMode::Ofd).open(path).unwrap()
}
const EACH: u64 = 10_000;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    assert_send_sync::<Store>();
    assert_send_sync::<Shared<Counter>>();
    assert_send_sync::<SharedArray<u32>>();
    assert_send_sync::<Error>();
}

fn increment(counter: &Shared<Counter>) {
    counter
        .update(|c| {
            assert_eq!(c.n, c.shadow, "an update saw another update half done");
            c.n += 1;
            c.shadow = c.n;
        })
        .unwrap();
}

#[test]
fn eight_threads_count_through_clones_of_one_handle() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let counter = store.object_or_init("counter", Counter::default).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (counter, start) = (counter.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..EACH {
                    increment(&counter);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("counting thread panicked");
    }
    assert_eq!(counter.load().unwrap(), Counter { n: THREADS as u64 * EACH, shadow: THREADS as u64 * EACH });
}

#[test]
fn eight_threads_count_through_their_own_handles() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    store.object_or_init("counter", Counter::default).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                // Half the threads look the entry up, half go through object_or_init.
                let counter = if i % 2 == 0 {
                    store.object::<Counter>("counter").unwrap()
                } else {
                    store.object_or_init("counter", || panic!("the entry exists: init must not run")).unwrap()
                };
                start.wait();
                for _ in 0..EACH {
                    increment(&counter);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("counting thread panicked");
    }
    let total = THREADS as u64 * EACH;
    assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap(), Counter { n: total, shadow: total });
    assert_eq!(store.entries().unwrap().len(), 1);
}

#[test]
fn threads_creating_the_same_entry_agree_on_one() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let counter = store.object_or_init("counter", Counter::default).unwrap();
                increment(&counter);
                let arr = store.array_or_init::<u32>("arr", 16, 7).unwrap();
                arr.update(0, 16, |xs| xs.iter_mut().for_each(|x| *x += 1)).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("creating thread panicked");
    }
    assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap().n, THREADS as u64);
    assert_eq!(*store.array::<u32>("arr").unwrap().read().unwrap(), [7 + THREADS as u32; 16]);
    assert_eq!(store.entries().unwrap().len(), 2);
}

#[test]
fn a_reader_thread_blocks_a_writer_thread() {
    let (_dir, path) = temp_store();
    let store = ofd_store(&path);
    let counter = store.object_or_init("counter", || Counter { n: 3, shadow: 3 }).unwrap();

    let guard = counter.read().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(counter.try_write(), Err(Error::WouldBlock { .. })));
            match counter.write_timeout(Duration::from_millis(20)) {
                Err(Error::Timeout { name, waited, waited_for: WaitedFor::Lock }) => {
                    assert_eq!(name, "counter");
                    assert_eq!(waited, Duration::from_millis(20));
                }
                other => panic!("write_timeout while another thread reads: {:?}", other.map(|g| *g)),
            }
            // Readers share: another thread's read guard coexists with ours.
            assert_eq!(counter.try_read().unwrap().n, 3);
        })
        .join()
        .unwrap();
    });
    // A failed writer must not leave the lock in a state that blocks readers or the next writer.
    assert_eq!(counter.try_read().unwrap().n, 3);
    drop(guard);
    counter.try_write().expect("no guard left").n = 4;
    assert_eq!(counter.load().unwrap().n, 4);
}

#[test]
fn a_writer_thread_blocks_readers_and_writers() {
    let (_dir, path) = temp_store();
    let store = ofd_store(&path);
    let counter = store.object_or_init("counter", Counter::default).unwrap();
    let other_handle = store.object::<Counter>("counter").unwrap();

    let mut guard = counter.write().unwrap();
    guard.n = 10;
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(other_handle.try_read(), Err(Error::WouldBlock { .. })));
            assert!(matches!(other_handle.try_write(), Err(Error::WouldBlock { .. })));
            assert!(matches!(other_handle.read_timeout(Duration::from_millis(10)), Err(Error::Timeout { .. })));
        })
        .join()
        .unwrap();
        // The same handle, on this thread, is excluded too: a second guard would alias `&mut`, and
        // waiting for it would wait forever, so it is refused at once.
        assert!(matches!(counter.try_read(), Err(Error::WouldDeadlock { .. })));
        assert!(matches!(counter.try_write(), Err(Error::WouldDeadlock { .. })));
    });
    guard.shadow = 10;
    drop(guard);

    // A blocked writer thread proceeds once the guard is dropped, and sees the value.
    let reader = counter.read().unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut g = other_handle.write_timeout(Duration::from_secs(10)).expect("writer gets in after the reader");
            assert_eq!(*g, Counter { n: 10, shadow: 10 });
            g.n = 11;
            g.shadow = 11;
        });
        drop(reader);
        waiter.join().unwrap();
    });
    assert_eq!(counter.load().unwrap(), Counter { n: 11, shadow: 11 });
}

#[test]
fn separately_opened_stores_in_one_process_exclude_each_other() {
    let (_dir, path) = temp_store();
    let first = ofd_store(&path);
    let second = Store::open(&path).unwrap();
    let a = first.object_or_init("counter", Counter::default).unwrap();
    let b = second.object::<Counter>("counter").unwrap();

    // Another thread waits; this thread, which holds the guard, is refused at once (it would wait
    // for itself).
    let elsewhere = |check: &(dyn Fn() + Sync)| thread::scope(|s| s.spawn(check).join().unwrap());
    let guard = a.write().unwrap();
    elsewhere(&|| {
        assert!(matches!(b.try_write(), Err(Error::WouldBlock { .. })));
        assert!(matches!(b.try_read(), Err(Error::WouldBlock { .. })));
    });
    assert!(matches!(b.try_write(), Err(Error::WouldDeadlock { .. })));
    assert!(matches!(b.try_read(), Err(Error::WouldDeadlock { .. })));
    drop(guard);

    let r = a.read().unwrap();
    elsewhere(&|| {
        assert!(b.try_read().is_ok(), "readers share across two opens");
        assert!(matches!(b.try_write(), Err(Error::WouldBlock { .. })));
    });
    assert!(b.try_read().is_ok(), "a second read by the same thread is re-entrant");
    assert!(matches!(b.try_write(), Err(Error::WouldDeadlock { .. })));
    drop(r);
    b.store(Counter { n: 5, shadow: 5 }).unwrap();
    assert_eq!(a.load().unwrap().n, 5, "both opens map the same bytes");
}

#[test]
fn guards_on_different_entries_are_independent() {
    let (_dir, path) = temp_store();
    let store = ofd_store(&path);
    let a = store.object_or_init("a", Counter::default).unwrap();
    let b = store.object_or_init("b", Counter::default).unwrap();
    let arr = store.array_or_init::<u64>("arr", 8, 0).unwrap();

    let _ga = a.write().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            b.write_timeout(Duration::from_secs(1)).expect("b is not a").n = 1;
            arr.write_at(0, &[1, 2, 3]).unwrap();
            assert!(matches!(a.try_read(), Err(Error::WouldBlock { .. })));
        })
        .join()
        .unwrap();
    });
    assert_eq!(b.load().unwrap().n, 1);
    assert_eq!(arr.get(2).unwrap(), 3);
}

#[test]
fn atomics_are_updated_under_shared_guards_by_many_threads() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let hits = store.object_or_init("hits", || Hits { n: AtomicU64::new(0) }).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    thread::scope(|s| {
        for _ in 0..THREADS {
            let (hits, start) = (&hits, start.clone());
            s.spawn(move || {
                start.wait();
                for _ in 0..EACH {
                    hits.read().unwrap().n.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(hits.read().unwrap().n.load(Ordering::SeqCst), THREADS as u64 * EACH);
    assert_eq!(store.entries().unwrap()[0].slots, 1);
}

#[test]
fn threads_opening_one_new_file_all_succeed() {
    // Many threads of one process racing to create the same file: one creates it, the others
    // open it; nobody gets an error, and nothing is left beside it.
    const ROUNDS: usize = 40;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let (dir, path) = temp_store();
        let start = Arc::new(Barrier::new(THREADS));
        let results: Vec<_> = (0..THREADS)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    Store::open_or_create(&path, 1 << 20).map(drop)
                })
            })
            .collect();
        for r in results {
            if let Err(e) = r.join().unwrap() {
                failures.push(format!("round {round}: {e}"));
            }
        }
        assert_eq!(Store::open(&path).unwrap().capacity(), 1 << 20);
        assert_eq!(common::dir_listing(dir.path()), ["store.shm"], "round {round}");
    }
    assert!(failures.is_empty(), "{} of {} opens failed: {:#?}", failures.len(), ROUNDS * THREADS, failures);
}

#[test]
fn threads_creating_one_entry_in_a_new_file_agree() {
    // As above, then every thread creates or opens the same entry and increments it once.
    for round in 0..10 {
        let (_dir, path) = temp_store();
        drop(Store::open_or_create(&path, 1 << 20).unwrap());
        let start = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    start.wait();
                    let counter = store.object_or_init("counter", Counter::default).unwrap();
                    increment(&counter);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_else(|_| panic!("round {round}: a thread failed"));
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.object::<Counter>("counter").unwrap().load().unwrap().n, THREADS as u64, "round {round}");
        assert_eq!(store.entries().unwrap().len(), 1);
    }
}
