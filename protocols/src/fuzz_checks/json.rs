//! JSON: decoding arbitrary bytes must never panic, and every reading decoded
//! must survive a round trip (write it as a row record, decode it again) with
//! floats bit for bit.

use crate::json::{self, JsonContext};
use crate::{FieldValue, Measurement, TagKey};

/// Runs the `json` fuzz target's checks on one input. Panics on a violated
/// invariant, which is what the fuzzer and the corpus test look for.
pub fn check(data: &[u8]) {
    let mut ctx = JsonContext::new(Measurement::new("fuzz").expect("a valid name"), 7);
    ctx.tags
        .insert(TagKey::new("route").expect("a valid name"), "r".into());
    let Ok(decoded) = json::decode(data, &ctx) else {
        return;
    };
    assert!(decoded.errors.len() <= json::MAX_RECORDED_ERRORS);
    assert!(decoded.error_count >= decoded.errors.len());

    for reading in &decoded.readings {
        assert!(!reading.fields.is_empty());
        for value in reading.fields.values() {
            assert!(matches!(
                value,
                FieldValue::F64(_) | FieldValue::Bool(_) | FieldValue::Str(_)
            ));
        }
        let text = json::encode_rows(std::slice::from_ref(reading));
        let again = json::decode(text.as_bytes(), &ctx).expect("our own encoding is valid JSON");
        assert!(again.errors.is_empty(), "{text}: {:?}", again.errors);
        assert_eq!(
            again.readings.as_slice(),
            std::slice::from_ref(reading),
            "{text}"
        );
        for (key, value) in &reading.fields {
            if let (FieldValue::F64(a), Some(FieldValue::F64(b))) =
                (value, again.readings[0].fields.get(key))
            {
                assert_eq!(a.to_bits(), b.to_bits(), "{text}");
            }
        }
    }
}
