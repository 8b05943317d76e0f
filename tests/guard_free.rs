//! `Shared::get`: objects made entirely of atomics, used without a guard, across threads and real
//! processes (this test binary re-executed as children, see `child_main`), and the writes,
//! migrations and refusals around it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use common::{active_data_offset, emit, poke, temp_store, wait_for, wait_line, ChildArgs, ChildProc};
use shmstore::{Error, Migration, SharedLayout, Store};

const CAPACITY: u64 = 1 << 20;

/// A counter pair made only of atomics: it has `get()`.
#[derive(SharedLayout, Debug)]
#[repr(C)]
struct Hits {
    hits: AtomicU64,
    misses: [AtomicU32; 2],
}

fn hits(n: u64) -> Hits {
    Hits { hits: AtomicU64::new(n), misses: [AtomicU32::new(0), AtomicU32::new(0)] }
}

/// `Hits` at version 2, with one more counter: the migration target.
#[derive(SharedLayout, Debug)]
#[repr(C)]
#[shared(version = 2)]
struct HitsV2 {
    hits: AtomicU64,
    misses: [AtomicU32; 2],
    errors: AtomicU64,
}

/// Atomics whose bytes have invalid patterns.
#[derive(SharedLayout, Debug)]
#[repr(C)]
struct Flags {
    on: AtomicBool,
    _more: [AtomicBool; 3],
    count: AtomicU32,
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "get_count" => role_get_count(&args),
        "migrate" => role_migrate(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Waits for "go", then increments `hits` `arg` times through `get()`, with no guard.
fn role_get_count(args: &ChildArgs) {
    let iterations: u64 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let counters = store.object::<Hits>("hits").unwrap();
    emit("waiting");
    wait_for("go");
    for i in 0..iterations {
        let c = counters.get().unwrap();
        c.hits.fetch_add(1, Ordering::Relaxed);
        c.misses[(i % 2) as usize].fetch_add(1, Ordering::Relaxed);
    }
    emit("done");
    let _ = wait_line();
}

/// Migrates `hits` to `HitsV2`, then reports the migrated value.
fn role_migrate(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let convert = |old: Hits| HitsV2 {
        hits: AtomicU64::new(old.hits.into_inner()),
        misses: old.misses,
        errors: AtomicU64::new(7),
    };
    assert_eq!(store.migrate("hits", convert).unwrap(), Migration::Migrated);
    let new = store.object::<HitsV2>("hits").unwrap();
    emit(format!("migrated {}", new.get().unwrap().hits.load(Ordering::SeqCst)));
    let _ = wait_line();
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Four processes, each incrementing through `get()` with no lock at all, lose no increment: the
/// final count is exact.
#[test]
fn four_processes_count_exactly_through_get() {
    const CHILDREN: u64 = 4;
    const EACH: u64 = 20_000;
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let counters = store.object_or_init("hits", || hits(0)).unwrap();
    let mut children: Vec<_> = (0..CHILDREN).map(|_| ChildProc::spawn("get_count", &path, &EACH.to_string())).collect();
    for child in &mut children {
        child.expect("waiting");
    }
    // A read guard held here does not slow anyone: `get()` takes no lock.
    let guard = counters.read().unwrap();
    for child in &mut children {
        child.send("go");
    }
    for child in &mut children {
        child.expect("done");
    }
    drop(guard);
    let c = counters.get().unwrap();
    assert_eq!(c.hits.load(Ordering::SeqCst), CHILDREN * EACH);
    let half = (CHILDREN * EACH / 2) as u32;
    assert_eq!((c.misses[0].load(Ordering::SeqCst), c.misses[1].load(Ordering::SeqCst)), (half, half));
    for child in children {
        child.finish();
    }
}

/// Threads sharing one handle count exactly too, and a read guard taken meanwhile sees the very
/// bytes `get()` hands out.
#[test]
fn threads_count_through_get_while_guards_and_get_coexist() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let counters = store.object_or_init("hits", || hits(0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    counters.get().unwrap().hits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Read guards and `get()` references at once: both are shared, both see the same atomic.
        let guard = counters.read().unwrap();
        let free = counters.get().unwrap();
        assert!(std::ptr::eq(&*guard, free), "a read guard and get() see the same bytes in place");
    });
    assert_eq!(counters.get().unwrap().hits.load(Ordering::SeqCst), 40_000);
}

/// Writers (write guards and `update`) and `get()` users at once: every access to the bytes is
/// atomic (run this file under ThreadSanitizer to check that), and the
/// writers still exclude each other. Only the writer changes `misses[0]` and `misses[1]`, each
/// commit storing back the copy it made under the lock, so they count exactly; increments of
/// `hits` made through `get()` between a commit's copy and its write-back may be overwritten (as
/// documented), so `hits` is only bounded.
#[test]
fn writers_and_get_users_race_only_through_atomics() {
    const WRITES: u32 = 300;
    const INCREMENTS: u64 = 20_000;
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let counters = store.object_or_init("hits", || hits(0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..INCREMENTS {
                    counters.get().unwrap().hits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for writer in 0..2usize {
            let counters = &counters;
            s.spawn(move || {
                for i in 0..WRITES {
                    match i % 3 {
                        0 => {
                            counters.update(|h| h.misses[writer].fetch_add(1, Ordering::Relaxed)).unwrap();
                        }
                        1 => {
                            let mut g = counters.write().unwrap();
                            *g.misses[writer].get_mut() += 1;
                        }
                        _ => {
                            // Through `&T` on the guard's copy, committed explicitly. (`store` is
                            // left out: it replaces the other writer's counter too.)
                            let g = counters.write().unwrap();
                            g.misses[writer].fetch_add(1, Ordering::Relaxed);
                            g.commit().unwrap();
                        }
                    }
                }
            });
        }
    });
    let c = counters.get().unwrap();
    assert_eq!(c.misses[0].load(Ordering::SeqCst), WRITES, "a commit lost another writer's commit");
    assert_eq!(c.misses[1].load(Ordering::SeqCst), WRITES, "a commit lost another writer's commit");
    assert!(c.hits.load(Ordering::SeqCst) <= 2 * INCREMENTS);

    // `store` while `get()` users increment: it replaces every atomic, atomically.
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..INCREMENTS {
                counters.get().unwrap().hits.fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            for _ in 0..WRITES {
                counters.store(hits(7)).unwrap();
            }
        });
    });
    assert_eq!(c.misses[0].load(Ordering::SeqCst), 0, "the last store replaced the writers' counts");
    assert!((7..=7 + INCREMENTS).contains(&c.hits.load(Ordering::SeqCst)));
}

