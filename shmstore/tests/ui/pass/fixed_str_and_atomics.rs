use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64};

use shmstore::{FixedStr, SharedLayout};

#[derive(SharedLayout)]
#[repr(C)]
struct Service {
    name: FixedStr<32>,
    hosts: [FixedStr<16>; 4],
    requests: AtomicU64,
    errors: AtomicI64,
    active: AtomicU32,
    delta: AtomicI32,
    ready: AtomicBool,
    flags: [u8; 7],
}

fn main() {
    assert_eq!(Service::LAYOUT.size, 32 + 64 + 8 + 8 + 4 + 4 + 1 + 7);
}
