//! `read_segment` on arbitrary bytes must return, never panic.
//! Seeds: `protocols/fuzz/corpus/segment/` (valid segments and truncations,
//! written by `segment::tests::hostile::write_fuzz_corpus`).

use crate::segment::{read_segment, read_segment_meta};

/// Runs the `segment` fuzz target's checks on one input. Panics on a violated
/// invariant, which is what the fuzzer and the corpus test look for.
pub fn check(data: &[u8]) {
    // `.into()` builds the `bytes::Bytes` the API takes without naming the crate.
    let meta = read_segment_meta(&data.to_vec().into());
    let full = read_segment(data.to_vec().into());
    // A segment that decodes fully must also pass the footer-only check.
    if full.is_ok() {
        assert!(meta.is_ok());
    }
}
