//! Replays inputs of the fuzz targets (fuzz/) through the same harness, so that `cargo test`
//! keeps every crash the fuzzers found fixed, and checks that the committed seed corpora run
//! clean.
//!
//! The harness is compiled in by path; an input is decoded into the target's structured input
//! with `arbitrary`, exactly as libFuzzer's `fuzz_target!` does. Each crash file lives in
//! `fuzz/regressions/TARGET/` and has a test of its own below, saying what it was.

#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

fn replay_dir(target: &str, dir: &Path) -> usize {
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files {
        harness::replay(target, &std::fs::read(&file).unwrap());
        n += 1;
    }
    n
}

/// Every seed input of every target runs without a panic (the seeds are what CI's short fuzz
/// runs start from, so a harness that breaks on them would make those runs meaningless).
#[test]
fn seed_corpora_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in ["open_store", "schema_decode", "api_ops"] {
        let n = replay_dir(target, &root.join(target));
        assert!(n > 0, "no seed inputs for {target}");
    }
}

fn replay_file(target: &str, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target).join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("{target} input {name}: {}", harness::describe(target, &data));
    harness::replay(target, &data);
}

/// Found by `open_store` on format v1 (6 bytes): one mutation, `CopyRecord(129, 0)`, copied the
/// record of slot 1 (`nums`) over slot 0, checksum and all, and the store handed out `nums` with
/// another slot's lock byte (issue 8, finding 3). In format v2 the same input copies one entry
/// block over another: the copy's lock byte derives from where it lies, and its data overlaps the
/// original's, which the per-process interval set refuses.
#[test]
fn open_store_lock_offset_of_another_slot() {
    replay_file("open_store", "lock-offset-of-another-slot");
}

/// The number the harness gives the seed store's entry `name` (its block, among the seed's
/// blocks by offset).
fn seed_slot(name: &str) -> u8 {
    use shmstore::format::v2::block;
    let image = harness::Image::seed();
    harness::seed_blocks()
        .iter()
        .position(|&at| {
            let start = (at + block::STATIC_OFFSET) as usize;
            block::decode(&image.bytes[start..], at, u64::MAX).is_ok_and(|b| b.entry.name == name)
        })
        .unwrap_or_else(|| panic!("no entry {name} in the seed store")) as u8
}

/// The same hole as `open_store` finds, written out: the record of `points` (4 `Point`s, 32 bytes)
/// is re-sealed with the data offset of `nums` (16 `u32`s, 64 bytes). The store opens the file and
/// hands out both, so a write guard on one aliases a read guard on the other (issue 8, finding 3,
/// first bullet).
#[test]
fn open_store_overlapping_entries() {
    use harness::{Mutation, RecordField, Uses, Val};
    let (points, nums) = (seed_slot("points"), seed_slot("nums"));
    let mutations = [Mutation::Record(points, RecordField::DataOffset, Val::Other(nums, RecordField::DataOffset))];
    harness::run_open_store(&mutations, &Uses { read_only_too: false, uses: Vec::new() });
}

/// Found by `schema_decode` (a 10 s timeout): `value::decode`, which `shmstore dump` uses, bounds
/// arrays of zero-sized elements one array at a time (`MAX_ZERO_SIZED_ELEMENTS`), not in total, so
/// nested ones multiply: `[[[u8; 0]; 2^20]; 2^20]`, a real Rust type whose schema any store may
/// hold, expands to 2^40 values, and hangs until memory runs out. This test uses
/// `[[[u8; 0]; 2^11]; 2^10]` (2^21 values, above the 2^20 bound): it must be refused, not decoded.
#[test]
fn schema_decode_nested_zero_sized_arrays_are_bounded_in_total() {
    use shmstore::format::{schema::Schema, value};
    use shmstore::SharedLayout;
    let schema = Schema::from(&<[[[u8; 0]; 1 << 11]; 1 << 10]>::LAYOUT);
    assert!(shmstore::format::schema::decode(&schema.encode()).is_ok(), "the schema is a valid one");
    assert!(value::decode(&schema, &[]).is_err(), "2^21 zero-sized values were expanded");
}
