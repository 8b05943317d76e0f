//! Quickstart: typed state shared between processes, kept across runs.
//!
//! ```text
//! cargo run --release --example quickstart              # store at target/quickstart.shm
//! cargo run --release --example quickstart -- my.shm    # or anywhere you like
//! ```
//!
//! What it does:
//! 1. opens (or creates) a store file and records this run in a `RunLog` object, so that a second
//!    run can tell when the first one happened;
//! 2. prints the `Totals` that earlier runs left in the store (what the last run counted, and all
//!    runs together);
//! 3. resets this run's shared counter to 0 and starts 4 worker *processes* (this same program,
//!    re-executed with `--worker <id> <path>`); each opens the store by itself, increments the
//!    counter 25,000 times under the store's cross-process lock, and writes its statistics into a
//!    shared array;
//! 4. checks that no increment was lost (the counter is exactly 4 × 25,000), adds it to the
//!    `Totals` for the next run, prints what each worker did, and lists the entries of the store.
//!
//! What persists: `run_log` and `totals` carry over from run to run (run it twice to see run #2
//! find run #1's numbers); `counter` and `workers` are in the file too, but each run starts them
//! over, so that the count it checks is its own.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use shmstore::{FixedStr, SharedLayout, Store};

/// How many worker processes the parent starts.
const WORKERS: usize = 4;
/// How many times each worker increments the shared counter.
const INCREMENTS_PER_WORKER: u64 = 25_000;
/// Size of a new store file. The file is sparse: untouched space costs no disk.
const CAPACITY: u64 = 1 << 20;

/// What the store remembers about past runs of this program.
///
/// A shared type is a `#[repr(C)]` struct of plain data with no padding (the derive refuses
/// anything else at compile time); text goes in a fixed-capacity `FixedStr`. The store records the
/// layout's fingerprint: if you change the struct, bump `version`, and an old store file is then
/// refused with `Error::LayoutMismatch` instead of being misread (delete the file to start over).
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
#[shared(version = 1)]
struct RunLog {
    /// How many times the program has run against this store.
    runs: u64,
    /// When the last run started, in seconds since the Unix epoch.
    last_run_unix_secs: u64,
    /// Process id of the last run.
    last_pid: u32,
    /// How many workers the last run started.
    last_workers: u32,
    /// Host name of the machine that made the last run.
    last_host: FixedStr<32>,
}

/// What all runs counted: kept in the store, and added to by each run.
#[derive(SharedLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Totals {
    /// How many runs have finished their count.
    runs: u64,
    /// The counter the last finished run reached.
    last_run: u64,
    /// The counters of every finished run, added up.
    all_runs: u64,
}

/// One worker's statistics: one row per worker in a shared array.
#[derive(SharedLayout, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct WorkerRow {
    /// The worker's process id (0: the worker has not reported).
    pid: u32,
    /// The worker's index, which is also its row.
    id: u32,
    /// How many increments it made.
    increments: u64,
    /// How long they took, in microseconds.
    micros: u64,
}

fn main() -> std::process::ExitCode {
    // Print errors with their `Display` text: shmstore's messages say what to do next.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, id, path] if flag == "--worker" => worker(id.parse()?, Path::new(path)),
        [flag, ..] if flag.starts_with('-') => {
            Err(format!("unknown option `{flag}`; usage: quickstart [STORE_PATH]").into())
        }
        [path] => parent(PathBuf::from(path)),
        [] => parent(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("examples/ lies in the workspace")
                .join("target/quickstart.shm"),
        ),
        _ => Err("usage: quickstart [STORE_PATH]".into()),
    }
}

