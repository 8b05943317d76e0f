//! The Rust side of a store shared with Python (`pip install ./shmstore-py`; see
//! shmstore-py/README.md): a Rust program creates and writes the entries, a Python program reads
//! and writes them through the schema stored in the file, with no Rust types on its side.
//!
//! ```text
//! cargo run --example python_peer -- create target/peer.shm   # a fresh store with every entry
//! python3 -c 'import shmstore; print(shmstore.open("target/peer.shm")["config"])'
//! cargo run --example python_peer -- show target/peer.shm     # what Rust sees now
//! ```
//!
//! Commands (each takes the store path first):
//!
//! - `create PATH`: a fresh store holding `config` (a `Config`), `samples` (8 `Sample`s),
//!   `points` (4 `Point`s), `readings` (16 `f64`s), `stats` (atomics) and `raw` (64 bytes);
//! - `show PATH`: prints every entry, one `name = value` line each, with Rust's `Debug`;
//! - `layout`: prints the Rust layouts (size and field offsets), to compare with numpy's dtypes;
//! - `set-port PATH N`: commits `config.port = N`;
//! - `set-reading PATH I X`: writes `readings[I] = X`;
//! - `churn PATH N`: N rounds of: `config.limits = {-k, k}` and `config.retries = k` in one
//!   update, then every element of `readings` set to `k` in one write (k = 1..=N);
//! - `migrate PATH`: migrates `config` to version 2 of its layout (one field added).
//!
//! The Python package's tests (shmstore-py/tests/) run it as the Rust process.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64};

use shmstore::{FixedStr, SharedLayout, Store};

/// How the service runs.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Idle = 0,
    Run = 1,
    Calibrate = 7,
}

/// A nested struct.
#[derive(SharedLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct Limits {
    pub min: i32,
    pub max: i32,
}

/// The configuration object, version 1.
#[derive(SharedLayout, Clone, Copy, Debug)]
#[repr(C)]
#[shared(version = 1)]
pub struct Config {
    pub port: u16,
    pub verbose: bool,
    pub mode: Mode,
    pub retries: u32,
    pub limits: Limits,
    pub name: FixedStr<16>,
    pub gains: [f32; 3],
    pub _pad: [u8; 4],
    pub threshold: f64,
}

/// Version 2 of the configuration: a field added at the end.
#[derive(SharedLayout, Clone, Copy, Debug)]
#[repr(C)]
#[shared(version = 2)]
pub struct ConfigV2 {
    pub port: u16,
    pub verbose: bool,
    pub mode: Mode,
    pub retries: u32,
    pub limits: Limits,
    pub name: FixedStr<16>,
    pub gains: [f32; 3],
    pub _pad: [u8; 4],
    pub threshold: f64,
    pub timeout_ms: u64,
}

/// An element of `samples`: it holds a bool, so a reader must check it (numpy gets a copy).
#[derive(SharedLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct Sample {
    pub t: u64,
    pub value: f64,
    pub channel: u16,
    pub ok: bool,
    pub _pad: [u8; 5],
}

/// An element of `points`: every byte pattern is a valid `Point`, so numpy may view it in place.
#[derive(SharedLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub id: u64,
}

/// Counters updated in place with atomics.
#[derive(SharedLayout, Debug)]
#[repr(C)]
pub struct Stats {
    pub hits: AtomicU64,
    pub errors: AtomicU32,
    pub _pad: [u8; 4],
}

const CAPACITY: u64 = 1 << 20;

fn config() -> Config {
    Config {
        port: 8080,
        verbose: true,
        mode: Mode::Run,
        retries: 3,
        limits: Limits { min: -40, max: 85 },
        name: FixedStr::truncating("edge-1"),
        gains: [1.0, 0.5, -2.25],
        _pad: [0; 4],
        threshold: 0.125,
    }
}