/// A write guard on an all-atomic object never makes a `&mut` to the bytes a `get()` reference
/// points at (that would alias it): it works on a private copy and stores it back atomically on
/// commit. So an abort or a panic discards its changes, and `store` and `update` work.
#[test]
fn write_guards_on_all_atomic_objects_work_on_a_copy_never_aliasing_get() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let counters = store.object_or_init("hits", || hits(5)).unwrap();
    let shared: &Hits = counters.get().unwrap();
    let version = counters.version();

    let mut guard = counters.write().unwrap();
    assert!(!std::ptr::eq(&*guard as *const Hits, shared), "a write guard must not point into the mapping");
    *guard.hits.get_mut() = 100;
    guard.misses[1].store(3, Ordering::Relaxed);
    assert_eq!(shared.hits.load(Ordering::SeqCst), 5, "nothing is visible before the commit");
    guard.commit().unwrap();
    assert_eq!(shared.hits.load(Ordering::SeqCst), 100);
    assert_eq!(shared.misses[1].load(Ordering::SeqCst), 3);
    assert_eq!(counters.version().get(), version.get() + 1, "a commit bumps the version");

    // An abort discards the copy.
    let mut guard = counters.write().unwrap();
    *guard.hits.get_mut() = 1;
    guard.abort().unwrap();
    assert_eq!(shared.hits.load(Ordering::SeqCst), 100);

    // `update` and `store` too.
    let seen = counters.update(|h| h.hits.fetch_add(1, Ordering::Relaxed)).unwrap();
    assert_eq!((seen, shared.hits.load(Ordering::SeqCst)), (100, 101));
    counters.store(hits(42)).unwrap();
    assert_eq!(shared.hits.load(Ordering::SeqCst), 42);
    assert_eq!(shared.misses[1].load(Ordering::SeqCst), 0);
}

