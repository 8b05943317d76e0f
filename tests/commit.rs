//! Crash-atomic commits, lock-free reads and change notification, across real processes.
//!
//! Every multi-process test here spawns this test binary again as child processes (see
//! `child_main`) and talks to them over stdin/stdout, as in `tests/multiprocess.rs`.
//!
//! The objects share one invariant-carrying type, [`Tied`]: every word of it is derived from its
//! `counter` and its random `a`, so a value mixed from two commits (a torn read, a half-published
//! commit, a leaked rolled-back copy) is caught by [`Tied::check`]. And every commit in these tests
//! raises `counter` by exactly one, so `counter == version - version at creation` always holds too,
//! which also catches a lost or doubled commit.
//!
//! # Environment
//!
//! - `SHMSTORE_SOAK_KILLS=N`: how many SIGKILLs the chaos test (`kill_9_chaos_...`) deals
//!   (default 200, which takes 5-15 s in a debug build on 2 cores). For a soak, e.g.
//!   `SHMSTORE_SOAK_KILLS=5000 cargo test --test commit kill_9 -- --nocapture`. The ignored test
//!   `kill_9_chaos_soak` deals at least 1,000 (`cargo test --test commit -- --ignored kill_9_chaos_soak`).
//! - `SHMSTORE_CHAOS_SEED=S`: the seed of the chaos test's kill schedule (victims and timing) and
//!   of its writers' choices; the default is fixed, the seed in use is printed.
//!
//! Run with `--nocapture` to see the numbers (kills, load counts, wake-up latencies).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{emit, temp_store, wait_for, wait_line, ChildArgs, ChildProc, Rng};
use shmstore::{Durability, Error, LockMode, Shared, SharedArray, SharedLayout, Store, Version, WaitedFor};

const CAPACITY: u64 = 1 << 20;

/// A value whose words are all tied together, so that a mix of two values is detectable:
///
/// - `b == !a`
/// - `sum == a + counter` (wrapping)
/// - `pad_words[i] == (counter ^ KEY * (i + 1)) + a.rotate_left(5 * i + 1)` (wrapping)
///
/// 128 bytes: two cache lines, sixteen words, so tearing has room to show.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Tied {
    counter: u64,
    a: u64,
    b: u64,
    sum: u64,
    pad_words: [u64; 12],
}

const KEY: u64 = 0x9e37_79b9_7f4a_7c15;
const WORDS: usize = 16;

impl Tied {
    fn new(counter: u64, a: u64) -> Tied {
        let mut pad_words = [0; 12];
        for (i, w) in pad_words.iter_mut().enumerate() {
            *w = Self::pad(counter, a, i);
        }
        Tied { counter, a, b: !a, sum: a.wrapping_add(counter), pad_words }
    }

    fn pad(counter: u64, a: u64, i: usize) -> u64 {
        (counter ^ KEY.wrapping_mul(i as u64 + 1)).wrapping_add(a.rotate_left(5 * i as u32 + 1))
    }

    /// The next value: counter + 1, a new `a`, and every other field rewritten to match.
    fn advanced(self, a: u64) -> Tied {
        Tied::new(self.counter + 1, a)
    }

    /// Moves to the next value in place, writing every field.
    fn advance(&mut self, a: u64) {
        *self = self.advanced(a);
    }

    /// Breaks the invariant (and jumps the counter): what a rolled-back change must never expose.
    fn garble(&mut self) {
        self.counter = self.counter.wrapping_add(1 << 40);
        self.a = 99;
        self.b = 99;
        self.pad_words[11] = 0;
    }

    fn check(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        if self.b != !self.a {
            bad.push("b != !a".to_owned());
        }
        if self.sum != self.a.wrapping_add(self.counter) {
            bad.push("sum != a + counter".to_owned());
        }
        for (i, &w) in self.pad_words.iter().enumerate() {
            if w != Self::pad(self.counter, self.a, i) {
                bad.push(format!("pad_words[{i}]"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("torn value ({}): {self:x?}", bad.join(", ")))
        }
    }

    fn words(&self) -> [u64; WORDS] {
        let mut w = [0; WORDS];
        w[..4].copy_from_slice(&[self.counter, self.a, self.b, self.sum]);
        w[4..].copy_from_slice(&self.pad_words);
        w
    }

    fn from_words(w: &[u64]) -> Tied {
        assert_eq!(w.len(), WORDS, "{w:?}");
        Tied { counter: w[0], a: w[1], b: w[2], sum: w[3], pad_words: w[4..].try_into().unwrap() }
    }

    /// The value as text: the words in hex, space-separated.
    fn encode(&self) -> String {
        self.words().iter().map(|w| format!("{w:x}")).collect::<Vec<_>>().join(" ")
    }

    fn decode<'a>(words: impl Iterator<Item = &'a str>) -> Tied {
        let w: Vec<u64> = words.map(|s| u64::from_str_radix(s, 16).unwrap_or_else(|e| panic!("{s:?}: {e}"))).collect();
        Tied::from_words(&w)
    }
}

/// Panics with this message are deliberate (to test rollback); children do not print them.
const DELIBERATE: &str = "deliberate panic inside a write guard";

/// In a child that panics on purpose many times: keeps stderr quiet for those panics only.
fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or_default();
        if msg != DELIBERATE {
            default(info);
        }
    }));
}

/// In a child: reports a violation to the parent and exits with status 3.
fn verified(t: &Tied) {
    if let Err(e) = t.check() {
        emit(format!("violation {e}"));
        std::process::exit(3);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s.trim().parse().unwrap_or_else(|e| panic!("{name}={s:?}: {e}")),
        Err(_) => default,
    }
}

fn new_store(path: &Path) -> Store {
    Store::open_or_create(path, CAPACITY).unwrap()
}

/// A new store whose processes lock in `mode`: the children, which open it while this process
/// has it open, follow the mode it recorded.
fn new_store_in(path: &Path, mode: LockMode) -> Store {
    let store = Store::options().create(true).capacity(CAPACITY).lock_mode(mode).open(path).unwrap();
    assert_eq!(store.lock_mode(), mode);
    store
}

/// One look at `obj`'s value and version together, under a lock (so that it also proves that no
/// dead process left the lock stuck): a read guard in OFD mode, where writers wait for it; in
/// robust mode, where a read guard of a double-buffered object is a lock-free copy, the write
/// lock (aborted, so nothing changes).
fn locked_look(obj: &Shared<Tied>, mode: LockMode) -> (Tied, u64) {
    let patience = Duration::from_secs(20);
    match mode {
        LockMode::Ofd => {
            let guard = obj.read_timeout(patience).expect("a killed writer's lock is released");
            // Writers are excluded while the guard lives, so this is the guarded value's version.
            (*guard, obj.version().get())
        }
        _ => {
            let guard = obj.write_timeout(patience).expect("a killed writer's lock is released");
            let look = (*guard, obj.version().get());
            guard.abort().unwrap();
            look
        }
    }
}

/// The object `name`, created with counter 0; returns it and its version at creation.
fn tied_object(store: &Store, name: &str) -> (Shared<Tied>, u64) {
    let obj = store.object_or_init(name, || Tied::new(0, 1)).unwrap();
    assert!(obj.is_double_buffered(), "{name}: an object without atomics must be double-buffered");
    let v0 = obj.version().get();
    assert_eq!(obj.load().unwrap(), Tied::new(0, 1));
    (obj, v0)
}

// ---------------------------------------------------------------------------------------------
// The child side.

#[test]
#[ignore = "entry point for child processes spawned by the tests in this file"]
fn child_main() {
    let Some(args) = common::child_args() else { return };
    match args.role.as_str() {
        "chaos_writer" => role_chaos_writer(&args),
        "dump" => role_dump(&args),
        "hunt_writer" => role_hunt_writer(&args),
        "hunt_reader" => role_hunt_reader(&args),
        "watch" => role_watch(&args),
        "watch_array" => role_watch_array(&args),
        "commit_on_go" => role_commit_on_go(&args),
        "panic_in_guard" => role_panic_in_guard(&args),
        "stage_and_hang" => role_stage_and_hang(&args),
        "durable_commit" => role_durable_commit(&args),
        "watch_read_only" => role_watch_read_only(&args),
        other => panic!("unknown child role {other:?}"),
    }
}

