//! A model check of the commit protocol of double-buffered objects, with loom.
//!
//! Runs only with `--cfg loom` (so that `cargo test` never builds loom):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmstore --test loom --release
//! ```
//!
//! The model includes the library's own `src/entry/seqlock.rs` by path, and implements its `Word` trait
//! for loom's `AtomicU64`: so it explores every interleaving, and every value the C++/Rust memory
//! model lets each relaxed load return, of **the functions `Shared::load` and commits run, with
//! their orderings**. loom stands for the parts the module does not hold: a `Mutex` for the
//! entry's exclusive lock (which orders writers, as the kernel's lock does), and bounded retries
//! for `OPTIMISTIC_TRIES`.
//!
//! Every successful read must return exactly one committed value, whole, with the sequence number
//! it was committed under: value `k` is `[k, k, k]`, committed as `seq == k`.
#![cfg(loom)]

#[allow(dead_code)]
#[path = "../src/entry/seqlock.rs"]
mod seqlock;

use loom::sync::atomic::AtomicU64;
use loom::sync::{Arc, Mutex};
use seqlock::Word;
use std::sync::atomic::Ordering;

impl Word for AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order)
    }

    fn fence(order: Ordering) {
        loom::sync::atomic::fence(order)
    }

    fn spin() {
        loom::hint::spin_loop()
    }
}

/// Words per value: enough for a torn read to show as a mix.
const WORDS: usize = 3;
const BYTES: usize = WORDS * 8;

/// One double-buffered object: `seq`, two slots, and the exclusive lock writers take.
struct Object {
    seq: AtomicU64,
    slots: [Vec<AtomicU64>; 2],
    lock: Mutex<()>,
}

impl Object {
    /// Value 0 committed at `seq == 0`, in slot 0; slot 1 holds garbage a reader must never return.
    fn new() -> Arc<Object> {
        let slot = |fill: u64| (0..WORDS).map(|_| AtomicU64::new(fill)).collect();
        Arc::new(Object { seq: AtomicU64::new(0), slots: [slot(0), slot(0xdead)], lock: Mutex::new(()) })
    }

    fn value(k: u64) -> [u8; BYTES] {
        let mut bytes = [0u8; BYTES];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&k.to_ne_bytes());
        }
        bytes
    }

    /// A commit of value `k`, under the lock, exactly as `EntryHandle::publish` makes it.
    fn commit(&self, k: u64) {
        let _lock = self.lock.lock().unwrap();
        let published = seqlock::commit::<_, ()>(
            &self.seq,
            &Object::value(k),
            |next| Ok(&self.slots[seqlock::active(next)]),
            || (),
            || Ok(()),
        );
        assert_eq!(published, Ok(k), "commits are numbered in lock order");
    }

    /// An optimistic read with `tries` attempts, exactly as `EntryHandle::load_optimistic` makes
    /// it, checking that a successful one returned one committed value, whole.
    fn read(&self, tries: u32) -> Option<u64> {
        let slots = [&self.slots[0][..], &self.slots[1][..]];
        let copy = |words: &[AtomicU64]| {
            let mut out = [0u8; BYTES];
            assert!(seqlock::copy_out(words, &mut out));
            out
        };
        let (bytes, seq) = seqlock::read::<_, _, ()>(&self.seq, slots, tries, || Ok(()), copy).unwrap()?;
        assert_eq!(bytes, Object::value(seq), "a read that succeeded at seq {seq} returned {bytes:?}");
        Some(seq)
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Enough to interleave a whole copy with a whole commit; the default is unbounded, which
    // takes hours for these models. LOOM_MAX_PREEMPTIONS overrides it.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// One writer commits twice (so it refills the slot a reader may be copying) while one reader
/// reads: every read it completes is whole, and versions never go backwards.
#[test]
fn one_writer_twice_one_reader() {
    model(|| {
        let obj = Object::new();
        let writer = {
            let obj = obj.clone();
            loom::thread::spawn(move || {
                obj.commit(1);
                obj.commit(2);
            })
        };
        let first = obj.read(2);
        let second = obj.read(2);
        if let (Some(a), Some(b)) = (first, second) {
            assert!(a <= b, "a later read saw an older commit: {a} then {b}");
        }
        writer.join().unwrap();
        assert_eq!(obj.read(1), Some(2), "after the writer is done, a read sees its last commit");
    });
}

/// The same with two readers, one attempt each.
#[test]
fn one_writer_twice_two_readers() {
    model(|| {
        let obj = Object::new();
        let writer = {
            let obj = obj.clone();
            loom::thread::spawn(move || {
                obj.commit(1);
                obj.commit(2);
            })
        };
        let reader = {
            let obj = obj.clone();
            loom::thread::spawn(move || {
                obj.read(1);
            })
        };
        obj.read(1);
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

/// Two writers, one after the other, each in its own thread, ordered only by the lock: the
/// second refills the slot the first one left inactive, and the reader's copy of it must still be
/// caught. This is the case the release fence before the copy is for: the second writer's bytes
/// carry no ordering of their own; only the fence ties them to the first writer's `seq` store.
#[test]
fn second_writer_after_the_first() {
    model(|| {
        let obj = Object::new();
        let first = {
            let obj = obj.clone();
            loom::thread::spawn(move || obj.commit(1))
        };
        let second = {
            let obj = obj.clone();
            loom::thread::spawn(move || {
                // Wait (as a writer queued on the lock would) until the first commit is in.
                loop {
                    {
                        let _lock = obj.lock.lock().unwrap();
                        if obj.seq.load(Ordering::Relaxed) == 1 {
                            break;
                        }
                    }
                    loom::thread::yield_now();
                }
                obj.commit(2);
            })
        };
        obj.read(2);
        first.join().unwrap();
        second.join().unwrap();
    });
}