/// A migration made by another process: `get()` on the old handle then fails as every access
/// does, while a reference taken before stays valid and keeps pointing at the old object.
#[test]
fn get_after_a_migration_by_another_process_fails_and_old_references_stay_valid() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let counters = store.object_or_init("hits", || hits(10)).unwrap();
    let old: &Hits = counters.get().unwrap();
    old.hits.fetch_add(1, Ordering::SeqCst);

    let mut child = ChildProc::spawn("migrate", &path, "");
    assert_eq!(child.expect("migrated"), "11", "the migration reads the value atomically");

    match counters.get() {
        Err(Error::LayoutMismatch { name, .. }) => assert_eq!(name, "hits"),
        other => panic!("get() after a migration: {other:?}"),
    }
    assert!(matches!(counters.read(), Err(Error::LayoutMismatch { .. })), "the same error as a guard");
    // The old reference still reads and writes its (old, never reused) bytes...
    assert_eq!(old.hits.fetch_add(1, Ordering::SeqCst), 11);
    assert_eq!(old.hits.load(Ordering::SeqCst), 12);
    // ...which the migrated object no longer shares.
    let new = store.object::<HitsV2>("hits").unwrap();
    let new = new.get().unwrap();
    assert_eq!((new.hits.load(Ordering::SeqCst), new.errors.load(Ordering::SeqCst)), (11, 7));
    assert!(!std::ptr::eq(old as *const Hits as *const u8, new as *const HitsV2 as *const u8));
    child.send("bye");
    child.finish();
}

/// A read-only store cannot hand out atomics (they could be written through a read-only mapping).
#[test]
fn get_on_a_read_only_store_is_refused() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    store.object_or_init("hits", || hits(1)).unwrap();
    let reader = Store::options().read_only(true).open(&path).unwrap();
    let counters = reader.object::<Hits>("hits").unwrap();
    match counters.get() {
        Err(Error::ReadOnly { action, .. }) => assert!(action.contains("get()"), "{action}"),
        other => panic!("get() on a read-only store: {other:?}"),
    }
}

/// An `AtomicBool` byte that is neither 0 nor 1 (a crafted file) is refused, not handed out.
#[test]
fn get_validates_atomic_bools() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, CAPACITY).unwrap();
    let flags = store
        .object_or_init("flags", || Flags {
            on: AtomicBool::new(true),
            _more: [AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)],
            count: AtomicU32::new(0),
        })
        .unwrap();
    assert!(flags.get().unwrap().on.load(Ordering::SeqCst));
    drop((flags, store));

    poke(&path, active_data_offset(&path, "flags") + 2, &[7]);
    let store = Store::open(&path).unwrap();
    let flags = store.object::<Flags>("flags").unwrap();
    match flags.get() {
        Err(Error::InvalidValue { name, invalid, .. }) => {
            assert_eq!(name, "flags");
            assert!(invalid.path.contains("_more[1]"), "{invalid}");
        }
        other => panic!("get() of an invalid AtomicBool: {other:?}"),
    }
    // `store` repairs it (it writes without reading), and `get()` works again.
    flags
        .store(Flags {
            on: AtomicBool::new(false),
            _more: [AtomicBool::new(false), AtomicBool::new(true), AtomicBool::new(false)],
            count: AtomicU32::new(9),
        })
        .unwrap();
    let f = flags.get().unwrap();
    assert!(f._more[1].load(Ordering::SeqCst));
    assert_eq!(f.count.load(Ordering::SeqCst), 9);
}
