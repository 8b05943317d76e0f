//! shmstore next to raw baselines and peer stores, on the same workloads, in one run.
//!
//! ```text
//! cargo run --release --manifest-path peer-bench/Cargo.toml
//! ```
//!
//! Measures single operations on a 64-byte value (reads, commits, atomic increments) and one
//! counter incremented by 1, 2, 4 and 8 real processes (this binary re-executed as workers), with
//! the final count checked for every system. Prints a markdown table, writes it to
//! `peer-bench/results/peer-table.md`, and plots the scaling to `peer-bench/results/scaling.svg`.
//! `peer-bench/README.md` says what each row measures.

mod contend;
mod harness;
mod peers;
mod raw;
mod report;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use shmstore::{SharedLayout, Store};

use harness::{time, Timing};
use peers::{Lmdb, MmapSync, RedisServer, Sqlite};
use raw::Raw;

/// The 64-byte value every system stores.
#[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Obj64 {
    pub a: [u64; 8],
}

impl Obj64 {
    /// The value's 64 bytes, native-endian.
    pub fn as_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.a) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// The value of 64 native-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Obj64 {
        assert_eq!(bytes.len(), 64, "a stored value is not 64 bytes");
        Obj64 { a: std::array::from_fn(|i| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap())) }
    }
}

/// A counter made only of atomics: shmstore's `get()` uses it without a guard.
#[derive(SharedLayout)]
#[repr(C)]
pub struct Counter {
    pub n: AtomicU64,
}

/// Which floor a single-operation row is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Reads of the value: the raw seqlock read.
    Read,
    /// Replacing the value: the raw robust-mutex commit.
    Commit,
    /// Incrementing a counter: the raw `fetch_add`.
    Increment,
}

/// One measured single operation.
pub struct Row {
    pub group: Group,
    pub system: &'static str,
    pub op: String,
    pub timing: Timing,
    /// The group's floor, timed in turns with this row (the row's own timing for a floor).
    pub floor: Timing,
}

/// The floor of each group, as a loop of `n` operations, to time every row in turns with.
struct Floors<'a> {
    read: Box<dyn FnMut(u64) + 'a>,
    commit: Box<dyn FnMut(u64) + 'a>,
    increment: Box<dyn FnMut(u64) + 'a>,
}

impl Floors<'_> {
    fn of(&mut self, group: Group) -> &mut dyn FnMut(u64) {
        match group {
            Group::Read => &mut *self.read,
            Group::Commit => &mut *self.commit,
            Group::Increment => &mut *self.increment,
        }
    }
}

/// Where a run keeps its files: `disk` on the project's disk, `tmpfs` under /dev/shm.
pub struct Dirs {
    pub disk: PathBuf,
    pub tmpfs: PathBuf,
}

fn main() {
    if let Ok(system) = std::env::var(contend::WORKER_ENV) {
        contend::worker_main(&system);
        return;
    }
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out_dir).unwrap();
    let disk_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&disk_root).unwrap();
    let disk = tempfile::tempdir_in(&disk_root).unwrap();
    let tmpfs = tempfile::tempdir_in("/dev/shm").unwrap();
    let dirs = Dirs { disk: disk.path().to_owned(), tmpfs: tmpfs.path().to_owned() };

    let mut notes = Vec::new();
    let redis = match RedisServer::start() {
        Ok(server) => Some(server),
        Err(why) => {
            notes.push(format!("Redis skipped: {why}."));
            None
        }
    };

    if std::env::var_os(contend::ONLY_CONTENDED_ENV).is_some() {
        eprintln!("contended increments only ...");
        contend::scaling(&dirs, redis.as_ref().map(|r| r.url.as_str()));
        return;
    }
    eprintln!("single operations ...");
    let rows = single_operations(&dirs, redis.as_ref());
    if std::env::var_os(FILTER_ENV).is_some() {
        return;
    }
    eprintln!("contended increments ...");
    let scaling = contend::scaling(&dirs, redis.as_ref().map(|r| r.url.as_str()));
    notes.push(
        "mmap-sync has no contended row: it allows one writer at a time by design (a second \
         writer is refused or corrupts the data), so it cannot count from several processes."
            .into(),
    );
    drop(redis);

    let markdown = report::markdown(&rows, &scaling, &notes);
    print!("{markdown}");
    std::fs::write(out_dir.join("peer-table.md"), &markdown).unwrap();
    report::plot(&scaling, &out_dir.join("scaling.svg"));
    eprintln!("wrote {} and {}", out_dir.join("peer-table.md").display(), out_dir.join("scaling.svg").display());
}

