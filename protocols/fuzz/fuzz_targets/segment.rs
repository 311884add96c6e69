//! See `ferry_protocols::fuzz_checks::segment` for what this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_protocols::fuzz_checks::segment::check(data));
