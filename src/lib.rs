//! Support code for the shmstore suite's examples and tests.
