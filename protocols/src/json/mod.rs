//! JSON readings, as MQTT sensors and bridges publish them.
//!
//! A payload is one JSON document. The measurement, static tags and default
//! time come from the caller's [`JsonContext`] (the topic route); a row
//! record may override them.
//!
//! | payload | readings |
//! |---|---|
//! | `21.5`, `true`, `"on"` | one reading, field `value` |
//! | `null` | none, no error |
//! | `{"value": 21.5, "ts": 1700000000}` | one reading, field `value` |
//! | `{"temperature": 21.5, "humidity": 40, "time": "2023-11-14T22:13:20Z"}` | one reading, every other key a field |
//! | `{"m": "cpu", "t": 1700000000000, "tags": {..}, "fields": {..}}` | one reading (row record, as in [`crate::msgpack`]) |
//! | `[record, ...]` or `{"batch": [record, ...]}` | one reading per record |
//!
//! # Records
//!
//! A record is a JSON object. With an object-valued `fields` key it is a
//! **row record**: `m` (a string) replaces the context's measurement, `tags`
//! (an object) adds to and overrides the context's tags, `t` is the time, and
//! other keys are ignored. Otherwise it is a **flat record**: the time key
//! (one of [`TIME_KEYS`]; two of them are an error) is the time, and every
//! other key is a field.
//!
//! # Values
//!
//! * Numbers are always [`FieldValue::F64`]. A sensor that sends `21` and
//!   then `21.5` must not cause a type conflict in its column, and JSON
//!   itself does not distinguish the two. Integers beyond 2^53 lose precision.
//! * Strings are [`FieldValue::Str`], booleans [`FieldValue::Bool`].
//! * `null` fields (and tags) are skipped: sensors send `null` for "no
//!   reading". A record left without fields is an error.
//! * Objects and arrays as values are an error for the record.
//! * Tag values that are numbers or booleans are stringified.
//!
//! # Times
//!
//! An integer has its unit inferred by magnitude as in Arc (below 1e10
//! seconds, below 1e13 ms, below 1e16 µs, else ns); a float likewise, keeping
//! its fraction (`1700000000.25` is seconds); a string must be RFC 3339
//! (`2023-11-14T22:13:20.5Z`, `+02:00` offsets; see `rfc3339.rs`). A missing
//! or `null` time is the context's default time.
//!
//! # Errors
//!
//! Invalid JSON is one [`JsonError`] with serde_json's line and column;
//! serde_json's recursion limit (128) stays on. A bad record is a
//! [`RecordError`] with its index and key, and the other records go on. At
//! most [`MAX_RECORDED_ERRORS`] errors are kept.

mod rfc3339;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::name::{FieldKey, Measurement, NameError, TagKey};
use crate::reading::{FieldValue, Reading, Tags};
use crate::time::{Precision, infer_float_to_nanos};

/// Keys that carry a flat record's time.
pub const TIME_KEYS: [&str; 4] = ["t", "time", "ts", "timestamp"];
/// The field name of a bare value.
pub const VALUE_FIELD: &str = "value";
/// The most record errors one [`Decoded`] keeps.
pub const MAX_RECORDED_ERRORS: usize = 100;

/// What the payload's readings default to: usually from the MQTT route.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonContext {
    pub measurement: Measurement,
    pub tags: Tags,
    /// The time of readings that carry none (usually the arrival time).
    pub default_time_ns: i64,
}

impl JsonContext {
    /// A context with no static tags.
    pub fn new(measurement: Measurement, default_time_ns: i64) -> Self {
        JsonContext {
            measurement,
            tags: Tags::new(),
            default_time_ns,
        }
    }
}

/// What a payload decoded to: good readings, and why the others were dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    /// The first [`MAX_RECORDED_ERRORS`] errors, in payload order.
    pub errors: Vec<RecordError>,
    /// How many records were dropped in all.
    pub error_count: usize,
}

