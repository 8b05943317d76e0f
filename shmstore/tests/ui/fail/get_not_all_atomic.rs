// `Shared::get` hands out `&T` with no lock, which is sound only when every byte of `T` is an
// atomic: a plain field could be changed by a writer (through a write guard) while the reference
// reads it. Types with any other field, even next to atomics, do not have `get()`; they use a
// read guard.
use std::sync::atomic::AtomicU64;

use shmstore::{Shared, SharedLayout};

#[derive(SharedLayout)]
#[repr(C)]
struct Mixed {
    hits: AtomicU64,
    limit: u64,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Nested {
    inner: Mixed,
    total: AtomicU64,
}

fn mixed(shared: &Shared<Mixed>) -> shmstore::Result<u64> {
    Ok(shared.get()?.hits.load(std::sync::atomic::Ordering::Relaxed))
}

fn nested(shared: &Shared<Nested>) -> shmstore::Result<u64> {
    Ok(shared.get()?.total.load(std::sync::atomic::Ordering::Relaxed))
}

fn plain(shared: &Shared<u64>) -> shmstore::Result<u64> {
    shared.get().map(|_| 0)
}

fn main() {}