/// Set to a substring of `system operation` to time only the single operations that match it
/// (and nothing else: no contention, no report written), for example to profile one of them.
const FILTER_ENV: &str = "PEER_BENCH_FILTER";

/// Times `op` as one row of `group`, in turns with the group's floor, or as the floor itself
/// when `floors` is `None` (or skips it, see [`FILTER_ENV`]).
fn row<R>(
    floors: Option<&mut Floors<'_>>,
    group: Group,
    system: &'static str,
    op: &str,
    mut f: impl FnMut() -> R,
) -> Row {
    if let Ok(filter) = std::env::var(FILTER_ENV) {
        if !format!("{system} {op}").contains(&filter) {
            let skipped = Timing { median_ns: f64::NAN, min_ns: f64::NAN, max_ns: f64::NAN };
            return Row { group, system, op: op.to_owned(), timing: skipped, floor: skipped };
        }
    }
    let case = |n: u64| {
        for _ in 0..n {
            black_box(f());
        }
    };
    let (timing, floor) = match floors {
        Some(floors) => harness::time_paired(floors.of(group), case),
        None => {
            let timing = time(case);
            (timing, timing)
        }
    };
    eprintln!(
        "  {system:<28} {op:<44} {:>12.1} ns  (floor {:.1} ns, x{:.2})",
        timing.median_ns,
        floor.median_ns,
        timing.median_ns / floor.median_ns
    );
    Row { group, system, op: op.to_owned(), timing, floor }
}

