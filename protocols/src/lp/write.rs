//! The writer: one [`Reading`] to one line of line protocol.

use std::fmt::Write as _;

use super::error::WriteError;
use crate::reading::{FieldValue, Reading};
use crate::time::Precision;

/// Appends `reading` to `out` as one line of line protocol, without a
/// trailing newline. The timestamp is written in `precision`, rounded down
/// (toward negative infinity) when `time_ns` is not a whole number of units.
///
/// On error, `out` is left as it was.
///
/// With [`Precision::Ns`], parsing the output gives back `reading` exactly.
pub fn write_reading(
    reading: &Reading,
    precision: Precision,
    out: &mut String,
) -> Result<(), WriteError> {
    let start = out.len();
    let result = write_line(reading, precision, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `reading` as one line of line protocol, without a trailing newline.
pub fn to_line(reading: &Reading, precision: Precision) -> Result<String, WriteError> {
    let mut out = String::with_capacity(64);
    write_reading(reading, precision, &mut out)?;
    Ok(out)
}

/// Appends each reading followed by `\n`. Stops at the first reading that
/// cannot be written; the lines before it stay in `out`.
pub fn write_readings<'r>(
    readings: impl IntoIterator<Item = &'r Reading>,
    precision: Precision,
    out: &mut String,
) -> Result<(), WriteError> {
    for reading in readings {
        write_reading(reading, precision, out)?;
        out.push('\n');
    }
    Ok(())
}

fn write_line(r: &Reading, precision: Precision, out: &mut String) -> Result<(), WriteError> {
    let measurement = r.measurement.as_str();
    if measurement.starts_with('#') {
        return Err(WriteError::CommentMeasurement {
            measurement: measurement.to_owned(),
        });
    }
    if r.fields.is_empty() {
        return Err(WriteError::NoFields {
            measurement: measurement.to_owned(),
        });
    }
    // A measurement never holds `\` (see `name`), so only `,` and ` ` need it.
    escape(measurement, |c| c == b',' || c == b' ', out);

    for (key, value) in &r.tags {
        if value.is_empty() {
            return Err(WriteError::EmptyTagValue {
                key: key.as_str().to_owned(),
            });
        }
        if value.contains('\n') {
            return Err(WriteError::Newline {
                what: "value of tag",
                name: key.as_str().to_owned(),
            });
        }
        out.push(',');
        escape(key.as_str(), is_name_special, out);
        out.push('=');
        escape(value, is_name_special, out);
    }

    let mut sep = ' ';
    for (key, value) in &r.fields {
        out.push(sep);
        sep = ',';
        escape(key.as_str(), is_name_special, out);
        out.push('=');
        match value {
            FieldValue::F64(v) => {
                if !v.is_finite() {
                    return Err(WriteError::NonFiniteFloat {
                        field: key.as_str().to_owned(),
                        value: *v,
                    });
                }
                write_f64(*v, out);
            }
            FieldValue::I64(v) => {
                let _ = write!(out, "{v}i");
            }
            FieldValue::U64(v) => {
                let _ = write!(out, "{v}u");
            }
            FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            FieldValue::Str(v) => {
                if v.contains('\n') {
                    return Err(WriteError::Newline {
                        what: "string value of field",
                        name: key.as_str().to_owned(),
                    });
                }
                out.push('"');
                escape(v, |c| c == b'"' || c == b'\\', out);
                out.push('"');
            }
        }
    }

    let ts = r.time_ns.div_euclid(precision.nanos_per_unit());
    let _ = write!(out, " {ts}");
    Ok(())
}

/// The bytes escaped in tag keys, tag values and field keys. `\` is escaped
/// too, so that a name ending in `\` or holding `\,` reads back unchanged.
fn is_name_special(c: u8) -> bool {
    matches!(c, b',' | b'=' | b' ' | b'\\')
}

/// Appends `s`, with a `\` before every byte for which `special` holds.
fn escape(s: &str, special: impl Fn(u8) -> bool, out: &mut String) {
    let mut rest = s;
    while let Some(i) = rest.bytes().position(&special) {
        // `i` is the index of an ASCII byte, so both halves are valid str.
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        out.push('\\');
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// The shortest decimal that reads back as exactly `v`. Plain notation for
/// everyday magnitudes, exponent notation for the rest (so that `1e300` is
/// not written as 301 digits). Either way it has no `i`/`u` suffix, so it
/// reads back as a float even when it is whole (`1`).
fn write_f64(v: f64, out: &mut String) {
    let m = v.abs();
    let _ = if m == 0.0 || (1e-5..1e16).contains(&m) {
        write!(out, "{v}")
    } else {
        write!(out, "{v:e}")
    };
}
