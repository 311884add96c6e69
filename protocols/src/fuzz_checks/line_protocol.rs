//! Line protocol: parsing arbitrary bytes must never panic, and every reading
//! parsed must survive a round trip: write it back, parse it again, get the
//! same reading (floats bit for bit).

use crate::lp;
use crate::{FieldValue, Precision};

/// Runs the `line_protocol` fuzz target's checks on one input. Panics on a violated
/// invariant, which is what the fuzzer and the corpus test look for.
pub fn check(data: &[u8]) {
    let out = lp::parse(data, Precision::Ns, 0);

    // The zero-copy layer and the owned layer agree on the number of lines.
    let lines = lp::parse_lines(data).count();
    assert_eq!(out.readings.len() + out.error_count, lines);
    for e in &out.errors {
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }

    for reading in &out.readings {
        let line = lp::to_line(reading, Precision::Ns).expect("a parsed reading is writable");
        let again = lp::parse(line.as_bytes(), Precision::Ns, 1);
        assert!(again.is_clean(), "{line:?}: {:?}", again.errors);
        assert_eq!(
            again.readings.as_slice(),
            std::slice::from_ref(reading),
            "{line:?}"
        );
        for (key, value) in &reading.fields {
            let back = again.readings[0].fields.get(key);
            if let (FieldValue::F64(a), Some(FieldValue::F64(b))) = (value, back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{line:?}");
            }
        }
    }

    // Coarse precisions overflow sooner; they must fail cleanly too.
    let _ = lp::parse(data, Precision::S, i64::MIN);
}