/// The payload is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at line {line}, column {column}: {message}")]
pub struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One dropped record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// The record's index in the array or batch (0 for a single record).
    pub record: usize,
    /// The key the error is about.
    pub key: Option<String>,
    pub kind: RecordErrorKind,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(key) = &self.key {
            write!(f, ", key {key:?}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for RecordError {}

/// Why a record was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordErrorKind {
    #[error("expected an object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("a batch inside a batch is not supported")]
    NestedBatch,
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("{found} is not a supported field or tag value")]
    Nested { found: &'static str },
    #[error("more than one time key ({first:?} and {second:?})")]
    MultipleTimeKeys {
        first: &'static str,
        second: &'static str,
    },
    #[error("timestamp is outside the nanosecond range (years 1677..=2262)")]
    TimeOutOfRange,
    #[error("not an RFC 3339 timestamp: {reason}")]
    BadTimestamp { reason: &'static str },
    #[error("no fields")]
    NoFields,
}

type Fail = (Option<String>, RecordErrorKind);

fn fail(key: &str, kind: impl Into<RecordErrorKind>) -> Fail {
    (Some(key.to_owned()), kind.into())
}

/// Decodes a JSON payload (see the module docs for the accepted shapes).
pub fn decode(payload: &[u8], ctx: &JsonContext) -> Result<Decoded, JsonError> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| JsonError {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut out = Decoded::default();
    match value {
        Value::Null => {}
        Value::Array(items) => decode_items(items, ctx, &mut out),
        Value::Object(mut map) => {
            if matches!(map.get("batch"), Some(Value::Array(_))) {
                if let Some(Value::Array(items)) = map.remove("batch") {
                    decode_items(items, ctx, &mut out);
                }
            } else {
                push(&mut out, 0, record(map, ctx));
            }
        }
        scalar => {
            let mut reading = Reading::new(ctx.measurement.clone(), ctx.default_time_ns);
            reading.tags = ctx.tags.clone();
            let result = field_value(VALUE_FIELD, scalar).and_then(|v| {
                let key = FieldKey::new(VALUE_FIELD).map_err(|e| fail(VALUE_FIELD, e))?;
                reading.fields.extend(v.map(|v| (key, v)));
                Ok(reading)
            });
            push(&mut out, 0, result);
        }
    }
    Ok(out)
}

fn decode_items(items: Vec<Value>, ctx: &JsonContext, out: &mut Decoded) {
    for (index, item) in items.into_iter().enumerate() {
        let result = match item {
            Value::Object(map) if matches!(map.get("batch"), Some(Value::Array(_))) => {
                Err((Some("batch".to_owned()), RecordErrorKind::NestedBatch))
            }
            Value::Object(map) => record(map, ctx),
            other => Err((
                None,
                RecordErrorKind::NotAnObject {
                    found: type_name(&other),
                },
            )),
        };
        push(out, index, result);
    }
}

fn push(out: &mut Decoded, record: usize, result: Result<Reading, Fail>) {
    match result {
        Ok(reading) => out.readings.push(reading),
        Err((key, kind)) => {
            out.error_count += 1;
            if out.errors.len() < MAX_RECORDED_ERRORS {
                out.errors.push(RecordError { record, key, kind });
            }
        }
    }
}

/// One record object: a row record if it has an object `fields`, else flat.
fn record(mut map: Map<String, Value>, ctx: &JsonContext) -> Result<Reading, Fail> {
    let mut reading = Reading::new(ctx.measurement.clone(), ctx.default_time_ns);
    reading.tags = ctx.tags.clone();

    if let Some(Value::Object(fields)) = map.remove("fields") {
        if let Some(m) = map.remove("m") {
            reading.measurement = match m {
                Value::String(s) => Measurement::new(s).map_err(|e| fail("m", e))?,
                other => return Err(wrong_type("m", "a string", &other)),
            };
        }
        if let Some(t) = map.remove("t") {
            reading.time_ns = time("t", t)?.unwrap_or(ctx.default_time_ns);
        }
        match map.remove("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tags)) => {
                for (k, v) in tags {
                    let key = TagKey::new(k.as_str()).map_err(|e| fail(&k, e))?;
                    if let Some(v) = tag_value(&k, v)? {
                        reading.tags.insert(key, v);
                    }
                }
            }
            Some(other) => return Err(wrong_type("tags", "an object", &other)),
        }
        insert_fields(&mut reading, fields)?;
    } else {
        let mut time_key: Option<&'static str> = None;
        for key in TIME_KEYS {
            if let Some(t) = map.remove(key) {
                if let Some(first) = time_key {
                    return Err(fail(
                        key,
                        RecordErrorKind::MultipleTimeKeys { first, second: key },
                    ));
                }
                time_key = Some(key);
                reading.time_ns = time(key, t)?.unwrap_or(ctx.default_time_ns);
            }
        }
        insert_fields(&mut reading, map)?;
    }

    if reading.fields.is_empty() {
        return Err((None, RecordErrorKind::NoFields));
    }
    Ok(reading)
}

fn insert_fields(reading: &mut Reading, fields: Map<String, Value>) -> Result<(), Fail> {
    for (k, v) in fields {
        let key = FieldKey::new(k.as_str()).map_err(|e| fail(&k, e))?;
        if let Some(v) = field_value(&k, v)? {
            reading.fields.insert(key, v);
        }
    }
    Ok(())
}

fn field_value(key: &str, v: Value) -> Result<Option<FieldValue>, Fail> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => FieldValue::Bool(b),
        Value::Number(n) => FieldValue::F64(number_f64(&n)),
        Value::String(s) => FieldValue::Str(s),
        other @ (Value::Array(_) | Value::Object(_)) => {
            return Err(fail(
                key,
                RecordErrorKind::Nested {
                    found: type_name(&other),
                },
            ));
        }
    }))
}

