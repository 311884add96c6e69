use super::*;

#[test]
fn arc_columnar_with_tag_keys() {
    let body = m(&[
        ("m", V::S("cpu")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(MS), V::I(MS + 1000)])),
                ("host", V::A(vec![V::S("a"), V::S("b")])),
                ("usage", V::A(vec![V::F(45.2), V::I(47)])),
            ]),
        ),
        ("tag_keys", V::A(vec![V::S("host")])),
    ]);
    let d = ok(&body);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let r0 = field(
        tag(reading("cpu", NS), "host", "a"),
        "usage",
        FieldValue::F64(45.2),
    );
    let r1 = field(
        tag(reading("cpu", NS + 1_000_000_000), "host", "b"),
        "usage",
        FieldValue::F64(47.0),
    );
    assert_eq!(d.readings, vec![r0, r1]);
}

#[test]
fn columnar_without_tag_keys_has_string_fields_like_arc() {
    let body = m(&[
        ("m", V::S("cpu")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(MS)])),
                ("host", V::A(vec![V::S("a")])),
            ]),
        ),
        ("tags", m(&[("region", V::S("eu"))])),
    ]);
    let d = ok(&body);
    let want = field(
        tag(reading("cpu", NS), "region", "eu"),
        "host",
        FieldValue::Str("a".into()),
    );
    assert_eq!(d.readings, vec![want]);
}

#[test]
fn telegraf_nil_backfill_is_sparse_and_array_of_records() {
    // Telegraf: several measurements as a top-level array, missing cells nil.
    let cpu = m(&[
        ("m", V::S("cpu")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(MS), V::I(MS)])),
                ("a", V::A(vec![V::I(1), V::Nil])),
                ("b", V::A(vec![V::Nil, V::B(true)])),
            ]),
        ),
    ]);
    let mem = row_cpu(V::I(MS));
    let d = ok(&V::A(vec![cpu, mem]));
    assert!(d.errors.is_empty());
    assert_eq!(d.readings.len(), 3);
    assert_eq!(d.readings[0].fields.len(), 1);
    assert_eq!(d.readings[0].fields["a"], FieldValue::I64(1));
    assert_eq!(d.readings[1].fields["b"], FieldValue::Bool(true));
}

#[test]
fn columnar_time_units_and_default() {
    for (t, ns) in [
        (V::I(1_700_000_000), NS),
        (V::I(MS), NS),
        (V::I(MS * 1000), NS),
        (V::I(NS), NS),
        (V::F(1_700_000_000.5), NS + 500_000_000),
        (V::Ts(1_700_000_000, 7), NS + 7),
    ] {
        let body = m(&[
            ("m", V::S("x")),
            (
                "columns",
                m(&[("time", V::A(vec![t])), ("v", V::A(vec![V::I(1)]))]),
            ),
        ]);
        assert_eq!(ok(&body).readings[0].time_ns, ns);
    }
    // The first number fixes the unit for the whole column, as in Arc.
    let body = m(&[
        ("m", V::S("x")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(MS), V::I(5)])),
                ("v", V::A(vec![V::I(1), V::I(2)])),
            ]),
        ),
    ]);
    assert_eq!(ok(&body).readings[1].time_ns, 5_000_000);
    let no_time = m(&[
        ("m", V::S("x")),
        ("columns", m(&[("v", V::A(vec![V::I(1)]))])),
    ]);
    assert_eq!(ok(&no_time).readings[0].time_ns, DEFAULT);
}

