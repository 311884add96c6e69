//! Escapes in every position, zero-copy borrowing, unicode.

use std::borrow::Cow;

use super::*;

#[test]
fn full_line() {
    let r = one(
        "cpu,host=server01,region=us-west usage=12.5,count=42i,n=7u,ok=t,msg=\"hi\" 1700000000000000000",
    );
    assert_eq!(r.measurement.as_str(), "cpu");
    assert_eq!(tag(&r, "host"), "server01");
    assert_eq!(tag(&r, "region"), "us-west");
    assert_eq!(field(&r, "usage"), &FieldValue::F64(12.5));
    assert_eq!(field(&r, "count"), &FieldValue::I64(42));
    assert_eq!(field(&r, "n"), &FieldValue::U64(7));
    assert_eq!(field(&r, "ok"), &FieldValue::Bool(true));
    assert_eq!(field(&r, "msg"), &FieldValue::Str("hi".into()));
    assert_eq!(r.time_ns, 1_700_000_000_000_000_000);
}

#[test]
fn zero_copy_when_nothing_is_escaped() {
    let body = b"cpu,host=a value=1,s=\"x\" 5";
    let line = parse_lines(body).next().unwrap().unwrap();
    assert!(matches!(line.measurement, Cow::Borrowed("cpu")));
    assert!(matches!(line.tags[0].value, Cow::Borrowed("a")));
    assert!(matches!(
        line.fields[1].value,
        ParsedValue::Str(Cow::Borrowed("x"))
    ));
    assert_eq!(line.timestamp.map(|t| t.value), Some(5));
    assert_eq!(line.line, 1);
}
#[test]
fn measurement_escapes() {
    assert_eq!(one("my\\ cpu f=1").measurement.as_str(), "my cpu");
    assert_eq!(one("my\\,cpu f=1").measurement.as_str(), "my,cpu");
    // `=` needs no escape in a measurement; `\=` is accepted as well.
    assert_eq!(one("a=b f=1").measurement.as_str(), "a=b");
    assert_eq!(one("a\\=b f=1").measurement.as_str(), "a=b");
    // Quotes are literal.
    assert_eq!(one("\"cpu\" f=1").measurement.as_str(), "\"cpu\"");
    // A literal backslash is read, then refused by `Measurement`.
    let e = fail("a\\b f=1");
    assert!(matches!(e.kind, LineErrorKind::Name(_)), "{e}");
    assert_eq!(e.column, 1);
}

#[test]
fn tag_escapes() {
    let r = one(r"m,k\ 1=v\ 1,k\,2=v\,2,k\=3=v\=3 f=1");
    assert_eq!(tag(&r, "k 1"), "v 1");
    assert_eq!(tag(&r, "k,2"), "v,2");
    assert_eq!(tag(&r, "k=3"), "v=3");
    // A backslash before anything else is literal; `\\` is one backslash.
    let r = one(r"m,a\b=c\d,e\\=f\\ f=1");
    assert_eq!(tag(&r, r"a\b"), r"c\d");
    assert_eq!(tag(&r, r"e\"), r"f\");
    // Quotes in tag keys and values are literal.
    let r = one(r#"m,"k"="v" f=1"#);
    assert_eq!(tag(&r, "\"k\""), "\"v\"");
    // An unescaped `=` in a tag value is literal.
    assert_eq!(tag(&one("m,k=a=b f=1"), "k"), "a=b");
}

#[test]
fn field_key_escapes() {
    let r = one(r"m a\ b=1,c\,d=2,e\=f=3,g\\=4");
    assert_eq!(field(&r, "a b"), &FieldValue::F64(1.0));
    assert_eq!(field(&r, "c,d"), &FieldValue::F64(2.0));
    assert_eq!(field(&r, "e=f"), &FieldValue::F64(3.0));
    assert_eq!(field(&r, r"g\"), &FieldValue::F64(4.0));
    assert_eq!(field(&one("m \"q\"=1"), "\"q\""), &FieldValue::F64(1.0));
}

#[test]
fn string_field_escapes() {
    let r = one(r#"m s="a \"quoted\" word",b="back\\slash",l="lit\eral",e="",x="a=b,c d""#);
    assert_eq!(field(&r, "s"), &FieldValue::Str("a \"quoted\" word".into()));
    assert_eq!(field(&r, "b"), &FieldValue::Str(r"back\slash".into()));
    assert_eq!(field(&r, "l"), &FieldValue::Str(r"lit\eral".into()));
    assert_eq!(field(&r, "e"), &FieldValue::Str(String::new()));
    assert_eq!(field(&r, "x"), &FieldValue::Str("a=b,c d".into()));
    // `\` at the end of a string escapes the closing quote.
    let e = fail(r#"m s="abc\" 1"#);
    assert!(
        matches!(e.kind, LineErrorKind::UnterminatedString { .. }),
        "{e}"
    );
    assert_eq!(e.column, 5);
    assert_eq!(
        field(&one(r#"m s="abc\\" 1"#), "s"),
        &FieldValue::Str(r"abc\".into())
    );
}

#[test]
fn unicode() {
    let r = one("température,lieu=café°C valeur=1.5,note=\"日本語 ✓\"");
    assert_eq!(r.measurement.as_str(), "température");
    assert_eq!(tag(&r, "lieu"), "café°C");
    assert_eq!(field(&r, "note"), &FieldValue::Str("日本語 ✓".into()));
    // Columns are byte columns.
    let e = fail("é,x f=1");
    assert_eq!((e.column, e.to_string().contains("'='")), (5, true));
}