/// The objects of the chaos test: one shared by every writer, and one per writer.
const SHARED_NAME: &str = "tied";
const CHAOS_WRITERS: usize = 4;

fn solo_name(writer: usize) -> String {
    format!("solo-{writer}")
}

fn chaos_names() -> Vec<String> {
    std::iter::once(SHARED_NAME.to_owned()).chain((0..CHAOS_WRITERS).map(solo_name)).collect()
}

/// `arg` is `INDEX:SEED`. Commits to the shared object (read-modify-writes: `update`, `write` +
/// `commit`, `write` + drop; and rolled-back changes: `write` + `abort`, a panic in `update`) and
/// to its own object (`store` of the next value: only this writer writes it), as fast as it can,
/// until it is killed. Writer 3 commits to its own object with [`Durability::PowerLoss`]. Any
/// value that breaks the invariant is reported (`violation ...`) and ends the process with
/// status 3.
fn role_chaos_writer(args: &ChildArgs) {
    let (index, seed) = args.arg.split_once(':').unwrap();
    let (index, seed): (usize, u64) = (index.parse().unwrap(), seed.parse().unwrap());
    common::exit_when_stdin_closes();
    quiet_deliberate_panics();
    let store = Store::open(&args.path).unwrap();
    let shared = store.object::<Tied>(SHARED_NAME).unwrap();
    let solo = store.object::<Tied>(&solo_name(index)).unwrap();
    let solo = if index == 3 { solo.with_durability(Durability::PowerLoss) } else { solo };
    emit("ready");
    let mut rng = Rng::new(seed);
    loop {
        let (op, a) = (rng.next_u64() % 10, rng.next_u64());
        match op {
            0..=2 => shared
                .update(|t| {
                    verified(t);
                    t.advance(a);
                })
                .unwrap(),
            3 => {
                let mut g = shared.write().unwrap();
                verified(&g);
                g.advance(a);
                g.commit().unwrap();
            }
            4 => {
                let mut g = shared.write().unwrap();
                verified(&g);
                g.advance(a);
                drop(g);
            }
            5 => {
                let mut g = shared.write().unwrap();
                g.garble();
                g.abort().unwrap();
            }
            6 => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    shared.update(|t| {
                        t.garble();
                        std::panic::panic_any(DELIBERATE)
                    })
                }));
                assert!(r.is_err());
            }
            _ => {
                let current = solo.load().unwrap();
                verified(&current);
                solo.store(current.advanced(a)).unwrap();
            }
        }
    }
}

/// Opens the store fresh and prints every object named in `arg` (comma-separated), first through
/// `load_versioned()` then through a `read()` guard, then through `load_versioned()` of a
/// read-only open: `load NAME VERSION WORDS...`, `read NAME VERSION WORDS...`,
/// `ro-load NAME VERSION WORDS...`.
fn role_dump(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let read_only = Store::options().read_only(true).open(&args.path).unwrap();
    for name in args.arg.split(',') {
        let obj = store.object::<Tied>(name).unwrap();
        let (value, version) = obj.load_versioned().unwrap();
        emit(format!("load {name} {} {}", version.get(), value.encode()));
        let (value, version) = locked_look(&obj, store.lock_mode());
        emit(format!("read {name} {version} {}", value.encode()));
        let (value, version) = read_only.object::<Tied>(name).unwrap().load_versioned().unwrap();
        emit(format!("ro-load {name} {} {}", version.get(), value.encode()));
    }
    emit("done");
}

/// One observation by a dump child.
struct Observed {
    how: String,
    name: String,
    version: u64,
    value: Tied,
}

fn parse_observed(msg: &str) -> Observed {
    let mut parts = msg.split_whitespace();
    let how = parts.next().unwrap().to_owned();
    let name = parts.next().unwrap().to_owned();
    let version = parts.next().unwrap().parse().unwrap();
    Observed { how, name, version, value: Tied::decode(parts) }
}

/// Reads all of a dump child's observations (three per object).
fn dump(path: &Path, names: &[String]) -> Vec<Observed> {
    let mut child = ChildProc::spawn("dump", path, &names.join(","));
    let mut seen = Vec::new();
    for name in names {
        for how in ["load", "read", "ro-load"] {
            let o = parse_observed(&format!("{how} {}", child.expect(how)));
            assert_eq!((o.how.as_str(), o.name.as_str()), (how, name.as_str()));
            seen.push(o);
        }
    }
    child.expect("done");
    child.finish();
    seen
}

/// `arg` is `SEED`. Waits for `go`, then commits to object `hunt` as fast as it can (every kind of
/// commit, and rolled-back garbage in between) until the parent sends `stop` or closes stdin;
/// then reports `done COMMITS`. It is the only writer, so `store(load() + 1)` is a valid
/// increment here.
fn role_hunt_writer(args: &ChildArgs) {
    let mut rng = Rng::new(args.arg.parse().unwrap());
    quiet_deliberate_panics();
    let store = Store::open(&args.path).unwrap();
    let obj = store.object::<Tied>("hunt").unwrap();
    emit("ready");
    wait_for("go");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = wait_line();
        flag.store(true, Ordering::SeqCst);
    });
    let mut commits = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (op, a) = (rng.next_u64() % 8, rng.next_u64());
        match op {
            0 | 1 => obj.update(|t| t.advance(a)).unwrap(),
            2 => {
                let mut g = obj.write().unwrap();
                g.advance(a);
                g.commit().unwrap();
            }
            3 => obj.write().unwrap().advance(a),
            4 | 5 => obj.store(obj.load().unwrap().advanced(a)).unwrap(),
            6 => {
                let mut g = obj.write().unwrap();
                g.garble();
                g.abort().unwrap();
                continue;
            }
            _ => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    obj.update(|t| {
                        t.garble();
                        std::panic::panic_any(DELIBERATE)
                    })
                }));
                assert!(r.is_err());
                continue;
            }
        }
        commits += 1;
    }
    emit(format!("done {commits}"));
}

/// What one torn-read hunter saw.
#[derive(Debug, Default)]
struct HuntStats {
    loads: u64,
    /// How many times the version moved between two of its reads.
    changes: u64,
    violations: u64,
    /// The first few violations.
    examples: Vec<String>,
}

impl HuntStats {
    fn encode(&self) -> String {
        format!("{} {} {} {}", self.loads, self.changes, self.violations, self.examples.join(" | "))
    }

