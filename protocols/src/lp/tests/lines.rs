//! Whitespace, comments, duplicates, errors and their positions.

use crate::name::NameError;

use super::*;

#[test]
fn whitespace_variants() {
    let expected = one("m,t=a v=1 5");
    for body in [
        "  m,t=a v=1 5",
        "\t m,t=a v=1 5",
        "m,t=a   v=1   5",
        "m,t=a v=1 5   ",
        "m,t=a v=1 5\t",
        "m,t=a v=1 5\r",
        "m,t=a v=1 5\r\n",
        "m,t=a v=1 5\n\n",
    ] {
        assert_eq!(one(body), expected, "{body:?}");
    }
    // Trailing spaces without a timestamp.
    assert_eq!(one("m v=1   ").time_ns, DEFAULT_NS);
    // A tab is not a separator.
    let e = fail("m\tv=1");
    assert!(matches!(e.kind, LineErrorKind::MissingFields), "{e}");
    let e = fail("m v=1\t5");
    assert!(
        matches!(e.kind, LineErrorKind::InvalidFieldValue { .. }),
        "{e}"
    );
}

#[test]
fn comments_blank_lines_and_crlf() {
    let body =
        "# a comment\r\n\r\n   \n\t# indented comment\ncpu v=1 1\r\ncpu v=2 2\r\n\r\n# the end";
    let out = parse_ns(body);
    assert!(out.is_clean(), "{:?}", out.errors);
    let times: Vec<_> = out.readings.iter().map(|r| r.time_ns).collect();
    assert_eq!(times, [1, 2]);
    assert!(parse_ns("").readings.is_empty());
    assert!(parse_ns("\n\n\n").is_clean());
    // `#` later in a line is not a comment.
    assert_eq!(
        one("m,t=#x v=1").tags.get("t").map(String::as_str),
        Some("#x")
    );
}

#[test]
fn duplicate_keys_last_one_wins() {
    let r = one("m,t=a,t=b v=1,v=2i,w=3");
    assert_eq!(tag(&r, "t"), "b");
    assert_eq!(field(&r, "v"), &FieldValue::I64(2));
    assert_eq!(r.fields.len(), 2);
    // The zero-copy layer keeps both.
    let line = parse_lines(b"m,t=a,t=b v=1,v=2i").next().unwrap().unwrap();
    assert_eq!((line.tags.len(), line.fields.len()), (2, 2));
}

#[test]
fn tags_in_any_order() {
    assert_eq!(one("m,b=2,a=1 v=1"), one("m,a=1,b=2 v=1"));
}

#[test]
fn structural_errors_and_columns() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "cpu",
            4,
            "expected a field set after the measurement and tags",
        ),
        (
            "cpu ",
            4,
            "expected a field set after the measurement and tags",
        ),
        (
            "cpu,host=a",
            11,
            "expected a field set after the measurement and tags",
        ),
        (",host=a v=1", 1, "expected a measurement"),
        (" ,t=a v=1", 2, "expected a measurement"),
        ("cpu, v=1", 5, "expected a tag key after ','"),
        ("cpu,=a v=1", 5, "expected a tag key after ','"),
        ("cpu,host v=1", 9, "expected '=' after tag key \"host\""),
        ("cpu,host,b=c v=1", 9, "expected '=' after tag key \"host\""),
        ("cpu,host= v=1", 10, "tag \"host\" has an empty value"),
        ("cpu,host=a, v=1", 12, "expected a tag key after ','"),
        ("cpu x", 6, "expected '=' after field key \"x\""),
        ("cpu x 1", 6, "expected '=' after field key \"x\""),
        ("cpu =1", 5, "expected a field key"),
        ("cpu x=", 7, "field \"x\" has no value"),
        ("cpu x= 1", 7, "field \"x\" has no value"),
        ("cpu x=1,", 9, "expected a field key"),
        ("cpu x=1, 5", 9, "expected a field key"),
        ("cpu x=1,,y=2", 9, "expected a field key"),
        (
            "cpu x=\"abc",
            7,
            "string value of field \"x\" has no closing '\"'",
        ),
        (
            "cpu x=\"a\"b",
            10,
            "expected ',' or ' ' after the string value of field \"x\"",
        ),
        (
            "cpu x=abc",
            7,
            "field \"x\" has the invalid value \"abc\": expected a float (1.5), an integer (12i), an unsigned integer (12u), a boolean (t, false, ...) or a \"string\"",
        ),
        (
            "cpu,t=a\\ v=1",
            13,
            "expected a field set after the measurement and tags",
        ),
        (
            "cpu,t=a\\",
            9,
            "expected a field set after the measurement and tags",
        ),
        ("cpu x\\", 7, "expected '=' after field key \"x\\\\\""),
    ];
    for &(body, column, msg) in cases {
        let e = fail(body);
        assert_eq!(
            e.to_string(),
            format!("line 1, column {column}: {msg}"),
            "{body:?}"
        );
    }
}

