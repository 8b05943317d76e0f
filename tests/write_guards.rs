//! Write guards of double-buffered objects stage their private copy in a buffer the thread reuses
//! from guard to guard: after a thread's first guard, commits (`write` guards, `store`, `update`)
//! and `load`s make no heap allocation at all. And what the staging must keep doing whatever
//! buffer it uses: commit on drop, discard on abort and on a panic, hold values larger than the
//! buffer so far and values aligned beyond it, and nest.
//!
//! The allocations are counted per thread by a global allocator of this test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmstore::{SharedLayout, Store};

/// The system allocator, counting the allocations each thread makes.
struct Counting;

thread_local! {
    /// Allocations made by this thread (a `const` `Cell` of an integer: using it allocates nothing).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments, unchanged; counting
// touches a thread-local integer only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// One cache line, no validation needed.
#[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Obj64 {
    a: [u64; 8],
}

/// Larger than the first spare buffer (one 64-byte line), with a field that needs validation.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Big {
    words: [u64; 40],
    flag: bool,
    _pad: [u8; 7],
}

/// Aligned beyond what a spare buffer guarantees (64): staged in an allocation of its own.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(128))]
struct Wide {
    a: [u64; 16],
}

#[test]
fn commits_and_loads_make_no_allocation_after_the_first_guard() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(dir.path().join("alloc.shm"), 1 << 20).unwrap();
    let obj = store.object_or_init("obj", Obj64::default).unwrap();
    let arr = store.array_or_init("arr", 16, 0u64).unwrap();
    // The thread's first guard makes its spare buffer (and each entry's first lock, its lock).
    obj.write().unwrap().a[0] = 1;
    arr.write().unwrap()[0] = 1;

    let before = allocations();
    for i in 1..=100u64 {
        let mut guard = obj.write().unwrap();
        guard.a[1] = i;
        drop(guard);
        let mut guard = obj.try_write().unwrap();
        guard.a[2] = i;
        guard.commit().unwrap();
        obj.write_timeout(std::time::Duration::from_secs(60)).unwrap().a[3] = i;
        obj.store(Obj64 { a: [i, i, i, i, i, 0, 0, 0] }).unwrap();
        obj.update(|o| o.a[5] = i).unwrap();
        // A guard in place (an array's) keeps its state in the same spare buffer.
        arr.write().unwrap()[3] = i;
        assert_eq!(obj.load().unwrap().a[..6], [i; 6]);
        assert_eq!(obj.load_versioned().unwrap().0.a[5], i);
    }
    let made = allocations() - before;
    assert_eq!(made, 0, "100 rounds of write guards, store, update and load allocated {made} times");
    assert_eq!(arr.read().unwrap()[3], 100);
    assert_eq!(obj.load().unwrap().a[..6], [100; 6]);
}

#[test]
fn staged_copies_commit_abort_and_roll_back_in_every_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(dir.path().join("rooms.shm"), 1 << 20).unwrap();
    let small = store.object_or_init("small", Obj64::default).unwrap();
    let big = store.object_or_init("big", || Big { words: [7; 40], flag: false, _pad: [0; 7] }).unwrap();
    let wide = store.object_or_init("wide", || Wide { a: [3; 16] }).unwrap();

    // A small value, then one larger than the buffer so far (which grows), then the small one again.
    for round in 1..=3u64 {
        small.write().unwrap().a[7] = round;
        let mut guard = big.write().unwrap();
        guard.words[39] = round;
        guard.flag = true;
        drop(guard);
        wide.write().unwrap().a[15] = round;
        assert_eq!(small.load().unwrap().a[7], round);
        assert_eq!(big.load().unwrap().words[39], round);
        assert!(big.load().unwrap().flag);
        assert_eq!(wide.load().unwrap().a, {
            let mut a = [3; 16];
            a[15] = round;
            a
        });
    }

    // Nested guards, on two objects: each has its own copy, and both commit.
    let mut outer = small.write().unwrap();
    let mut inner = big.write().unwrap();
    outer.a[0] = 11;
    inner.words[0] = 12;
    assert_eq!((outer.a[0], inner.words[0]), (11, 12));
    drop(inner);
    drop(outer);
    assert_eq!((small.load().unwrap().a[0], big.load().unwrap().words[0]), (11, 12));

    // An abort discards the copy, in the spare buffer and in a room of its own alike.
    let version = small.version();
    let mut guard = small.write().unwrap();
    guard.a[0] = 99;
    guard.abort().unwrap();
    let mut guard = wide.write().unwrap();
    guard.a[0] = 99;
    guard.abort().unwrap();
    assert_eq!((small.load().unwrap().a[0], small.version()), (11, version));
    assert_eq!(wide.load().unwrap().a[0], 3);

    // A panic while the guard is held rolls back, and the next guard reuses the buffer.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut guard = small.write().unwrap();
        guard.a[0] = 99;
        panic!("inside the guard");
    }));
    assert!(panicked.is_err());
    assert_eq!(small.load().unwrap().a[0], 11);
    small.write().unwrap().a[0] = 13;
    assert_eq!(small.load().unwrap().a[0], 13);
}
