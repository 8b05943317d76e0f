//! Decode arbitrary schema bytes, and real layouts' schemas changed structurally and re-encoded;
//! render, diff and use what decodes. See `shmstore_fuzz::run_schema`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::{run_schema, SchemaInput};

fuzz_target!(|input: SchemaInput| {
    run_schema(&input);
});
