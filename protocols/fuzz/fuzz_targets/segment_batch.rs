//! See `ferry_protocols::fuzz_checks::segment_batch` for what this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_protocols::fuzz_checks::segment_batch::check(data));
