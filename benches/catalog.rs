//! Benchmarks of the catalog: opening a store with many entries, finding an entry by name the
//! first time, and creating many entries (issue 10), each next to an in-process baseline.
//!
//! ```text
//! cargo bench --bench catalog -- --noplot             # everything, about 2 minutes
//! cargo bench --bench catalog -- first_lookup/         # one group (a substring filter)
//! ```
//!
//! | shmstore                                | target   | baseline                                 |
//! | --------------------------------------- | -------- | ---------------------------------------- |
//! | `catalog/open_first_lookup/10000`       | < 100 µs | `baseline/open_flock_mmap`               |
//! | `catalog/first_lookup/{10,1000,10000}`  | < 1 µs   | `baseline/hashmap_lookup/{10,1000,10000}` |
//! | `catalog/first_lookup_cpu/{10,1000,10000}` | < 1 µs | `baseline/hashmap_lookup/{10,1000,10000}` |
//! | `catalog/create/10000`                  | < 50 ms  | `baseline/hashmap_insert/10000`          |
//!
//! - `open_first_lookup`: `Store::open` of a store holding 10,000 objects, `object::<u64>` of one
//!   of them, `load()`, and dropping it all: what a short-lived process pays to read one value.
//!   Baseline: the system calls any open of a store makes (`open`, a shared `flock`, `mmap` of 1
//!   MiB, a read of the first page, `munmap`, `close`).
//! - `first_lookup/N`: the mean time of `object::<u64>(name)` for a name this `Store` has not
//!   looked up before (every entry once, in a shuffled order, then a fresh `Store`), in a store of
//!   N objects; the handle is dropped outside the timing. Baseline: `HashMap<String, u64>::get` of
//!   the same names.
//! - `first_lookup_cpu/N`: the same, timed by this thread's CPU time (user and system, page
//!   faults included) instead of the elapsed time: a lookup never blocks, so on an idle machine
//!   the two agree, and on a loaded one this case leaves out the time other processes ran.
//! - `create/10000`: 10,000 `object_or_init` calls of new names into a new, empty store made with
//!   default options (so the catalog grows as it fills where the format allows it; a store of
//!   format version 1 needs `max_entries`, and gets 16,384). Baseline: 10,000 inserts into a
//!   `HashMap<String, u64>`.

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion};
use memmap2::Mmap;
use shmstore::{Error, Store};

/// The fills the lookup benchmarks run at.
const FILLS: [usize; 3] = [10, 1_000, 10_000];
/// The number of entries of the open and create benchmarks.
const MANY: usize = 10_000;
/// Room for 10,000 objects of one `u64` and their catalog, without growth during a measurement.
const CAPACITY: u64 = 32 << 20;

fn name(i: usize) -> String {
    format!("entry-{i:05}")
}

/// A new store at `path` made with default options and a capacity; if it refuses more entries
/// than its catalog holds (format version 1), one with a catalog of 16,384 entries instead.
fn new_store(path: &Path, entries: usize) -> Store {
    let store = Store::options().create(true).capacity(CAPACITY).open(path).unwrap();
    if entries <= store.max_entries() as usize {
        return store;
    }
    drop(store);
    std::fs::remove_file(path).unwrap();
    Store::options().create(true).capacity(CAPACITY).max_entries(16_384).open(path).unwrap()
}

/// Creates the objects `entry-00000`.. (holding their index) in `store`.
fn fill(store: &Store, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        match store.object_or_init(n, || i as u64) {
            Ok(_) => {}
            Err(e @ Error::CatalogFull { .. }) => panic!("{e}"),
            Err(e) => panic!("creating {n}: {e}"),
        }
    }
}

/// A store of `n` objects in `dir`.
fn store_of(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("fill-{n}.shm"));
    let names: Vec<String> = (0..n).map(name).collect();
    let store = new_store(&path, n);
    fill(&store, &names);
    store.close().unwrap();
    path
}

