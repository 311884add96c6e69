//! Property tests: write → parse gives back the reading, and arbitrary
//! input never panics and always round-trips what it parses.

use proptest::prelude::*;

use super::*;
use crate::name::{FieldKey, Measurement, TagKey};
use crate::reading::FieldValue;
use crate::time::Precision;

/// Characters that stress the escaping: separators, escapes, quotes,
/// whitespace, `#`, and multibyte characters.
const TRICKY: &str = "[a-z0-9 ,=\"\\\\#.\\-_é日°]";

fn measurement() -> impl Strategy<Value = Measurement> {
    // No `\\` (forbidden), and no leading `.` or `#` (refused), so that few
    // candidates are rejected.
    proptest::string::string_regex("[a-z0-9 ,=\"\\-_é日°][a-z0-9 ,=\"#.\\-_é日°]{0,11}")
        .expect("valid regex")
        .prop_filter_map("invalid measurement", |s| Measurement::new(s).ok())
}

fn tag_key() -> impl Strategy<Value = TagKey> {
    proptest::string::string_regex(&format!("{TRICKY}{{1,10}}"))
        .expect("valid regex")
        .prop_filter_map("invalid tag key", |s| TagKey::new(s).ok())
}

fn field_key() -> impl Strategy<Value = FieldKey> {
    proptest::string::string_regex(&format!("{TRICKY}{{1,10}}"))
        .expect("valid regex")
        .prop_filter_map("invalid field key", |s| FieldKey::new(s).ok())
}

/// Any text but `\n`, with tabs and `\r` in the mix.
fn text(min: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("([a-z ,=\"\\\\#\t\r]|é|日|[^\n]){{{min},16}}"))
        .expect("valid regex")
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::F64),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(1.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(5e-324)
        ]
        .prop_map(FieldValue::F64),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<bool>().prop_map(FieldValue::Bool),
        text(0).prop_map(FieldValue::Str),
    ]
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        measurement(),
        proptest::collection::btree_map(tag_key(), text(1), 0..4),
        proptest::collection::btree_map(field_key(), field_value(), 1..5),
        any::<i64>(),
    )
        .prop_map(|(measurement, tags, fields, time_ns)| Reading {
            measurement,
            tags,
            fields,
            time_ns,
        })
}

/// Bytes that look like line protocol, to reach deep into the parser.
fn lp_like() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(b"mcpu,= \"\\#\t\r\n.-+01239eEiutTfF".to_vec()),
            1 => any::<u8>(),
        ],
        0..64,
    )
}

/// Every reading parsed from `body` writes back to a line that parses to
/// the same reading.
fn assert_round_trip(body: &[u8]) -> Result<(), TestCaseError> {
    let out = parse(body, Precision::Ns, 7);
    for r in &out.readings {
        let line =
            to_line(r, Precision::Ns).map_err(|e| TestCaseError::fail(format!("{r:?}: {e}")))?;
        let again = parse(line.as_bytes(), Precision::Ns, 0);
        prop_assert!(again.is_clean(), "{line:?}: {:?}", again.errors);
        prop_assert_eq!(&again.readings, std::slice::from_ref(r), "{:?}", line);
    }
    Ok(())
}

/// True if InfluxData's parser can read `s` back: it treats tabs and NULs as
/// separators and refuses names and tag values that end in a backslash.
fn influx_compatible(s: &str) -> bool {
    !s.contains(['\t', '\0']) && !s.ends_with('\\')
}

/// `r` without what InfluxData's parser cannot read (see
/// [`influx_compatible`]).
fn influx_compatible_reading(mut r: Reading) -> Reading {
    let fix = |v: &str| {
        let mut v = v.replace(['\t', '\0'], "_");
        if v.ends_with('\\') {
            v.push('x');
        }
        v
    };
    r.tags = std::mem::take(&mut r.tags)
        .into_iter()
        .filter(|(k, _)| influx_compatible(k.as_str()))
        .map(|(k, v)| (k, fix(&v)))
        .collect();
    r.fields = std::mem::take(&mut r.fields)
        .into_iter()
        .filter(|(k, _)| influx_compatible(k.as_str()))
        .map(|(k, v)| match v {
            FieldValue::Str(s) => (k, FieldValue::Str(s.replace('\0', "_"))),
            other => (k, other),
        })
        .collect();
    if r.fields.is_empty() {
        let key = FieldKey::new("v").expect("valid key");
        r.fields.insert(key, FieldValue::Bool(true));
    }
    r
}

/// A line as InfluxData's parser sees it: measurement, tags, fields, time.
type InfluxView = (
    String,
    Vec<(String, String)>,
    Vec<(String, FieldValue)>,
    Option<i64>,
);

/// `line` as InfluxData's `influxdb_line_protocol` reads it.
fn influx_view(line: &str) -> Result<InfluxView, String> {
    use influxdb_line_protocol::FieldValue as V;
    let parsed = influxdb_line_protocol::parse_lines(line)
        .next()
        .ok_or("no line")?
        .map_err(|e| e.to_string())?;
    let tags = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fields = parsed
        .field_set
        .iter()
        .map(|(k, v)| {
            let v = match v {
                V::F64(v) => FieldValue::F64(*v),
                V::I64(v) => FieldValue::I64(*v),
                V::U64(v) => FieldValue::U64(*v),
                V::Boolean(v) => FieldValue::Bool(*v),
                V::String(v) => FieldValue::Str(v.to_string()),
            };
            (k.to_string(), v)
        })
        .collect();
    Ok((
        parsed.series.measurement.to_string(),
        tags,
        fields,
        parsed.timestamp,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_parse_is_identity(r in reading()) {
        let line = to_line(&r, Precision::Ns).expect("writable");
        let out = parse(line.as_bytes(), Precision::Ns, 0);
        prop_assert!(out.is_clean(), "{:?}: {:?}", line, out.errors);
        prop_assert_eq!(&out.readings, std::slice::from_ref(&r), "{:?}", line);
        // Bit-exact floats, sign of zero included.
        for (k, v) in &r.fields {
            let back = out.readings[0].fields.get(k);
            if let (FieldValue::F64(a), Some(FieldValue::F64(b))) = (v, back) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn many_readings_round_trip(rs in proptest::collection::vec(reading(), 0..8)) {
        let mut body = String::new();
        write_readings(&rs, Precision::Ns, &mut body).expect("writable");
        let out = parse(body.as_bytes(), Precision::Ns, 0);
        prop_assert!(out.is_clean());
        prop_assert_eq!(out.readings, rs);
    }

    /// What Ferry writes, InfluxData's parser reads the same way.
    #[test]
    fn influxdata_reads_what_ferry_writes(r in reading().prop_map(influx_compatible_reading)) {
        let line = to_line(&r, Precision::Ns).expect("writable");
        let (measurement, tags, fields, ts) = influx_view(&line).map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
        prop_assert_eq!(measurement.as_str(), r.measurement.as_str(), "{:?}", line);
        let want_tags: Vec<_> = r.tags.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        prop_assert_eq!(tags, want_tags, "{:?}", line);
        let want_fields: Vec<_> = r.fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        prop_assert_eq!(fields, want_fields, "{:?}", line);
        prop_assert_eq!(ts, Some(r.time_ns));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip(body in lp_like()) {
        assert_round_trip(&body)?;
    }

    #[test]
    fn errors_point_inside_their_line(body in lp_like()) {
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        for e in parse_lines(&body).filter_map(Result::err) {
            let line = lines.get(e.line - 1).expect("line exists");
            prop_assert!(e.column >= 1 && e.column <= line.len() + 1, "{e} in {line:?}");
        }
    }
}
