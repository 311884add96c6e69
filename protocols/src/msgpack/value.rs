//! Shared pieces of record decoding: the key scan, names, values and times.

use std::borrow::Cow;

use crate::TagKey;
use crate::name::Measurement;
use crate::reading::{FieldValue, Tags};
use crate::time::{Precision, infer_float_to_nanos};

use super::cursor::{Cursor, Header, Malformed};
use super::{RecordError, RecordErrorKind};

/// The MessagePack extension type of a timestamp.
pub(super) const TIMESTAMP_EXT: i8 = -1;

/// A record error before its record index is known.
#[derive(Debug)]
pub(super) struct Fail {
    offset: usize,
    key: Option<String>,
    row: Option<usize>,
    kind: RecordErrorKind,
}

impl Fail {
    pub(super) fn new(offset: usize, kind: RecordErrorKind) -> Self {
        Fail {
            offset,
            key: None,
            row: None,
            kind,
        }
    }

    pub(super) fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(super) fn row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }

    pub(super) fn into_error(self, record: usize) -> RecordError {
        RecordError {
            record,
            row: self.row,
            key: self.key,
            offset: self.offset,
            kind: self.kind,
        }
    }
}

impl From<Malformed> for Fail {
    // Unreachable in practice: `decode` checks the framing before any record.
    fn from(m: Malformed) -> Self {
        Fail::new(m.offset, RecordErrorKind::Truncated)
    }
}

/// Where a record's known keys start (the offset of each value).
#[derive(Debug, Default)]
pub(super) struct RecordKeys {
    /// Offset of the record's first key, for errors about the whole record.
    pub(super) start: usize,
    pub(super) m: Option<usize>,
    pub(super) t: Option<usize>,
    pub(super) h: Option<usize>,
    pub(super) tags: Option<usize>,
    pub(super) fields: Option<usize>,
    pub(super) f: Option<usize>,
    pub(super) columns: Option<usize>,
    pub(super) tag_keys: Option<usize>,
    pub(super) batch: Option<usize>,
}

/// Scans a record map of `n` pairs (the cursor is just past its header),
/// noting where each known key's value starts. A repeated key: the last wins.
pub(super) fn scan_record(cur: &mut Cursor<'_>, n: u32) -> Result<RecordKeys, Fail> {
    let mut keys = RecordKeys {
        start: cur.pos(),
        ..RecordKeys::default()
    };
    for _ in 0..n {
        let at = cur.pos();
        let key = match cur.value()? {
            Header::Str(k) => k,
            other => {
                return Err(Fail::new(
                    at,
                    RecordErrorKind::NonStringKey {
                        found: other.type_name(),
                    },
                ));
            }
        };
        let slot = match key {
            b"m" => &mut keys.m,
            b"t" => &mut keys.t,
            b"h" => &mut keys.h,
            b"tags" => &mut keys.tags,
            b"fields" => &mut keys.fields,
            b"f" => &mut keys.f,
            b"columns" => &mut keys.columns,
            b"tag_keys" => &mut keys.tag_keys,
            b"batch" => &mut keys.batch,
            _ => {
                cur.skip()?;
                continue;
            }
        };
        *slot = Some(cur.pos());
        cur.skip()?;
    }
    Ok(keys)
}

/// A name's bytes as UTF-8, strictly.
pub(super) fn name_str(bytes: &[u8]) -> Result<&str, RecordErrorKind> {
    std::str::from_utf8(bytes).map_err(|_| RecordErrorKind::InvalidUtf8)
}

