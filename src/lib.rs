//! Support code for the shmstore suite's integration tests (the examples and the benchmarks are packages of their own).