/// The parent process: records the run, starts the workers, checks and reports their work.
fn parent(path: PathBuf) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // The first process to get here creates the file; everybody else (the next run, the workers)
    // opens the same one.
    let store = Store::open_or_create(&path, CAPACITY)?;
    println!("store: {} ({} KiB mapped, {} bytes used)", path.display(), store.capacity() / 1024, store.used());

    // 1. The run log. `object_or_init` creates the object on the first run only; later runs get
    //    the value the previous run left. `update` is an atomic read-modify-write: it returns the
    //    old value and the new run number in one step, even if other processes run concurrently.
    let log = store.object_or_init("run_log", RunLog::default)?;
    let now = unix_secs();
    let host = FixedStr::truncating(&host_name());
    let (previous, run) = log.update(|l| {
        let previous = *l;
        l.runs += 1;
        l.last_run_unix_secs = now;
        l.last_pid = std::process::id();
        l.last_workers = WORKERS as u32;
        l.last_host = host;
        (previous, l.runs)
    })?;
    if previous.runs == 0 {
        println!("run #{run} (previous run: none, this is the first run)");
    } else {
        println!(
            "run #{run} (previous run: {} UTC, {} ago, pid {} on {})",
            format_utc(previous.last_run_unix_secs),
            format_age(now.saturating_sub(previous.last_run_unix_secs)),
            previous.last_pid,
            previous.last_host,
        );
    }

    // 2. What earlier runs counted: an object that every run adds to and none resets.
    let totals = store.object_or_init("totals", Totals::default)?;
    let before = totals.load()?;
    if before.runs == 0 {
        println!("kept from earlier runs (`totals`): nothing counted yet");
    } else {
        println!(
            "kept from earlier runs (`totals`): {} counted {} increments in all, the last one {}",
            runs(before.runs),
            before.all_runs,
            before.last_run
        );
    }

    // 3. This run's shared counter and the per-worker statistics. They persist in the file too, but
    //    each run starts them over, so that the count checked below is exactly this run's.
    let counter = store.object_or_init::<u64>("counter", || 0)?;
    let left_over = counter.load()?;
    counter.store(0)?;
    if previous.runs == 0 {
        println!("this run's counter (`counter`): starts at 0");
    } else {
        println!("this run's counter (`counter`): reset to 0 (the last run left it at {left_over})");
    }
    let rows = store.array_or_init("workers", WORKERS, WorkerRow::default())?;
    if rows.len() < WORKERS {
        return Err(format!("the `workers` array in {} has {} rows, need {WORKERS}", path.display(), rows.len()).into());
    }
    rows.write()?.fill(WorkerRow::default());

    // 4. Start the workers: this same executable, in worker mode. They open the store by path,
    //    like any unrelated program could.
    println!("starting {WORKERS} worker processes, {INCREMENTS_PER_WORKER} increments each...");
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut children: Vec<Child> = Vec::with_capacity(WORKERS);
    for id in 0..WORKERS {
        let child = Command::new(&exe).arg("--worker").arg(id.to_string()).arg(&path).spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => {
                // Do not leave the workers already started running on their own.
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!("could not start worker {id} ({}): {e}", exe.display()).into());
            }
        }
    }
    let mut failed = Vec::new();
    for (id, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            failed.push(format!("worker {id} (pid {}) {status}", child.id()));
        }
    }
    let wall = started.elapsed();
    if !failed.is_empty() {
        return Err(format!("{} worker(s) failed: {}", failed.len(), failed.join("; ")).into());
    }

    // 5. Check the result: with the store's locks, no increment is lost.
    let total = counter.load()?;
    let expected = WORKERS as u64 * INCREMENTS_PER_WORKER;
    println!(
        "counter = {total} (expected {expected}) in {:.1} ms wall, {:.0} updates/s across processes",
        wall.as_secs_f64() * 1e3,
        total as f64 / wall.as_secs_f64(),
    );
    if total != expected {
        return Err(format!(
            "lost updates: the counter is {total}, expected {WORKERS} x {INCREMENTS_PER_WORKER} = {expected}"
        )
        .into());
    }

    // 6. Add this run's count to the totals, for the next run. `update` returns the new value.
    let after = totals.update(|t| {
        t.runs += 1;
        t.last_run = total;
        t.all_runs += total;
        *t
    })?;
    println!("kept for the next run (`totals`): {} counted {} increments in all", runs(after.runs), after.all_runs);

    // 7. What each worker reported. `read()` gives the whole array under one shared lock.
    println!();
    println!("{:>6} {:>8} {:>11} {:>10} {:>10}", "worker", "pid", "increments", "time", "ns/update");
    for (id, row) in rows.read()?.iter().take(WORKERS).enumerate() {
        if row.pid == 0 {
            return Err(format!("worker {id} exited successfully but did not report").into());
        }
        let ns_per_update = row.micros as f64 * 1e3 / row.increments.max(1) as f64;
        let time = format!("{:.1} ms", row.micros as f64 / 1e3);
        println!("{:>6} {:>8} {:>11} {:>10} {:>10.0}", row.id, row.pid, row.increments, time, ns_per_update);
    }

    // 8. Everything in the store, as any process can list it without knowing the types.
    println!();
    println!(
        "{:<10} {:<7} {:<10} {:>7} {:<16} {:>5} {:>6}",
        "entry", "kind", "type", "version", "fingerprint", "len", "bytes"
    );
    for e in store.entries()? {
        println!(
            "{:<10} {:<7} {:<10} {:>7} {:016x} {:>5} {:>6}",
            e.name,
            e.kind.as_str(),
            e.type_name,
            e.version,
            e.fingerprint,
            e.len,
            e.bytes
        );
    }

    // Writing back to disk is optional (the page cache already shares the data and keeps it when
    // the process exits); `close` does it and reports a failure instead of ignoring it.
    store.close()?;
    println!();
    println!(
        "done: run again, and run #{} will find this run in `run_log` and `totals` \
         (`counter` and `workers` start over each run)",
        run + 1
    );
    Ok(())
}

/// A worker process: increments the shared counter and reports its statistics.
fn worker(id: usize, path: &Path) -> Result<(), Box<dyn Error>> {
    // `Store::open` never creates: the parent made the store, and the worker must find it.
    let store = Store::open(path)?;
    // The typed handles check the stored layouts once; a mismatch would be an error here.
    let counter = store.object::<u64>("counter")?;
    let rows = store.array::<WorkerRow>("workers")?;

    let started = Instant::now();
    for _ in 0..INCREMENTS_PER_WORKER {
        // Each `update` takes the counter's exclusive lock, which excludes the other workers (and
        // any other process or thread using the store) until the closure returns.
        counter.update(|n| *n += 1)?;
    }
    let elapsed = started.elapsed();

    let row = WorkerRow {
        pid: std::process::id(),
        id: id as u32,
        increments: INCREMENTS_PER_WORKER,
        micros: elapsed.as_micros() as u64,
    };
    rows.set(id, row)?;
    Ok(())
}

/// `1 run`, `2 runs`.
fn runs(n: u64) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

/// Seconds since the Unix epoch.
fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The machine's host name, or `"unknown"`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) for seconds since the Unix epoch, without a date library.
fn format_utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A rough human age: `42 s`, `3 min`, `5 h`, `2 days`.
fn format_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7_199 => format!("{} min", secs / 60),
        7_200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}
