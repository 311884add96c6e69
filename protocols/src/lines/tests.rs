use super::*;
use crate::FieldValue;

fn spec(toml_text: &str) -> LineSpec {
    // The spec is what a user writes under [serial.ports.lines].
    serde_json::from_value(toml_like(toml_text)).expect("spec")
}

/// Tiny `key = json-value` reader so the tests read like config.
fn toml_like(text: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').expect("key = value");
        map.insert(
            k.trim().to_owned(),
            serde_json::from_str(v.trim()).expect("json value"),
        );
    }
    serde_json::Value::Object(map)
}

fn decoder(text: &str) -> LineDecoder {
    LineDecoder::new(&spec(text)).expect("valid spec")
}

const NOW: i64 = 1_700_000_000_000_000_000;

#[test]
fn csv_with_named_columns_tags_types_and_device_time() {
    let d = decoder(
        r#"format = "csv"
           measurement = "weather"
           columns = ["ts", "station", "temp", "count", "_", "ok"]
           tag_columns = ["station"]
           types = {"count": "i64", "ok": "bool"}
           time_column = "ts"
           time_format = "s"
           tags = {"site": "north"}"#,
    );
    let r = d
        .decode(b"1700000001,st-1, 21.5 ,7,ignored,1", NOW)
        .expect("decodes");
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.measurement.as_str(), "weather");
    assert_eq!(r.time_ns, 1_700_000_001_000_000_000);
    assert_eq!(r.tags.get("station").map(String::as_str), Some("st-1"));
    assert_eq!(r.tags.get("site").map(String::as_str), Some("north"));
    assert_eq!(r.fields.get("temp"), Some(&FieldValue::F64(21.5)));
    assert_eq!(r.fields.get("count"), Some(&FieldValue::I64(7)));
    assert_eq!(r.fields.get("ok"), Some(&FieldValue::Bool(true)));
    assert_eq!(r.fields.len(), 3);
}

#[test]
fn csv_errors_are_clear() {
    let d = decoder(
        r#"format = "csv"
           measurement = "m"
           columns = ["a", "b"]"#,
    );
    let err = |line: &[u8]| d.decode(line, NOW).expect_err("rejected").to_string();
    assert_eq!(err(b"1,2,3"), "3 values, expected 2 columns");
    assert_eq!(err(b"1,x"), "b: \"x\" is not a valid f64");
    assert_eq!(err(b",,"), "3 values, expected 2 columns");
    assert_eq!(err(b","), "the line has no field values");
    assert_eq!(err(b"\"1,2"), "unterminated quote");
    assert_eq!(d.decode(b"\xff,1", NOW), Err(LineError::Encoding));
    // A missing value is a missing field, not an error.
    let r = d.decode(b"1,", NOW).expect("one field");
    assert_eq!(r[0].fields.len(), 1);
    assert_eq!(r[0].time_ns, NOW);
}