    fn decode(s: &str) -> HuntStats {
        let mut parts = s.splitn(4, ' ');
        let mut num = || parts.next().unwrap().parse().unwrap();
        let (loads, changes, violations) = (num(), num(), num());
        let examples = parts.next().unwrap_or("").split(" | ").filter(|e| !e.is_empty()).map(str::to_owned).collect();
        HuntStats { loads, changes, violations, examples }
    }

    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// Reads `obj` as fast as it can (through `load_versioned()`, or a `read()` guard if `guards`)
/// until it has seen the version change `changes` times, checking every value's invariant, that
/// `counter == version - v0`, and that versions never go backwards. Gives up after
/// [`HUNT_PATIENCE`] (a safety net against a writer that stopped: the caller then sees too few
/// changes and fails).
fn hunt(obj: &Shared<Tied>, v0: u64, guards: bool, changes: u64) -> HuntStats {
    let give_up = Instant::now() + HUNT_PATIENCE;
    let mut stats = HuntStats::default();
    let mut last = 0u64;
    loop {
        if stats.changes >= changes || (stats.loads % 64 == 0 && Instant::now() >= give_up) {
            return stats;
        }
        let (value, version) = if guards {
            let guard = obj.read().unwrap();
            (*guard, obj.version())
        } else {
            obj.load_versioned().unwrap()
        };
        let version = version.get();
        stats.loads += 1;
        if let Err(e) = value.check() {
            stats.violation(e);
        }
        if version.checked_sub(v0) != Some(value.counter) {
            stats.violation(format!("counter {} at version {version} (created at {v0})", value.counter));
        }
        if version < last {
            stats.violation(format!("version went back from {last} to {version}"));
        }
        if version != last {
            stats.changes += 1;
        }
        last = last.max(version);
    }
}

/// `arg` is `load|read:CHANGES:V0`. Waits for `go`, hunts until it has seen CHANGES version
/// changes, reports `done STATS`.
fn role_hunt_reader(args: &ChildArgs) {
    let mut parts = args.arg.split(':');
    let guards = parts.next().unwrap() == "read";
    let changes: u64 = parts.next().unwrap().parse().unwrap();
    let v0: u64 = parts.next().unwrap().parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let obj = store.object::<Tied>("hunt").unwrap();
    emit("ready");
    wait_for("go");
    let stats = hunt(&obj, v0, guards, changes);
    emit(format!("done {}", stats.encode()));
}

/// How long watcher children wait for a change: far longer than the parent's patience with them
/// ([`common::CHILD_PATIENCE`]), so that a waiter that is never woken is a failure (the parent gives
/// up on it), not a slow success when its own timeout ends the wait.
const WATCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// `arg` is `ROUNDS`. Each round: reports `waiting VERSION` (of object `watched`), waits for a
/// change (for up to [`WATCH_TIMEOUT`]), and reports `changed VERSION ELAPSED_US WORDS...` (or
/// `error ...`).
fn role_watch(args: &ChildArgs) {
    let rounds: u32 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let obj = store.object::<Tied>("watched").unwrap();
    for _ in 0..rounds {
        let (_, since) = obj.load_versioned().unwrap();
        emit(format!("waiting {}", since.get()));
        let start = Instant::now();
        match obj.wait_for_change(since, WATCH_TIMEOUT) {
            Ok((value, version)) => {
                emit(format!("changed {} {} {}", version.get(), start.elapsed().as_micros(), value.encode()))
            }
            Err(e) => emit(format!("error {e}")),
        }
    }
}

/// Like `watch`, for the array `samples`: `changed VERSION ELAPSED_US ELEMENTS...`.
fn role_watch_array(args: &ChildArgs) {
    let rounds: u32 = args.arg.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    let arr = store.array::<u64>("samples").unwrap();
    for _ in 0..rounds {
        let since = arr.version();
        emit(format!("waiting {}", since.get()));
        let start = Instant::now();
        match arr.wait_for_change(since, WATCH_TIMEOUT) {
            Ok(version) => {
                let values = arr.read().unwrap().iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                emit(format!("changed {} {} {values}", version.get(), start.elapsed().as_micros()))
            }
            Err(e) => emit(format!("error {e}")),
        }
    }
}

/// `arg` is `object:N:NAME` or `array:N:NAME`. Reports `ready`, waits for `go`, then makes N
/// commits to the `Tied` object NAME (`update`, advancing it with `a = counter`) or N `write_at`s to
/// the `u64` array NAME (element `i % len` set to `1000 + i`), reporting `committed VERSION` after
/// each.
fn role_commit_on_go(args: &ChildArgs) {
    let mut parts = args.arg.split(':');
    let (what, n, name) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let n: u64 = n.parse().unwrap();
    let store = Store::open(&args.path).unwrap();
    emit("ready");
    wait_for("go");
    match what {
        "object" => {
            let obj = store.object::<Tied>(name).unwrap();
            for _ in 0..n {
                obj.update(|t| t.advance(t.counter)).unwrap();
                emit(format!("committed {}", obj.version().get()));
            }
        }
        "array" => {
            let arr = store.array::<u64>(name).unwrap();
            for i in 0..n {
                arr.write_at(i as usize % arr.len(), &[1000 + i]).unwrap();
                emit(format!("committed {}", arr.version().get()));
            }
        }
        other => panic!("commit_on_go: {other}"),
    }
}

/// `arg` is `write` or `update`. Garbles object `tied` inside a write guard (or an `update`
/// closure), reports `staged`, and panics: the process ends with the panic (status 101).
fn role_panic_in_guard(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let obj = store.object::<Tied>("tied").unwrap();
    match args.arg.as_str() {
        "write" => {
            let mut g = obj.write().unwrap();
            g.garble();
            emit("staged");
            std::panic::panic_any(DELIBERATE);
        }
        "update" => {
            obj.update(|t| {
                t.garble();
                emit("staged");
                std::panic::panic_any(DELIBERATE)
            })
            .unwrap();
        }
        other => panic!("panic_in_guard: {other}"),
    }
}

/// Garbles object `tied` inside a write guard, reports `staged`, and holds the guard until it is
/// killed.
fn role_stage_and_hang(args: &ChildArgs) {
    let store = Store::open(&args.path).unwrap();
    let obj = store.object::<Tied>("tied").unwrap();
    let mut g = obj.write().unwrap();
    g.garble();
    emit("staged");
    common::wait_eof();
    std::process::exit(3);
}

/// `arg` is `store` (open the store with `Durability::PowerLoss`) or `handle` (open it plainly,
/// and ask for `PowerLoss` per handle). Advances object `durable` three times (`update`, then
/// `write` and `commit`, then `store`), writes `[7, 8, 9]` at index 4 of array `durable-samples`,
/// and reports `done VERSION WORDS...` for the object.
fn role_durable_commit(args: &ChildArgs) {
    let (store, per_handle) = match args.arg.as_str() {
        "store" => (Store::options().durability(Durability::PowerLoss).open(&args.path).unwrap(), false),
        "handle" => (Store::open(&args.path).unwrap(), true),
        other => panic!("durable_commit: {other}"),
    };
    let mut obj = store.object::<Tied>("durable").unwrap();
    let mut arr = store.array::<u64>("durable-samples").unwrap();
    if per_handle {
        obj = obj.with_durability(Durability::PowerLoss);
        arr = arr.with_durability(Durability::PowerLoss);
    }
    obj.update(|t| t.advance(0xd1)).unwrap();
    let mut g = obj.write().unwrap();
    g.advance(0xd2);
    g.commit().unwrap();
    obj.store(obj.load().unwrap().advanced(0xd3)).unwrap();
    arr.write_at(4, &[7, 8, 9]).unwrap();
    let (value, version) = obj.load_versioned().unwrap();
    emit(format!("done {} {}", version.get(), value.encode()));
}

/// Opens the store read-only (a monitor that only watches) and waits on object `watched` and array
/// `samples`: first for their current versions with a 50 ms timeout, reporting
/// `quiet-object RESULT` and `quiet-array RESULT`; then reports `stale-ready`, and after the
/// parent's `go` (sent once it has committed to both) waits for the versions it saw before, with a
/// 10 s timeout, reporting `stale-object RESULT` and `stale-array RESULT`. RESULT is `ok VERSION`,
/// `timeout`, or `error MESSAGE`.
fn role_watch_read_only(args: &ChildArgs) {
    let store = Store::options().read_only(true).open(&args.path).unwrap();
    let obj = store.object::<Tied>("watched").unwrap();
    let arr = store.array::<u64>("samples").unwrap();
    let (obj_since, arr_since) = (obj.version(), arr.version());
    let describe = |r: &shmstore::Result<Version>| match r {
        Ok(v) => format!("ok {}", v.get()),
        Err(Error::Timeout { waited_for: WaitedFor::Change, .. }) => "timeout".to_owned(),
        Err(e) => format!("error {e}"),
    };
    emit("opened");
    // Nothing commits during these: each must time out.
    let quiet = Duration::from_millis(50);
    emit(format!("quiet-object {}", describe(&obj.wait_for_change(obj_since, quiet).map(|(_, v)| v))));
    emit(format!("quiet-array {}", describe(&arr.wait_for_change(arr_since, quiet))));
    emit("stale-ready");
    wait_for("go");
    // The parent committed before "go": these must return at once with the new versions.
    let long = Duration::from_secs(60);
    let object_now = obj.wait_for_change(obj_since, long).map(|(_, v)| v);
    emit(format!("stale-object {}", describe(&object_now)));
    let array_now = arr.wait_for_change(arr_since, long);
    emit(format!("stale-array {}", describe(&array_now)));
    // The parent commits once it reads each of these: the waits must see the commits, which
    // happen while they sleep (or, if the parent is quick, just before they start).
    let (Ok(object_now), Ok(array_now)) = (object_now, array_now) else { return };
    emit("live-object-waiting");
    emit(format!("live-object {}", describe(&obj.wait_for_change(object_now, long).map(|(_, v)| v))));
    emit("live-array-waiting");
    emit(format!("live-array {}", describe(&arr.wait_for_change(array_now, long))));
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 chaos.

/// What the supervisor knows about one object: its version at creation, and the highest counter
/// and version anybody has seen.
#[derive(Debug, Clone, Copy)]
struct Seen {
    v0: u64,
    counter: u64,
    version: u64,
}

/// Checks one observation against the invariant and against what was seen before it.
fn observe(seen: &mut Seen, who: &str, value: &Tied, version: u64, violations: &mut Vec<String>) {
    if let Err(e) = value.check() {
        violations.push(format!("{who}: {e}"));
    }
    if version < seen.version {
        violations.push(format!("{who}: version went back from {} to {version}", seen.version));
    }
    if value.counter < seen.counter {
        violations.push(format!("{who}: counter went back from {} to {}", seen.counter, value.counter));
    }
    if version.checked_sub(seen.v0) != Some(value.counter) {
        violations.push(format!(
            "{who}: counter {} at version {version} (created at {}): a commit was lost or doubled",
            value.counter, seen.v0
        ));
    }
    seen.counter = seen.counter.max(value.counter);
    seen.version = seen.version.max(version);
}

struct Writer {
    proc: ChildProc,
    ready: bool,
}

fn spawn_writer(path: &Path, index: usize, seed: u64) -> Writer {
    Writer { proc: ChildProc::spawn("chaos_writer", path, &format!("{index}:{seed}")), ready: false }
}

/// Notes which of `writers[which]` have reported `ready`; anything else they say is a violation.
fn poll_writers(writers: &mut [Writer], which: std::ops::Range<usize>, violations: &mut Vec<String>) {
    for i in which {
        let w = &mut writers[i];
        while let Some(msg) = w.proc.poll() {
            if msg == "ready" {
                w.ready = true;
            } else {
                violations.push(format!("writer {i}: {msg}"));
            }
        }
    }
}

fn chaos(kills: u64, mode: LockMode) {
    let seed = env_u64("SHMSTORE_CHAOS_SEED", 0x5eed_c4a0_5000_0001);
    let (_dir, path) = temp_store();
    let store = new_store_in(&path, mode);
    let names = chaos_names();
    let mut objects = Vec::new();
    let mut seen = BTreeMap::new();
    for name in &names {
        let (obj, v0) = tied_object(&store, name);
        seen.insert(name.clone(), Seen { v0, counter: 0, version: v0 });
        objects.push((name.clone(), obj));
    }

    let mut rng = Rng::new(seed);
    let mut writers: Vec<Writer> = (0..CHAOS_WRITERS).map(|i| spawn_writer(&path, i, rng.next_u64())).collect();
    for w in &mut writers {
        w.proc.expect("ready");
        w.ready = true;
    }

    let mut violations = Vec::new();
    let mut kills_per_writer = [0u64; CHAOS_WRITERS];
    let (mut readers, mut slowest_reader) = (0u64, Duration::ZERO);
    let start = Instant::now();
    for k in 0..kills {
        // Random timing (this sleep only randomises when the kill lands).
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 5001));

        // A random victim among the writers that are running their commit loop.
        poll_writers(&mut writers, 0..CHAOS_WRITERS, &mut violations);
        if !writers.iter().any(|w| w.ready) {
            let i = (rng.next_u64() % CHAOS_WRITERS as u64) as usize;
            writers[i].proc.expect("ready");
            writers[i].ready = true;
        }
        let ready: Vec<usize> = (0..CHAOS_WRITERS).filter(|&i| writers[i].ready).collect();
        let victim = ready[(rng.next_u64() % ready.len() as u64) as usize];
        let (status, stderr) = writers[victim].proc.kill_and_stderr();
        if status.signal() != Some(libc::SIGKILL) {
            violations.push(format!("writer {victim} ended by itself before kill {k}: {status}; stderr:\n{stderr}"));
        }
        kills_per_writer[victim] += 1;
        // Its last words, if any (a violation it reported just before it died).
        poll_writers(&mut writers, victim..victim + 1, &mut violations);
        writers[victim] = spawn_writer(&path, victim, rng.next_u64());

        // The supervisor's own look, through `load()` and through `read()`.
        for (name, obj) in &objects {
            let s = seen.get_mut(name).unwrap();
            let (value, version) = obj.load_versioned().unwrap();
            observe(s, &format!("supervisor load of {name} after kill {k}"), &value, version.get(), &mut violations);
            let (value, version) = locked_look(obj, mode);
            observe(s, &format!("supervisor read of {name} after kill {k}"), &value, version, &mut violations);
            if mode == LockMode::Robust {
                // A read guard too: in robust mode a lock-free copy, whole and committed.
                let (value, version) = (*obj.read().unwrap(), obj.version().get());
                if let Err(e) = value.check() {
                    violations.push(format!("supervisor read guard of {name} after kill {k}: {e}"));
                }
                if value.counter > version - s.v0 {
                    violations.push(format!("supervisor read guard of {name} after kill {k}: from the future"));
                }
            }
        }

        // A fresh process opens the store and looks too.
        let reader_start = Instant::now();
        for o in dump(&path, &names) {
            let who = format!("fresh reader's {} of {} after kill {k}", o.how, o.name);
            observe(seen.get_mut(&o.name).unwrap(), &who, &o.value, o.version, &mut violations);
        }
        readers += 1;
        slowest_reader = slowest_reader.max(reader_start.elapsed());
        assert!(violations.len() < 20, "stopping after kill {k} of {kills} (seed {seed:#x}): {violations:#?}");
    }
    let elapsed = start.elapsed();