/// `0..n` in an order that jumps around the catalog (a fixed permutation: multiples of a number
/// coprime with `n`), so that consecutive lookups do not probe neighbouring slots.
fn shuffled(n: usize) -> Vec<usize> {
    let step = (1..).map(|k| n / 2 + k).find(|s| gcd(*s, n) == 1).unwrap_or(1);
    (0..n).map(|i| (i * step) % n).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The system calls of opening a store by hand: open, shared `flock`, map 1 MiB, read the first
/// page, unmap, close.
fn raw_open(path: &Path) -> u64 {
    let file = File::open(path).unwrap();
    // SAFETY: `flock` acts on the descriptor only, which `file` keeps open.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) }, 0);
    // SAFETY: the file is a store of more than 1 MiB that nothing shrinks while it is mapped.
    let map: Mmap = unsafe { memmap2::MmapOptions::new().len(1 << 20).map(&file) }.unwrap();
    map[..4096].iter().map(|&b| u64::from(b)).sum()
}

/// What `first_lookup` times with.
#[derive(Clone, Copy)]
enum Clock {
    /// Elapsed time.
    Wall,
    /// CPU time of this thread (user and system, so page faults included): a lookup never
    /// blocks, so on an idle machine this is its elapsed time, and on a loaded one it leaves out
    /// the time other processes had the CPU.
    ThreadCpu,
}

impl Clock {
    fn now(self) -> Duration {
        match self {
            Clock::Wall => START.with(|start| start.elapsed()),
            Clock::ThreadCpu => {
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: `ts` is a valid, writable `timespec`, and the clock id is a constant
                // that Linux supports.
                assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            }
        }
    }
}

thread_local! {
    /// The origin of [`Clock::Wall`].
    static START: Instant = Instant::now();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<(usize, PathBuf)> = FILLS.iter().map(|&n| (n, store_of(dir.path(), n))).collect();
    let many = &paths.iter().find(|(n, _)| *n == MANY).unwrap().1;

    let mut g = c.benchmark_group("catalog");
    g.bench_function("open_first_lookup/10000", |b| {
        let target = name(MANY / 2);
        b.iter(|| {
            let store = Store::open(many).unwrap();
            let value = store.object::<u64>(&target).unwrap().load().unwrap();
            black_box(value)
        })
    });
    for (clock, id) in [(Clock::Wall, "first_lookup"), (Clock::ThreadCpu, "first_lookup_cpu")] {
        for (n, path) in &paths {
            let names: Vec<String> = (0..*n).map(name).collect();
            let order = shuffled(*n);
            g.bench_function(format!("{id}/{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    let mut handles = Vec::with_capacity(*n);
                    while done < iters {
                        // A fresh `Store`: none of its names has been looked up yet.
                        let store = Store::open(path).unwrap();
                        let batch = (iters - done).min(*n as u64) as usize;
                        let start = clock.now();
                        for &i in &order[..batch] {
                            handles.push(store.object::<u64>(&names[i]).unwrap());
                        }
                        total += clock.now() - start;
                        done += batch as u64;
                        handles.clear();
                    }
                    total
                })
            });
        }
    }
    g.bench_function(format!("create/{MANY}"), |b| {
        let names: Vec<String> = (0..MANY).map(name).collect();
        let mut round = 0;
        b.iter_batched(
            || {
                round += 1;
                let path = dir.path().join(format!("create-{round}.shm"));
                (new_store(&path, MANY), path)
            },
            |(store, path)| {
                fill(&store, &names);
                (store, path)
            },
            BatchSize::PerIteration,
        );
        for round in 1..=round {
            let _ = std::fs::remove_file(dir.path().join(format!("create-{round}.shm")));
        }
    });
    g.finish();

    let mut g = c.benchmark_group("baseline");
    g.bench_function("open_flock_mmap", |b| b.iter(|| black_box(raw_open(many))));
    for n in FILLS {
        let map: HashMap<String, u64> = (0..n).map(|i| (name(i), i as u64)).collect();
        let names: Vec<String> = (0..n).map(name).collect();
        let order = shuffled(n);
        g.bench_function(format!("hashmap_lookup/{n}"), |b| {
            let mut k = 0;
            b.iter(|| {
                k = if k + 1 == n { 0 } else { k + 1 };
                black_box(map.get(&names[order[k]]))
            })
        });
    }
    g.bench_function(format!("hashmap_insert/{MANY}"), |b| {
        let names: Vec<String> = (0..MANY).map(name).collect();
        b.iter_batched(
            HashMap::<String, u64>::new,
            |mut map| {
                for (i, n) in names.iter().enumerate() {
                    map.insert(n.clone(), i as u64);
                }
                map
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = catalog;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = benches
}

fn main() {
    catalog();
    Criterion::default().configure_from_args().final_summary();
}
