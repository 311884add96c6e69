//! Columnar records: `{"m", "columns": {name: [..]}, "tag_keys", "tags"}`.
//!
//! Column-level problems (a bad name, not an array, a wrong length) fail the
//! whole record. Cell-level problems fail only their row: the other rows are
//! kept, and the row's first problem is reported with its row index.

use std::collections::BTreeMap;

use crate::name::{FieldKey, TIME_COLUMN, TagKey};
use crate::reading::{FieldValue, Reading, Tags};
use crate::time::Precision;

use super::cursor::{Cursor, Header};
use super::value::{self, Fail, RecordKeys};
use super::{RecordErrorKind, Sink};

/// The decoded cells of one record, column by column.
struct Columns {
    rows: Option<usize>,
    time: Option<Vec<i64>>,
    tags: Vec<(TagKey, Vec<Option<String>>)>,
    fields: Vec<(FieldKey, Vec<Option<FieldValue>>)>,
    /// The first problem of each bad row.
    bad_rows: BTreeMap<usize, Fail>,
}

impl Columns {
    fn bad(&mut self, row: usize, fail: Fail) {
        self.bad_rows.entry(row).or_insert_with(|| fail.row(row));
    }
}

/// Decodes one columnar record into `sink`. Returns `Err` if the whole record
/// is rejected; row errors go to `sink` directly.
pub(super) fn decode(
    body: &[u8],
    keys: &RecordKeys,
    record: usize,
    default_time_ns: i64,
    sink: &mut Sink,
) -> Result<(), Fail> {
    let measurement = value::measurement(body, keys)?;
    let tag_keys = match keys.tag_keys {
        Some(pos) => read_tag_keys(body, pos)?,
        None => Vec::new(),
    };
    let mut static_tags = Tags::new();
    if let Some(pos) = keys.tags {
        value::read_tags(body, pos, &mut static_tags)?;
    }

    let pos = keys.columns.unwrap_or(keys.start);
    let mut cur = Cursor::at(body, pos);
    let n = match cur.header()? {
        Header::Map(0) => return Err(Fail::new(pos, RecordErrorKind::EmptyColumns).key("columns")),
        Header::Map(n) => n,
        other => {
            return Err(Fail::new(
                pos,
                RecordErrorKind::WrongType {
                    expected: "a map",
                    found: other.type_name(),
                },
            )
            .key("columns"));
        }
    };

    let mut cols = Columns {
        rows: None,
        time: None,
        tags: Vec::new(),
        fields: Vec::new(),
        bad_rows: BTreeMap::new(),
    };
    for _ in 0..n {
        let (name, at) = value::map_key(&mut cur)?;
        let fail = |kind| Fail::new(at, kind).key(name);
        let array_at = cur.pos();
        let len = match cur.header()? {
            Header::Array(len) => len as usize,
            other => {
                return Err(Fail::new(
                    array_at,
                    RecordErrorKind::WrongType {
                        expected: "an array",
                        found: other.type_name(),
                    },
                )
                .key(name));
            }
        };
        match cols.rows {
            None => cols.rows = Some(len),
            Some(expected) if expected != len => {
                return Err(Fail::new(
                    array_at,
                    RecordErrorKind::LengthMismatch {
                        expected,
                        found: len,
                    },
                )
                .key(name));
            }
            Some(_) => {}
        }
        // Every cell takes at least a byte, so this caps a forged length.
        let capacity = len.min(cur.remaining());
        if name == TIME_COLUMN {
            let times = time_column(&mut cur, len, capacity, default_time_ns, &mut cols, name)?;
            cols.time = Some(times);
        } else if tag_keys.iter().any(|k| k == name) {
            let key = TagKey::new(name).map_err(|e| fail(e.into()))?;
            let mut cells = Vec::with_capacity(capacity);
            for row in 0..len {
                let at = cur.pos();
                match value::tag_value(cur.value()?) {
                    Ok(v) => cells.push(v),
                    Err(kind) => {
                        cells.push(None);
                        cols.bad(row, Fail::new(at, kind).key(name));
                    }
                }
            }
            cols.tags.push((key, cells));
        } else {
            let key = FieldKey::new(name).map_err(|e| fail(e.into()))?;
            let mut cells = Vec::with_capacity(capacity);
            for row in 0..len {
                let at = cur.pos();
                match value::field_value(cur.value()?) {
                    Ok(v) => cells.push(v),
                    Err(kind) => {
                        cells.push(None);
                        cols.bad(row, Fail::new(at, kind).key(name));
                    }
                }
            }
            promote_mixed_numbers(&mut cells);
            cols.fields.push((key, cells));
        }
    }

    let rows = cols.rows.unwrap_or(0);
    sink.readings.reserve(rows);
    for row in 0..rows {
        if let Some(fail) = cols.bad_rows.remove(&row) {
            sink.fail(record, fail);
            continue;
        }
        let time_ns = cols
            .time
            .as_ref()
            .and_then(|t| t.get(row).copied())
            .unwrap_or(default_time_ns);
        let mut reading = Reading::new(measurement.clone(), time_ns);
        reading.tags = static_tags.clone();
        for (key, cells) in &mut cols.tags {
            if let Some(v) = cells.get_mut(row).and_then(Option::take) {
                reading.tags.insert(key.clone(), v);
            }
        }
        for (key, cells) in &mut cols.fields {
            if let Some(v) = cells.get_mut(row).and_then(Option::take) {
                reading.fields.insert(key.clone(), v);
            }
        }
        if reading.fields.is_empty() {
            let at = keys.columns.unwrap_or(keys.start);
            sink.fail(record, Fail::new(at, RecordErrorKind::NoFields).row(row));
            continue;
        }
        sink.readings.push(reading);
    }
    Ok(())
}

