//! Field value types and timestamps.

use super::*;

#[test]
fn floats() {
    for (text, v) in [
        ("1", 1.0),
        ("-1", -1.0),
        ("1.5", 1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("1e3", 1e3),
        ("1E3", 1e3),
        ("1e+3", 1e3),
        ("-1.5E-3", -1.5e-3),
        ("007", 7.0),
        ("1.7976931348623157e308", f64::MAX),
        ("5e-324", 5e-324),
        ("1e-400", 0.0),
    ] {
        let r = one(&format!("m v={text}"));
        assert_eq!(field(&r, "v"), &FieldValue::F64(v), "{text}");
    }
    let FieldValue::F64(z) = *field(&one("m v=-0"), "v") else {
        panic!("not a float")
    };
    assert!(z == 0.0 && z.is_sign_negative());
    for bad in [
        "NaN", "nan", "inf", "-inf", "+inf", "Infinity", "+1", "1e", "e3", ".", "-", "1.2.3",
        "0x10", "1_000", "1ee3",
    ] {
        let e = fail(&format!("m v={bad}"));
        assert!(
            matches!(e.kind, LineErrorKind::InvalidFieldValue { .. }),
            "{bad}: {e}"
        );
        assert_eq!(e.column, 5, "{bad}");
    }
    let e = fail("m v=1e400");
    assert!(
        matches!(e.kind, LineErrorKind::FloatOutOfRange { .. }),
        "{e}"
    );
    let e = fail("m v=-1e400");
    assert!(
        matches!(e.kind, LineErrorKind::FloatOutOfRange { .. }),
        "{e}"
    );
}

#[test]
fn integers_and_unsigned() {
    assert_eq!(field(&one("m v=12i"), "v"), &FieldValue::I64(12));
    assert_eq!(field(&one("m v=-0i"), "v"), &FieldValue::I64(0));
    assert_eq!(
        field(&one("m v=9223372036854775807i"), "v"),
        &FieldValue::I64(i64::MAX)
    );
    assert_eq!(
        field(&one("m v=-9223372036854775808i"), "v"),
        &FieldValue::I64(i64::MIN)
    );
    assert_eq!(field(&one("m v=0u"), "v"), &FieldValue::U64(0));
    assert_eq!(
        field(&one("m v=18446744073709551615u"), "v"),
        &FieldValue::U64(u64::MAX)
    );
    for bad in ["9223372036854775808i", "-9223372036854775809i"] {
        let e = fail(&format!("m v={bad}"));
        assert!(
            matches!(e.kind, LineErrorKind::IntegerOutOfRange { .. }),
            "{bad}: {e}"
        );
    }
    let e = fail("m v=18446744073709551616u");
    assert!(
        matches!(e.kind, LineErrorKind::UnsignedOutOfRange { .. }),
        "{e}"
    );
    for bad in [
        "i", "-i", "u", "+1i", "1.5i", "1e3i", "-1u", "-0u", "+1u", "1I", "1U", "12ii", "0x1i",
    ] {
        let e = fail(&format!("m v={bad}"));
        assert!(
            matches!(e.kind, LineErrorKind::InvalidFieldValue { .. }),
            "{bad}: {e}"
        );
    }
}

#[test]
fn booleans_in_every_spelling() {
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(
            field(&one(&format!("m v={t}")), "v"),
            &FieldValue::Bool(true),
            "{t}"
        );
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(
            field(&one(&format!("m v={f}")), "v"),
            &FieldValue::Bool(false),
            "{f}"
        );
    }
    for bad in ["tRUE", "yes", "TRue", "fals", "truee"] {
        let e = fail(&format!("m v={bad}"));
        assert!(
            matches!(e.kind, LineErrorKind::InvalidFieldValue { .. }),
            "{bad}"
        );
    }
}

#[test]
fn timestamps_and_precision() {
    assert_eq!(one("m v=1").time_ns, DEFAULT_NS);
    assert_eq!(one("m v=1 0").time_ns, 0);
    assert_eq!(one("m v=1 -5").time_ns, -5);
    let body = b"m v=1 1700000000";
    let out = parse(body, Precision::S, 0);
    assert_eq!(out.readings[0].time_ns, 1_700_000_000_000_000_000);
    assert_eq!(
        parse(b"m v=1 1700000000000", Precision::Ms, 0).readings[0].time_ns,
        1_700_000_000_000_000_000
    );
    assert_eq!(
        parse(b"m v=1 1700000000000000", Precision::Us, 0).readings[0].time_ns,
        1_700_000_000_000_000_000
    );
    assert_eq!(one("m v=1 9223372036854775807").time_ns, i64::MAX);
    assert_eq!(one("m v=1 -9223372036854775808").time_ns, i64::MIN);

    let out = parse(b"m v=1 9300000000", Precision::S, 0);
    let e = &out.errors[0];
    assert!(
        matches!(
            e.kind,
            LineErrorKind::TimestampOutOfRange {
                precision: Precision::S,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.column, 7);
    assert_eq!(
        e.to_string(),
        "line 1, column 7: timestamp 9300000000 in s is outside the i64 nanosecond range (years 1677 to 2262)"
    );

    let e = fail("m v=1 9223372036854775808");
    assert!(
        matches!(e.kind, LineErrorKind::TimestampTooLarge { .. }),
        "{e}"
    );
    for bad in ["1.5", "1e9", "+1", "abc", "12a", "-", "0x1"] {
        let e = fail(&format!("m v=1 {bad}"));
        assert!(
            matches!(e.kind, LineErrorKind::InvalidTimestamp { .. }),
            "{bad}: {e}"
        );
        assert_eq!(e.column, 7);
    }
    let e = fail("m v=1 123 456");
    assert_eq!((e.kind, e.column), (LineErrorKind::TrailingCharacters, 11));
}
