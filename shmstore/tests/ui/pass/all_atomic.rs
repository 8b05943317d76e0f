// Structs made only of atomics, arrays of atomics and such structs have `get()`: the derive
// implements `AllAtomic` for them, whatever the nesting and the repr.
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

use shmstore::{AllAtomic, Shared, SharedLayout};

#[derive(SharedLayout)]
#[repr(C)]
struct Counters {
    hits: AtomicU64,
    misses: [AtomicU32; 2],
    flags: [AtomicBool; 4],
    delta: AtomicI32,
    total: AtomicI64,
}

#[derive(SharedLayout)]
#[repr(transparent)]
struct Wrapped(AtomicU64);

#[derive(SharedLayout)]
#[repr(C)]
struct Nested {
    inner: Counters,
    more: [Wrapped; 3],
}

fn assert_all_atomic<T: AllAtomic>() {}

fn bump(shared: &Shared<Nested>) -> shmstore::Result<u64> {
    let n = shared.get()?;
    n.more[2].0.fetch_add(1, Ordering::Relaxed);
    Ok(n.inner.hits.fetch_add(1, Ordering::Relaxed))
}

fn main() {
    assert_all_atomic::<Counters>();
    assert_all_atomic::<Wrapped>();
    assert_all_atomic::<Nested>();
    assert_all_atomic::<[Nested; 2]>();
    assert_all_atomic::<AtomicBool>();
    assert!(Nested::LAYOUT.is_all_atomic());
    let _ = bump;
}
