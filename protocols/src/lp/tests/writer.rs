//! The writer: escaping, formatting, refusals.

use super::*;

#[test]
fn writer_escapes_and_formats() {
    let m = |s: &str| crate::Measurement::new(s).unwrap();
    let tk = |s: &str| crate::TagKey::new(s).unwrap();
    let fk = |s: &str| crate::FieldKey::new(s).unwrap();
    let r = Reading::new(m("my cpu,x=y"), 1_700_000_000_123_456_789)
        .with_tag(tk("k ,=\\"), "v ,=\\\"")
        .with_field(
            fk("f ,=\\\""),
            FieldValue::Str("say \"hi\" \\ ,= done".into()),
        )
        .with_field(fk("a"), FieldValue::F64(1.0))
        .with_field(fk("b"), FieldValue::I64(-3))
        .with_field(fk("c"), FieldValue::U64(u64::MAX))
        .with_field(fk("d"), FieldValue::Bool(false))
        .with_field(fk("e"), FieldValue::F64(1e300))
        .with_field(fk("g"), FieldValue::F64(-2.5e-7));
    let line = to_line(&r, Precision::Ns).unwrap();
    assert_eq!(
        line,
        r#"my\ cpu\,x=y,k\ \,\=\\=v\ \,\=\\" a=1,b=-3i,c=18446744073709551615u,d=false,e=1e300,f\ \,\=\\"="say \"hi\" \\ ,= done",g=-2.5e-7 1700000000123456789"#
    );
    assert_eq!(one(&line), r);
    // Coarser precisions round down.
    assert!(to_line(&r, Precision::S).unwrap().ends_with(" 1700000000"));
    let early = Reading::new(m("m"), -1).with_field(fk("v"), FieldValue::Bool(true));
    assert!(to_line(&early, Precision::S).unwrap().ends_with(" -1"));
    // Several readings, one per line.
    let mut out = String::new();
    write_readings([&r, &early], Precision::Ns, &mut out).unwrap();
    assert_eq!(parse_ns(&out).readings, [r, early]);
}

#[test]
fn writer_refuses_what_line_protocol_cannot_express() {
    let m = |s: &str| crate::Measurement::new(s).unwrap();
    let fk = |s: &str| crate::FieldKey::new(s).unwrap();
    let base = Reading::new(m("m"), 0).with_field(fk("v"), FieldValue::F64(1.0));
    let cases = [
        base.clone().with_field(fk("x"), FieldValue::F64(f64::NAN)),
        base.clone()
            .with_field(fk("x"), FieldValue::F64(f64::INFINITY)),
        base.clone()
            .with_field(fk("x"), FieldValue::Str("a\nb".into())),
        base.clone().with_tag(crate::TagKey::new("t").unwrap(), ""),
        base.clone()
            .with_tag(crate::TagKey::new("t").unwrap(), "a\nb"),
        Reading::new(m("#m"), 0).with_field(fk("v"), FieldValue::F64(1.0)),
        Reading::new(m("m"), 0),
    ];
    for r in &cases {
        let mut out = String::from("keep");
        assert!(write_reading(r, Precision::Ns, &mut out).is_err(), "{r:?}");
        assert_eq!(out, "keep");
    }
    assert_eq!(
        to_line(&cases[0], Precision::Ns).unwrap_err().to_string(),
        "field \"x\" is NaN: line protocol cannot express non-finite floats"
    );
}
