use proptest::prelude::*;

use super::*;

const DEFAULT: i64 = 42;
const S: i64 = 1_700_000_000;
const NS: i64 = S * 1_000_000_000;

fn ctx() -> JsonContext {
    let mut ctx = JsonContext::new(Measurement::new("sensor").unwrap(), DEFAULT);
    ctx.tags.insert(TagKey::new("device").unwrap(), "d1".into());
    ctx
}

fn ok(payload: &str) -> Decoded {
    decode(payload.as_bytes(), &ctx()).unwrap()
}

fn one(payload: &str) -> Reading {
    let d = ok(payload);
    assert!(d.errors.is_empty(), "{payload}: {:?}", d.errors);
    assert_eq!(d.readings.len(), 1, "{payload}");
    d.readings.into_iter().next().unwrap()
}

fn err(payload: &str) -> RecordError {
    let d = ok(payload);
    assert!(d.readings.is_empty(), "{payload}");
    assert_eq!(d.error_count, 1, "{payload}");
    d.errors.into_iter().next().unwrap()
}

fn fields(r: &Reading) -> Vec<(&str, FieldValue)> {
    r.fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect()
}

#[test]
fn bare_values() {
    for (payload, want) in [
        ("21.5", FieldValue::F64(21.5)),
        ("21", FieldValue::F64(21.0)),
        ("-3", FieldValue::F64(-3.0)),
        ("true", FieldValue::Bool(true)),
        (" false\n", FieldValue::Bool(false)),
        ("\"on\"", FieldValue::Str("on".into())),
    ] {
        let r = one(payload);
        assert_eq!(fields(&r), [("value", want)]);
        assert_eq!(r.measurement.as_str(), "sensor");
        assert_eq!(r.tags["device"], "d1");
        assert_eq!(r.time_ns, DEFAULT);
    }
    assert_eq!(ok("null"), Decoded::default());
}

