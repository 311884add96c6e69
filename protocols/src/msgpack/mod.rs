//! Arc's MessagePack write formats, decoded into [`Reading`]s.
//!
//! Ferry accepts what Arc's `POST /api/v1/write/msgpack` accepts (Arc's Go
//! decoder `internal/ingest/msgpack.go`, `msgpack_typed.go`; Telegraf's
//! `outputs.arc`), so Arc clients work unchanged.
//!
//! # Body
//!
//! The body (after [`crate::compression`]) is one MessagePack value:
//!
//! * a **record** map;
//! * `{"batch": [record, ...]}` (a map with a `batch` key; its other keys are ignored);
//! * a top-level **array** `[record, ...]`, as Telegraf sends when a flush
//!   holds more than one measurement.
//!
//! A record is **columnar** if it has a `columns` key, otherwise a **row**.
//! Keys other than those below are ignored. A record's index (0 for a single
//! map) is its position in the batch or array.
//!
//! # Columnar record (what Telegraf and Arc's SDKs send)
//!
//! ```text
//! {"m": "cpu",
//!  "columns": {"time": [1700000000000, 1700000001000],
//!              "host": ["a", "b"], "usage": [45.2, nil]},
//!  "tag_keys": ["host"],                 // optional
//!  "tags": {"region": "eu"}}             // optional, Ferry only
//! ```
//!
//! * Every column is an array, and all arrays have one length: the row count.
//! * `time` is optional (missing: every row gets the caller's default time).
//!   Its unit is inferred once, from its first number, and applied to the
//!   whole column, as Arc does ([`Precision::infer`]). Elements may be
//!   integers, floats (sub-unit precision kept) or the MessagePack timestamp
//!   extension (type -1, a Ferry extension: Arc rejects it).
//! * `tag_keys` lists the columns that are tags; every other column is a
//!   field. Without `tag_keys` all columns are fields (strings become string
//!   fields), exactly as in Arc — Telegraf sends its tags that way.
//! * `nil` in a column means "absent in this row" (Telegraf back-fills
//!   columns a metric lacks with `nil`). A row left without fields is an error
//!   for that row.
//! * A column that mixes integers and floats is all floats (JavaScript
//!   encoders write `21.0` as `21`). Arc would type it by its first element.
//! * `tags` (a map of constant tags for every row) is a Ferry extension; Arc
//!   ignores it.
//!
//! # Row record (Arc's legacy format)
//!
//! ```text
//! {"m": "cpu", "t": 1700000000000, "h": "server01",
//!  "tags": {"region": "eu"}, "fields": {"usage": 45.2}}
//! ```
//!
//! * `t` is an integer or float with an inferred unit (below 1e10 seconds,
//!   below 1e13 ms, below 1e16 µs, else ns), or a timestamp extension; missing
//!   or `nil` means the caller's default time.
//! * `h` is a host tag (it wins over `tags.host`); an integer `h` is
//!   `host_<n>`. Arc adds `host=unknown` when `h` is missing; Ferry does not.
//! * `fields` is a map; if it is missing, `f` (an array) becomes fields
//!   `field_0`, `field_1`, ... as in Arc. `nil` field values are skipped.
//! * Tag values that are numbers or bools are stringified, as in Arc.
//!
//! # Both shapes
//!
//! * `m` is a string, or an integer `n` which becomes `measurement_<n>`.
//! * Integers become [`FieldValue::I64`] when they fit in i64, else
//!   [`FieldValue::U64`] — whatever the wire width, so a value's type does not
//!   depend on its magnitude or sign within i64. Floats (f32, f64) become
//!   [`FieldValue::F64`]; strings [`FieldValue::Str`] (invalid UTF-8 replaced
//!   by U+FFFD, as Arc sanitizes); bools [`FieldValue::Bool`].
//! * Per-record errors (the record is dropped, the rest go on): a missing or
//!   invalid measurement, tag or field name ([`crate::name`] rules), a
//!   non-finite float, a nested map or array, binary or extension value, a
//!   time out of the i64 nanosecond range, no fields. Columnar: a column that
//!   is not an array or has the wrong length drops the record; a bad cell
//!   drops only its row.
//! * A body that is not MessagePack (bad marker, truncated, trailing bytes, or
//!   a top-level scalar) is one [`MsgpackError`] with the byte offset.
//!
//! # Safety against hostile input
//!
//! The body's framing is checked first by a non-recursive walk; decoding then
//! reads it with the low-level `rmp` marker API, never building a generic
//! value tree. Pre-allocation from a declared length is capped by the bytes
//! left, so a forged length cannot force a large allocation. At most
//! [`MAX_RECORDED_ERRORS`] errors are kept; [`Decoded::error_count`] counts all.

mod columnar;
mod cursor;
mod encode;
mod row;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

pub use encode::{EncodeError, encode_columnar, encode_rows};

use crate::name::NameError;
use crate::reading::Reading;
#[cfg(doc)]
use crate::{reading::FieldValue, time::Precision};
use cursor::{Cursor, Header, Malformed};
use value::Fail;

/// The most record errors one [`Decoded`] keeps.
pub const MAX_RECORDED_ERRORS: usize = 100;

/// What a body decoded to: good readings, and why the others were dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    /// The first [`MAX_RECORDED_ERRORS`] errors, in body order.
    pub errors: Vec<RecordError>,
    /// How many records or columnar rows were dropped in all.
    pub error_count: usize,
}

/// The body as a whole is not a MessagePack write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("not valid MessagePack at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("{len} trailing bytes after the MessagePack value, at byte {offset}")]
    TrailingBytes { offset: usize, len: usize },
    #[error("the body is a MessagePack {found}; expected a map or an array of maps")]
    UnexpectedTopLevel { found: &'static str },
}