/// A string value, with invalid UTF-8 replaced (Arc sanitizes the same way).
pub(super) fn lossy(bytes: &[u8]) -> String {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

/// The record's measurement: a string, or an integer `n` as `measurement_<n>`.
pub(super) fn measurement(body: &[u8], keys: &RecordKeys) -> Result<Measurement, Fail> {
    let Some(pos) = keys.m else {
        return Err(Fail::new(keys.start, RecordErrorKind::MissingMeasurement));
    };
    let fail = |kind| Fail::new(pos, kind).key("m");
    let name = match Cursor::at(body, pos).value()? {
        Header::Str(s) => Measurement::new(name_str(s).map_err(fail)?),
        Header::Int(n) => Measurement::new(format!("measurement_{n}")),
        Header::UInt(n) => Measurement::new(format!("measurement_{n}")),
        Header::Nil => return Err(fail(RecordErrorKind::MissingMeasurement)),
        other => {
            return Err(fail(RecordErrorKind::WrongType {
                expected: "a string",
                found: other.type_name(),
            }));
        }
    };
    name.map_err(|e| fail(e.into()))
}

/// A field value; `Ok(None)` for nil (the field is absent).
pub(super) fn field_value(h: Header<'_>) -> Result<Option<FieldValue>, RecordErrorKind> {
    let v = match h {
        Header::Nil => return Ok(None),
        Header::Bool(b) => FieldValue::Bool(b),
        Header::Int(i) => FieldValue::I64(i),
        Header::UInt(u) => FieldValue::U64(u),
        Header::F32(f) => FieldValue::F64(finite(f64::from(f))?),
        Header::F64(f) => FieldValue::F64(finite(f)?),
        Header::Str(s) => FieldValue::Str(lossy(s)),
        other @ (Header::Bin(_) | Header::Ext(..) | Header::Array(_) | Header::Map(_)) => {
            return Err(RecordErrorKind::Unsupported {
                found: other.type_name(),
            });
        }
    };
    Ok(Some(v))
}

fn finite(f: f64) -> Result<f64, RecordErrorKind> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(RecordErrorKind::NonFinite { value: f })
    }
}

/// A tag value; numbers and bools are stringified as in Arc; `Ok(None)` for nil.
pub(super) fn tag_value(h: Header<'_>) -> Result<Option<String>, RecordErrorKind> {
    let v = match h {
        Header::Nil => return Ok(None),
        Header::Str(s) => lossy(s),
        Header::Bool(b) => b.to_string(),
        Header::Int(i) => i.to_string(),
        Header::UInt(u) => u.to_string(),
        Header::F32(f) => f.to_string(),
        Header::F64(f) => f.to_string(),
        other @ (Header::Bin(_) | Header::Ext(..) | Header::Array(_) | Header::Map(_)) => {
            return Err(RecordErrorKind::Unsupported {
                found: other.type_name(),
            });
        }
    };
    Ok(Some(v))
}

/// Reads a `{"key": value}` tags map at `pos` into `tags` (nil values skipped).
pub(super) fn read_tags(body: &[u8], pos: usize, tags: &mut Tags) -> Result<(), Fail> {
    let mut cur = Cursor::at(body, pos);
    let n = match cur.header()? {
        Header::Map(n) => n,
        Header::Nil => return Ok(()),
        other => {
            return Err(Fail::new(
                pos,
                RecordErrorKind::WrongType {
                    expected: "a map",
                    found: other.type_name(),
                },
            )
            .key("tags"));
        }
    };
    for _ in 0..n {
        let (key, at) = map_key(&mut cur)?;
        let key = TagKey::new(key).map_err(|e| Fail::new(at, e.into()).key(key))?;
        let at = cur.pos();
        let value =
            tag_value(cur.value()?).map_err(|kind| Fail::new(at, kind).key(key.as_str()))?;
        if let Some(value) = value {
            tags.insert(key, value);
        }
    }
    Ok(())
}

/// Reads one map key, which must be a UTF-8 string. Returns it and its offset.
pub(super) fn map_key<'a>(cur: &mut Cursor<'a>) -> Result<(&'a str, usize), Fail> {
    let at = cur.pos();
    match cur.value()? {
        Header::Str(k) => Ok((name_str(k).map_err(|kind| Fail::new(at, kind))?, at)),
        other => Err(Fail::new(
            at,
            RecordErrorKind::NonStringKey {
                found: other.type_name(),
            },
        )),
    }
}

