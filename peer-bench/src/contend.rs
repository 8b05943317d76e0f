//! One counter incremented by several real processes at once: this binary re-executed as
//! workers, started together, each making a fixed number of increments. The wall time runs from
//! the start signal to the last worker's end, and the final count is checked against the number
//! of increments made, for every system.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmstore::Store;

use crate::peers::{self, Lmdb, Sqlite};
use crate::raw::Raw;
use crate::{Counter, Dirs, Obj64};

/// Set in a worker's environment: the system it increments with. `main` then runs the worker.
pub const WORKER_ENV: &str = "PEER_BENCH_WORKER";
const DIR_ENV: &str = "PEER_BENCH_DIR";
const COUNT_ENV: &str = "PEER_BENCH_INCREMENTS";
const REDIS_ENV: &str = "PEER_BENCH_REDIS";
const PARENT_ENV: &str = "PEER_BENCH_PARENT";

/// The process counts of the scaling runs; the contended table is the 4-process run.
pub const PROCESSES: [usize; 4] = [1, 2, 4, 8];

/// A system that can count from several processes: its worker key, its name in the tables, how
/// many increments each worker makes (enough for a run of 50 ms or more even with one process,
/// so that the workers really overlap: they are started one after the other), and how many runs
/// of each process count it gets. The fast systems that are compared with each other (the raw
/// floors and shmstore) get several runs, taken in turns with one another, and their median is
/// reported: one short run of four processes on two cores depends on how the scheduler happened
/// to interleave them, and a floor measured at another moment than its case would say more
/// about the moment than about either.
struct System {
    key: &'static str,
    name: &'static str,
    per_process: u64,
    rounds: usize,
}

const SYSTEMS: [System; 8] = [
    System { key: "fetch_add", name: "raw memmap2 `fetch_add`", per_process: 20_000_000, rounds: 3 },
    System { key: "shm_get", name: "shmstore `get()` + `fetch_add`", per_process: 20_000_000, rounds: 3 },
    System { key: "robust", name: "raw memmap2 + robust mutex (commit)", per_process: 2_000_000, rounds: 5 },
    System { key: "ofd", name: "raw memmap2 + OFD lock (commit)", per_process: 50_000, rounds: 1 },
    // As many as the raw robust-mutex commit it is compared with, so that both locked rows
    // run long enough for the workers to overlap and be interleaved alike (at 50,000, a worker
    // ran for a few milliseconds: less than one time slice).
    System { key: "shm_update", name: "shmstore `update()`", per_process: 2_000_000, rounds: 5 },
    System { key: "lmdb", name: "LMDB put+commit `NO_SYNC`", per_process: 5_000, rounds: 1 },
    System { key: "sqlite", name: "SQLite WAL `UPDATE`, `synchronous=OFF`", per_process: 1_000, rounds: 1 },
    System { key: "redis", name: "Redis `INCR` (loopback)", per_process: 5_000, rounds: 1 },
];

/// The runs of `processes` workers of one system: the median run, and the spread.
#[derive(Debug, Clone)]
pub struct Run {
    pub processes: usize,
    /// Wall time per increment, all processes together (the median run's).
    pub per_increment_ns: f64,
    /// Increments per second, all processes together, in millions (the median run's).
    pub mops: f64,
    /// The slowest and fastest runs' increments per second, in millions.
    pub mops_range: (f64, f64),
    /// How many runs were made.
    pub runs: usize,
    /// The increments the count grew by, and the increments made, over all runs: equal if none
    /// was lost.
    pub counted: u64,
    pub made: u64,
}

/// Every run of one system.
pub struct SystemRuns {
    pub name: &'static str,
    pub key: &'static str,
    pub per_process: u64,
    pub runs: Vec<Run>,
}

/// Every system, over [`PROCESSES`].
pub struct Scaling {
    pub systems: Vec<SystemRuns>,
}

/// Reads the counter of one system (in the parent), to check the final count.
enum Reader {
    Raw(Raw, bool),
    ShmGet(Store),
    ShmUpdate(Store),
    Lmdb(Lmdb),
    Sqlite(Sqlite),
    Redis(redis::Connection),
}