    for w in &mut writers {
        let (status, stderr) = w.proc.kill_and_stderr();
        if status.signal() != Some(libc::SIGKILL) {
            violations.push(format!("a writer ended by itself: {status}; stderr:\n{stderr}"));
        }
    }
    poll_writers(&mut writers, 0..CHAOS_WRITERS, &mut violations);
    drop(writers);

    // With every writer dead: one last fresh look, which must agree with the supervisor's.
    for o in dump(&path, &names) {
        let who = format!("final fresh reader's {} of {}", o.how, o.name);
        let s = seen.get_mut(&o.name).unwrap();
        observe(s, &who, &o.value, o.version, &mut violations);
        let (value, version) = objects.iter().find(|(n, _)| *n == o.name).unwrap().1.load_versioned().unwrap();
        assert_eq!((value, version.get()), (o.value, o.version), "{who}");
    }

    let counters: Vec<String> = seen.iter().map(|(name, s)| format!("{name}={}", s.counter)).collect();
    println!(
        "kill -9 chaos in {mode:?} mode (seed {seed:#x}): {kills} kills ({kills_per_writer:?} per writer) in {elapsed:.2?}, \
         {readers} fresh reader processes (slowest {slowest_reader:.2?}); commits: {}",
        counters.join(" ")
    );
    assert!(violations.is_empty(), "seed {seed:#x}: {} violations: {violations:#?}", violations.len());
    // The test must have raced the kills against real commit traffic.
    let shared_commits = seen[SHARED_NAME].counter;
    assert!(shared_commits >= kills, "only {shared_commits} commits to the shared object over {kills} kills");
    for i in 0..CHAOS_WRITERS {
        assert!(seen[&solo_name(i)].counter > 0, "writer {i} never committed to its own object");
    }
}

/// Four writer processes commit as fast as they can while the test SIGKILLs one at a random
/// instant, `SHMSTORE_SOAK_KILLS` times (default 200), and restarts it. After every kill the test
/// and a fresh reader process check that the store opens, every value is whole, and no counter or
/// version went backwards or lost a commit.
#[test]
fn kill_9_chaos_never_exposes_a_torn_lost_or_rolled_back_value() {
    chaos(env_u64("SHMSTORE_SOAK_KILLS", 200), LockMode::Robust);
}

