//! MessagePack: arbitrary bytes are decompressed with a cap and decoded; that
//! must never panic, and every reading decoded must survive a round trip
//! through both encoders (row and columnar) unchanged, floats bit for bit.

use crate::{FieldValue, Reading, compression, msgpack};

/// The decompression cap: small, so bombs fail fast.
const MAX_BODY: usize = 1 << 20;

fn same_bits(a: &Reading, b: &Reading) {
    for (key, value) in &a.fields {
        if let (FieldValue::F64(x), Some(FieldValue::F64(y))) = (value, b.fields.get(key)) {
            assert_eq!(x.to_bits(), y.to_bits(), "{key}");
        }
    }
}

fn round_trip(bytes: &[u8], reading: &Reading, form: &str) {
    let again = msgpack::decode(bytes, 0).expect("our own encoding is valid MessagePack");
    assert!(again.errors.is_empty(), "{form}: {:?}", again.errors);
    assert_eq!(
        again.readings.as_slice(),
        std::slice::from_ref(reading),
        "{form}"
    );
    same_bits(reading, &again.readings[0]);
}

/// Runs the `msgpack` fuzz target's checks on one input. Panics on a violated
/// invariant, which is what the fuzzer and the corpus test look for.
pub fn check(data: &[u8]) {
    let Ok(body) = compression::decompress(data, MAX_BODY) else {
        return;
    };
    assert!(body.len() <= MAX_BODY.max(data.len()));
    let Ok(decoded) = msgpack::decode(&body, 0) else {
        return;
    };
    assert!(decoded.errors.len() <= msgpack::MAX_RECORDED_ERRORS);
    assert!(decoded.error_count >= decoded.errors.len());
    for e in &decoded.errors {
        assert!(e.offset <= body.len(), "{e}");
    }

    for reading in &decoded.readings {
        assert!(!reading.fields.is_empty());
        let one = std::slice::from_ref(reading);
        round_trip(&msgpack::encode_rows(one), reading, "rows");
        // Columnar cannot hold a tag and a field of the same name.
        if let Ok(bytes) = msgpack::encode_columnar(one) {
            round_trip(&bytes, reading, "columnar");
        }
    }
}