fn single_operations(dirs: &Dirs, redis: Option<&RedisServer>) -> Vec<Row> {
    let mut rows = Vec::new();
    let bump = |o: &mut Obj64| o.a[0] = o.a[0].wrapping_add(1);

    // ---- The raw floors and the raw lock baselines. ----
    let raw = Raw::create(&dirs.disk.join("raw.bin"));
    let seqlock = raw.seqlock();
    let counter = raw.counter();
    // The floors are measured as the library is: the handle (here the seqlock's and the
    // counter's addresses) is loop-invariant, and the compiler may keep it in registers for both.
    rows.push(row(None, Group::Read, "raw memmap2 seqlock", "lock-free read (the floor)", || seqlock.read()));
    rows.push(row(
        None,
        Group::Commit,
        "raw memmap2 + robust mutex",
        "lock, copy out, commit, unlock (the floor)",
        || raw.mutex_commit(bump),
    ));
    rows.push(row(None, Group::Increment, "raw memmap2", "`fetch_add` (the floor)", || {
        counter.fetch_add(1, Ordering::Relaxed)
    }));
    let mut floors = Floors {
        read: Box::new(|n| {
            for _ in 0..n {
                black_box(seqlock.read());
            }
        }),
        commit: Box::new(|n| {
            for _ in 0..n {
                raw.mutex_commit(bump);
            }
        }),
        increment: Box::new(|n| {
            for _ in 0..n {
                black_box(counter.fetch_add(1, Ordering::Relaxed));
            }
        }),
    };
    let floors = &mut floors;
    rows.push(row(Some(&mut *floors), Group::Read, "raw memmap2 + OFD lock", "shared lock, copy, unlock", || {
        raw.ofd(libc::F_RDLCK);
        let v = seqlock.read();
        raw.ofd(libc::F_UNLCK);
        v
    }));
    rows.push(row(Some(&mut *floors), Group::Read, "raw memmap2 + robust mutex", "lock, copy, unlock", || {
        raw.mutex_lock();
        let v = seqlock.read();
        raw.mutex_unlock();
        v
    }));
    rows.push(row(
        Some(&mut *floors),
        Group::Commit,
        "raw memmap2 + OFD lock",
        "lock, copy out, commit, unlock",
        || raw.ofd_commit(bump),
    ));

    // ---- shmstore. ----
    let store = Store::open_or_create(dirs.disk.join("shmstore.shm"), 1 << 20).unwrap();
    let obj = store.object_or_init("obj64", Obj64::default).unwrap();
    let atomic = store.object_or_init("counter", || Counter { n: AtomicU64::new(0) }).unwrap();
    rows.push(row(Some(&mut *floors), Group::Read, "shmstore", "`load()`", || obj.load().unwrap()));
    rows.push(row(Some(&mut *floors), Group::Read, "shmstore", "`read()` guard, copy", || *obj.read().unwrap()));
    let mut value = Obj64::default();
    rows.push(row(Some(&mut *floors), Group::Commit, "shmstore", "`store(v)`", || {
        value.a[0] = value.a[0].wrapping_add(1);
        obj.store(black_box(value)).unwrap()
    }));
    rows.push(row(Some(&mut *floors), Group::Commit, "shmstore", "`update(|o| o.a[0] += 1)`", || {
        obj.update(bump).unwrap()
    }));
    rows.push(row(Some(&mut *floors), Group::Commit, "shmstore", "`write()` guard, `a[0] += 1`, drop", || {
        let mut guard = obj.write().unwrap();
        guard.a[0] = guard.a[0].wrapping_add(1);
    }));
    rows.push(row(Some(&mut *floors), Group::Increment, "shmstore", "`get()?.n.fetch_add(1)`", || {
        atomic.get().unwrap().n.fetch_add(1, Ordering::Relaxed)
    }));
    rows.push(row(
        Some(&mut *floors),
        Group::Increment,
        "shmstore",
        "`read()?.n.fetch_add(1)` (a guard per call)",
        || atomic.read().unwrap().n.fetch_add(1, Ordering::Relaxed),
    ));

    // ---- LMDB. ----
    let lmdb = Lmdb::open(&peers::lmdb_dir(&dirs.disk, true), true);
    rows.push(row(Some(&mut *floors), Group::Read, "LMDB (heed)", "read txn, get, copy", || lmdb.get()));
    let mut value = Obj64::default();
    rows.push(row(Some(&mut *floors), Group::Commit, "LMDB (heed)", "put + commit, `NO_SYNC`", || {
        value.a[0] = value.a[0].wrapping_add(1);
        lmdb.put(&value)
    }));
    let lmdb = Lmdb::open(&peers::lmdb_dir(&dirs.disk, false), false);
    rows.push(row(Some(&mut *floors), Group::Commit, "LMDB (heed)", "put + commit, synced", || {
        value.a[0] = value.a[0].wrapping_add(1);
        lmdb.put(&value)
    }));

    // ---- SQLite. ----
    let sqlite = Sqlite::open(&dirs.disk.join("off.sqlite"), "OFF");
    rows.push(row(Some(&mut *floors), Group::Read, "SQLite (rusqlite, WAL)", "`SELECT`, copy", || sqlite.get()));
    rows.push(row(Some(&mut *floors), Group::Commit, "SQLite (rusqlite, WAL)", "`UPDATE`, `synchronous=OFF`", || {
        value.a[0] = value.a[0].wrapping_add(1);
        sqlite.put(&value)
    }));
    drop(sqlite);
    let sqlite = Sqlite::open(&dirs.disk.join("normal.sqlite"), "NORMAL");
    rows.push(row(
        Some(&mut *floors),
        Group::Commit,
        "SQLite (rusqlite, WAL)",
        "`UPDATE`, `synchronous=NORMAL`",
        || {
            value.a[0] = value.a[0].wrapping_add(1);
            sqlite.put(&value)
        },
    ));
    drop(sqlite);

    // ---- mmap-sync, on tmpfs and on disk. ----
    for (place, dir) in [("tmpfs", &dirs.tmpfs), ("disk", &dirs.disk)] {
        let mut sync = MmapSync::open(&dir.join("mmap-sync"));
        rows.push(row(Some(&mut *floors), Group::Read, "mmap-sync", &format!("read, copy ({place})"), || sync.read()));
        rows.push(row(Some(&mut *floors), Group::Commit, "mmap-sync", &format!("write, one writer ({place})"), || {
            value.a[0] = value.a[0].wrapping_add(1);
            sync.write(&value)
        }));
    }

    // ---- Redis over loopback. ----
    if let Some(server) = redis {
        let mut con = server.connect().unwrap();
        peers::redis_set(&mut con, &Obj64::default());
        rows.push(row(Some(&mut *floors), Group::Read, "Redis (loopback)", "`GET`, copy", || {
            peers::redis_get(&mut con)
        }));
        rows.push(row(Some(&mut *floors), Group::Commit, "Redis (loopback)", "`SET`", || {
            value.a[0] = value.a[0].wrapping_add(1);
            peers::redis_set(&mut con, &value)
        }));
        rows.push(row(Some(&mut *floors), Group::Increment, "Redis (loopback)", "`INCR`", || {
            peers::redis_incr(&mut con)
        }));
    }
    store.close().unwrap();
    rows
}