#[test]
fn csv_quotes_and_other_delimiters() {
    let d = decoder(
        r#"format = "csv"
           measurement = "m"
           delimiter = ";"
           columns = ["name", "v"]
           types = {"name": "str"}"#,
    );
    let r = d.decode(br#""a;""b""";2"#, NOW).expect("decodes");
    assert_eq!(
        r[0].fields.get("name"),
        Some(&FieldValue::Str("a;\"b\"".into()))
    );
}

#[test]
fn regex_with_named_captures() {
    let d = decoder(
        r#"format = "regex"
           measurement = "tank"
           pattern = "^(?P<id>\\w+) L=(?P<level>[-0-9.]+)cm(?: T=(?P<time>\\S+))?$"
           tag_columns = ["id"]
           time_column = "time""#,
    );
    let r = d
        .decode(b"t7 L=104.5cm T=2023-11-14T22:13:21Z", NOW)
        .expect("decodes");
    assert_eq!(r[0].tags.get("id").map(String::as_str), Some("t7"));
    assert_eq!(r[0].fields.get("level"), Some(&FieldValue::F64(104.5)));
    assert_eq!(r[0].time_ns, 1_700_000_001_000_000_000);
    // The time capture is optional in the pattern, but required by the spec.
    assert_eq!(
        d.decode(b"t7 L=1cm", NOW).expect_err("no time").to_string(),
        "no value for time column \"time\""
    );
    assert!(
        d.decode(b"garbage", NOW)
            .expect_err("no match")
            .to_string()
            .starts_with("does not match the pattern")
    );
}

#[test]
fn json_objects() {
    let d = decoder(
        r#"format = "json"
           measurement = "env"
           tag_columns = ["dev"]
           types = {"n": "i64"}
           time_column = "t""#,
    );
    let r = d
        .decode(
            br#"{"dev":"a1","temp":21.25,"n":3,"on":true,"state":"ok","t":1700000001000}"#,
            NOW,
        )
        .expect("decodes");
    let r = &r[0];
    assert_eq!(r.time_ns, 1_700_000_001_000_000_000);
    assert_eq!(r.tags.get("dev").map(String::as_str), Some("a1"));
    assert_eq!(r.fields.get("temp"), Some(&FieldValue::F64(21.25)));
    assert_eq!(r.fields.get("n"), Some(&FieldValue::I64(3)));
    assert_eq!(r.fields.get("on"), Some(&FieldValue::Bool(true)));
    assert_eq!(r.fields.get("state"), Some(&FieldValue::Str("ok".into())));
    let err = |line: &[u8]| d.decode(line, NOW).expect_err("rejected").to_string();
    assert_eq!(
        err(br#"{"x":{"y":1},"t":1}"#),
        "x: nested values are not supported"
    );
    assert_eq!(err(b"[1]"), "expected a JSON object");
    assert!(err(b"{\"x\":").starts_with("not JSON"));
    assert_eq!(err(br#"{"x":1}"#), "no value for time column \"t\"");
}

#[test]
fn line_protocol_lines_keep_their_own_names_and_get_static_tags() {
    let d = decoder(
        r#"format = "line-protocol"
           precision = "ms"
           tags = {"port": "com1", "host": "static"}"#,
    );
    let r = d
        .decode(b"cpu,host=a usage=0.5 1700000001000", NOW)
        .expect("decodes");
    assert_eq!(r[0].measurement.as_str(), "cpu");
    assert_eq!(r[0].time_ns, 1_700_000_001_000_000_000);
    assert_eq!(r[0].tags.get("host").map(String::as_str), Some("a"));
    assert_eq!(r[0].tags.get("port").map(String::as_str), Some("com1"));
    assert!(d.decode(b"cpu usage=", NOW).is_err());
}

#[test]
fn bad_specs_list_every_problem() {
    let errors = LineDecoder::new(&spec(
        r#"format = "csv"
           tag_columns = ["nope"]
           time_column = "ts""#,
    ))
    .expect_err("invalid");
    assert_eq!(
        errors,
        vec![
            "measurement: required for format Csv".to_owned(),
            "columns: required for format csv".to_owned(),
            "tag_columns: \"nope\" is not a column or capture".to_owned(),
            "time_column: \"ts\" is not a column or capture".to_owned(),
        ]
    );
    let errors = LineDecoder::new(&spec(
        r#"format = "regex"
           measurement = "m"
           pattern = "(unclosed""#,
    ))
    .expect_err("invalid");
    assert!(errors[0].starts_with("pattern: "), "{errors:?}");
}

#[test]
fn time_formats() {
    let d = |fmt: &str| {
        decoder(&format!(
            r#"format = "csv"
               measurement = "m"
               columns = ["t", "v"]
               time_column = "t"
               time_format = "{fmt}""#
        ))
    };
    let t = |fmt: &str, raw: &str| {
        d(fmt)
            .decode(format!("{raw},1").as_bytes(), NOW)
            .map(|r| r[0].time_ns)
    };
    assert_eq!(t("auto", "1700000001"), Ok(1_700_000_001_000_000_000));
    assert_eq!(t("auto", "1700000001.5"), Ok(1_700_000_001_500_000_000));
    assert_eq!(t("ms", "1700000001000"), Ok(1_700_000_001_000_000_000));
    assert_eq!(t("ns", "5"), Ok(5));
    assert_eq!(
        t("rfc3339", "2023-11-14T23:13:21.25+01:00"),
        Ok(1_700_000_001_250_000_000)
    );
    assert!(t("rfc3339", "1700000001").is_err());
    assert!(t("s", "99999999999999999").is_err());
}

#[test]
fn sql_timestamps_as_databases_export_them() {
    use super::{TimeFormat, parse_time_text};
    let want = 1_700_003_601_250_000_000;
    for raw in [
        "2023-11-14 23:13:21.25+00",
        "2023-11-15 00:13:21.25+01:00",
        "2023-11-14 23:13:21.25",
        "2023-11-14T23:13:21.250",
    ] {
        assert_eq!(
            parse_time_text(raw, TimeFormat::Auto).ok(),
            Some(want),
            "{raw}"
        );
    }
    assert_eq!(
        parse_time_text("2023-11-14", TimeFormat::Rfc3339).ok(),
        Some(1_699_920_000_000_000_000)
    );
    assert!(parse_time_text("2023-11-14 25:00:00", TimeFormat::Auto).is_err());
}
