//! Helpers shared by the CLI tests: running the real `shmstore` binary, and stores written by the
//! library with types that cover every supported kind of field.
//!
//! Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64};

use shmstore::{FixedStr, SharedLayout, Store};

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    /// The exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with `code` and a single `shmstore: ` line on stderr containing `phrase`,
    /// and returns that line.
    #[track_caller]
    pub fn fails(&self, code: i32, phrase: &str) -> &str {
        assert_eq!(self.code, code, "expected exit status {code}: {self:#?}");
        let line = self.stderr.trim_end();
        assert!(!line.contains('\n'), "expected one line on stderr: {self:#?}");
        assert!(line.starts_with("shmstore: "), "expected a `shmstore: ` message: {self:#?}");
        assert!(line.contains(phrase), "expected {phrase:?} in the message: {self:#?}");
        line
    }
}

/// Runs `shmstore ARGS...`.
pub fn shmstore<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_shmstore")).args(args).output().expect("run the shmstore binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// A fresh temporary directory and a store path inside it.
pub fn temp_store(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode8 {
    #[default]
    Slow = 0,
    Fast = 1,
    Turbo = 200,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u16)]
pub enum Mode16 {
    #[default]
    A = 1,
    B = 0x1234,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Mode32 {
    #[default]
    X = 7,
    Y = 0xdead_beef,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u64)]
pub enum Mode64 {
    #[default]
    Small = 1,
    Huge = 0xfedc_ba98_7654_3210,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Inner {
    pub a: u16,
    pub b: i16,
    pub flag: bool,
    pub mode: Mode8,
    pub tag: FixedStr<4>,
}

/// Every kind of field shmstore supports, in one struct (with atomics, so it is updated in place).
#[derive(SharedLayout, Debug, Default)]
#[repr(C)]
pub struct Everything {
    pub u128_v: u128,
    pub i128_v: i128,
    pub u64_v: u64,
    pub big_u64: u64,
    pub i64_v: i64,
    pub min_i64: i64,
    pub f64_v: f64,
    pub specials: [f64; 3],
    pub m64: Mode64,
    pub a_u64: AtomicU64,
    pub a_i64: AtomicI64,
    pub u32_v: u32,
    pub i32_v: i32,
    pub f32_v: f32,
    pub m32: Mode32,
    pub a_u32: AtomicU32,
    pub a_i32: AtomicI32,
    pub u16_v: u16,
    pub i16_v: i16,
    pub m16: Mode16,
    pub inner: Inner,
    pub grid: [[u16; 3]; 2],
    pub inners: [Inner; 2],
    pub u8_v: u8,
    pub i8_v: i8,
    pub flag: bool,
    pub m8: Mode8,
    pub a_bool: AtomicBool,
    pub name: FixedStr<11>,
}

pub const U128_V: u128 = (1 << 100) + 7;
pub const MAX_SAFE: u64 = (1 << 53) - 1;

pub fn everything() -> Everything {
    fn fs<const N: usize>(s: &str) -> FixedStr<N> {
        FixedStr::new(s).unwrap()
    }
    Everything {
        u128_v: U128_V,
        i128_v: -42,
        u64_v: MAX_SAFE,
        big_u64: MAX_SAFE + 1,
        i64_v: -(MAX_SAFE as i64),
        min_i64: i64::MIN,
        f64_v: -1234.5,
        specials: [f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
        m64: Mode64::Huge,
        a_u64: AtomicU64::new(u64::MAX),
        a_i64: AtomicI64::new(-5),
        u32_v: u32::MAX,
        i32_v: i32::MIN,
        f32_v: 0.1,
        m32: Mode32::Y,
        a_u32: AtomicU32::new(77),
        a_i32: AtomicI32::new(-77),
        u16_v: u16::MAX,
        i16_v: -300,
        m16: Mode16::B,
        inner: Inner { a: 1, b: -1, flag: true, mode: Mode8::Turbo, tag: fs("ab") },
        grid: [[1, 2, 3], [4, 5, 6]],
        inners: [
            Inner { a: 2, b: -2, flag: false, mode: Mode8::Slow, tag: fs("abcd") },
            Inner { a: 3, b: -3, flag: true, mode: Mode8::Fast, tag: fs("") },
        ],
        u8_v: u8::MAX,
        i8_v: i8::MIN,
        flag: true,
        m8: Mode8::Fast,
        a_bool: AtomicBool::new(true),
        name: fs("grüße!"),
    }
}

/// A double-buffered object (no atomics): its commits alternate between two slots.
#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Config {
    pub port: u16,
    pub verbose: bool,
    pub name: FixedStr<12>,
    pub mode: Mode8,
}

/// The `config` value after the last of [`build`]'s commits.
pub fn config() -> Config {
    Config { port: 8080, verbose: true, name: FixedStr::new("edge-1").unwrap(), mode: Mode8::Fast }
}

/// Elements of the `samples` array: `i * 1.5`.
pub const SAMPLES: usize = 20;

/// A store with `everything` (an object updated in place), `config` (double-buffered, committed
/// three times so that both slots were used), `samples` (an array of f64) and `rows` (an array of
/// structs), written and closed.
pub fn build(path: &Path) {
    // Capped, so that `inspect` has a catalog size to show.
    let store = Store::options().create(true).capacity(1 << 20).max_entries(64).open(path).unwrap();
    store.object_or_init("everything", everything).unwrap();
    let cfg = store.object_or_init("config", Config::default).unwrap();
    cfg.update(|c| c.port = 1).unwrap();
    cfg.update(|c| c.port = 2).unwrap();
    cfg.store(config()).unwrap();
    let samples = store.array_or_init::<f64>("samples", SAMPLES, 0.0).unwrap();
    let values: Vec<f64> = (0..SAMPLES).map(|i| i as f64 * 1.5).collect();
    samples.write_at(0, &values).unwrap();
    let rows = store.array_or_init("rows", 5, Inner::default()).unwrap();
    for i in 0..5u16 {
        let tag = FixedStr::new(&format!("r{i}")).unwrap();
        rows.write_at(i as usize, &[Inner { a: i, b: -(i as i16), flag: i % 2 == 0, mode: Mode8::Fast, tag }]).unwrap();
    }
    store.close().unwrap();
}

/// One entry as `shmstore inspect --json` describes it.
pub fn entry_json<'a>(inspect: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    inspect["entries"]
        .as_array()
        .expect("an entries array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {inspect:#}"))
}

/// The file offset of the active copy of `name`, found the way a foreign reader finds it: from
/// `inspect --json` and the entry's `seq` word in the file.
pub fn active_offset(path: &Path, name: &str) -> u64 {
    let inspect: serde_json::Value =
        serde_json::from_str(shmstore(["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]).ok()).unwrap();
    let e = entry_json(&inspect, name);
    let field = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e:#}"));
    let bytes = fs::read(path).unwrap();
    let at = field("seq_offset") as usize;
    let seq = u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
    field("data_offset") + (seq & 1) * field("slot_stride")
}

/// Overwrites bytes of the file at `offset`.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}
