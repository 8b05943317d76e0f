//! Open a store whose decoded fields were mutated and re-sealed with valid checksums; list it and
//! use its entries with any type. See `shmstore_fuzz::run_open_store`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::{run_open_store, Mutation, Uses};

fuzz_target!(|input: (Vec<Mutation>, Uses)| {
    run_open_store(&input.0, &input.1);
});