/// The same in OFD lock mode.
#[test]
fn kill_9_chaos_in_ofd_mode_never_exposes_a_torn_lost_or_rolled_back_value() {
    chaos(env_u64("SHMSTORE_SOAK_KILLS", 200), LockMode::Ofd);
}

/// The chaos test as a soak: at least 1,000 kills (more with `SHMSTORE_SOAK_KILLS`).
#[test]
#[ignore = "soak: takes about a minute; run with --ignored"]
fn kill_9_chaos_soak() {
    for mode in [LockMode::Robust, LockMode::Ofd] {
        chaos(env_u64("SHMSTORE_SOAK_KILLS", 1000).max(1000), mode);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Panic rollback and abort.

/// `obj` still holds `value` at `version`, through every way of reading it, and its lock is free.
fn assert_unchanged(obj: &Shared<Tied>, value: Tied, version: Version, context: &str) {
    assert_eq!(obj.load().unwrap(), value, "{context}: load()");
    assert_eq!(*obj.read().unwrap(), value, "{context}: read()");
    assert_eq!(obj.load_versioned().unwrap(), (value, version), "{context}: load_versioned()");
    assert_eq!(obj.version(), version, "{context}: version()");
    // The lock is free (try_write does not wait), and aborting it leaves the version alone.
    let guard = obj.try_write().unwrap_or_else(|e| panic!("{context}: the write lock is still held: {e}"));
    assert_eq!(*guard, value, "{context}: try_write()");
    guard.abort().unwrap();
    assert_eq!(obj.version(), version, "{context}: abort() changed the version");
}

#[test]
fn a_panic_inside_a_write_guard_or_update_rolls_back() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "tied");
    obj.store(Tied::new(5, 55)).unwrap();
    let (before, version) = obj.load_versioned().unwrap();

    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = obj.write().unwrap();
        g.a = 99;
        g.garble();
        assert_eq!(g.a, 99, "the guard shows its own change");
        std::panic::panic_any(DELIBERATE);
    }));
    assert!(r.is_err());
    assert_unchanged(&obj, before, version, "after a panic in a write guard");

    let r = catch_unwind(AssertUnwindSafe(|| {
        obj.update(|t| {
            t.a = 99;
            std::panic::panic_any(DELIBERATE)
        })
    }));
    assert!(r.is_err());
    assert_unchanged(&obj, before, version, "after a panic in update");

    // The next writes work, and commit.
    let counter = obj
        .update(|t| {
            t.advance(66);
            t.counter
        })
        .unwrap();
    assert_eq!(counter, 6);
    let (after, v) = obj.load_versioned().unwrap();
    assert_eq!((after, v.get()), (before.advanced(66), version.get() + 1));
    let mut g = obj.write().unwrap();
    g.advance(77);
    g.commit().unwrap();
    assert_eq!(obj.load_versioned().unwrap().0, before.advanced(66).advanced(77));
    assert_eq!(obj.version().get(), version.get() + 2);
}

/// Commits through a write guard from its destructor (RAII cleanup, e.g. "one session fewer").
struct CommitOnDrop<'a>(&'a Shared<Tied>, u64);

impl Drop for CommitOnDrop<'_> {
    fn drop(&mut self) {
        let mut g = self.0.write().unwrap();
        g.advance(self.1);
    }
}

/// A guard that is taken and dropped by a destructor while the thread unwinds from an unrelated
/// panic had no panic inside it: it commits, as the same guard does outside a panic. (Rolling back
/// is for a panic that happens while the guard is held; `std::sync::MutexGuard` draws the same line
/// for poisoning, by noting `std::thread::panicking()` when the guard is taken.)
#[test]
fn a_guard_used_by_a_destructor_during_unwinding_still_commits() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "tied");
    let (before, version) = obj.load_versioned().unwrap();

    // Without a panic: the destructor's guard commits.
    drop(CommitOnDrop(&obj, 41));
    assert_eq!(obj.load_versioned().unwrap(), (before.advanced(41), obj.version()));
    assert_eq!(obj.version().get(), version.get() + 1);

    // While unwinding from a panic that happened outside any guard: the same.
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _cleanup = CommitOnDrop(&obj, 42);
        std::panic::panic_any(DELIBERATE);
    }));
    assert!(r.is_err());
    assert_eq!(
        obj.load().unwrap(),
        before.advanced(41).advanced(42),
        "a write guard taken and dropped by a destructor during unwinding was rolled back"
    );
    assert_eq!(obj.version().get(), version.get() + 2);
}

/// Updated in place: objects holding atomics are not double-buffered.
#[derive(SharedLayout)]
#[repr(C)]
struct Hits {
    n: AtomicU64,
    other: u64,
}

#[test]
fn abort_discards_objects_and_is_refused_for_entries_changed_in_place() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "tied");
    let (before, version) = obj.load_versioned().unwrap();

    // An object: abort() discards the staged change.
    let mut g = obj.write().unwrap();
    g.garble();
    g.abort().unwrap();
    assert_unchanged(&obj, before, version, "after abort()");
    // ...even an unchanged one: abort never bumps the version.
    obj.write().unwrap().abort().unwrap();
    assert_unchanged(&obj, before, version, "after abort() without a change");

    // An array: abort() reports RollbackUnsupported, and the change stays (and counts as a change).
    let arr = store.array_or_init::<u64>("samples", 8, 0).unwrap();
    let v = arr.version();
    let mut g = arr.write().unwrap();
    g[2] = 5;
    match g.abort() {
        Err(Error::RollbackUnsupported { name }) => assert_eq!(name, "samples"),
        other => panic!("abort() on an array guard: {other:?}"),
    }
    assert_eq!(arr.get(2).unwrap(), 5, "the array keeps the change");
    assert_eq!(arr.version().get(), v.get() + 1, "the kept change bumps the version");
    drop(arr.try_write().expect("abort() released the array's lock"));

    // A panic in an array guard keeps the change too (it was made in place), records it, and
    // releases the lock.
    let v = arr.version();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = arr.write().unwrap();
        g[3] = 9;
        std::panic::panic_any(DELIBERATE);
    }));
    assert!(r.is_err());
    assert_eq!(arr.read().unwrap().to_vec(), [0, 0, 5, 9, 0, 0, 0, 0]);
    assert_eq!(arr.version().get(), v.get() + 1);
    drop(arr.try_write().expect("the panic released the array's lock"));

    // An object holding atomics is changed in place too.
    let hits = store.object_or_init("hits", || Hits { n: AtomicU64::new(1), other: 2 }).unwrap();
    assert!(!hits.is_double_buffered());
    let v = hits.version();
    let mut g = hits.write().unwrap();
    g.other = 3;
    g.n.store(4, Ordering::SeqCst);
    match g.abort() {
        Err(Error::RollbackUnsupported { name }) => assert_eq!(name, "hits"),
        other => panic!("abort() on an in-place object guard: {:?}", other.map(|()| "Ok")),
    }
    let g = hits.read().unwrap();
    assert_eq!((g.n.load(Ordering::SeqCst), g.other), (4, 3));
    drop(g);
    assert_eq!(hits.version().get(), v.get() + 1);

    // And the double-buffered object is untouched by all of this.
    assert_unchanged(&obj, before, version, "at the end");
}

