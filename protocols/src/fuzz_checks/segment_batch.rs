//! `decode_batch` on arbitrary bytes must return, never panic; a body it
//! accepts re-encodes to the same bytes, within the limit, with no empty
//! frame; and each frame then goes through the segment checks.
//! Seeds: `protocols/fuzz/corpus/segment_batch/` (batches of valid
//! segments, truncations, bad magic and lengths).

use crate::segment::{decode_batch, encode_batch};

const LIMIT: usize = 16;

/// Runs the `segment_batch` fuzz target's checks on one input.
pub fn check(data: &[u8]) {
    let body = data.to_vec().into();
    let Ok(frames) = decode_batch(&body, LIMIT) else {
        return;
    };
    assert!(!frames.is_empty() && frames.len() <= LIMIT);
    assert!(frames.iter().all(|f| !f.is_empty()));
    assert_eq!(encode_batch(frames.iter().map(|f| f.as_ref())), data);
    for frame in &frames {
        super::segment::check(frame);
    }
}
