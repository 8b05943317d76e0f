//! Entries holding atomics are changed through shared borrows, on purpose: every holder of a read
//! guard may `fetch_add` or `store` them at any moment. Everything else that touches those bytes
//! under the same shared lock must therefore read them atomically, and every copy of caller data
//! into the file must be of data nobody else can change meanwhile.
//!
//! These tests run those paths against each other. Their assertions check the values; the data
//! races they guard against are what ThreadSanitizer reports when they are run under it
//! (`RUSTFLAGS=-Zsanitizer=thread cargo +nightly test -p shmstore --test atomics
//! --target x86_64-unknown-linux-gnu`): before the fix, the validation of a read guard and
//! `Store::read_raw` copied the atomics with plain reads while other threads stored to them.
//! (That `write_at` refuses values holding atomics is a compile-time check:
//! `tests/ui/fail/write_at_atomics.rs`.)

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use shmstore::{SharedLayout, Store};

/// An element holding an atomic that needs validation (`AtomicBool`) next to a plain counter.
#[derive(SharedLayout, Debug)]
#[repr(C)]
struct Slot {
    hits: AtomicU64,
    on: AtomicBool,
    _pad: [u8; 3],
    small: AtomicU32,
}

const LEN: usize = 8;
const ADDERS: usize = 3;
const ROUNDS: u64 = 2_000;

fn slot(hits: u64) -> Slot {
    Slot { hits: AtomicU64::new(hits), on: AtomicBool::new(false), _pad: [0; 3], small: AtomicU32::new(0) }
}

/// Threads `fetch_add` and `store` through read guards while another thread takes read guards
/// (which validate the `AtomicBool`s), copies the raw bytes out with `Store::read_raw` (what the
/// CLI's `dump` and `verify` do) and replaces one element with `set`.
#[test]
fn atomics_change_under_read_guards_while_others_validate_copy_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(dir.path().join("atomics.shm"), 1 << 20).unwrap();
    store.array_or_init::<u64>("slots", LEN, 0).unwrap();
    // `array_or_init` needs `Copy`, so an array of atomics is made by migrating one.
    store.migrate("slots", slot).unwrap();
    let slots = store.array::<Slot>("slots").unwrap();
    let last = LEN - 1;
    let start = Barrier::new(ADDERS + 1);

    thread::scope(|s| {
        for _ in 0..ADDERS {
            let (slots, start) = (&slots, &start);
            s.spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    let guard = slots.read().unwrap();
                    for slot in &guard[..last] {
                        slot.hits.fetch_add(1, Ordering::Relaxed);
                        slot.on.store(round % 2 == 0, Ordering::Relaxed);
                        slot.small.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let (slots, store, start) = (&slots, &store, &start);
        s.spawn(move || {
            start.wait();
            for round in 0..ROUNDS / 4 {
                let guard = slots.read().unwrap();
                assert!(guard[..last].iter().all(|s| s.hits.load(Ordering::Relaxed) <= ADDERS as u64 * ROUNDS));
                drop(guard);
                let raw = store.read_raw("slots", 0, LEN as u64).unwrap();
                let size = std::mem::size_of::<Slot>();
                for (i, bytes) in raw.chunks_exact(size).enumerate() {
                    assert!(bytes[8] <= 1, "element {i}: a torn or invalid bool {}", bytes[8]);
                }
                slots.set(last, slot(round)).unwrap();
            }
        });
    });

    let guard = slots.read().unwrap();
    for (i, slot) in guard[..last].iter().enumerate() {
        assert_eq!(slot.hits.load(Ordering::Relaxed), ADDERS as u64 * ROUNDS, "element {i} lost increments");
        assert_eq!(slot.small.load(Ordering::Relaxed), (ADDERS as u64 * ROUNDS) as u32);
    }
    assert_eq!(guard[last].hits.load(Ordering::Relaxed), ROUNDS / 4 - 1, "the last `set` is what stays");
    drop(guard);
    let raw = store.read_raw("slots", 0, LEN as u64).unwrap();
    assert_eq!(u64::from_ne_bytes(raw[..8].try_into().unwrap()), ADDERS as u64 * ROUNDS);
}

#[derive(SharedLayout)]
#[repr(C)]
struct Stats {
    requests: AtomicU64,
    healthy: AtomicBool,
    _pad: [u8; 7],
}

/// An object holding atomics is made from, and replaced by, values the caller owns, while other
/// threads change it through read guards.
#[test]
fn an_object_holding_atomics_is_stored_from_owned_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(dir.path().join("stats.shm"), 1 << 20).unwrap();
    let init = || Stats { requests: AtomicU64::new(5), healthy: AtomicBool::new(true), _pad: [0; 7] };
    let stats = store.object_or_init("stats", init).unwrap();
    assert!(!stats.is_double_buffered());
    assert_eq!(stats.read().unwrap().requests.load(Ordering::Relaxed), 5);

    let start = Barrier::new(3);
    thread::scope(|s| {
        for _ in 0..2 {
            let (stats, start) = (&stats, &start);
            s.spawn(move || {
                start.wait();
                for _ in 0..ROUNDS {
                    stats.read().unwrap().requests.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        start.wait();
        // Replaced while the adders run: the adds after it count from 1000.
        stats.store(Stats { requests: AtomicU64::new(1000), healthy: AtomicBool::new(false), _pad: [0; 7] }).unwrap();
    });
    let guard = stats.read().unwrap();
    let requests = guard.requests.load(Ordering::Relaxed);
    assert!((1000..=1000 + 2 * ROUNDS).contains(&requests), "requests = {requests}");
    assert!(!guard.healthy.load(Ordering::Relaxed));
}