#[test]
fn columnar_length_mismatch_drops_only_that_record() {
    let bad = m(&[
        ("m", V::S("x")),
        (
            "columns",
            m(&[
                ("a", V::A(vec![V::I(1), V::I(2)])),
                ("b", V::A(vec![V::I(1)])),
            ]),
        ),
    ]);
    let good = row_cpu(V::I(MS));
    let d = ok(&m(&[("batch", V::A(vec![good.clone(), bad, good]))]));
    assert_eq!(d.readings.len(), 2);
    assert_eq!(d.error_count, 1);
    let e = &d.errors[0];
    assert_eq!((e.record, e.row, e.key.as_deref()), (1, None, Some("b")));
    assert_eq!(
        e.kind,
        RecordErrorKind::LengthMismatch {
            expected: 2,
            found: 1
        }
    );
    assert!(
        e.to_string().starts_with("record 1, key \"b\" (byte "),
        "{e}"
    );
}

#[test]
fn columnar_bad_cell_drops_only_its_row() {
    let body = m(&[
        ("m", V::S("x")),
        (
            "columns",
            m(&[
                ("time", V::A(vec![V::I(MS), V::Nil, V::I(MS)])),
                ("v", V::A(vec![V::F(1.0), V::F(2.0), V::F(f64::NAN)])),
                ("w", V::A(vec![V::A(vec![]), V::I(1), V::I(1)])),
            ]),
        ),
    ]);
    let d = ok(&body);
    assert!(d.readings.is_empty());
    assert_eq!(d.error_count, 3);
    let rows: Vec<_> = d
        .errors
        .iter()
        .map(|e| (e.row, e.key.clone().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            (Some(0), "w".into()),
            (Some(1), "time".into()),
            (Some(2), "v".into())
        ]
    );
    assert_eq!(d.errors[1].kind, RecordErrorKind::NilTime);
    assert!(matches!(
        d.errors[2].kind,
        RecordErrorKind::NonFinite { .. }
    ));
    assert_eq!(
        d.errors[0].kind,
        RecordErrorKind::Unsupported { found: "array" }
    );
}

#[test]
fn columnar_structural_errors() {
    let cases = [
        (
            m(&[("m", V::S("x")), ("columns", m(&[]))]),
            RecordErrorKind::EmptyColumns,
        ),
        (
            m(&[("m", V::S("x")), ("columns", V::A(vec![]))]),
            RecordErrorKind::WrongType {
                expected: "a map",
                found: "array",
            },
        ),
        (
            m(&[("m", V::S("x")), ("columns", m(&[("v", V::I(1))]))]),
            RecordErrorKind::WrongType {
                expected: "an array",
                found: "integer",
            },
        ),
        (
            m(&[
                ("m", V::S("x")),
                ("columns", m(&[("v", V::A(vec![V::Nil]))])),
            ]),
            RecordErrorKind::NoFields,
        ),
        (
            m(&[("columns", m(&[("v", V::A(vec![V::I(1)]))]))]),
            RecordErrorKind::MissingMeasurement,
        ),
    ];
    for (body, kind) in cases {
        let d = ok(&body);
        assert!(d.readings.is_empty());
        assert_eq!(d.errors[0].kind, kind);
    }
    let tag_time = m(&[
        ("m", V::S("x")),
        ("columns", m(&[("v", V::A(vec![V::I(1)]))])),
        ("tag_keys", V::A(vec![V::S("time"), V::I(3)])),
    ]);
    assert!(matches!(
        ok(&tag_time).errors[0].kind,
        RecordErrorKind::WrongType { .. }
    ));
}

#[test]
fn columnar_promotes_ints_mixed_with_floats() {
    let body = m(&[
        ("m", V::S("x")),
        (
            "columns",
            m(&[
                ("v", V::A(vec![V::I(21), V::F(21.5), V::Nil])),
                ("n", V::A(vec![V::I(1), V::U(u64::MAX), V::I(-1)])),
            ]),
        ),
    ]);
    let d = ok(&body);
    assert_eq!(d.readings[0].fields["v"], FieldValue::F64(21.0));
    assert_eq!(d.readings[1].fields["v"], FieldValue::F64(21.5));
    assert_eq!(d.readings[1].fields["n"], FieldValue::U64(u64::MAX));
    assert_eq!(d.readings[2].fields["n"], FieldValue::I64(-1));
}

