//! A power-loss simulator, in the manner of ALICE and CrashMonkey.
//!
//! A sequence of operations runs against a store opened with [`Durability::PowerLoss`], while a
//! hook in the library (`shmstore::__private::set_sync_hook`) reports every `msync`, `fsync`,
//! `fdatasync`, directory `fsync` and file extension, right before and right after it.
//!
//! The simulator keeps, per file (by inode), the **durable** image `D`: what the disk is known to
//! hold. It starts empty; after an `msync` of a range, `D` takes the file's current bytes for the
//! pages of that range; after `fsync` or `fdatasync`, all of the file's current bytes and its
//! length. Directory entries become durable at a directory `fsync`. Pages that were changed but
//! never synced stay volatile: the kernel may or may not have written them back.
//!
//! At every event, a power loss could leave `D` plus any subset of the 4 KiB pages in which the
//! current file `C` differs from `D`, with either `D`'s or `C`'s length. The simulator builds those
//! images (all subsets when at most [`ALL_SUBSETS_UP_TO`] pages differ, else [`RANDOM_SUBSETS`]
//! seeded random ones plus the empty and the full set) and checks every one of them:
//!
//! - once the store's creation has returned, the file exists;
//! - it opens, read-only and read-write;
//! - every entry whose creation returned is there (one whose creation had not returned may be
//!   missing, but if it is there it holds its initial value);
//! - every object holds a value that was committed, and at least the last one whose commit had
//!   returned (with `PowerLoss`, a returned commit is durable); every element of an array or byte
//!   region holds the value of the last write that returned, or of the write under way;
//! - a migrated entry holds its old-layout value (only if the migration had not returned) or its
//!   new one;
//! - every stored value is valid for its stored schema (the checks of `shmstore verify`);
//! - after a read-write open, a new entry can be created without disturbing any of the above.
//!
//! Everything is deterministic: the random subsets come from a fixed seed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use shmstore::__private::{set_sync_hook, SyncEvent, SyncOp, SyncPhase};
use shmstore::{Durability, Error, SharedLayout, Store};

const PAGE: usize = 4096;
/// Up to this many differing pages, every subset is tried.
const ALL_SUBSETS_UP_TO: usize = 10;
/// Beyond it, this many random subsets (plus the empty and the full set).
const RANDOM_SUBSETS: usize = 1000;
const SEED: u64 = 0x5eed_0fc0_ffee;

// ---------------------------------------------------------------------------------------------
// The types stored.

#[derive(SharedLayout, Debug)]
#[repr(C)]
struct Counter {
    a: AtomicU64,
    b: AtomicU64,
}

/// An object larger than a page: each of its slots spans two or three pages.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Big {
    words: [u64; 640],
}

impl Big {
    fn new(seed: u64) -> Big {
        let mut words = [0u64; 640];
        for (i, w) in words.iter_mut().enumerate() {
            *w = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        Big { words }
    }
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 1)]
struct CfgV1 {
    port: u64,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 2)]
struct CfgV2 {
    port: u64,
    timeout_ms: u64,
}

fn upgrade(old: CfgV1) -> CfgV2 {
    CfgV2 { port: old.port, timeout_ms: 5000 }
}

const SAMPLES: usize = 2048;
const BLOB: usize = 6000;
/// 1.2 MB of zeros: more than the store has left after its first growth.
const SPARSE: usize = 150_000;

// ---------------------------------------------------------------------------------------------
// What every crash image must show: updated by the operations as they start and return.

#[derive(Debug, Clone, PartialEq)]
enum Val {
    U64(u64),
    Counter(u64),
    Big(u64),
    CfgV1(u64),
    CfgV2(CfgV2),
}

#[derive(Debug, Clone)]
struct ObjExpect {
    /// Whether the creation returned.
    created: bool,
    /// `[0]`: the value of the last commit that returned (or the initial value); then the value
    /// of a commit under way, if any.
    allowed: Vec<Val>,
}

#[derive(Debug, Clone)]
struct ArrExpect {
    created: bool,
    bytes: bool,
    /// Every element as of the last write that returned.
    committed: Vec<u64>,
    /// A write under way: its first element and values.
    pending: Option<(usize, Vec<u64>)>,
}

