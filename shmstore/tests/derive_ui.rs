//! Compile-time behaviour of `#[derive(SharedLayout)]`: every rejected shape fails with a clear,
//! spanned, actionable error (`ui/fail/*.rs`, with the expected output in `.stderr` snapshots), and
//! every accepted shape compiles (`ui/pass/*.rs`).
//!
//! After an intended change to a message, or a new compiler, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p shmstore --test derive_ui` and read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
