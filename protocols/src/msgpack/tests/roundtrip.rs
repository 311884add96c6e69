use std::io::Write;

use proptest::prelude::*;

use super::*;
use crate::compression;

#[test]
fn compressed_bodies_decode() {
    let readings = vec![
        field(
            tag(reading("cpu", NS), "host", "a"),
            "usage",
            FieldValue::F64(1.5)
        );
        50
    ];
    let body = encode_columnar(&readings).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::stream::encode_all(&body[..], 3).unwrap();
    for compressed in [gz, zs] {
        let plain = compression::decompress(&compressed, 1 << 20).unwrap();
        assert_eq!(decode(&plain, 0).unwrap().readings, readings);
    }
}

#[test]
fn encoders_write_arc_shapes() {
    let r = field(
        tag(reading("cpu", NS), "host", "a"),
        "usage",
        FieldValue::F64(1.5),
    );
    let rows = encode_rows(std::slice::from_ref(&r));
    let want_row = V::A(vec![m(&[
        ("m", V::S("cpu")),
        ("t", V::I(NS)),
        ("tags", m(&[("host", V::S("a"))])),
        ("fields", m(&[("usage", V::F(1.5))])),
    ])]);
    assert_eq!(rows, enc(&want_row));
    let cols = encode_columnar(std::slice::from_ref(&r)).unwrap();
    let want_cols = m(&[
        ("m", V::S("cpu")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(NS)])),
                ("host", V::A(vec![V::S("a")])),
                ("usage", V::A(vec![V::F(1.5)])),
            ]),
        ),
        ("tag_keys", V::A(vec![V::S("host")])),
    ]);
    assert_eq!(cols, enc(&want_cols));
}

#[test]
fn columnar_encoder_refuses_lossy_groups() {
    let a = field(tag(reading("x", NS), "k", "v"), "k", FieldValue::I64(1));
    assert!(matches!(
        encode_columnar(&[a]),
        Err(EncodeError::NameCollision { .. })
    ));
    let i = field(reading("x", NS), "v", FieldValue::I64(1));
    let f = field(reading("x", NS), "v", FieldValue::F64(1.0));
    assert!(matches!(
        encode_columnar(&[i, f]),
        Err(EncodeError::MixedNumbers { .. })
    ));
}

/// What decoding normalises: a U64 that fits in i64 is an I64.
fn canonical(mut r: Reading) -> Reading {
    for v in r.fields.values_mut() {
        if let FieldValue::U64(u) = *v
            && let Ok(i) = i64::try_from(u)
        {
            *v = FieldValue::I64(i);
        }
    }
    r
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,3}", "\\PC{1,8}"].prop_filter("reserved", |s| {
        s != "time" && !s.contains(['/', '\\']) && !s.contains("..") && !s.starts_with('.')
    })
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FieldValue::F64),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<bool>().prop_map(FieldValue::Bool),
        "\\PC{0,12}".prop_map(FieldValue::Str),
    ]
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    (
        prop_oneof![Just("cpu".to_owned()), name()],
        prop::collection::btree_map(name(), "\\PC{0,8}", 0..4),
        prop::collection::btree_map(name(), field_value(), 1..5),
        prop_oneof![
            any::<i64>(),
            1_000_000_000_000_000_000i64..2_000_000_000_000_000_000
        ],
    )
        .prop_map(|(m, tags, fields, t)| {
            let mut r = reading(&m, t);
            for (k, v) in tags {
                r.tags.insert(TagKey::new(k).unwrap(), v);
            }
            for (k, v) in fields {
                r.fields.insert(FieldKey::new(k).unwrap(), v);
            }
            r
        })
}

proptest! {
    #[test]
    fn rows_round_trip(readings in prop::collection::vec(arb_reading(), 0..8)) {
        let d = decode(&encode_rows(&readings), DEFAULT).unwrap();
        prop_assert!(d.errors.is_empty(), "{:?}", d.errors);
        let want: Vec<_> = readings.into_iter().map(canonical).collect();
        prop_assert_eq!(d.readings, want);
    }

    #[test]
    fn columnar_round_trips(readings in prop::collection::vec(arb_reading(), 1..8)) {
        let Ok(body) = encode_columnar(&readings) else { return Ok(()) };
        let d = decode(&body, DEFAULT).unwrap();
        prop_assert!(d.errors.is_empty(), "{:?}", d.errors);
        // Columnar groups by measurement, in order of first appearance.
        let mut order: Vec<&Measurement> = Vec::new();
        for r in &readings {
            if !order.contains(&&r.measurement) {
                order.push(&r.measurement);
            }
        }
        let want: Vec<_> = order
            .iter()
            .flat_map(|m| readings.iter().filter(move |r| &r.measurement == *m))
            .cloned()
            .map(canonical)
            .collect();
        prop_assert_eq!(d.readings, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body, 0);
    }
}