#[test]
fn name_errors_become_line_errors() {
    let e = fail("cpu,time=x v=1");
    assert!(
        matches!(e.kind, LineErrorKind::Name(NameError::Reserved { .. })),
        "{e}"
    );
    assert_eq!(e.column, 5);
    let e = fail("cpu v=1,time=2");
    assert_eq!(e.column, 9);
    assert_eq!(
        e.to_string(),
        "line 1, column 9: field key may not be \"time\": it is reserved for the timestamp column"
    );
    let e = fail("a/b v=1");
    assert!(
        matches!(
            e.kind,
            LineErrorKind::Name(NameError::ForbiddenChar { ch: '/', .. })
        ),
        "{e}"
    );
    assert!(matches!(fail("..x v=1").kind, LineErrorKind::Name(_)));
    assert!(matches!(
        fail(&format!("{} v=1", "m".repeat(256))).kind,
        LineErrorKind::Name(_)
    ));
    // Control characters in a name.
    assert!(matches!(
        fail("m,a\u{1}b=c v=1").kind,
        LineErrorKind::Name(_)
    ));
}
#[test]
fn invalid_utf8_is_an_error_for_that_line_only() {
    let mut body = b"m v=1 1\nm,t=\xff v=2 2\nm v=3 3\n".to_vec();
    body.extend_from_slice(b"# comment \xfe is not checked\n");
    let out = parse(&body, Precision::Ns, 0);
    assert_eq!(out.readings.len(), 2);
    let e = &out.errors[0];
    assert_eq!(
        (e.line, e.column, &e.kind),
        (2, 5, &LineErrorKind::InvalidUtf8)
    );
    // A string value holding invalid UTF-8, and a truncated multibyte char.
    assert_eq!(parse(b"m s=\"\xc3\"", Precision::Ns, 0).errors[0].column, 6);
    assert_eq!(
        parse(b"m v=1 \xe2\x82", Precision::Ns, 0).errors[0].column,
        7
    );
}

#[test]
fn good_and_bad_lines_report_line_numbers() {
    let body = "\
# telegraf output
cpu,host=a usage=1 1

cpu,host=b usage= 2
mem,host=a used=10i 3
disk,host=a free=abc 4
\r
net,host=a bytes=5u 5
cpu,host=c,host usage=2 6
";
    let out = parse_ns(body);
    let measurements: Vec<_> = out
        .readings
        .iter()
        .map(|r| r.measurement.as_str())
        .collect();
    assert_eq!(measurements, ["cpu", "mem", "net"]);
    let lines: Vec<_> = out.errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(lines, [(4, 18), (6, 18), (9, 16)]);
    assert_eq!(out.error_count, 3);
    assert_eq!(out.dropped_errors(), 0);
    assert_eq!(
        out.errors[1].to_string(),
        "line 6, column 18: field \"free\" has the invalid value \"abc\": expected a float (1.5), \
         an integer (12i), an unsigned integer (12u), a boolean (t, false, ...) or a \"string\""
    );
    // The iterator counts good lines and reports every error.
    let (ok, bad) = parse_lines(body.as_bytes()).fold((0, 0), |(ok, bad), l| match l {
        Ok(_) => (ok + 1, bad),
        Err(_) => (ok, bad + 1),
    });
    assert_eq!((ok, bad), (3, 3));
}

#[test]
fn error_cap() {
    let body = "bad\n".repeat(MAX_KEPT_ERRORS + 20) + "m v=1";
    let out = parse_ns(&body);
    assert_eq!(out.readings.len(), 1);
    assert_eq!(out.errors.len(), MAX_KEPT_ERRORS);
    assert_eq!(out.error_count, MAX_KEPT_ERRORS + 20);
    assert_eq!(out.dropped_errors(), 20);
    assert_eq!(out.errors.last().map(|e| e.line), Some(MAX_KEPT_ERRORS));
}

#[test]
fn long_values_are_cut_in_errors() {
    let e = fail(&format!("m v={}", "é".repeat(100)));
    let LineErrorKind::InvalidFieldValue { value, .. } = &e.kind else {
        panic!("{e}")
    };
    assert!(value.as_str().len() <= 64 + '…'.len_utf8());
    assert!(value.as_str().ends_with('…'));
}

#[test]
fn hostile_inputs_do_not_panic() {
    let bodies: &[&[u8]] = &[
        b"\\",
        b"\\\\",
        b"m\\",
        b"m,\\",
        b"m,t=\\",
        b"m v=\"\\",
        b"m v=\"\\\"",
        b"=",
        b",",
        b" ",
        b"\"",
        b"m v=\"",
        b"m v=1 ",
        b"m v=1 -",
        b"\xff",
        b"m\xff v=1",
        b"\r",
        b"\r\r\n",
        b"#",
        b"m v=1,\\",
        b"m v=1\\",
        b"m\\ ",
        b"m,\\=\\ \\",
        b"m x=-",
        b"m x=1 -\\",
    ];
    for body in bodies {
        let _ = parse(body, Precision::S, 0);
    }
}