impl Reader {
    fn count(&mut self) -> u64 {
        match self {
            Reader::Raw(raw, true) => raw.counter().load(Ordering::SeqCst),
            Reader::Raw(raw, false) => raw.seqlock().read().a[0],
            Reader::ShmGet(store) => {
                store.object::<Counter>("counter").unwrap().get().unwrap().n.load(Ordering::SeqCst)
            }
            Reader::ShmUpdate(store) => store.object::<Obj64>("count").unwrap().load().unwrap().a[0],
            Reader::Lmdb(lmdb) => lmdb.count(),
            Reader::Sqlite(sqlite) => sqlite.count(),
            Reader::Redis(con) => peers::redis_count(con),
        }
    }
}

/// Set to a comma-separated list of system keys (`fetch_add`, `shm_get`, `robust`, `ofd`,
/// `shm_update`, `lmdb`, `sqlite`, `redis`) to run only the contended runs of those systems, with
/// no single operations and no report written: `main` checks it.
pub const ONLY_CONTENDED_ENV: &str = "PEER_BENCH_CONTENDED";

/// Runs every system over [`PROCESSES`] (only those named in [`ONLY_CONTENDED_ENV`] if it is set),
/// each as many times as its `rounds`, in turns.
pub fn scaling(dirs: &Dirs, redis_url: Option<&str>) -> Scaling {
    let dir = &dirs.disk;
    let only = std::env::var(ONLY_CONTENDED_ENV).ok();
    let wanted = |key: &str| only.as_ref().is_none_or(|only| only.split(',').any(|k| k.trim() == key));
    let mut readers = Vec::new();
    for system in SYSTEMS.iter().filter(|s| wanted(s.key)) {
        let reader = match system.key {
            "fetch_add" => Reader::Raw(Raw::create(&dir.join("contend-fetch_add.bin")), true),
            "robust" | "ofd" => Reader::Raw(Raw::create(&dir.join(format!("contend-{}.bin", system.key))), false),
            "shm_get" | "shm_update" => {
                let store = Store::open_or_create(dir.join("contend.shm"), 1 << 20).unwrap();
                store.object_or_init("count", Obj64::default).unwrap();
                store.object_or_init("counter", || Counter { n: AtomicU64::new(0) }).unwrap();
                if system.key == "shm_get" {
                    Reader::ShmGet(store)
                } else {
                    Reader::ShmUpdate(store)
                }
            }
            "lmdb" => Reader::Lmdb(Lmdb::open(&dir.join("contend-lmdb"), true)),
            "sqlite" => Reader::Sqlite(Sqlite::open(&dir.join("contend.sqlite"), "OFF")),
            "redis" => match redis_url {
                Some(url) => Reader::Redis(peers::connect(url).unwrap()),
                None => continue,
            },
            other => unreachable!("no system {other}"),
        };
        readers.push((system, reader));
    }
    // Each process count in turn; within it, round after round, every system that has a run
    // left in this round.
    let mut timings: Vec<Vec<Vec<(f64, u64, u64)>>> = vec![vec![Vec::new(); PROCESSES.len()]; readers.len()];
    for (p, processes) in PROCESSES.into_iter().enumerate() {
        let rounds = readers.iter().map(|(system, _)| system.rounds).max().unwrap_or(0);
        for round in 0..rounds {
            for (i, (system, reader)) in readers.iter_mut().enumerate() {
                if round >= system.rounds {
                    continue;
                }
                let before = reader.count();
                let wall = run_workers(system, processes, dir, redis_url);
                let counted = reader.count() - before;
                let made = processes as u64 * system.per_process;
                let per_increment_ns = wall.as_nanos() as f64 / made as f64;
                eprintln!(
                    "  {:<40} {processes} processes, run {}: {:>10.1} ns per increment, {:>8.3} M/s, count {} of {}",
                    system.name,
                    round + 1,
                    per_increment_ns,
                    1e3 / per_increment_ns,
                    counted,
                    made
                );
                timings[i][p].push((per_increment_ns, counted, made));
            }
        }
    }
    let systems = readers
        .iter()
        .zip(timings)
        .map(|((system, _), per_count)| {
            let runs =
                PROCESSES.into_iter().zip(per_count).map(|(processes, timings)| summary(processes, timings)).collect();
            SystemRuns { name: system.name, key: system.key, per_process: system.per_process, runs }
        })
        .collect();
    Scaling { systems }
}

