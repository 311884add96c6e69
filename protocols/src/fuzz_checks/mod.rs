//! The checks behind the fuzz targets in `protocols/fuzz/`.
//!
//! Each function takes arbitrary bytes, runs a parser on them and asserts the
//! parser's invariants (no panic, round trips through the writer). The cargo-fuzz
//! targets call these, and `tests/fuzz_corpus.rs` replays every committed corpus
//! file through them on the stable toolchain, so CI catches a regression on any
//! input the fuzzer ever kept. Not part of the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod json;
pub mod line_protocol;
pub mod msgpack;
pub mod segment;
pub mod segment_batch;
pub mod serial_line;
pub mod topic_template;
