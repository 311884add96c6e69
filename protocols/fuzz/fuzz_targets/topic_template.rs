//! See `ferry_protocols::fuzz_checks::topic_template` for what this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_protocols::fuzz_checks::topic_template::check(data));