#[test]
fn a_panic_inside_a_guard_in_a_child_process_leaves_the_old_value() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "tied");
    obj.store(Tied::new(8, 88)).unwrap();
    let (before, version) = obj.load_versioned().unwrap();

    for how in ["write", "update"] {
        let child = ChildProc::spawn("panic_in_guard", &path, how);
        let exit = child.wait_exit();
        assert_eq!(exit.messages.first().map(String::as_str), Some("staged"), "{how}: {exit:?}");
        // The child's test harness reports the panic and exits with 101.
        assert_eq!(exit.status.code(), Some(101), "{how}: {exit:?}");
        assert!(exit.stderr.contains(DELIBERATE), "{how}: the child died of something else: {}", exit.stderr);
        assert_unchanged(&obj, before, version, &format!("after a child panicked in {how}"));
    }

    // A child killed while holding a changed guard: the same, and the kernel frees the lock.
    let mut child = ChildProc::spawn("stage_and_hang", &path, "");
    child.expect("staged");
    assert!(matches!(obj.try_write(), Err(Error::WouldBlock { .. })), "the child holds the write lock");
    // Lock-free loads are not held up by the writer.
    assert_eq!(obj.load_versioned().unwrap(), (before, version));
    let status = child.kill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    drop(obj.write_timeout(Duration::from_secs(10)).expect("the kernel releases a dead writer's lock").abort());
    assert_unchanged(&obj, before, version, "after a child was killed holding a changed guard");

    // And the next commit, from another process, works.
    let mut child = ChildProc::spawn("commit_on_go", &path, "object:1:tied");
    child.expect("ready");
    child.send("go");
    assert_eq!(child.expect("committed").parse::<u64>().unwrap(), version.get() + 1);
    child.finish();
    obj.update(|t| t.advance(2)).unwrap();
    assert_eq!(obj.load_versioned().unwrap().0, before.advanced(before.counter).advanced(2));
    assert_eq!(obj.version().get(), version.get() + 2);
}

// ---------------------------------------------------------------------------------------------
// 3. Torn-read hunt.

/// How many version changes each reader must see: enough that its reads raced with many commits
/// (with guards, readers and the writer take turns in bursts, as the kernel lock convoys, so
/// far fewer changes are seen per read than with lock-free loads).
const HUNT_CHANGES_LOADS: u64 = 1_000;
const HUNT_CHANGES_GUARDS: u64 = 20;
/// How long a reader hunts at most: a safety net, never the measure of the test.
const HUNT_PATIENCE: Duration = Duration::from_secs(60);
const PARENT_HUNTERS: usize = 2;

/// One writer process commits to `hunt` while a reader process and [`PARENT_HUNTERS`] threads of
/// this process read it (`load()`, or `read()` guards if `guards`), until each reader has seen
/// the value change `changes` times. Every value read must be one that was committed, whole.
/// How fast this goes is not the test's business: `benches/store.rs` measures `load` and `read`
/// guards while a writer process commits (`object/load_contended`, `object/read_guard_contended`).
///
/// Read guards are hunted in OFD mode, where they hold the shared lock while the value and its
/// version are read; in robust mode a double-buffered object's read guard is a lock-free copy, as
/// `load()` is.
fn torn_read_hunt(guards: bool, changes: u64) {
    let (_dir, path) = temp_store();
    let store = new_store_in(&path, if guards { LockMode::Ofd } else { LockMode::Robust });
    let (obj, v0) = tied_object(&store, "hunt");
    let mode = if guards { "read" } else { "load" };

    let mut writer = ChildProc::spawn("hunt_writer", &path, "12345");
    let mut reader = ChildProc::spawn("hunt_reader", &path, &format!("{mode}:{changes}:{v0}"));
    writer.expect("ready");
    reader.expect("ready");
    writer.send("go");
    reader.send("go");
    let mut stats: Vec<HuntStats> = std::thread::scope(|s| {
        let hunters: Vec<_> = (0..PARENT_HUNTERS).map(|_| s.spawn(|| hunt(&obj, v0, guards, changes))).collect();
        hunters.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stats.insert(0, HuntStats::decode(&reader.expect("done")));
    writer.send("stop");
    let commits: u64 = writer.expect("done").parse().unwrap();
    writer.finish();
    reader.finish();

    // Every commit of the writer is there, once.
    let (value, version) = obj.load_versioned().unwrap();
    value.check().unwrap();
    assert_eq!((value.counter, version.get()), (commits, v0 + commits));

    let who = |i: usize| if i == 0 { "the reader process".to_owned() } else { format!("parent thread {i}") };
    for (i, s) in stats.iter().enumerate() {
        println!("torn-read hunt via {mode}: {}: {} reads, {} version changes seen", who(i), s.loads, s.changes);
    }
    println!("torn-read hunt via {mode}: the writer process made {commits} commits");
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s.violations, 0, "{} saw {} bad values via {mode}, e.g. {:#?}", who(i), s.violations, s.examples);
        assert!(
            s.changes >= changes,
            "{} saw the value change only {} times in {HUNT_PATIENCE:?}: {s:?}",
            who(i),
            s.changes
        );
    }
}

#[test]
fn torn_read_hunt_lock_free_loads_never_see_a_torn_value() {
    torn_read_hunt(false, HUNT_CHANGES_LOADS);
}

#[test]
fn torn_read_hunt_read_guards_never_see_a_torn_value() {
    torn_read_hunt(true, HUNT_CHANGES_GUARDS);
}

// ---------------------------------------------------------------------------------------------
// 4. Watch.

const WATCH_ROUNDS: u32 = 4;
const WATCHERS: usize = 2;

/// Waits until the child is asleep in the store's futex, so that the commit that follows exercises
/// the wake-up (a commit before that would make `wait_for_change` return at once, which is correct
/// too, but tests less). Returns whether procfs could tell.
fn until_asleep(child: &ChildProc, path: &Path) -> bool {
    match common::wait_until_asleep_in_shared_futex(child.id(), path, Duration::from_secs(10)) {
        Some(true) => true,
        Some(false) => panic!("child {} reported waiting but never slept in the store's futex", child.role()),
        None => false,
    }
}

#[test]
fn wait_for_change_wakes_waiters_in_other_processes() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "watched");
    let mut watchers: Vec<_> =
        (0..WATCHERS).map(|_| ChildProc::spawn("watch", &path, &WATCH_ROUNDS.to_string())).collect();
    let mut latencies = Vec::new();
    let mut slept = 0;
    for round in 0..WATCH_ROUNDS {
        let since = obj.version().get();
        for w in &mut watchers {
            assert_eq!(w.expect("waiting").parse::<u64>().unwrap(), since, "round {round}");
        }
        for w in &watchers {
            slept += usize::from(until_asleep(w, &path));
        }
        // Each kind of commit wakes them.
        let a = 0xabc0 + u64::from(round);
        let committed_at = match round % 3 {
            0 => {
                obj.update(|t| t.advance(a)).unwrap();
                Instant::now()
            }
            1 => {
                obj.store(obj.load().unwrap().advanced(a)).unwrap();
                Instant::now()
            }
            _ => {
                let mut g = obj.write().unwrap();
                g.advance(a);
                g.commit().unwrap();
                Instant::now()
            }
        };
        let expected = obj.load().unwrap();
        assert_eq!(expected.a, a);
        for (i, w) in watchers.iter_mut().enumerate() {
            let msg = w.expect("changed");
            let latency = committed_at.elapsed();
            let mut parts = msg.split_whitespace();
            let version: u64 = parts.next().unwrap().parse().unwrap();
            let waited_us: u64 = parts.next().unwrap().parse().unwrap();
            let value = Tied::decode(parts);
            assert_eq!((value, version), (expected, since + 1), "watcher {i}, round {round}");
            println!("watch round {round}, watcher {i}: reported {latency:?} after the commit (waited {waited_us} µs)");
            latencies.push(latency);
        }
    }
    for w in watchers {
        assert!(w.finish().is_empty());
    }
    println!(
        "watch: max latency from commit to a watcher's report {:?}; waiters seen asleep in the futex {slept} of {}",
        latencies.iter().max().unwrap(),
        latencies.len()
    );
}