impl From<Malformed> for MsgpackError {
    fn from(m: Malformed) -> Self {
        MsgpackError::Malformed {
            offset: m.offset,
            reason: m.reason,
        }
    }
}

/// One dropped record (or, in a columnar record, one dropped row).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// The record's index in the batch or top-level array (0 for a single map).
    pub record: usize,
    /// The row, for an error in one row of a columnar record.
    pub row: Option<usize>,
    /// The key, column, tag or field the error is about.
    pub key: Option<String>,
    /// Byte offset of the offending value in the (decompressed) body.
    pub offset: usize,
    pub kind: RecordErrorKind,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key {key:?}")?;
        }
        write!(f, " (byte {}): {}", self.offset, self.kind)
    }
}

impl std::error::Error for RecordError {}

/// Why a record or row was dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordErrorKind {
    #[error("expected a map, found a {found}")]
    NotAMap { found: &'static str },
    #[error("a batch inside a batch is not supported")]
    NestedBatch,
    #[error("map keys must be strings, found a {found}")]
    NonStringKey { found: &'static str },
    #[error("missing measurement \"m\"")]
    MissingMeasurement,
    #[error("expected {expected}, found a {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("invalid UTF-8 in a name")]
    InvalidUtf8,
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("a {found} is not a supported field or tag value")]
    Unsupported { found: &'static str },
    #[error("non-finite float {value}")]
    NonFinite { value: f64 },
    #[error("timestamp is outside the nanosecond range (years 1677..=2262)")]
    TimeOutOfRange,
    #[error("nil timestamp in the time column")]
    NilTime,
    #[error("no fields")]
    NoFields,
    #[error("\"columns\" is empty")]
    EmptyColumns,
    #[error("column has {found} values, expected {expected}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("truncated value")]
    Truncated,
}

/// Decodes an (already decompressed) Arc MessagePack body. Readings without a
/// time get `default_time_ns`. See the module docs for the formats.
pub fn decode(body: &[u8], default_time_ns: i64) -> Result<Decoded, MsgpackError> {
    let mut framing = Cursor::new(body);
    framing.skip()?;
    if framing.pos() != body.len() {
        return Err(MsgpackError::TrailingBytes {
            offset: framing.pos(),
            len: body.len() - framing.pos(),
        });
    }

    let mut sink = Sink::default();
    let mut cur = Cursor::new(body);
    match cur.header()? {
        Header::Map(n) => match value::scan_record(&mut cur, n) {
            Err(fail) => sink.fail(0, fail),
            Ok(keys) => match keys.batch {
                Some(pos) => {
                    let mut batch = Cursor::at(body, pos);
                    match batch.header()? {
                        Header::Array(n) => {
                            decode_items(body, &mut batch, n, default_time_ns, &mut sink)?
                        }
                        other => sink.fail(
                            0,
                            Fail::new(
                                pos,
                                RecordErrorKind::WrongType {
                                    expected: "an array",
                                    found: other.type_name(),
                                },
                            )
                            .key("batch"),
                        ),
                    }
                }
                None => decode_record(body, &keys, 0, default_time_ns, &mut sink),
            },
        },
        Header::Array(n) => decode_items(body, &mut cur, n, default_time_ns, &mut sink)?,
        other => {
            return Err(MsgpackError::UnexpectedTopLevel {
                found: other.type_name(),
            });
        }
    }
    Ok(sink.into_decoded())
}

/// Decodes `n` records starting at `cur`, each independently.
fn decode_items(
    body: &[u8],
    cur: &mut Cursor<'_>,
    n: u32,
    default_time_ns: i64,
    sink: &mut Sink,
) -> Result<(), MsgpackError> {
    for index in 0..n as usize {
        let start = cur.pos();
        let mut item = Cursor::at(body, start);
        match item.header() {
            Ok(Header::Map(len)) => match value::scan_record(&mut item, len) {
                Ok(keys) if keys.batch.is_some() => {
                    sink.fail(
                        index,
                        Fail::new(start, RecordErrorKind::NestedBatch).key("batch"),
                    );
                }
                Ok(keys) => decode_record(body, &keys, index, default_time_ns, sink),
                Err(fail) => sink.fail(index, fail),
            },
            Ok(other) => sink.fail(
                index,
                Fail::new(
                    start,
                    RecordErrorKind::NotAMap {
                        found: other.type_name(),
                    },
                ),
            ),
            Err(m) => sink.fail(index, Fail::from(m)),
        }
        cur.skip()?;
    }
    Ok(())
}

fn decode_record(
    body: &[u8],
    keys: &value::RecordKeys,
    index: usize,
    default_time_ns: i64,
    sink: &mut Sink,
) {
    if keys.columns.is_some() {
        if let Err(fail) = columnar::decode(body, keys, index, default_time_ns, sink) {
            sink.fail(index, fail);
        }
    } else {
        match row::decode(body, keys, default_time_ns) {
            Ok(reading) => sink.readings.push(reading),
            Err(fail) => sink.fail(index, fail),
        }
    }
}

/// Collects readings and errors while decoding.
#[derive(Debug, Default)]
struct Sink {
    readings: Vec<Reading>,
    errors: Vec<RecordError>,
    error_count: usize,
}

impl Sink {
    fn fail(&mut self, record: usize, fail: Fail) {
        self.error_count += 1;
        if self.errors.len() < MAX_RECORDED_ERRORS {
            self.errors.push(fail.into_error(record));
        }
    }

    fn into_decoded(self) -> Decoded {
        Decoded {
            readings: self.readings,
            errors: self.errors,
            error_count: self.error_count,
        }
    }
}