fn tag_value(key: &str, v: Value) -> Result<Option<String>, Fail> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s,
        other @ (Value::Array(_) | Value::Object(_)) => {
            return Err(fail(
                key,
                RecordErrorKind::Nested {
                    found: type_name(&other),
                },
            ));
        }
    }))
}

/// Without serde_json's `arbitrary_precision`, every number has an f64 value.
fn number_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// A time value; `Ok(None)` for `null`.
fn time(key: &str, v: Value) -> Result<Option<i64>, Fail> {
    let out_of_range = || fail(key, RecordErrorKind::TimeOutOfRange);
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Precision::infer_to_nanos(i)
                    .map(Some)
                    .ok_or_else(out_of_range)
            } else if n.is_u64() {
                Err(out_of_range())
            } else {
                infer_float_to_nanos(number_f64(&n))
                    .map(Some)
                    .ok_or_else(out_of_range)
            }
        }
        Value::String(s) => rfc3339::parse(&s)
            .map(Some)
            .map_err(|reason| fail(key, RecordErrorKind::BadTimestamp { reason })),
        other => Err(wrong_type(key, "a number or an RFC 3339 string", &other)),
    }
}

fn wrong_type(key: &str, expected: &'static str, v: &Value) -> Fail {
    fail(
        key,
        RecordErrorKind::WrongType {
            expected,
            found: type_name(v),
        },
    )
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Encodes readings as a JSON array of row records. Times that Arc's
/// inference reads as nanoseconds are integers, others RFC 3339 strings, so
/// every time decodes back exactly. Integer fields decode back as floats.
pub fn encode_rows(readings: &[Reading]) -> String {
    let rows: Vec<Value> = readings
        .iter()
        .map(|r| {
            let mut row = Map::new();
            row.insert("m".into(), Value::String(r.measurement.to_string()));
            let t = if Precision::infer(r.time_ns) == Precision::Ns {
                Value::from(r.time_ns)
            } else {
                Value::String(rfc3339::format(r.time_ns))
            };
            row.insert("t".into(), t);
            if !r.tags.is_empty() {
                let tags = r
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())));
                row.insert("tags".into(), Value::Object(tags.collect()));
            }
            let fields = r.fields.iter().map(|(k, v)| {
                let v = match v {
                    FieldValue::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
                    FieldValue::I64(i) => Value::from(*i),
                    FieldValue::U64(u) => Value::from(*u),
                    FieldValue::Bool(b) => Value::Bool(*b),
                    FieldValue::Str(s) => Value::String(s.clone()),
                };
                (k.to_string(), v)
            });
            row.insert("fields".into(), Value::Object(fields.collect()));
            Value::Object(row)
        })
        .collect();
    Value::Array(rows).to_string()
}