#[test]
fn row_shapes_single_batch_and_array() {
    let want = field(
        tag(reading("cpu", NS), "host", "a"),
        "usage",
        FieldValue::F64(1.5),
    );
    assert_eq!(ok(&row_cpu(V::I(MS))).readings, vec![want.clone()]);
    let batch = m(&[("batch", V::A(vec![row_cpu(V::I(MS)), row_cpu(V::I(MS))]))]);
    assert_eq!(ok(&batch).readings, vec![want.clone(), want.clone()]);
    let array = V::A(vec![row_cpu(V::I(MS))]);
    assert_eq!(ok(&array).readings, vec![want]);
}

#[test]
fn row_time_units() {
    for (t, ns) in [
        (V::I(1_700_000_000), NS),
        (V::I(MS), NS),
        (V::I(MS * 1000), NS),
        (V::I(NS), NS),
        (V::U(NS as u64), NS),
        (V::F(1_700_000_000.5), NS + 500_000_000),
        (V::F32(1.5), 1_500_000_000),
        (V::Ts(1_700_000_000, 1), NS + 1),
        (V::Ts(-1, 999_999_999), -1),
        (V::Nil, DEFAULT),
    ] {
        assert_eq!(ok(&row_cpu(t)).readings[0].time_ns, ns);
    }
    let no_t = m(&[("m", V::S("cpu")), ("fields", m(&[("v", V::I(1))]))]);
    assert_eq!(ok(&no_t).readings[0].time_ns, DEFAULT);
    for (t, kind) in [
        (V::U(u64::MAX), RecordErrorKind::TimeOutOfRange),
        (
            V::F(f64::INFINITY),
            RecordErrorKind::NonFinite {
                value: f64::INFINITY,
            },
        ),
        (V::F(1e300), RecordErrorKind::TimeOutOfRange),
        (V::Ts(i64::MAX, 0), RecordErrorKind::TimeOutOfRange),
        (
            V::S("now"),
            RecordErrorKind::WrongType {
                expected: "an integer, float or timestamp",
                found: "string",
            },
        ),
    ] {
        let d = ok(&row_cpu(t));
        assert_eq!(d.errors[0].kind, kind);
        assert_eq!(d.errors[0].key.as_deref(), Some("t"));
    }
}

#[test]
fn row_arc_extras_host_compact_fields_numeric_measurement() {
    let body = m(&[
        ("m", V::I(7)),
        ("h", V::S("srv")),
        (
            "tags",
            m(&[
                ("host", V::S("ignored")),
                ("n", V::I(3)),
                ("f", V::F(1.5)),
                ("b", V::B(true)),
                ("z", V::Nil),
            ]),
        ),
        ("f", V::A(vec![V::I(1), V::Nil, V::S("x")])),
    ]);
    let d = ok(&body);
    let r = &d.readings[0];
    assert_eq!(r.measurement.as_str(), "measurement_7");
    assert_eq!(r.tags["host"], "srv");
    assert_eq!(
        (
            r.tags["n"].as_str(),
            r.tags["f"].as_str(),
            r.tags["b"].as_str()
        ),
        ("3", "1.5", "true")
    );
    assert!(!r.tags.contains_key("z"));
    assert_eq!(
        r.fields.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["field_0", "field_2"]
    );
    let numeric_host = m(&[
        ("m", V::S("x")),
        ("h", V::I(4)),
        ("fields", m(&[("v", V::I(1))])),
    ]);
    assert_eq!(ok(&numeric_host).readings[0].tags["host"], "host_4");
}

