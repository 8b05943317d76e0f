// `write_at` copies the caller's values byte by byte. Values holding atomics can be changed by
// another thread through a shared borrow while they are copied (a data race), so `write_at` needs
// `T: Copy`, which no type holding an atomic is. Such arrays are written with `set`, a write guard
// or `update` instead.
use std::sync::atomic::AtomicU64;

use shmstore::{ArrayView, SharedArray};

fn whole(array: &SharedArray<AtomicU64>, values: &[AtomicU64]) -> shmstore::Result<()> {
    array.write_at(0, values)
}

fn window(view: &ArrayView<'_, AtomicU64>, values: &[AtomicU64]) -> shmstore::Result<()> {
    view.write_at(0, values)
}

fn main() {}
