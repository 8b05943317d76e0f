//! Typed views (`ArrayView`): windows onto part of an array, indexed from their start, checked
//! against their end, with guards over just their elements; also between processes.

mod common;

use std::time::Duration;

use common::{emit, temp_store, wait_for, ChildArgs, ChildProc};
use shmstore::{ArrayView, Error, SharedArray, SharedLayout, Store};

const MIB: u64 = 1 << 20;
const LEN: usize = 100;

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

/// A store with `arr`: 100 `u32`s holding their own index.
fn numbered() -> (tempfile::TempDir, Store, SharedArray<u32>) {
    let (dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let arr = store.array_or_init::<u32>("arr", LEN, 0).unwrap();
    arr.write_at(0, &(0..LEN as u32).collect::<Vec<_>>()).unwrap();
    (dir, store, arr)
}

fn all(arr: &SharedArray<u32>) -> Vec<u32> {
    arr.read().unwrap().to_vec()
}

#[track_caller]
fn assert_oob<T: std::fmt::Debug>(result: shmstore::Result<T>, name: &str, what: &str, start: u64, end: u64, len: u64) {
    match result {
        Err(e @ Error::OutOfBounds { .. }) => {
            let message = e.to_string();
            let Error::OutOfBounds { name: n, what: w, start: s, end: en, len: l } = e else { unreachable!() };
            assert_eq!((n.as_str(), w, s, en, l), (name, what, start, end, len));
            assert!(message.contains(&format!("`{name}`")), "{message}");
        }
        other => panic!("expected OutOfBounds {what} {start}..{end} of {name}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "view_write" => role_view_write(&args),
        "view_hold" => role_view_hold(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// `arg` is `START..END`: writes 1000 + i to element i of that view of `arr`, through `write_at`
/// for the first half and `set` for the rest, and reports the view's length.
fn role_view_write(args: &ChildArgs) {
    let (start, end) = args.arg.split_once("..").unwrap();
    let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
    let store = Store::open(&args.path).unwrap();
    let arr = store.array::<u32>("arr").unwrap();
    let view = arr.view(start..end).unwrap();
    let half = view.len() / 2;
    view.write_at(0, &(0..half as u32).map(|i| 1000 + i).collect::<Vec<_>>()).unwrap();
    for i in half..view.len() {
        view.set(i, 1000 + i as u32).unwrap();
    }
    // One past the view's end is refused, even though the array goes on.
    let refused = matches!(view.set(view.len(), 0), Err(Error::OutOfBounds { .. }));
    emit(format!("wrote {} {refused}", view.len()));
}

/// Holds a write guard over view `arg` (`START..END`) of `arr` until told to release it.
fn role_view_hold(args: &ChildArgs) {
    let (start, end) = args.arg.split_once("..").unwrap();
    let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
    let store = Store::open(&args.path).unwrap();
    let arr = store.array::<u32>("arr").unwrap();
    let view = arr.view(start..end).unwrap();
    let mut guard = view.write().unwrap();
    guard.fill(7);
    emit(format!("holding {}", guard.len()));
    wait_for("release");
    drop(guard);
    emit("released");
}

// ---------------------------------------------------------------------------------------------
// In one process.

#[test]
fn writes_through_a_view_land_at_the_right_absolute_indices() {
    let (_dir, store, arr) = numbered();
    let view: ArrayView<'_, u32> = arr.view(10..20).unwrap();
    assert_eq!((view.len(), view.start(), view.range(), view.name()), (10, 10, 10..20, "arr"));

    view.write_at(2, &[500, 501]).unwrap();
    view.set(0, 600).unwrap();
    view.set(9, 609).unwrap();
    view.update(4, 2, |s| s.iter_mut().for_each(|v| *v += 1000)).unwrap();

    let mut expected: Vec<u32> = (0..LEN as u32).collect();
    expected[12] = 500;
    expected[13] = 501;
    expected[10] = 600;
    expected[19] = 609;
    expected[14] += 1000;
    expected[15] += 1000;
    assert_eq!(all(&arr), expected);

    // Reads are relative too.
    assert_eq!(view.get(2).unwrap(), 500);
    let mut three = [0u32; 3];
    view.read_at(1, &mut three).unwrap();
    assert_eq!(three, [11, 500, 501]);

    // Open ranges and the whole array.
    assert_eq!(arr.view(..).unwrap().range(), 0..LEN);
    assert_eq!(arr.view(95..).unwrap().range(), 95..LEN);
    assert_eq!(arr.view(..=4).unwrap().range(), 0..5);
    assert_eq!(arr.view(..3).unwrap().get(2).unwrap(), 2);
    assert!(arr.view(LEN..).unwrap().is_empty());
    assert_eq!(arr.view(LEN..).unwrap().read().unwrap().len(), 0);

    // A view of structs.
    let points = store.array_or_init("points", 8, Point::default()).unwrap();
    let mid = points.view(2..6).unwrap();
    mid.update(0, 4, |ps| ps.iter_mut().enumerate().for_each(|(i, p)| *p = Point { x: i as i32, y: -(i as i32) }))
        .unwrap();
    let got = points.read().unwrap().to_vec();
    assert_eq!(got[1], Point::default());
    assert_eq!(got[2], Point { x: 0, y: 0 });
    assert_eq!(got[5], Point { x: 3, y: -3 });
    assert_eq!(got[6], Point::default());
}

#[test]
fn views_that_do_not_fit_and_accesses_outside_a_view_are_refused() {
    let (_dir, _store, arr) = numbered();
    let before = all(&arr);
    let version = arr.version();

    // Creation is checked against the array.
    assert_oob(arr.view(95..105), "arr", "view", 95, 105, 100);
    assert_oob(arr.view(..=LEN), "arr", "view", 0, 101, 100);
    assert_oob(arr.view(LEN + 1..), "arr", "view", 101, 100, 100);
    let (high, low) = (20, 10);
    assert_oob(arr.view(high..low), "arr", "view", 20, 10, 100);
    assert_oob(arr.view(..=usize::MAX), "arr", "view", 0, u64::MAX, 100);

    // Accesses are checked against the view, not the array, and name the view.
    let view = arr.view(10..20).unwrap();
    assert_oob(view.get(10), "arr[10..20]", "index", 10, 11, 10);
    assert_oob(view.set(10, 0), "arr[10..20]", "index", 10, 11, 10);
    assert_oob(view.write_at(8, &[1, 2, 3]), "arr[10..20]", "write_at", 8, 11, 10);
    assert_oob(view.read_at(9, &mut [0; 2]), "arr[10..20]", "read_at", 9, 11, 10);
    assert_oob(view.update(0, 11, |_| ()), "arr[10..20]", "update", 0, 11, 10);
    assert_oob(view.get(usize::MAX), "arr[10..20]", "index", u64::MAX, u64::MAX, 10);
    assert_eq!(all(&arr), before, "nothing was written: elements 20 and 21 are untouched, and so is 18");
    assert_eq!(arr.version(), version);

    // Narrower views: relative to their parent, checked against it.
    let inner = view.view(2..5).unwrap();
    assert_eq!(inner.range(), 12..15);
    assert_eq!(inner.get(0).unwrap(), 12);
    assert_oob(view.view(5..11), "arr[10..20]", "view", 5, 11, 10);
    assert_oob(inner.set(3, 0), "arr[12..15]", "index", 3, 4, 3);
    assert_eq!(view.view(..).unwrap().range(), view.range());
}

#[test]
fn guards_over_a_view_see_only_its_elements_and_versions_bump() {
    let (_dir, store, arr) = numbered();
    let view = arr.view(40..45).unwrap();
    assert_eq!(&*view.read().unwrap(), &[40, 41, 42, 43, 44]);

    let v0 = view.version();
    {
        let mut guard = view.write().unwrap();
        assert_eq!(guard.len(), 5);
        guard.fill(9);
        guard[0] = 1;
    }
    let v1 = view.version();
    assert!(v1 > v0, "a write through a view bumps the version");
    assert_eq!(arr.version(), v1, "versions are per entry");
    let got = all(&arr);
    assert_eq!(&got[38..47], &[38, 39, 1, 9, 9, 9, 9, 45, 46]);

    // A write elsewhere in the array is a change for the view too.
    arr.set(0, 77).unwrap();
    assert!(view.version() > v1);

    // Locks are per entry: a guard on one view holds the whole array.
    let other = arr.view(0..10).unwrap();
    {
        let _held = view.read().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(other.try_write(), Err(Error::WouldBlock { .. })));
                assert!(matches!(other.write_timeout(Duration::from_millis(10)), Err(Error::Timeout { .. })));
            })
            .join()
            .unwrap()
        });
        // This thread holds it: its own write would wait for itself, and is refused at once.
        assert!(matches!(other.try_write(), Err(Error::WouldDeadlock { .. })));
        assert!(other.try_read().is_ok());
        assert!(other.read_timeout(Duration::from_millis(10)).is_ok());
    }
    assert!(other.try_write().is_ok());

    // Change notification through a view, from another thread.
    let since = view.version();
    let writer = {
        let arr = store.array::<u32>("arr").unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            arr.view(90..).unwrap().set(0, 5).unwrap();
        })
    };
    let changed = view.wait_for_change(since, Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert!(changed > since);
    assert_eq!(arr.get(90).unwrap(), 5);

    // Views are Copy, and guards borrow the array, not the view.
    let guard = arr.view(1..3).unwrap().read().unwrap();
    assert_eq!(&*guard, &[1, 2]);
    let copy = view;
    assert_eq!(copy.range(), view.range());
    assert!(format!("{view:?}").contains("40..45"));
}

