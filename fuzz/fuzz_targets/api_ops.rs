//! A sequence of API operations on a store whose file is mutated in place between steps. See
//! `shmstore_fuzz::run_api_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::{run_api_ops, Op};

fuzz_target!(|ops: Vec<Op>| {
    run_api_ops(&ops);
});
