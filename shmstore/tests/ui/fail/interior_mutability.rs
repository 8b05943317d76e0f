// Interior mutability other than the std atomics is refused: the store reads every byte that is not
// an atomic with plain reads while other holders of a read guard may be using `&Self`, so a byte
// that can change through `&Self` must be an atomic the layout describes as one.
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::AtomicU64;

use shmstore::SharedLayout;

#[derive(SharedLayout)]
#[repr(C)]
struct Cells {
    hits: Cell<u64>,
    raw: UnsafeCell<u64>,
}

/// A hand-made counter: `Sync`, but without a `SharedLayout` impl, so it cannot be a field.
#[repr(transparent)]
struct Sneaky(AtomicU64);

#[derive(SharedLayout)]
#[repr(C)]
struct Wrapped {
    hits: Sneaky,
}

fn main() {}