#[derive(Debug, Clone, Default)]
struct Expect {
    /// Whether the store's creation returned.
    store_created: bool,
    /// The operation under way, for reports.
    op: String,
    /// The capacity of the last growth that returned.
    capacity: u64,
    objects: BTreeMap<&'static str, ObjExpect>,
    arrays: BTreeMap<&'static str, ArrExpect>,
    /// The arrays of the life-cycle operations (create, remove, rename, resize), each `u64` array
    /// filled with its tag: name -> (len, tag). `[0]` is the world as of the last operation that
    /// returned; then the world after the operation under way, if any. An image must show one
    /// of them exactly: each operation is crash-atomic.
    life: Vec<BTreeMap<String, (usize, u64)>>,
}

/// The expectations, shared between the operations and the hook.
#[derive(Clone, Default)]
struct Model(Arc<Mutex<Expect>>);

impl Model {
    fn with<R>(&self, f: impl FnOnce(&mut Expect) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn snapshot(&self) -> Expect {
        self.0.lock().unwrap().clone()
    }

    fn create_object<R>(&self, name: &'static str, init: Val, op: impl FnOnce() -> R) -> R {
        self.with(|e| {
            e.op = format!("creating object `{name}`");
            e.objects.insert(name, ObjExpect { created: false, allowed: vec![init] })
        });
        let r = op();
        self.with(|e| {
            e.op = "between operations".into();
            e.objects.get_mut(name).unwrap().created = true
        });
        r
    }

    fn commit<R>(&self, name: &'static str, value: Val, op: impl FnOnce() -> R) -> R {
        self.with(|e| {
            e.op = format!("committing {value:?} to `{name}`");
            e.objects.get_mut(name).unwrap().allowed.push(value.clone())
        });
        let r = op();
        self.with(|e| {
            e.op = "between operations".into();
            e.objects.get_mut(name).unwrap().allowed = vec![value]
        });
        r
    }

    fn create_array<R>(&self, name: &'static str, bytes: bool, init: Vec<u64>, op: impl FnOnce() -> R) -> R {
        self.with(|e| {
            e.op = format!("creating array `{name}`");
            e.arrays.insert(name, ArrExpect { created: false, bytes, committed: init, pending: None })
        });
        let r = op();
        self.with(|e| {
            e.op = "between operations".into();
            e.arrays.get_mut(name).unwrap().created = true
        });
        r
    }

    fn life<R>(&self, what: &str, after: &BTreeMap<String, (usize, u64)>, op: impl FnOnce() -> R) -> R {
        self.with(|e| {
            e.op = what.to_owned();
            if e.life.is_empty() {
                e.life.push(BTreeMap::new());
            }
            e.life.push(after.clone());
        });
        let r = op();
        self.with(|e| {
            e.op = "between operations".into();
            e.life = vec![after.clone()];
        });
        r
    }

    fn write<R>(&self, name: &'static str, at: usize, values: Vec<u64>, op: impl FnOnce() -> R) -> R {
        self.with(|e| {
            e.op = format!("writing {} values at {at} of `{name}`", values.len());
            e.arrays.get_mut(name).unwrap().pending = Some((at, values.clone()))
        });
        let r = op();
        self.with(|e| {
            e.op = "between operations".into();
            let a = e.arrays.get_mut(name).unwrap();
            a.committed[at..at + values.len()].copy_from_slice(&values);
            a.pending = None;
        });
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Routing the process-wide hook to the test that owns each directory.

type Observer = Arc<dyn Fn(&SyncEvent<'_>) + Send + Sync>;

fn observers() -> &'static Mutex<Vec<(PathBuf, Observer)>> {
    static OBSERVERS: OnceLock<Mutex<Vec<(PathBuf, Observer)>>> = OnceLock::new();
    OBSERVERS.get_or_init(|| {
        set_sync_hook(Some(Box::new(|event: &SyncEvent<'_>| {
            let found =
                observers().lock().unwrap().iter().find(|(dir, _)| event.path.starts_with(dir)).map(|(_, o)| o.clone());
            if let Some(observer) = found {
                observer(event);
            }
        })));
        Mutex::new(Vec::new())
    })
}

/// Calls `observer` with every sync event on a path inside `dir` until the guard is dropped.
fn observe(dir: &Path, observer: Observer) -> impl Drop {
    struct Unregister(PathBuf);
    impl Drop for Unregister {
        fn drop(&mut self) {
            observers().lock().unwrap().retain(|(d, _)| d != &self.0);
        }
    }
    observers().lock().unwrap().push((dir.to_owned(), observer));
    Unregister(dir.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The simulator.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What the disk is known to hold for one file.
#[derive(Clone, Default)]
struct Durable {
    /// The durable length.
    len: usize,
    /// Durable page contents; may reach past `len` (pages synced beyond a length not yet durable).
    bytes: Vec<u8>,
}

fn page_of(bytes: &[u8], p: usize) -> &[u8] {
    let start = (p * PAGE).min(bytes.len());
    let end = ((p + 1) * PAGE).min(bytes.len());
    &bytes[start..end]
}

fn same_page(a: &[u8], b: &[u8], p: usize) -> bool {
    let (x, y) = (page_of(a, p), page_of(b, p));
    let n = x.len().min(y.len());
    x[..n] == y[..n] && x[n..].iter().all(|&b| b == 0) && y[n..].iter().all(|&b| b == 0)
}

#[derive(Default)]
struct Stats {
    events: u64,
    crash_points: u64,
    images: u64,
    absent: u64,
    most_pages: usize,
    capped_points: u64,
    /// Failures by kind: a count and the first example.
    failures: BTreeMap<String, (u64, String)>,
}

struct Sim {
    store_path: PathBuf,
    image_dir: PathBuf,
    durable: HashMap<(u64, u64), Durable>,
    /// The inode the store's name durably names, once its directory was synced.
    durable_name: Option<(u64, u64)>,
    model: Model,
    rng: Rng,
    stats: Stats,
    next_image: u64,
    /// Whether sync events are crash points (else they only update the durable images).
    checking: bool,
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Sim {
    fn on_event(&mut self, event: &SyncEvent<'_>) {
        self.stats.events += 1;
        let op = self.model.snapshot().op;
        let what = format!("{:?} {:?} of {} ({op})", event.phase, event.op, event.path.display());
        if event.phase == SyncPhase::After {
            self.synced(event);
        }
        if self.checking {
            self.crash_point(&what);
        }
    }

    /// Updates the durable images for a sync that returned.
    fn synced(&mut self, event: &SyncEvent<'_>) {
        if event.op == SyncOp::DirFsync {
            if event.path == self.store_path.parent().unwrap() {
                self.durable_name = inode(&self.store_path);
            }
            return;
        }
        let Some(ino) = inode(event.path) else { return };
        let current = fs::read(event.path).unwrap();
        let d = self.durable.entry(ino).or_default();
        match event.op {
            SyncOp::Msync { offset, len } => {
                let first = offset as usize / PAGE;
                let end = (offset + len).div_ceil(PAGE as u64) as usize;
                let end_byte = (end * PAGE).min(current.len());
                if d.bytes.len() < end_byte {
                    d.bytes.resize(end_byte, 0);
                }
                let start_byte = (first * PAGE).min(end_byte);
                d.bytes[start_byte..end_byte].copy_from_slice(&current[start_byte..end_byte]);
            }
            SyncOp::Fsync | SyncOp::Fdatasync => {
                d.len = current.len();
                d.bytes = current;
            }
            _ => {}
        }
    }

    /// Builds and checks every image a power loss at this point could leave.
    fn crash_point(&mut self, what: &str) {
        self.stats.crash_points += 1;
        let expect = self.model.snapshot();
        let Some(ino) = self.durable_name else {
            // The store's name is not durable: a power loss leaves no store.
            self.stats.absent += 1;
            if expect.store_created {
                self.fail(
                    "store vanished",
                    format!("at {what}: the store's creation returned, but its directory entry is not durable"),
                );
            }
            return;
        };
        let Ok(current) = fs::read(&self.store_path) else {
            self.fail("store unreadable", format!("at {what}"));
            return;
        };
        let d = self.durable.get(&ino).cloned().unwrap_or_default();
        let pages = current.len().max(d.len).div_ceil(PAGE);
        let differing: Vec<usize> = (0..pages).filter(|&p| !same_page(&d.bytes, &current, p)).collect();
        let nonzero: Vec<usize> = (0..pages).filter(|&p| page_of(&d.bytes, p).iter().any(|&b| b != 0)).collect();
        let mut lens = vec![d.len];
        if current.len() != d.len {
            lens.push(current.len());
        }
        self.stats.most_pages = self.stats.most_pages.max(differing.len());
        let subsets: Vec<Vec<bool>> = if differing.len() <= ALL_SUBSETS_UP_TO {
            (0..1u32 << differing.len())
                .map(|mask| (0..differing.len()).map(|i| mask & (1 << i) != 0).collect())
                .collect()
        } else {
            self.stats.capped_points += 1;
            let mut all = vec![vec![false; differing.len()], vec![true; differing.len()]];
            for _ in 0..RANDOM_SUBSETS {
                all.push((0..differing.len()).map(|_| self.rng.next() & 1 == 1).collect());
            }
            all
        };
        for len in &lens {
            for subset in &subsets {
                let taken: Vec<usize> = differing.iter().zip(subset).filter(|(_, &t)| t).map(|(&p, _)| p).collect();
                let image = self.write_image(&d, &nonzero, &current, *len, &taken);
                self.stats.images += 1;
                if let Err((kind, detail)) = check_image(&image, &expect) {
                    self.fail(
                        &kind,
                        format!(
                            "at {what}: image of {len} bytes with changed pages {taken:?} of {differing:?}: {detail}"
                        ),
                    );
                }
                let _ = fs::remove_file(&image);
            }
        }
    }

    /// Writes `d` with the pages `taken` from `current`, cut or extended to `len`, sparsely:
    /// only `d`'s pages `nonzero` (those not all zero) and the pages taken are written.
    fn write_image(&mut self, d: &Durable, nonzero: &[usize], current: &[u8], len: usize, taken: &[usize]) -> PathBuf {
        self.next_image += 1;
        let path = self.image_dir.join(format!("image{}.shm", self.next_image));
        let file = fs::File::create(&path).unwrap();
        file.set_len(len as u64).unwrap();
        let from_d = nonzero.iter().filter(|p| !taken.contains(p)).map(|&p| (p, &d.bytes[..]));
        for (p, source) in from_d.chain(taken.iter().map(|&p| (p, current))) {
            let page = page_of(source, p);
            let page = &page[..page.len().min(len.saturating_sub(p * PAGE))];
            file.write_all_at(page, (p * PAGE) as u64).unwrap();
        }
        path
    }

    fn fail(&mut self, kind: &str, detail: String) {
        if std::env::var_os("POWER_LOSS_VERBOSE").is_some() {
            eprintln!("{kind}: {detail}");
        }
        let entry = self.stats.failures.entry(kind.to_owned()).or_insert((0, detail));
        entry.0 += 1;
    }
}

/// The kind of an error, without its details: `Corrupt`, `Truncated`, ...
fn kind_of(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug.split([' ', '{', '(']).next().unwrap_or_default().to_owned()
}

type Failure = (String, String);

fn failure(kind: impl Into<String>, detail: impl Into<String>) -> Failure {
    (kind.into(), detail.into())
}

fn check_image(image: &Path, expect: &Expect) -> Result<(), Failure> {
    {
        let store = Store::options()
            .read_only(true)
            .open(image)
            .map_err(|e| failure(format!("read-only open refused: {}", kind_of(&e)), e.to_string()))?;
        verify(&store).map_err(|(k, d)| (format!("read-only: {k}"), d))?;
        check_store(&store, expect).map_err(|(k, d)| (format!("read-only: {k}"), d))?;
    }
    let store = Store::open(image).map_err(|e| failure(format!("open refused: {}", kind_of(&e)), e.to_string()))?;
    // The allocator must go on from a point past everything that is there: a new entry, made
    // first, must not disturb anything.
    let probe = store
        .array_or_init::<u64>("probe", 600, 0xabab_abab)
        .map_err(|e| failure(format!("creating an entry refused: {}", kind_of(&e)), e.to_string()))?;
    drop(probe);
    check_store(&store, expect).map_err(|(k, d)| (format!("read-write, after creating an entry: {k}"), d))?;
    Ok(())
}

/// What `shmstore verify` checks: every schema readable, every value valid for it.
fn verify(store: &Store) -> Result<(), Failure> {
    let entries = store.entries().map_err(|e| failure("listing refused", e.to_string()))?;
    for e in &entries {
        let schema = store.schema(&e.name).map_err(|err| failure("schema unreadable", err.to_string()))?;
        let bytes = store.read_raw(&e.name, 0, e.len).map_err(|err| failure("raw read refused", err.to_string()))?;
        let mut invalid = Vec::new();
        let mut report = |v: shmstore::InvalidValue| {
            invalid.push(format!("{}: {}", v.path, v.detail));
            ControlFlow::Continue(())
        };
        if e.len == 1 && e.kind == shmstore::EntryKind::Object {
            let _ = shmstore::format::value::find_invalid(&schema, &bytes, &e.name, &mut report);
        } else {
            let _ = shmstore::format::value::find_invalid_elements(&schema, &bytes, &e.name, 0, &mut report);
        }
        if !invalid.is_empty() {
            return Err(failure("invalid value", format!("{invalid:?}")));
        }
    }
    Ok(())
}

fn check_store(store: &Store, expect: &Expect) -> Result<(), Failure> {
    if store.capacity() < expect.capacity {
        return Err(failure(
            "growth lost",
            format!("the store has {} bytes, but grew to {} before", store.capacity(), expect.capacity),
        ));
    }
    for (name, obj) in &expect.objects {
        check_object(store, name, obj)?;
    }
    for (name, arr) in &expect.arrays {
        check_array(store, name, arr)?;
    }
    check_life(store, expect)
}

/// The life-cycle arrays must be exactly one of the allowed worlds.
fn check_life(store: &Store, expect: &Expect) -> Result<(), Failure> {
    let names: std::collections::BTreeSet<&String> = expect.life.iter().flat_map(|w| w.keys()).collect();
    let mut seen = BTreeMap::new();
    for name in names {
        match store.array::<u64>(name) {
            Ok(h) => {
                let values = h.read().map_err(|e| failure("read refused", e.to_string()))?;
                let tag = values.first().copied().unwrap_or(0);
                if let Some(i) = values.iter().position(|&v| v != tag) {
                    return Err(failure(
                        "wrong value",
                        format!("`{name}`[{i}] holds {}, not its tag {tag}", values[i]),
                    ));
                }
                seen.insert(name.clone(), (values.len(), tag));
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(failure(format!("opening an entry refused: {}", kind_of(&e)), e.to_string())),
        }
    }
    if expect.life.is_empty() && seen.is_empty() || expect.life.contains(&seen) {
        return Ok(());
    }
    Err(failure("life cycle not atomic", format!("the store holds {seen:?}, but only {:?} may be there", expect.life)))
}

fn check_object(store: &Store, name: &str, obj: &ObjExpect) -> Result<(), Failure> {
    let missing = |e: &Error| -> Result<Option<Val>, Failure> {
        match e {
            Error::NotFound { .. } if !obj.created => Ok(None),
            Error::NotFound { .. } => Err(failure("entry lost", format!("`{name}` was created, but is not there"))),
            other => Err(failure(format!("opening an entry refused: {}", kind_of(other)), other.to_string())),
        }
    };
    let load_err = |e: Error| failure(format!("load refused: {}", kind_of(&e)), format!("`{name}`: {e}"));
    let seen = match name {
        "plain" => match store.object::<u64>(name) {
            Ok(h) => Some(Val::U64(h.load().map_err(load_err)?)),
            Err(e) => missing(&e)?,
        },
        // A read guard on a type holding atomics needs a read-write store: read the raw bytes.
        "counter" => match store.read_raw(name, 0, 1) {
            Ok(raw) => {
                let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
                let (a, b) = (word(0), word(1));
                if a != b {
                    return Err(failure("torn value", format!("`{name}` holds ({a}, {b})")));
                }
                Some(Val::Counter(a))
            }
            Err(e) => missing(&e)?,
        },
        "big" => match store.object::<Big>(name) {
            Ok(h) => {
                let big = h.load().map_err(load_err)?;
                if big != Big::new(big.words[0]) {
                    return Err(failure("torn value", format!("`{name}` mixes two values")));
                }
                Some(Val::Big(big.words[0]))
            }
            Err(e) => missing(&e)?,
        },
        "cfg" => match store.object::<CfgV2>(name) {
            Ok(h) => Some(Val::CfgV2(h.load().map_err(load_err)?)),
            Err(Error::LayoutMismatch { .. }) => match store.object::<CfgV1>(name) {
                Ok(h) => Some(Val::CfgV1(h.load().map_err(load_err)?.port)),
                Err(e) => missing(&e)?,
            },
            Err(e) => missing(&e)?,
        },
        other => unreachable!("no object {other}"),
    };
    match seen {
        Some(v) if !obj.allowed.contains(&v) => {
            Err(failure("wrong value", format!("`{name}` holds {v:?}, but only {:?} may be there", obj.allowed)))
        }
        _ => Ok(()),
    }
}

fn check_array(store: &Store, name: &str, arr: &ArrExpect) -> Result<(), Failure> {
    let values: Vec<u64> = if arr.bytes {
        match store.bytes(name) {
            Ok(h) => {
                let mut buf = vec![0u8; h.len() as usize];
                h.read_at(0, &mut buf).map_err(|e| failure("read refused", e.to_string()))?;
                buf.into_iter().map(u64::from).collect()
            }
            Err(Error::NotFound { .. }) if !arr.created => return Ok(()),
            Err(e) => return Err(failure(format!("opening an entry refused: {}", kind_of(&e)), e.to_string())),
        }
    } else {
        match store.array::<u64>(name) {
            Ok(h) => h.read().map_err(|e| failure("read refused", e.to_string()))?.to_vec(),
            Err(Error::NotFound { .. }) if !arr.created => return Ok(()),
            Err(e) => return Err(failure(format!("opening an entry refused: {}", kind_of(&e)), e.to_string())),
        }
    };
    if values.len() != arr.committed.len() {
        return Err(failure("wrong length", format!("`{name}` has {} elements", values.len())));
    }
    // Elements outside the write under way must hold their last written values; inside it, either
    // those or the new ones.
    let (at, pending) = arr.pending.as_ref().map_or((0, &[][..]), |(at, v)| (*at, &v[..]));
    let end = at + pending.len();
    let allowed = |i: usize| values[i] == arr.committed[i] || (at..end).contains(&i) && values[i] == pending[i - at];
    // Slices compare fast; the element by element check runs over the write under way only.
    let outside_ok = values[..at] == arr.committed[..at] && values[end..] == arr.committed[end..];
    if !(outside_ok && (at..end).all(allowed)) {
        let i = (0..values.len()).find(|&i| !allowed(i)).unwrap_or_default();
        return Err(failure(
            "wrong value",
            format!(
                "`{name}`[{i}] holds {}, but only {} or the write under way ({pending:?} from {at}) may be there",
                values[i], arr.committed[i]
            ),
        ));
    }
    Ok(())
}

/// Where crash images are written: a tmpfs if there is one, for speed.
fn image_dir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// The operations.

/// Runs the operation sequence on a new store at `path`, with `durability`, telling `model` what
/// each operation does as it starts and returns.
fn run_operations(path: &Path, durability: Durability, model: &Model) {
    let store = Store::options().create(true).capacity(24 * 1024).durability(durability).open(path).unwrap();
    model.with(|e| {
        e.store_created = true;
        e.op = "between operations".into();
    });

    let plain = model.create_object("plain", Val::U64(1), || store.object_or_init("plain", || 1u64)).unwrap();
    let counter = model
        .create_object("counter", Val::Counter(5), || {
            store.object_or_init("counter", || Counter { a: AtomicU64::new(5), b: AtomicU64::new(5) })
        })
        .unwrap();
    let big = model.create_object("big", Val::Big(100), || store.object_or_init("big", || Big::new(100))).unwrap();
    let cfg =
        model.create_object("cfg", Val::CfgV1(8080), || store.object_or_init("cfg", || CfgV1 { port: 8080 })).unwrap();

    model.commit("plain", Val::U64(2), || plain.store(2)).unwrap();
    model.commit("big", Val::Big(101), || big.store(Big::new(101))).unwrap();
    model
        .commit("counter", Val::Counter(6), || {
            counter.update(|c| {
                *c.a.get_mut() = 6;
                *c.b.get_mut() = 6;
            })
        })
        .unwrap();
    model.commit("cfg", Val::CfgV1(8081), || cfg.store(CfgV1 { port: 8081 })).unwrap();

    // 16 KiB more than the store has left: creating it grows the store.
    let before = store.capacity();
    let samples = model
        .create_array("samples", false, vec![7; SAMPLES], || store.array_or_init::<u64>("samples", SAMPLES, 7))
        .unwrap();
    assert!(store.capacity() > before, "the samples array was meant to make the store grow");
    model.with(|e| e.capacity = store.capacity());
    model.write("samples", 100, vec![1, 2, 3], || samples.write_at(100, &[1, 2, 3])).unwrap();
    // Elements 500..600 cross the page boundary at element 512.
    let run: Vec<u64> = (0..100).map(|i| 1000 + i).collect();
    model.write("samples", 500, run.clone(), || samples.write_at(500, &run)).unwrap();

    let blob = model.create_array("blob", true, vec![0; BLOB], || store.bytes_or_init("blob", BLOB as u64)).unwrap();
    let text = b"a write that crosses the page boundary of the byte region";
    model.write("blob", 4070, text.iter().map(|&b| u64::from(b)).collect(), || blob.write_at(4070, text)).unwrap();

    let migrated = CfgV2 { port: 8081, timeout_ms: 5000 };
    model.commit("cfg", Val::CfgV2(migrated), || store.migrate("cfg", upgrade)).unwrap();
    let cfg = store.object::<CfgV2>("cfg").unwrap();
    let next = CfgV2 { port: 9090, timeout_ms: 250 };
    model.commit("cfg", Val::CfgV2(next), || cfg.store(next)).unwrap();
    model.commit("plain", Val::U64(3), || plain.store(3)).unwrap();
    model.commit("big", Val::Big(102), || big.store(Big::new(102))).unwrap();
    model.write("samples", 0, vec![9], || samples.set(0, 9)).unwrap();

    // Growth by a zero-filled array, which writes no data, and by an explicit capacity.
    let before = store.capacity();
    let sparse = model
        .create_array("sparse", false, vec![0; SPARSE], || store.array_or_init::<u64>("sparse", SPARSE, 0))
        .unwrap();
    assert!(store.capacity() > before, "the sparse array was meant to make the store grow");
    model.with(|e| e.capacity = store.capacity());
    model.write("sparse", SPARSE - 1, vec![42], || sparse.set(SPARSE - 1, 42)).unwrap();
    // 13 pages in one write: more than can be tried in every combination.
    let wide: Vec<u64> = (0..6000).map(|i| 50_000 + i).collect();
    model.write("sparse", 1000, wide.clone(), || sparse.write_at(1000, &wide)).unwrap();
    // The life cycle: create, remove, rename, resize, and a creation that reuses freed space;
    // each must be all or nothing.
    let mut world: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (name, len, tag) in [("l1", 700, 11), ("l2", 40, 12), ("l3", 3000, 13)] {
        world.insert(name.to_owned(), (len, tag));
        model.life(&format!("creating `{name}`"), &world, || store.array_or_init::<u64>(name, len, tag)).unwrap();
    }
    world.remove("l2");
    model.life("removing `l2`", &world, || store.remove("l2")).unwrap();
    let l1 = world.remove("l1").unwrap();
    world.insert("l1b".into(), l1);
    model.life("renaming `l1`", &world, || store.rename("l1", "l1b")).unwrap();
    world.insert("l3".into(), (3500, 13));
    let mut l3 = store.array::<u64>("l3").unwrap();
    model.life("resizing `l3`", &world, || l3.resize(3500, 13)).unwrap();
    world.insert("l4".into(), (40, 14));
    model.life("creating `l4` in the space of `l2`", &world, || store.array_or_init::<u64>("l4", 40, 14)).unwrap();
    world.remove("l1b");
    model.life("removing `l1b`", &world, || store.remove("l1b")).unwrap();

    let bigger = store.capacity() + (1 << 20);
    let reopened = Store::options().capacity(bigger).durability(durability).open(path).unwrap();
    model.with(|e| e.capacity = bigger);
    let plain = reopened.object::<u64>("plain").unwrap();
    model.commit("plain", Val::U64(4), || plain.store(4)).unwrap();
    model
        .commit("counter", Val::Counter(7), || {
            counter.update(|c| {
                *c.a.get_mut() = 7;
                *c.b.get_mut() = 7;
            })
        })
        .unwrap();
}

/// Simulates power losses on the store `store.shm` in `dir` while `operations` run.
struct Simulation {
    dir: tempfile::TempDir,
    _images: tempfile::TempDir,
    sim: Arc<Mutex<Sim>>,
    model: Model,
}

impl Simulation {
    /// A simulation whose sync events are crash points if `checking`.
    fn new(checking: bool) -> Simulation {
        let dir = tempfile::tempdir().unwrap();
        let images = image_dir();
        let model = Model::default();
        let sim = Arc::new(Mutex::new(Sim {
            store_path: dir.path().join("store.shm"),
            image_dir: images.path().to_owned(),
            durable: HashMap::new(),
            durable_name: None,
            model: model.clone(),
            rng: Rng(SEED),
            stats: Stats::default(),
            next_image: 0,
            checking,
        }));
        Simulation { dir, _images: images, sim, model }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store.shm")
    }

    /// Runs `operations` with the hook observing the store's directory.
    fn run(&self, operations: impl FnOnce(&Path, &Model)) {
        let observer = self.sim.clone();
        let registered = observe(self.dir.path(), Arc::new(move |event| observer.lock().unwrap().on_event(event)));
        operations(&self.path(), &self.model);
        drop(registered);
    }

    /// A crash point now, with every operation returned.
    fn crash_point(&self, what: &str) {
        let mut sim = self.sim.lock().unwrap();
        sim.checking = true;
        sim.crash_point(what);
    }

    /// Reports the figures and every kind of failure, and fails if there was any.
    fn assert_sound(&self, at_least_images: u64) {
        let sim = self.sim.lock().unwrap();
        let s = &sim.stats;
        eprintln!(
            "power-loss simulator: {} sync events, {} crash points ({} before the store's name was durable), \
             {} images checked; at most {} differing pages at one point, {} points sampled at random",
            s.events, s.crash_points, s.absent, s.images, s.most_pages, s.capped_points
        );
        for (kind, (count, example)) in &s.failures {
            eprintln!("FAILED {count} x {kind}\n    e.g. {example}");
        }
        assert!(s.failures.is_empty(), "{} kinds of crash image break the store (listed above)", s.failures.len());
        assert!(s.images >= at_least_images, "the simulator checked too few images to mean anything");
    }
}

#[test]
fn every_power_loss_image_opens_and_keeps_what_was_committed() {
    let sim = Simulation::new(true);
    sim.run(|path, model| run_operations(path, Durability::PowerLoss, model));
    // One last point, after everything: the state at rest.
    sim.crash_point("the end");
    sim.assert_sound(1000);
}

/// `Store::flush` makes everything before it durable, even on a store used (and created) with
/// `Durability::Process`: its data, the length it grew to, and its name.
#[test]
fn flush_makes_a_process_store_survive_a_power_loss() {
    let sim = Simulation::new(false);
    sim.run(|path, model| {
        run_operations(path, Durability::Process, model);
        Store::open(path).unwrap().flush().unwrap();
    });
    sim.crash_point("after Store::flush");
    sim.assert_sound(1);
}

/// `Durability::Process` promises nothing across a power loss, and pays for nothing: the same
/// operations make no `msync`, `fsync`, `fdatasync` or directory `fsync` at all.
#[test]
fn process_durability_makes_no_sync_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fast.shm");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let registered = observe(
        dir.path(),
        Arc::new(move |event| {
            if event.phase == SyncPhase::Before && !matches!(event.op, SyncOp::SetLen { .. } | SyncOp::Allocate { .. })
            {
                log.lock().unwrap().push(format!("{:?} of {}", event.op, event.path.display()));
            }
        }),
    );
    run_operations(&path, Durability::Process, &Model::default());
    drop(registered);
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());
}