/// A row timestamp with an inferred unit: integer, float or timestamp
/// extension. `Ok(None)` for nil.
pub(super) fn row_time(h: Header<'_>) -> Result<Option<i64>, RecordErrorKind> {
    match h {
        Header::Nil => Ok(None),
        Header::Int(t) => Precision::infer_to_nanos(t)
            .map(Some)
            .ok_or(RecordErrorKind::TimeOutOfRange),
        Header::F32(t) => float_time(f64::from(t)).map(Some),
        Header::F64(t) => float_time(t).map(Some),
        other => time_other(other).map(Some),
    }
}

fn float_time(t: f64) -> Result<i64, RecordErrorKind> {
    finite(t)?;
    infer_float_to_nanos(t).ok_or(RecordErrorKind::TimeOutOfRange)
}

/// The unit a time column's first number implies.
pub(super) fn column_unit(h: Header<'_>) -> Option<Precision> {
    match h {
        Header::Int(t) => Some(Precision::infer(t)),
        Header::F32(t) => float_unit(f64::from(t)),
        Header::F64(t) => float_unit(t),
        _ => None,
    }
}

fn float_unit(t: f64) -> Option<Precision> {
    t.is_finite()
        .then(|| Precision::infer(t.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64))
}

/// A time-column element in the column's `unit`.
pub(super) fn column_time(h: Header<'_>, unit: Precision) -> Result<i64, RecordErrorKind> {
    match h {
        Header::Nil => Err(RecordErrorKind::NilTime),
        Header::Int(t) => unit.to_nanos(t).ok_or(RecordErrorKind::TimeOutOfRange),
        Header::F32(t) => float_in_unit(f64::from(t), unit),
        Header::F64(t) => float_in_unit(t, unit),
        other => time_other(other),
    }
}

fn float_in_unit(t: f64, unit: Precision) -> Result<i64, RecordErrorKind> {
    let ns = (finite(t)? * unit.nanos_per_unit() as f64).round();
    // `as` saturates; reject what would have saturated.
    if ns >= i64::MIN as f64 && ns < i64::MAX as f64 {
        Ok(ns as i64)
    } else {
        Err(RecordErrorKind::TimeOutOfRange)
    }
}

/// Timestamp extensions; anything else is the wrong type for a time.
fn time_other(h: Header<'_>) -> Result<i64, RecordErrorKind> {
    match h {
        Header::Ext(TIMESTAMP_EXT, data) => ext_timestamp(data),
        Header::UInt(_) => Err(RecordErrorKind::TimeOutOfRange),
        other => Err(RecordErrorKind::WrongType {
            expected: "an integer, float or timestamp",
            found: other.type_name(),
        }),
    }
}

/// Decodes the MessagePack timestamp extension (32, 64 or 96 bit) to ns.
pub(super) fn ext_timestamp(data: &[u8]) -> Result<i64, RecordErrorKind> {
    let (secs, nanos): (i128, u32) = match *data {
        [a, b, c, d] => (i128::from(u32::from_be_bytes([a, b, c, d])), 0),
        [a, b, c, d, e, f, g, h] => {
            let v = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
            (i128::from(v & 0x3_ffff_ffff), (v >> 34) as u32)
        }
        [n0, n1, n2, n3, s0, s1, s2, s3, s4, s5, s6, s7] => (
            i128::from(i64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7])),
            u32::from_be_bytes([n0, n1, n2, n3]),
        ),
        _ => {
            return Err(RecordErrorKind::WrongType {
                expected: "a 4, 8 or 12 byte timestamp",
                found: "extension",
            });
        }
    };
    if nanos >= 1_000_000_000 {
        return Err(RecordErrorKind::WrongType {
            expected: "timestamp nanoseconds below 1e9",
            found: "extension",
        });
    }
    i64::try_from(secs * 1_000_000_000 + i128::from(nanos))
        .map_err(|_| RecordErrorKind::TimeOutOfRange)
}