/// The median of `timings` (ns per increment, counted, made), their spread and their counts.
fn summary(processes: usize, mut timings: Vec<(f64, u64, u64)>) -> Run {
    timings.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = timings[timings.len() / 2].0;
    let (fastest, slowest) = (timings[0].0, timings[timings.len() - 1].0);
    Run {
        processes,
        per_increment_ns: median,
        mops: 1e3 / median,
        mops_range: (1e3 / slowest, 1e3 / fastest),
        runs: timings.len(),
        counted: timings.iter().map(|t| t.1).sum(),
        made: timings.iter().map(|t| t.2).sum(),
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn expect(&mut self, what: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), what, "a worker said {line:?} instead of {what:?} (its error is above)");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `processes` workers, waits until each has opened its system, starts them together and
/// returns the wall time until the last one is done.
fn run_workers(system: &System, processes: usize, dir: &Path, redis_url: Option<&str>) -> Duration {
    let mut workers: Vec<Worker> = (0..processes)
        .map(|_| {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .env(WORKER_ENV, system.key)
                .env(DIR_ENV, dir)
                .env(COUNT_ENV, system.per_process.to_string())
                .env(REDIS_ENV, redis_url.unwrap_or(""))
                .env(PARENT_ENV, std::process::id().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start a worker process");
            let (stdin, stdout) = (child.stdin.take().unwrap(), BufReader::new(child.stdout.take().unwrap()));
            Worker { child, stdin, stdout }
        })
        .collect();
    for worker in &mut workers {
        worker.expect("ready");
    }
    let start = Instant::now();
    for worker in &mut workers {
        worker.stdin.write_all(b"go\n").unwrap();
        worker.stdin.flush().unwrap();
    }
    for worker in &mut workers {
        worker.expect("done");
    }
    let wall = start.elapsed();
    for mut worker in workers {
        assert!(worker.child.wait().unwrap().success(), "a worker failed");
    }
    wall
}

/// The body of a worker process: open the system, say `ready`, wait for `go`, increment, say
/// `done`.
pub fn worker_main(key: &str) {
    let parent: libc::pid_t = std::env::var(PARENT_ENV).unwrap().parse().unwrap();
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes two integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: `getppid` has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return; // the bench died before `prctl` took effect
    }
    let dir = std::path::PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
    let n: u64 = std::env::var(COUNT_ENV).unwrap().parse().unwrap();
    let go = || {
        println!("ready");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "go");
    };
    let bump = |o: &mut Obj64| o.a[0] += 1;
    match key {
        "fetch_add" => {
            let raw = Raw::open(&dir.join("contend-fetch_add.bin"));
            let counter = raw.counter();
            go();
            for _ in 0..n {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        "robust" => {
            let raw = Raw::open(&dir.join("contend-robust.bin"));
            go();
            for _ in 0..n {
                raw.mutex_commit(bump);
            }
        }
        "ofd" => {
            let raw = Raw::open(&dir.join("contend-ofd.bin"));
            go();
            for _ in 0..n {
                raw.ofd_commit(bump);
            }
        }
        "shm_get" => {
            let store = Store::open(dir.join("contend.shm")).unwrap();
            let counter = store.object::<Counter>("counter").unwrap();
            go();
            for _ in 0..n {
                counter.get().unwrap().n.fetch_add(1, Ordering::Relaxed);
            }
        }
        "shm_update" => {
            let store = Store::open(dir.join("contend.shm")).unwrap();
            let count = store.object::<Obj64>("count").unwrap();
            go();
            for _ in 0..n {
                count.update(bump).unwrap();
            }
        }
        "lmdb" => {
            let lmdb = Lmdb::open(&dir.join("contend-lmdb"), true);
            go();
            for _ in 0..n {
                lmdb.increment();
            }
        }
        "sqlite" => {
            let sqlite = Sqlite::open(&dir.join("contend.sqlite"), "OFF");
            go();
            for _ in 0..n {
                sqlite.increment();
            }
        }
        "redis" => {
            let mut con = peers::connect(&std::env::var(REDIS_ENV).unwrap()).unwrap();
            go();
            for _ in 0..n {
                peers::redis_incr(&mut con);
            }
        }
        other => panic!("{WORKER_ENV} names no system: {other}"),
    }
    println!("done");
    std::io::stdout().flush().unwrap();
}