#[test]
fn wait_for_change_times_out_and_returns_at_once_for_a_stale_version() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "watched");
    let arr = store.array_or_init::<u64>("samples", 8, 0).unwrap();

    // Nothing changes: Timeout, after the full timeout.
    let timeout = Duration::from_millis(50);
    let since = obj.version();
    let start = Instant::now();
    match obj.wait_for_change(since, timeout) {
        Err(Error::Timeout { name, waited, waited_for: WaitedFor::Change }) => {
            assert_eq!((name.as_str(), waited), ("watched", timeout))
        }
        other => panic!("wait_for_change on a quiet object: {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= timeout, "gave up after {elapsed:?}, before its timeout");

    let since_arr = arr.version();
    let start = Instant::now();
    match arr.wait_for_change(since_arr, timeout) {
        Err(Error::Timeout { name, waited, waited_for: WaitedFor::Change }) => {
            assert_eq!((name.as_str(), waited), ("samples", timeout))
        }
        other => panic!("wait_for_change on a quiet array: {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= timeout, "gave up after {elapsed:?}, before its timeout");

    // A zero timeout on a quiet entry fails at once.
    assert!(matches!(
        obj.wait_for_change(since, Duration::ZERO),
        Err(Error::Timeout { waited_for: WaitedFor::Change, .. })
    ));

    // Commits made before the call: it returns at once, with the latest value and version.
    obj.update(|t| t.advance(1)).unwrap();
    obj.update(|t| t.advance(2)).unwrap();
    arr.write_at(1, &[11]).unwrap();
    let (value, version) = obj.wait_for_change(since, Duration::from_secs(10)).unwrap();
    assert_eq!((value, version.get()), (Tied::new(0, 1).advanced(1).advanced(2), since.get() + 2));
    let arr_version = arr.wait_for_change(since_arr, Duration::from_secs(10)).unwrap();
    assert_eq!(arr_version.get(), since_arr.get() + 1);
    // A stale `since` never waits: even a zero timeout returns the change.
    assert_eq!(obj.wait_for_change(since, Duration::ZERO).unwrap().1, version);

    // Waiting for the current version times out again.
    assert!(matches!(obj.wait_for_change(version, timeout), Err(Error::Timeout { waited_for: WaitedFor::Change, .. })));
    assert!(matches!(
        arr.wait_for_change(arr_version, timeout),
        Err(Error::Timeout { waited_for: WaitedFor::Change, .. })
    ));
}

#[test]
fn array_wait_for_change_wakes_on_a_write_at_from_another_process() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let arr = store.array_or_init::<u64>("samples", 8, 0).unwrap();

    // A child waits; this process writes.
    let mut watcher = ChildProc::spawn("watch_array", &path, "2");
    let mut latencies = Vec::new();
    for round in 0..2u64 {
        let since = arr.version().get();
        assert_eq!(watcher.expect("waiting").parse::<u64>().unwrap(), since);
        until_asleep(&watcher, &path);
        arr.write_at(3, &[7 + round, 8, 9]).unwrap();
        let committed_at = Instant::now();
        let msg = watcher.expect("changed");
        let latency = committed_at.elapsed();
        let mut parts = msg.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        let (version, _waited_us) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(version, since + 1, "round {round}");
        assert_eq!(parts.collect::<Vec<_>>(), [0, 0, 0, 7 + round, 8, 9, 0, 0], "round {round}");
        latencies.push(latency);
    }
    watcher.finish();
    println!("array watch: latencies from write_at to the watcher's report {latencies:?}");

    // This process waits (in a thread); a child writes.
    let mut writer = ChildProc::spawn("commit_on_go", &path, "array:1:samples");
    writer.expect("ready");
    let since = arr.version();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| arr.wait_for_change(since, Duration::from_secs(10)));
        // Let the waiter fall asleep first if procfs can tell (see `until_asleep`).
        common::wait_until_asleep_in_shared_futex(std::process::id(), &path, Duration::from_secs(10));
        writer.send("go");
        let version = waiter.join().unwrap().expect("woken by the child's write_at");
        assert_eq!(version.get(), since.get() + 1);
    });
    assert_eq!(writer.expect("committed").parse::<u64>().unwrap(), since.get() + 1);
    writer.finish();
    assert_eq!(arr.get(0).unwrap(), 1000);
}

#[test]
fn object_waiter_wakes_on_a_commit_from_another_process() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "watched");
    let mut writer = ChildProc::spawn("commit_on_go", &path, "object:3:watched");
    writer.expect("ready");
    let since = obj.version();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| obj.wait_for_change(since, Duration::from_secs(10)));
        common::wait_until_asleep_in_shared_futex(std::process::id(), &path, Duration::from_secs(10));
        writer.send("go");
        let (value, version) = waiter.join().unwrap().expect("woken by the child's commit");
        assert!(version > since);
        value.check().unwrap();
        assert_eq!(value.counter, version.get() - since.get(), "the value belongs to its version");
    });
    for i in 1..=3 {
        assert_eq!(writer.expect("committed").parse::<u64>().unwrap(), since.get() + i);
    }
    writer.finish();
    let (value, version) = obj.load_versioned().unwrap();
    assert_eq!((value.counter, version.get()), (3, since.get() + 3));
}

#[test]
fn a_killed_waiter_does_not_break_later_waits() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "watched");

    let mut doomed = ChildProc::spawn("watch", &path, "1");
    doomed.expect("waiting");
    until_asleep(&doomed, &path);
    assert_eq!(doomed.kill().signal(), Some(libc::SIGKILL));

    // Commits still work, and so do timeouts and wake-ups.
    obj.update(|t| t.advance(5)).unwrap();
    let since = obj.version();
    assert!(matches!(
        obj.wait_for_change(since, Duration::from_millis(20)),
        Err(Error::Timeout { waited_for: WaitedFor::Change, .. })
    ));
    let mut watcher = ChildProc::spawn("watch", &path, "1");
    assert_eq!(watcher.expect("waiting").parse::<u64>().unwrap(), since.get());
    until_asleep(&watcher, &path);
    obj.update(|t| t.advance(6)).unwrap();
    let msg = watcher.expect("changed");
    let mut parts = msg.split_whitespace();
    assert_eq!(parts.next().unwrap().parse::<u64>().unwrap(), since.get() + 1);
    parts.next();
    assert_eq!(Tied::decode(parts), Tied::new(0, 1).advanced(5).advanced(6));
    watcher.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. Durability.

#[test]
fn power_loss_durability_commits_round_trip_across_processes() {
    let (_dir, path) = temp_store();
    let names = ["durable".to_owned()];
    {
        // Per store.
        let store =
            Store::options().create(true).capacity(CAPACITY).durability(Durability::PowerLoss).open(&path).unwrap();
        let (obj, v0) = tied_object(&store, "durable");
        let arr = store.array_or_init::<u64>("durable-samples", 16, 0).unwrap();
        obj.update(|t| t.advance(0xa1)).unwrap();
        let mut g = obj.write().unwrap();
        g.advance(0xa2);
        g.commit().expect("a PowerLoss commit reports success");
        obj.write().unwrap().advance(0xa3); // committed on drop
        obj.store(obj.load().unwrap().advanced(0xa4)).unwrap();
        arr.write_at(0, &[1, 2, 3]).unwrap();
        let mut g = arr.write().unwrap();
        g[15] = 15;
        g.commit().unwrap();
        let expected = Tied::new(0, 1).advanced(0xa1).advanced(0xa2).advanced(0xa3).advanced(0xa4);
        assert_eq!(obj.load_versioned().unwrap(), (expected, obj.version()));
        assert_eq!(obj.version().get(), v0 + 4);

        // A handle can ask for less than its store.
        let fast = obj.clone().with_durability(Durability::Process);
        fast.update(|t| t.advance(0xa5)).unwrap();
        assert_eq!(obj.load().unwrap(), expected.advanced(0xa5));
    }

    // A fresh process sees it all, through load() and read().
    let expected = Tied::new(0, 1).advanced(0xa1).advanced(0xa2).advanced(0xa3).advanced(0xa4).advanced(0xa5);
    for o in dump(&path, &names) {
        assert_eq!(o.value, expected, "{}", o.how);
    }

    // Processes commit with PowerLoss, per store and per handle; this one sees their commits.
    let store = Store::open(&path).unwrap();
    let obj = store.object::<Tied>("durable").unwrap();
    let arr = store.array::<u64>("durable-samples").unwrap();
    let mut expected = expected;
    for how in ["store", "handle"] {
        let before = obj.version().get();
        let mut child = ChildProc::spawn("durable_commit", &path, how);
        let msg = child.expect("done");
        child.finish();
        expected = expected.advanced(0xd1).advanced(0xd2).advanced(0xd3);
        let mut parts = msg.split_whitespace();
        let version: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!((Tied::decode(parts), version), (expected, before + 3), "{how}: the child's view");
        assert_eq!(obj.load_versioned().unwrap().0, expected, "{how}");
        assert_eq!(obj.version().get(), before + 3, "{how}");
    }
    assert_eq!(arr.read().unwrap().to_vec(), [1, 2, 3, 0, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 15]);

    // Per handle, in this process, on a store opened with the default durability.
    let durable = obj.clone().with_durability(Durability::PowerLoss);
    let mut g = durable.write().unwrap();
    g.advance(0xe1);
    g.commit().unwrap();
    durable.store(durable.load().unwrap().advanced(0xe2)).unwrap();
    expected = expected.advanced(0xe1).advanced(0xe2);
    arr.clone().with_durability(Durability::PowerLoss).set(8, 88).unwrap();

    // The file itself holds the committed value in the active slot, and the version in its record.
    let record = common::raw_record(&path, "durable");
    assert_eq!(record.seq, obj.version().get());
    let bytes = std::fs::read(&path).unwrap();
    let at = common::active_data_offset(&path, "durable") as usize;
    let words: Vec<u64> = (0..WORDS).map(|i| common::read_u64_ne(&bytes, at + 8 * i)).collect();
    assert_eq!(Tied::from_words(&words), expected);
    for o in dump(&path, &names) {
        assert_eq!((o.value, o.version), (expected, record.seq), "{}", o.how);
    }
    drop(store);
    assert_eq!(Store::open(&path).unwrap().array::<u64>("durable-samples").unwrap().get(8).unwrap(), 88);
}