// ---------------------------------------------------------------------------------------------
// Between processes.

#[test]
fn a_child_writing_through_a_view_lands_at_absolute_indices() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let arr = store.array_or_init::<u32>("arr", LEN, 0).unwrap();
    let version = arr.version();

    let mut child = ChildProc::spawn("view_write", &path, "30..38");
    assert_eq!(child.expect("wrote "), "8 true");
    child.finish();

    let got = all(&arr);
    let expected: Vec<u32> = (0..LEN as u32).map(|i| if (30..38).contains(&i) { 1000 + i - 30 } else { 0 }).collect();
    assert_eq!(got, expected);
    assert!(arr.version() > version);
    assert_eq!(&*arr.view(30..38).unwrap().read().unwrap(), &[1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007]);
}

#[test]
fn a_view_guard_in_another_process_locks_the_whole_array() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, MIB).unwrap();
    let arr = store.array_or_init::<u32>("arr", LEN, 0).unwrap();

    let mut child = ChildProc::spawn("view_hold", &path, "0..10");
    assert_eq!(child.expect("holding "), "10");
    // A disjoint view still waits: the lock is the array's.
    let far = arr.view(50..60).unwrap();
    assert!(matches!(far.try_read(), Err(Error::WouldBlock { .. })));
    assert!(matches!(far.read_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
    child.send("release");
    child.expect("released");
    assert_eq!(&*far.read().unwrap(), &[0; 10]);
    assert_eq!(&*arr.view(..10).unwrap().read().unwrap(), &[7; 10]);
    child.finish();
}
