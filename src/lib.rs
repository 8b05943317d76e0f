//! Support code for the shmstore suite's integration tests (the examples and the benchmarks are
//! packages of their own), and the doctests of the repository's documents.
//!
//! The documents' examples are compiled here rather than in the `shmstore` crate, because a
//! published crate does not contain the repository's `README.md` and `docs/`: `cargo test --doc`
//! on the crate from crates.io must not look for them.

/// Compiles the README's examples as doctests, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Compiles the examples of `docs/schema-encoding.md` as doctests: its types go through the
/// derive, and its byte counts and fingerprints are checked against the code.
#[cfg(doctest)]
#[doc = include_str!("../docs/schema-encoding.md")]
pub struct SchemaEncodingDoctests;
