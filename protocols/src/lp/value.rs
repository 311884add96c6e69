//! Scalar tokens: field values other than strings, timestamps, and
//! unescaping.

use super::error::{LineErrorKind, Snippet};
use super::line::ParsedValue;

/// Replaces `\c` by `c` for every `c` in `special`; other backslashes stay.
pub(super) fn unescape(raw: &str, special: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        // `tail` starts with the backslash; `after` is what follows it.
        let after = tail.get(1..).unwrap_or_default();
        match after.as_bytes().first() {
            Some(&c) if special(c) => {
                out.push(char::from(c));
                rest = after.get(1..).unwrap_or_default();
            }
            _ => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `-?[0-9]+`
fn is_integer(b: &[u8]) -> bool {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// `-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?`: the float syntax of
/// line protocol. `inf`, `NaN`, `+1` and hex are not floats here.
fn is_float(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let mantissa_len = b
        .iter()
        .position(|&c| c == b'e' || c == b'E')
        .unwrap_or(b.len());
    let (mantissa, exponent) = b.split_at(mantissa_len);
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(dot) => (
            mantissa.get(..dot).unwrap_or_default(),
            mantissa.get(dot + 1..).unwrap_or_default(),
        ),
        None => (mantissa, &[][..]),
    };
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return false;
    }
    match exponent {
        [] => true,
        [_e, rest @ ..] => {
            let rest = rest
                .strip_prefix(b"-")
                .or_else(|| rest.strip_prefix(b"+"))
                .unwrap_or(rest);
            !rest.is_empty() && digits(rest)
        }
    }
}

/// A non-string field value: `12i`, `12u`, a boolean, or a float.
pub(super) fn scalar<'a>(token: &'a str, key: &str) -> Result<ParsedValue<'a>, LineErrorKind> {
    let invalid = || LineErrorKind::InvalidFieldValue {
        key: Snippet::new(key),
        value: Snippet::new(token),
    };
    let number = token
        .get(..token.len().saturating_sub(1))
        .unwrap_or_default();
    match token.as_bytes() {
        [n @ .., b'i'] if is_integer(n) => {
            number
                .parse()
                .map(ParsedValue::I64)
                .map_err(|_| LineErrorKind::IntegerOutOfRange {
                    key: Snippet::new(key),
                    value: Snippet::new(token),
                })
        }
        [n @ .., b'u'] if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => number
            .parse()
            .map(ParsedValue::U64)
            .map_err(|_| LineErrorKind::UnsignedOutOfRange {
                key: Snippet::new(key),
                value: Snippet::new(token),
            }),
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(ParsedValue::Bool(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(ParsedValue::Bool(false)),
        b if is_float(b) => match token.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(ParsedValue::F64(v)),
            Ok(_) => Err(LineErrorKind::FloatOutOfRange {
                key: Snippet::new(key),
                value: Snippet::new(token),
            }),
            Err(_) => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

/// A timestamp: `-?[0-9]+` that fits in an i64.
pub(super) fn parse_timestamp(raw: &str) -> Result<i64, LineErrorKind> {
    if !is_integer(raw.as_bytes()) {
        return Err(LineErrorKind::InvalidTimestamp {
            value: Snippet::new(raw),
        });
    }
    raw.parse().map_err(|_| LineErrorKind::TimestampTooLarge {
        value: Snippet::new(raw),
    })
}