#[test]
fn value_types() {
    let body = m(&[
        ("m", V::S("x")),
        (
            "fields",
            m(&[
                ("small", V::U(5)),
                ("neg", V::I(-5)),
                ("max", V::U(u64::MAX)),
                ("i64max", V::U(i64::MAX as u64)),
                ("f32", V::F32(0.5)),
                ("b", V::B(false)),
                ("s", V::S("hi")),
                ("nil", V::Nil),
            ]),
        ),
    ]);
    let f = &ok(&body).readings[0].fields;
    assert_eq!(f["small"], FieldValue::I64(5));
    assert_eq!(f["neg"], FieldValue::I64(-5));
    assert_eq!(f["max"], FieldValue::U64(u64::MAX));
    assert_eq!(f["i64max"], FieldValue::I64(i64::MAX));
    assert_eq!(f["f32"], FieldValue::F64(0.5));
    assert_eq!(f["b"], FieldValue::Bool(false));
    assert_eq!(f["s"], FieldValue::Str("hi".into()));
    assert!(!f.contains_key("nil"));
}

#[test]
fn invalid_utf8_values_are_sanitized_names_rejected() {
    let mut body = enc(&m(&[("m", V::S("x")), ("fields", m(&[("s", V::S("ab"))]))]));
    let at = body.len() - 2;
    body[at] = 0xff;
    let d = decode(&body, 0).unwrap();
    assert_eq!(
        d.readings[0].fields["s"],
        FieldValue::Str("\u{fffd}b".into())
    );
    let mut body = enc(&m(&[("m", V::S("x")), ("fields", m(&[("k", V::I(1))]))]));
    let at = body.len() - 2;
    body[at] = 0xff;
    assert_eq!(
        decode(&body, 0).unwrap().errors[0].kind,
        RecordErrorKind::InvalidUtf8
    );
}

#[test]
fn row_record_errors() {
    let fields = |v: V| m(&[("m", V::S("x")), ("fields", m(&[("k", v)]))]);
    type Check = fn(&RecordErrorKind) -> bool;
    let cases: Vec<(V, Option<&str>, Check)> = vec![
        (m(&[("fields", m(&[("k", V::I(1))]))]), None, |k| {
            *k == RecordErrorKind::MissingMeasurement
        }),
        (
            m(&[("m", V::S("a/b")), ("fields", m(&[("k", V::I(1))]))]),
            Some("m"),
            |k| matches!(k, RecordErrorKind::InvalidName(_)),
        ),
        (
            m(&[("m", V::B(true)), ("fields", m(&[("k", V::I(1))]))]),
            Some("m"),
            |k| matches!(k, RecordErrorKind::WrongType { .. }),
        ),
        (
            m(&[("m", V::S("x")), ("fields", m(&[("time", V::I(1))]))]),
            Some("time"),
            |k| matches!(k, RecordErrorKind::InvalidName(_)),
        ),
        (
            m(&[
                ("m", V::S("x")),
                ("tags", m(&[("k", m(&[]))])),
                ("fields", m(&[("k", V::I(1))])),
            ]),
            Some("k"),
            |k| *k == RecordErrorKind::Unsupported { found: "map" },
        ),
        (
            m(&[
                ("m", V::S("x")),
                ("tags", V::I(1)),
                ("fields", m(&[("k", V::I(1))])),
            ]),
            Some("tags"),
            |k| matches!(k, RecordErrorKind::WrongType { .. }),
        ),
        (m(&[("m", V::S("x"))]), None, |k| {
            *k == RecordErrorKind::NoFields
        }),
        (fields(V::Nil), None, |k| *k == RecordErrorKind::NoFields),
        (fields(m(&[("a", V::I(1))])), Some("k"), |k| {
            *k == RecordErrorKind::Unsupported { found: "map" }
        }),
        (fields(V::A(vec![V::I(1)])), Some("k"), |k| {
            *k == RecordErrorKind::Unsupported { found: "array" }
        }),
        (fields(V::Bin(b"x")), Some("k"), |k| {
            *k == RecordErrorKind::Unsupported { found: "binary" }
        }),
        (fields(V::F(f64::NAN)), Some("k"), |k| {
            matches!(k, RecordErrorKind::NonFinite { .. })
        }),
        (fields(V::F32(f32::NEG_INFINITY)), Some("k"), |k| {
            matches!(k, RecordErrorKind::NonFinite { .. })
        }),
        (V::M(vec![(V::I(1), V::I(1))]), None, |k| {
            *k == RecordErrorKind::NonStringKey { found: "integer" }
        }),
    ];
    for (body, key, check) in cases {
        let d = ok(&body);
        assert!(d.readings.is_empty());
        assert_eq!(d.error_count, 1);
        let e = &d.errors[0];
        assert_eq!(e.key.as_deref(), key, "{e}");
        assert!(check(&e.kind), "{e}");
    }
}