// ---------------------------------------------------------------------------------------------
// 6. Versions.

#[test]
fn every_commit_bumps_the_version_by_exactly_one() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, v0) = tied_object(&store, "watched");
    let mut expected_version = v0;
    let step = |expected: &mut u64, what: &str, obj: &Shared<Tied>, bump: u64| {
        *expected += bump;
        let version = obj.version();
        assert_eq!(version.get(), *expected, "after {what}");
        assert_eq!(obj.load_versioned().unwrap().1, version, "after {what}: load_versioned() agrees");
    };

    obj.update(|t| t.advance(1)).unwrap();
    step(&mut expected_version, "update", &obj, 1);
    obj.store(obj.load().unwrap().advanced(2)).unwrap();
    step(&mut expected_version, "store", &obj, 1);
    obj.write().unwrap().advance(3);
    step(&mut expected_version, "a write guard dropped", &obj, 1);
    let mut g = obj.write().unwrap();
    g.advance(4);
    g.commit().unwrap();
    step(&mut expected_version, "a write guard committed", &obj, 1);
    drop(obj.write().unwrap());
    step(&mut expected_version, "an unchanged write guard dropped (still a commit)", &obj, 1);
    let mut g = obj.write().unwrap();
    g.garble();
    g.abort().unwrap();
    step(&mut expected_version, "abort", &obj, 0);
    let _ = catch_unwind(AssertUnwindSafe(|| obj.update(|t| t.garble()).map(|()| std::panic::panic_any(DELIBERATE))));
    step(&mut expected_version, "a panic after update returned", &obj, 1);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        obj.update(|t| {
            t.garble();
            std::panic::panic_any(DELIBERATE)
        })
    }));
    step(&mut expected_version, "a panic inside update", &obj, 0);
    // (The update before the panic above garbled the value on purpose; make it whole again.)
    obj.store(Tied::new(obj.version().get() - v0 + 1, 9)).unwrap();
    step(&mut expected_version, "store", &obj, 1);
    let _ = obj.load().unwrap();
    let _ = obj.read().unwrap();
    let _ = obj.try_read().unwrap();
    let _ = obj.load_versioned().unwrap();
    step(&mut expected_version, "reads", &obj, 0);

    // Commits from another process count one each, and a reopened store keeps the version.
    let mut child = ChildProc::spawn("commit_on_go", &path, "object:5:watched");
    child.expect("ready");
    child.send("go");
    for i in 1..=5 {
        assert_eq!(child.expect("committed").parse::<u64>().unwrap(), expected_version + i, "the child's commit {i}");
    }
    child.finish();
    step(&mut expected_version, "5 commits in a child", &obj, 5);
    let reopened = Store::open(&path).unwrap().object::<Tied>("watched").unwrap();
    assert_eq!(reopened.version().get(), expected_version);
    let (value, version) = reopened.load_versioned().unwrap();
    value.check().unwrap();
    assert_eq!(value.counter, version.get() - v0, "every commit above advanced the counter by one");

    // Arrays: every write bumps the version by one, reads do not.
    let arr = store.array_or_init::<u64>("samples", 8, 0).unwrap();
    let mut expected = arr.version().get();
    let check = |expected: &mut u64, what: &str, arr: &SharedArray<u64>, bump: u64| {
        *expected += bump;
        assert_eq!(arr.version().get(), *expected, "after {what}");
    };
    arr.write_at(0, &[1, 2]).unwrap();
    check(&mut expected, "write_at", &arr, 1);
    arr.set(2, 3).unwrap();
    check(&mut expected, "set", &arr, 1);
    arr.update(3, 2, |s| s.fill(4)).unwrap();
    check(&mut expected, "update", &arr, 1);
    arr.write().unwrap()[5] = 6;
    check(&mut expected, "a write guard dropped", &arr, 1);
    let mut g = arr.write().unwrap();
    g[6] = 7;
    g.commit().unwrap();
    check(&mut expected, "a write guard committed", &arr, 1);
    let mut g = arr.write().unwrap();
    g[7] = 8;
    assert!(matches!(g.abort(), Err(Error::RollbackUnsupported { .. })));
    check(&mut expected, "abort (the change is kept)", &arr, 1);
    let mut buf = [0; 8];
    arr.read_at(0, &mut buf).unwrap();
    let _ = arr.get(1).unwrap();
    let _ = arr.read().unwrap();
    check(&mut expected, "reads", &arr, 0);
    assert_eq!(buf, [1, 2, 3, 4, 4, 6, 7, 8]);
    let mut child = ChildProc::spawn("commit_on_go", &path, "array:2:samples");
    child.expect("ready");
    child.send("go");
    for i in 1..=2 {
        assert_eq!(child.expect("committed").parse::<u64>().unwrap(), expected + i);
    }
    child.finish();
    check(&mut expected, "2 write_ats in a child", &arr, 2);
    // The object's version did not move with the array's.
    assert_eq!(obj.version().get(), expected_version);
}

/// A process that only watches opens the store read-only, so it cannot register as a waiter (its
/// mapping is read-only) and polls instead. Its `wait_for_change` must behave like anyone else's:
/// a timeout when nothing changes, the new version at once when something already did, and a
/// commit made while it sleeps wakes it (within its polling interval, well inside the timeout).
#[test]
fn wait_for_change_on_a_read_only_store_sees_changes() {
    let (_dir, path) = temp_store();
    let store = new_store(&path);
    let (obj, _) = tied_object(&store, "watched");
    let arr = store.array_or_init::<u64>("samples", 8, 0).unwrap();
    let (obj_since, arr_since) = (obj.version().get(), arr.version().get());

    let mut child = ChildProc::spawn("watch_read_only", &path, "");
    child.expect("opened");
    assert_eq!(child.expect("quiet-object"), "timeout");
    assert_eq!(child.expect("quiet-array"), "timeout");
    child.expect("stale-ready");
    obj.update(|t| t.advance(1)).unwrap();
    arr.set(0, 1).unwrap();
    child.send("go");
    assert_eq!(child.expect("stale-object"), format!("ok {}", obj_since + 1));
    assert_eq!(child.expect("stale-array"), format!("ok {}", arr_since + 1));

    child.expect("live-object-waiting");
    obj.update(|t| t.advance(1)).unwrap();
    assert_eq!(child.expect("live-object"), format!("ok {}", obj_since + 2));
    child.expect("live-array-waiting");
    arr.set(1, 2).unwrap();
    assert_eq!(child.expect("live-array"), format!("ok {}", arr_since + 2));
    let exit = child.wait_exit();
    assert!(exit.status.success(), "the read-only watcher failed ({}); stderr:\n{}", exit.status, exit.stderr);
}