#[test]
fn value_objects_with_time_keys() {
    for (payload, t) in [
        (r#"{"value": 1}"#, DEFAULT),
        (r#"{"value": 1, "t": 1700000000}"#, NS),
        (r#"{"value": 1, "time": 1700000000000}"#, NS),
        (r#"{"value": 1, "ts": 1700000000000000}"#, NS),
        (r#"{"value": 1, "timestamp": 1700000000000000000}"#, NS),
        (r#"{"value": 1, "ts": 1700000000.5}"#, NS + 500_000_000),
        (r#"{"value": 1, "ts": 1.7e9}"#, NS),
        (
            r#"{"value": 1, "time": "2023-11-14T22:13:20.25Z"}"#,
            NS + 250_000_000,
        ),
        (r#"{"value": 1, "time": "2023-11-15T00:13:20+02:00"}"#, NS),
        (r#"{"value": 1, "t": null}"#, DEFAULT),
    ] {
        let r = one(payload);
        assert_eq!(r.time_ns, t, "{payload}");
        assert_eq!(fields(&r), [("value", FieldValue::F64(1.0))]);
    }
}

#[test]
fn flat_sensor_objects() {
    let r = one(
        r#"{"temperature": 21.5, "humidity": 40, "ok": true, "mode": "eco", "gone": null, "time": 1700000000}"#,
    );
    assert_eq!(
        fields(&r),
        [
            ("humidity", FieldValue::F64(40.0)),
            ("mode", FieldValue::Str("eco".into())),
            ("ok", FieldValue::Bool(true)),
            ("temperature", FieldValue::F64(21.5)),
        ]
    );
    assert_eq!(r.time_ns, NS);
    // Arc's MQTT example: strings are string fields, not tags.
    let r = one(r#"{"time": 1706745600000000, "value": 23.5, "device_id": "sensor-001"}"#);
    assert_eq!(r.fields["device_id"], FieldValue::Str("sensor-001".into()));
    assert_eq!(r.time_ns, 1_706_745_600_000_000_000);
    // `m` and `tags` have no special meaning outside a row record.
    let r = one(r#"{"m": "x", "v": 1}"#);
    assert_eq!(r.measurement.as_str(), "sensor");
    assert_eq!(r.fields["m"], FieldValue::Str("x".into()));
}

#[test]
fn row_records_override_the_context() {
    let r = one(
        r#"{"m": "cpu", "t": 1700000000000, "tags": {"device": "d2", "rack": 4, "x": null}, "fields": {"usage": 1.5}, "extra": [1]}"#,
    );
    assert_eq!(r.measurement.as_str(), "cpu");
    assert_eq!(r.time_ns, NS);
    assert_eq!(r.tags["device"], "d2");
    assert_eq!(r.tags["rack"], "4");
    assert!(!r.tags.contains_key("x"));
    assert_eq!(fields(&r), [("usage", FieldValue::F64(1.5))]);
    let r = one(r#"{"fields": {"usage": 1}}"#);
    assert_eq!((r.measurement.as_str(), r.time_ns), ("sensor", DEFAULT));
    assert_eq!(r.tags["device"], "d1");
}

#[test]
fn arrays_and_batches() {
    let d = ok(r#"[{"v": 1}, {"fields": {"v": 2}}, 3, {"v": {}}, {"v": 5}]"#);
    assert_eq!(d.readings.len(), 3);
    let errs: Vec<_> = d
        .errors
        .iter()
        .map(|e| (e.record, e.kind.clone()))
        .collect();
    assert_eq!(
        errs,
        [
            (2, RecordErrorKind::NotAnObject { found: "a number" }),
            (3, RecordErrorKind::Nested { found: "an object" }),
        ]
    );
    let d = ok(r#"{"batch": [{"v": 1}, {"batch": [{"v": 1}]}]}"#);
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.errors[0].kind, RecordErrorKind::NestedBatch);
    // A non-array `batch` is an ordinary field.
    assert_eq!(one(r#"{"batch": 7}"#).fields["batch"], FieldValue::F64(7.0));
    assert_eq!(ok("[]"), Decoded::default());
}

#[test]
fn record_errors() {
    let cases: [(&str, Option<&str>, RecordErrorKind); 11] = [
        ("{}", None, RecordErrorKind::NoFields),
        (r#"{"a": null, "t": 1}"#, None, RecordErrorKind::NoFields),
        (
            r#"{"a": [1]}"#,
            Some("a"),
            RecordErrorKind::Nested { found: "an array" },
        ),
        (
            r#"{"a": 1, "t": 1, "ts": 2}"#,
            Some("ts"),
            RecordErrorKind::MultipleTimeKeys {
                first: "t",
                second: "ts",
            },
        ),
        (
            r#"{"a": 1, "t": true}"#,
            Some("t"),
            RecordErrorKind::WrongType {
                expected: "a number or an RFC 3339 string",
                found: "a boolean",
            },
        ),
        (
            r#"{"a": 1, "t": 18446744073709551615}"#,
            Some("t"),
            RecordErrorKind::TimeOutOfRange,
        ),
        (
            r#"{"a": 1, "t": 1e300}"#,
            Some("t"),
            RecordErrorKind::TimeOutOfRange,
        ),
        (
            r#"{"a": 1, "t": "yesterday"}"#,
            Some("t"),
            RecordErrorKind::BadTimestamp {
                reason: "expected a four-digit year",
            },
        ),
        (
            r#"{"fields": {"a": 1}, "m": 5}"#,
            Some("m"),
            RecordErrorKind::WrongType {
                expected: "a string",
                found: "a number",
            },
        ),
        (
            r#"{"fields": {"a": 1}, "tags": {"k": {"x": 1}}}"#,
            Some("k"),
            RecordErrorKind::Nested { found: "an object" },
        ),
        (
            r#"{"fields": {"a": 1}, "tags": []}"#,
            Some("tags"),
            RecordErrorKind::WrongType {
                expected: "an object",
                found: "an array",
            },
        ),
    ];
    for (payload, key, kind) in cases {
        let e = err(payload);
        assert_eq!((e.key.as_deref(), &e.kind), (key, &kind), "{payload}");
    }
    for payload in [
        r#"{"fields": {"a": 1}, "m": "a/b"}"#,
        r#"{"fields": {"a": 1}, "tags": {"time": "x"}}"#,
        r#"{"fields": {"": 1}}"#,
        r#"{"bad\u0001key": 1}"#,
    ] {
        assert!(
            matches!(err(payload).kind, RecordErrorKind::InvalidName(_)),
            "{payload}"
        );
    }
    let e = err(r#"{"a": [1]}"#);
    assert_eq!(
        e.to_string(),
        "record 0, key \"a\": an array is not a supported field or tag value"
    );
}

#[test]
fn invalid_json_reports_line_and_column() {
    let e = decode(b"{\n  \"a\": 1,\n  oops\n}", &ctx()).unwrap_err();
    assert_eq!((e.line, e.column), (3, 3));
    assert!(
        e.to_string()
            .starts_with("invalid JSON at line 3, column 3"),
        "{e}"
    );
    for bad in ["", "{", "[1,]", "NaN", "\u{feff}1", "1 2", "{\"a\": 1e999}"] {
        assert!(decode(bad.as_bytes(), &ctx()).is_err(), "{bad:?} accepted");
    }
    assert!(decode(b"\xff", &ctx()).is_err());
}

#[test]
fn deep_nesting_hits_the_recursion_limit() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode(deep.as_bytes(), &ctx()).is_err());
    let nested = format!("{{\"a\": {}1{}}}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        err(&nested).kind,
        RecordErrorKind::Nested { found: "an array" }
    );
}

#[test]
fn errors_are_capped_but_counted() {
    let payload = format!("[{}1]", "1,".repeat(999));
    let d = ok(&payload);
    assert_eq!(d.errors.len(), MAX_RECORDED_ERRORS);
    assert_eq!(d.error_count, 1000);
}

#[test]
fn encoder_writes_row_records() {
    let r = Reading::new(Measurement::new("cpu").unwrap(), NS)
        .with_tag(TagKey::new("host").unwrap(), "a")
        .with_field(FieldKey::new("usage").unwrap(), FieldValue::F64(1.5));
    assert_eq!(
        encode_rows(std::slice::from_ref(&r)),
        r#"[{"fields":{"usage":1.5},"m":"cpu","t":1700000000000000000,"tags":{"host":"a"}}]"#
    );
    let early = Reading::new(Measurement::new("cpu").unwrap(), 5)
        .with_field(FieldKey::new("v").unwrap(), FieldValue::I64(3));
    let json = encode_rows(std::slice::from_ref(&early));
    assert!(
        json.contains(r#""t":"1970-01-01T00:00:00.000000005Z""#),
        "{json}"
    );
    let back = one(&json);
    assert_eq!(
        (back.time_ns, back.fields["v"].clone()),
        (5, FieldValue::F64(3.0))
    );
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,3}", "\\PC{1,8}"].prop_filter("valid", |s| {
        s != "time" && !s.contains(['/', '\\']) && !s.contains("..") && !s.starts_with('.')
    })
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FieldValue::F64),
        any::<bool>().prop_map(FieldValue::Bool),
        "\\PC{0,12}".prop_map(FieldValue::Str),
    ]
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    (
        name(),
        prop::collection::btree_map(name(), "\\PC{0,8}", 0..4),
        prop::collection::btree_map(name(), field_value(), 1..5),
        any::<i64>(),
    )
        .prop_map(|(m, tags, fields, t)| {
            let mut r = Reading::new(Measurement::new(m).unwrap(), t);
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
        let ctx = JsonContext::new(Measurement::new("unused").unwrap(), DEFAULT);
        let d = decode(encode_rows(&readings).as_bytes(), &ctx).unwrap();
        prop_assert!(d.errors.is_empty(), "{:?}", d.errors);
        prop_assert_eq!(d.readings, readings);
    }

    #[test]
    fn rfc3339_round_trips(t in any::<i64>()) {
        prop_assert_eq!(rfc3339::parse(&rfc3339::format(t)), Ok(t));
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
        let _ = decode(s.as_bytes(), &ctx());
    }
}