#[test]
fn batch_item_errors_keep_the_rest() {
    let good = row_cpu(V::I(MS));
    let body = V::A(vec![
        V::I(1),
        good.clone(),
        m(&[("batch", V::A(vec![good.clone()]))]),
        good,
    ]);
    let d = ok(&body);
    assert_eq!(d.readings.len(), 2);
    let kinds: Vec<_> = d
        .errors
        .iter()
        .map(|e| (e.record, e.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, RecordErrorKind::NotAMap { found: "integer" }),
            (2, RecordErrorKind::NestedBatch)
        ]
    );
    let bad_batch = ok(&m(&[("batch", V::S("x"))]));
    assert_eq!(bad_batch.errors[0].key.as_deref(), Some("batch"));
}

#[test]
fn errors_are_capped_but_counted() {
    let d = ok(&V::A(vec![V::Nil; 1000]));
    assert_eq!(d.errors.len(), MAX_RECORDED_ERRORS);
    assert_eq!(d.error_count, 1000);
}

#[test]
fn bodies_that_are_not_msgpack() {
    assert_eq!(
        decode(b"", 0),
        Err(MsgpackError::Malformed {
            offset: 0,
            reason: "unexpected end of input"
        })
    );
    assert_eq!(
        decode(b"\xc1", 0),
        Err(MsgpackError::Malformed {
            offset: 0,
            reason: "reserved marker byte 0xc1"
        })
    );
    assert_eq!(
        decode(b"hello", 0),
        Err(MsgpackError::TrailingBytes { offset: 1, len: 4 })
    );
    assert_eq!(
        decode(b"\x07", 0),
        Err(MsgpackError::UnexpectedTopLevel { found: "integer" })
    );
    let body = enc(&row_cpu(V::I(MS)));
    let cut = &body[..body.len() - 3];
    assert!(
        matches!(decode(cut, 0), Err(MsgpackError::Malformed { offset, .. }) if offset <= cut.len())
    );
    // A forged length claims 4 GiB of items: rejected at once, nothing allocated.
    assert_eq!(
        decode(b"\xdd\xff\xff\xff\xff\x01", 0),
        Err(MsgpackError::Malformed {
            offset: 6,
            reason: "unexpected end of input"
        })
    );
    assert!(matches!(
        decode(b"\xdb\xff\xff\xff\xff", 0),
        Err(MsgpackError::Malformed { offset: 5, .. })
    ));
}

#[test]
fn hostile_nesting_does_not_recurse() {
    let depth = 1_000_000;
    let mut deep = vec![0x91u8; depth];
    deep.push(0x01);
    let d = decode(&deep, 0).unwrap();
    assert_eq!(
        d.errors[0].kind,
        RecordErrorKind::NotAMap { found: "array" }
    );
    let mut body = enc(&m(&[("m", V::S("x"))]));
    body[0] = 0x82;
    body.extend(enc(&V::S("fields")));
    body.extend(enc(&m(&[("v", V::I(1))])));
    body.pop();
    body.extend(&deep);
    let d = decode(&body, 0).unwrap();
    assert_eq!(
        d.errors[0].kind,
        RecordErrorKind::Unsupported { found: "array" }
    );
}
