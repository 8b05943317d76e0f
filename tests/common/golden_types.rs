//! The types of the golden stores (`tests/golden/v1.shm`, `tests/golden/v2.shm`), declared once
//! for every test that reads them: their fingerprints depend on their names, fields and versions,
//! so a copy that drifted would make a test open the golden entries with other layouts.
#![allow(dead_code)] // each test file uses part of it

use std::sync::atomic::AtomicU64;

use shmstore::{FixedStr, SharedLayout};

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Off = 0,
    On = 1,
    Auto = 7,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 3)]
pub struct Config {
    pub port: u16,
    pub mode: Mode,
    pub verbose: bool,
    pub _pad: [u8; 4],
    pub origin: Point,
    pub scale: f64,
    pub name: FixedStr<16>,
}

#[derive(SharedLayout, Debug)]
#[repr(C)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 1)]
pub struct LimitsV1 {
    pub max_conn: u32,
    pub _pad: [u8; 4],
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[shared(version = 2)]
pub struct LimitsV2 {
    pub max_conn: u64,
    pub timeout_ms: u64,
}

/// The value of `config` in the golden v1 store.
pub fn v1_config() -> Config {
    Config {
        port: 8080,
        mode: Mode::Auto,
        verbose: true,
        _pad: [0; 4],
        origin: Point { x: -3, y: 42 },
        scale: 1.5,
        name: FixedStr::new("edge-1").unwrap(),
    }
}
