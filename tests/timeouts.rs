//! Every timeout in the API is `Error::Timeout`, and its `waited_for` says what the call waited
//! for: a lock (`read_timeout`, `write_timeout`) or a change (`wait_for_change`), on objects,
//! arrays, array views and byte regions alike. A caller that matches `Error::Timeout` to keep
//! waiting through quiet intervals keeps waiting.

mod common;

use std::time::Duration;

use common::temp_store;
use shmstore::{Error, LockMode, Store, Version, WaitedFor};

const QUIET: Duration = Duration::from_millis(5);

/// Asserts that `result` is a timeout of `waited_for` on entry `name` after `QUIET`, with the
/// message that goes with it.
#[track_caller]
fn assert_timeout<T: std::fmt::Debug>(result: shmstore::Result<T>, name: &str, waited_for: WaitedFor) {
    match result {
        Err(e @ Error::Timeout { .. }) => {
            let message = e.to_string();
            let Error::Timeout { name: n, waited, waited_for: w } = e else { unreachable!() };
            assert_eq!((n.as_str(), waited, w), (name, QUIET, waited_for));
            assert!(message.contains(&format!("`{name}`")), "{message}");
            match waited_for {
                WaitedFor::Change => {
                    assert!(message.starts_with("no change to entry"), "{message}");
                    assert!(message.contains("call wait_for_change again"), "{message}");
                }
                WaitedFor::Lock => {
                    assert!(message.contains("stayed locked"), "{message}");
                    assert!(message.contains("raise the timeout"), "{message}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("expected a timeout waiting for {waited_for:?} on `{name}`, got {other:?}"),
    }
}

#[test]
fn wait_for_change_times_out_with_error_timeout_on_every_kind_of_entry() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let object = store.object_or_init("object", || 0u64).unwrap();
    let array = store.array_or_init::<u32>("array", 16, 0).unwrap();
    let bytes = store.bytes_or_init("bytes", 16).unwrap();

    assert_timeout(object.wait_for_change(object.version(), QUIET), "object", WaitedFor::Change);
    assert_timeout(array.wait_for_change(array.version(), QUIET), "array", WaitedFor::Change);
    let view = array.view(4..8).unwrap();
    assert_timeout(view.wait_for_change(array.version(), QUIET), "array", WaitedFor::Change);
    assert_timeout(bytes.wait_for_change(bytes.version(), QUIET), "bytes", WaitedFor::Change);
    let bytes_view = bytes.view(..4).unwrap();
    assert_timeout(bytes_view.wait_for_change(bytes.version(), QUIET), "bytes", WaitedFor::Change);

    // A read-only store's waiters poll instead of sleeping on the futex; they time out the same way.
    let reader = Store::options().read_only(true).open(&path).unwrap();
    let watched = reader.object::<u64>("object").unwrap();
    assert_timeout(watched.wait_for_change(watched.version(), QUIET), "object", WaitedFor::Change);
}

/// In both lock modes. In robust mode a read guard of a double-buffered object is a lock-free copy
/// (it holds off no writer, and no writer holds it off): there the object's writer is held off by
/// a write guard instead.
#[test]
fn lock_timeouts_are_the_same_error_and_say_they_waited_for_a_lock() {
    lock_timeouts_in(LockMode::Robust);
    lock_timeouts_in(LockMode::Ofd);
}

fn lock_timeouts_in(mode: LockMode) {
    let (_dir, path) = temp_store();
    let store = Store::options().create(true).capacity(1 << 20).lock_mode(mode).open(&path).unwrap();
    let object = store.object_or_init("object", || 0u64).unwrap();
    let array = store.array_or_init::<u32>("array", 16, 0).unwrap();
    let bytes = store.bytes_or_init("bytes", 16).unwrap();

    let (_a, _b) = (array.read().unwrap(), bytes.read().unwrap());
    let (_o, _ow) = match mode {
        LockMode::Ofd => (Some(object.read().unwrap()), None),
        _ => (None, Some(object.write().unwrap())),
    };
    // Another thread asks for the write locks this thread's read guards hold.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_timeout(object.write_timeout(QUIET).map(|g| *g), "object", WaitedFor::Lock);
            assert_timeout(array.write_timeout(QUIET).map(drop), "array", WaitedFor::Lock);
            assert_timeout(array.view(2..4).unwrap().write_timeout(QUIET).map(drop), "array", WaitedFor::Lock);
            assert_timeout(bytes.write_timeout(QUIET).map(drop), "bytes", WaitedFor::Lock);
        });
    });
    drop((_o, _ow, _a, _b));
    let _w = object.write().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| match mode {
            LockMode::Ofd => assert_timeout(object.read_timeout(QUIET).map(|g| *g), "object", WaitedFor::Lock),
            _ => assert_eq!(*object.read_timeout(QUIET).unwrap(), 0, "a copy of the last commit"),
        });
    });
    drop(_w);
    // The arrays' read guards lock in both modes: a writer holds them off.
    let _w = array.write().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| assert_timeout(array.read_timeout(QUIET).map(drop), "array", WaitedFor::Lock));
    });
}

/// The loop of a program that waits for news: a timeout means "nothing yet, keep waiting", every
/// other error ends it. Before every timeout was `Error::Timeout`, `wait_for_change` reported a
/// quiet interval as another error, and this loop ended on the first one.
#[test]
fn a_loop_that_keeps_waiting_on_timeout_survives_quiet_intervals() {
    let (_dir, path) = temp_store();
    let store = Store::open_or_create(&path, 1 << 20).unwrap();
    let news = store.object_or_init("news", || 0u64).unwrap();
    let mut seen: Version = news.version();
    let (mut quiet_intervals, mut quiet_since_news, mut writer_pending) = (0, 0, false);
    let mut received = Vec::new();
    std::thread::scope(|s| {
        while received.len() < 2 {
            match news.wait_for_change(seen, QUIET) {
                Ok((value, version)) => {
                    received.push(value);
                    seen = version;
                    (quiet_since_news, writer_pending) = (0, false);
                }
                Err(Error::Timeout { .. }) => {
                    quiet_intervals += 1;
                    quiet_since_news += 1;
                    // After two quiet intervals, someone has news (one writer at a time).
                    if quiet_since_news >= 2 && !writer_pending {
                        let writer = news.clone();
                        s.spawn(move || writer.update(|n| *n += 1).unwrap());
                        writer_pending = true;
                    }
                }
                Err(e) => panic!("the waiting loop ended on {e:?} after {quiet_intervals} quiet intervals"),
            }
        }
    });
    assert_eq!(received, [1, 2]);
    assert!(quiet_intervals >= 4, "{quiet_intervals}");
}