/// `"tag_keys": ["host", ...]`.
fn read_tag_keys(body: &[u8], pos: usize) -> Result<Vec<String>, Fail> {
    let mut cur = Cursor::at(body, pos);
    let n = match cur.header()? {
        Header::Array(n) => n as usize,
        Header::Nil => return Ok(Vec::new()),
        other => {
            return Err(Fail::new(
                pos,
                RecordErrorKind::WrongType {
                    expected: "an array of strings",
                    found: other.type_name(),
                },
            )
            .key("tag_keys"));
        }
    };
    let mut keys = Vec::with_capacity(n.min(cur.remaining()));
    for _ in 0..n {
        let at = cur.pos();
        match cur.value()? {
            Header::Str(s) => {
                let s = value::name_str(s).map_err(|kind| Fail::new(at, kind).key("tag_keys"))?;
                keys.push(s.to_owned());
            }
            other => {
                return Err(Fail::new(
                    at,
                    RecordErrorKind::WrongType {
                        expected: "a string",
                        found: other.type_name(),
                    },
                )
                .key("tag_keys"));
            }
        }
    }
    Ok(keys)
}

/// Decodes the time column; its unit comes from its first number (Arc).
fn time_column(
    cur: &mut Cursor<'_>,
    len: usize,
    capacity: usize,
    default_time_ns: i64,
    cols: &mut Columns,
    name: &str,
) -> Result<Vec<i64>, Fail> {
    let mut times = Vec::with_capacity(capacity);
    let mut unit: Option<Precision> = None;
    for row in 0..len {
        let at = cur.pos();
        let h = cur.value()?;
        if unit.is_none() {
            unit = value::column_unit(h);
        }
        match value::column_time(h, unit.unwrap_or(Precision::Ns)) {
            Ok(t) => times.push(t),
            Err(kind) => {
                times.push(default_time_ns);
                cols.bad(row, Fail::new(at, kind).key(name));
            }
        }
    }
    Ok(times)
}

/// Integers in a column that also holds floats become floats.
fn promote_mixed_numbers(cells: &mut [Option<FieldValue>]) {
    let has_float = cells.iter().any(|c| matches!(c, Some(FieldValue::F64(_))));
    let has_int = cells
        .iter()
        .any(|c| matches!(c, Some(FieldValue::I64(_) | FieldValue::U64(_))));
    if !(has_float && has_int) {
        return;
    }
    for cell in cells.iter_mut().flatten() {
        match *cell {
            FieldValue::I64(i) => *cell = FieldValue::F64(i as f64),
            FieldValue::U64(u) => *cell = FieldValue::F64(u as f64),
            _ => {}
        }
    }
}
