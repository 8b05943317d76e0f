//! Compile-time behaviour of `#[derive(SharedLayout)]`: every rejected shape fails with a clear,
//! spanned, actionable error (`ui/fail/*.rs`, with the expected output in `.stderr` snapshots), and
//! every accepted shape compiles and runs (`ui/pass/*.rs`).
//!
//! After an intended change to a message, or a new compiler, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p shmstore --test derive_ui` and read every changed `.stderr`.
//!
//! trybuild builds the cases with cargo, in a project of its own under
//! `target/tests/trybuild/shmstore/` with its own target directory, which holds this crate's
//! dependencies and dev-dependencies (the unit tests' dev-dependencies are kept out of it: see
//! `shmstore/Cargo.toml`). The test `ui` runs trybuild in a child process (this binary, running the
//! ignored test `trybuild_cases`) so that it can set the child's environment without touching its
//! own:
//!
//! - quiet: trybuild's report (a line per case, and cargo's output while it builds the
//!   dependencies) is captured, and shown when a case fails, or with `-- --nocapture`;
//! - no colour codes: trybuild colours its report whenever `TERM` names a terminal type, even into
//!   a pipe or a file, and marks diffs with raw escape codes, so the child gets `TERM=dumb` and
//!   `NO_COLOR`, unless `CARGO_TERM_COLOR=always`;
//! - one build of the dependencies instead of two: trybuild 1.0 builds them with
//!   `--cfg trybuild --verbose -A dead_code` and then the cases with `--diagnostic-width=140` added,
//!   and the different flags make cargo build every dependency again. `CARGO_ENCODED_RUSTFLAGS`,
//!   which takes precedence over trybuild's `--config` flags, gives all its builds the cases' flags.
//!   The list mirrors trybuild 1.0.122: check it when updating trybuild. With `RUSTFLAGS` set (as
//!   by coverage tools), trybuild's own handling is left alone;
//! - no debug info for the dependencies (nothing debugs them): a smaller, faster first build.
//!
//! The rejected shapes are one trybuild run, checked (`cargo check`) in one cargo invocation; the
//! accepted ones are another, each built and run on its own. (In one run holding both, trybuild
//! builds every case on its own, which took twice as long once the dependencies were built.)

use std::process::{Command, Output};

/// The rustc flags trybuild 1.0 gives the builds of the cases (see the module docs).
const TRYBUILD_CASE_RUSTFLAGS: [&str; 6] =
    ["--cfg", "trybuild", "--verbose", "-A", "dead_code", "--diagnostic-width=140"];

/// The trybuild cases themselves. `ui` runs this in a child process; run on its own
/// (`cargo test -p shmstore --test derive_ui -- --ignored`) it reports straight to the terminal.
#[test]
#[ignore = "run by `ui` in a child process with a quiet environment"]
fn trybuild_cases() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}

#[test]
fn ui() {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe);
    child.args(["trybuild_cases", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    child.env("CARGO_PROFILE_DEV_DEBUG", "false");
    let unset = |var| std::env::var_os(var).is_none_or(|v| v.is_empty());
    if unset("RUSTFLAGS") && unset("CARGO_ENCODED_RUSTFLAGS") {
        child.env("CARGO_ENCODED_RUSTFLAGS", TRYBUILD_CASE_RUSTFLAGS.join("\x1f"));
    }
    if std::env::var_os("CARGO_TERM_COLOR").is_none_or(|c| c != "always") {
        child.env("TERM", "dumb").env("NO_COLOR", "1");
    }
    let Output { status, stdout, stderr } = child.output().expect("run the trybuild cases in a child process");
    let report = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(status.success(), "the trybuild cases failed ({status}); trybuild's report:\n{report}");
    // Captured by the test harness: shown with `-- --nocapture`.
    println!("{report}");
}