fn create(path: &str) -> Result<(), Box<dyn Error>> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let store = Store::open_or_create(path, CAPACITY)?;
    store.object_or_init("config", config)?;
    let samples =
        store.array_or_init("samples", 8, Sample { t: 0, value: 0.0, channel: 0, ok: false, _pad: [0; 5] })?;
    for i in 0..8u16 {
        let s =
            Sample { t: 1000 + u64::from(i), value: f64::from(i) * 1.5, channel: i % 3, ok: i % 2 == 0, _pad: [0; 5] };
        samples.set(usize::from(i), s)?;
    }
    let points = store.array_or_init("points", 4, Point { x: 0.0, y: 0.0, id: 0 })?;
    for i in 0..4u8 {
        points.set(usize::from(i), Point { x: f32::from(i), y: -f32::from(i), id: u64::from(i) << 40 })?;
    }
    let readings = store.array_or_init("readings", 16, 0.0f64)?;
    readings.write_at(0, &(0..16).map(|i| f64::from(i) / 4.0).collect::<Vec<_>>())?;
    store.object_or_init("stats", || Stats { hits: AtomicU64::new(42), errors: AtomicU32::new(1), _pad: [0; 4] })?;
    store.bytes_or_init("raw", 64)?.write_at(0, b"hello")?;
    println!("created {path}");
    Ok(())
}

fn show(path: &str) -> Result<(), Box<dyn Error>> {
    let store = Store::open(path)?;
    match store.entry_info("config")?.version {
        1 => println!("config = {:?}", store.object::<Config>("config")?.load()?),
        _ => println!("config = {:?}", store.object::<ConfigV2>("config")?.load()?),
    }
    let samples = store.array::<Sample>("samples")?;
    for (i, s) in samples.read()?.iter().enumerate() {
        println!("samples[{i}] = {s:?}");
    }
    for (i, p) in store.array::<Point>("points")?.read()?.iter().enumerate() {
        println!("points[{i}] = {p:?}");
    }
    println!("readings = {:?}", &*store.array::<f64>("readings")?.read()?);
    println!("stats = {:?}", &*store.object::<Stats>("stats")?.read()?);
    let mut raw = [0u8; 8];
    store.bytes("raw")?.read_at(0, &mut raw)?;
    println!("raw = {raw:?}");
    Ok(())
}

/// Prints `Type size=N field@offset ...` for each layout, from the compiler's view.
fn layout() {
    macro_rules! line {
        ($t:ty, $($f:ident),*) => {
            print!("{} size={}", stringify!($t), std::mem::size_of::<$t>());
            $(print!(" {}@{}", stringify!($f), std::mem::offset_of!($t, $f));)*
            println!();
        };
    }
    line!(Config, port, verbose, mode, retries, limits, name, gains, _pad, threshold);
    line!(ConfigV2, port, verbose, mode, retries, limits, name, gains, _pad, threshold, timeout_ms);
    line!(Sample, t, value, channel, ok, _pad);
    line!(Point, x, y, id);
    line!(Limits, min, max);
}

fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["create", path] => create(path),
        ["show", path] => show(path),
        ["layout"] => {
            layout();
            Ok(())
        }
        ["set-port", path, port] => {
            let port: u16 = port.parse()?;
            let store = Store::open(path)?;
            store.object::<Config>("config")?.update(|c| c.port = port)?;
            println!("port = {port}");
            Ok(())
        }
        ["set-reading", path, index, x] => {
            let store = Store::open(path)?;
            store.array::<f64>("readings")?.set(index.parse()?, x.parse()?)?;
            println!("readings[{index}] = {x}");
            Ok(())
        }
        ["churn", path, rounds] => {
            let rounds: i32 = rounds.parse()?;
            let store = Store::open(path)?;
            let config = store.object::<Config>("config")?;
            let readings = store.array::<f64>("readings")?;
            for k in 1..=rounds {
                config.update(|c| {
                    c.limits = Limits { min: -k, max: k };
                    c.retries = k.unsigned_abs();
                })?;
                readings.write_at(0, &[f64::from(k); 16])?;
            }
            println!("churned {rounds} rounds");
            Ok(())
        }
        ["migrate", path] => {
            let store = Store::open(path)?;
            let outcome = store.migrate("config", |old: Config| ConfigV2 {
                port: old.port,
                verbose: old.verbose,
                mode: old.mode,
                retries: old.retries,
                limits: old.limits,
                name: old.name,
                gains: old.gains,
                _pad: [0; 4],
                threshold: old.threshold,
                timeout_ms: 5000,
            })?;
            println!("migrate: {outcome:?}");
            Ok(())
        }
        _ => {
            Err("usage: python_peer create|show PATH | layout | set-port PATH N | set-reading PATH I X | churn PATH N | migrate PATH"
                .into())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
