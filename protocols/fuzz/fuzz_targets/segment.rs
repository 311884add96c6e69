//! `read_segment` on arbitrary bytes must return, never panic.
//! Seeds: `protocols/fuzz/corpus/segment/` (valid segments and truncations,
//! written by `segment::tests::write_fuzz_corpus`).
#![no_main]

use ferry_protocols::segment::{read_segment, read_segment_meta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `.into()` builds the `bytes::Bytes` the API takes without naming the crate.
    let meta = read_segment_meta(&data.to_vec().into());
    let full = read_segment(data.to_vec().into());
    // A segment that decodes fully must also pass the footer-only check.
    if full.is_ok() {
        assert!(meta.is_ok());
    }
});
