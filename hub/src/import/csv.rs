//! CSV files: a header row (after `skip_rows` lines), a time column, tag
//! columns, and every other column a field.
//!
//! A field's type is `types`' when given, else inferred from the first
//! [`SAMPLE_ROWS`] records: all numbers is `f64`, all `true`/`false` (or `t`/`f`) is
//! `bool`, anything else `str` (a column empty in the sample is `f64`).
//! Numbers become `f64` rather than `i64` because exports print whole
//! floats without a decimal point (`20` for 20.0, as InfluxDB's CSV
//! export does), and a column inferred `i64` would reject the file's
//! first `20.5`; pass `types=count:i64` for integer fields. Empty values
//! are absent fields (or no tag); a record with no field value, a bad
//! time, or a value that does not parse as its column's type is rejected
//! with the reason, and the rest of the file goes on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use csv::{ByteRecord, Reader, ReaderBuilder};
use ferry_protocols::lines::{TimeFormat, ValueKind, parse_text, parse_time_text};
use ferry_protocols::{FieldKey, Measurement, Reading, TagKey};

use super::options::ImportOptions;
use super::source::{Chunk, Guarded, Source, read_line_capped};
use crate::ingest::write::Locator;

/// Records read to infer the field types.
pub(crate) const SAMPLE_ROWS: usize = 1000;

enum Role {
    Ignore,
    Time,
    Tag(TagKey),
    Field(FieldKey, ValueKind),
}

pub(crate) struct CsvSource {
    reader: Reader<Guarded<BufReader<File>>>,
    since: Arc<AtomicU64>,
    measurement: Measurement,
    time_format: TimeFormat,
    columns: Vec<Role>,
    /// Records read for the type sample, not yet handed out.
    sample: VecDeque<(u64, Result<ByteRecord, String>)>,
    /// Bytes of the `skip_rows` lines.
    skipped: u64,
    done: bool,
}

fn text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| "not valid UTF-8".to_owned())
}

/// The line a record starts on (the reader's position before it when the
/// record does not know).
fn record_line(record: &ByteRecord, before: u64) -> u64 {
    record.position().map_or(before, csv::Position::line)
}

fn infer(values: impl Iterator<Item = String>) -> ValueKind {
    let mut kind: Option<ValueKind> = None;
    for v in values {
        let this = if v.parse::<f64>().is_ok_and(f64::is_finite) {
            ValueKind::F64
        } else if ["true", "false", "t", "f"]
            .iter()
            .any(|b| v.eq_ignore_ascii_case(b))
        {
            ValueKind::Bool
        } else {
            return ValueKind::Str;
        };
        match kind {
            None => kind = Some(this),
            Some(k) if k != this => return ValueKind::Str,
            Some(_) => {}
        }
    }
    kind.unwrap_or(ValueKind::F64)
}

impl CsvSource {
    pub(crate) fn open(
        file: File,
        options: &ImportOptions,
        max_record: usize,
    ) -> Result<CsvSource, String> {
        let mut buffered = BufReader::with_capacity(1 << 20, file);
        let mut skipped = 0u64;
        let mut scratch = Vec::new();
        for _ in 0..options.skip_rows {
            scratch.clear();
            let (n, _) = read_line_capped(&mut buffered, &mut scratch, max_record)
                .map_err(|e| format!("reading the file: {e}"))?;
            skipped += n;
        }
        let (guarded, since) = Guarded::new(buffered, max_record as u64);
        let mut reader = ReaderBuilder::new()
            .delimiter(options.delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(guarded);
        let header = reader
            .byte_headers()
            .map_err(|e| format!("reading the header row: {e}"))?
            .clone();
        since.store(0, Ordering::Relaxed);
        let measurement = Measurement::new(options.measurement.as_deref().unwrap_or(""))
            .map_err(|e| format!("measurement: {e}"))?;
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = text(raw).map_err(|e| format!("header column {}: {e}", i + 1))?;
            let name = name.trim_start_matches('\u{feff}').trim();
            if name.is_empty() {
                return Err(format!(
                    "header column {} has no name (check the delimiter and for a trailing delimiter)",
                    i + 1
                ));
            }
            if names.contains(&name.to_owned()) {
                return Err(format!("header names column {name:?} twice"));
            }
            names.push(name.to_owned());
        }
        if !names.contains(&options.time_column) {
            return Err(format!(
                "the time column {:?} is not in the header ({}); set time_column",
                options.time_column,
                names.join(", ")
            ));
        }
        for t in options.tag_columns.iter().chain(&options.ignore_columns) {
            if !names.contains(t) {
                return Err(format!("column {t:?} is not in the header"));
            }
        }
        for t in options.types.keys() {
            if !names.contains(t) || options.tag_columns.contains(t) || *t == options.time_column {
                return Err(format!("types names {t:?}, which is not a field column"));
            }
        }
        let mut sample = VecDeque::new();
        let mut record = ByteRecord::new();
        let mut done = false;
        while sample.len() < SAMPLE_ROWS {
            let line = reader.position().line();
            match reader.read_byte_record(&mut record) {
                Ok(true) => sample.push_back((record_line(&record, line), Ok(record.clone()))),
                Ok(false) => {
                    done = true;
                    break;
                }
                Err(e) if e.is_io_error() => return Err(format!("reading the file: {e}")),
                Err(e) => sample.push_back((line, Err(e.to_string()))),
            }
            since.store(0, Ordering::Relaxed);
        }
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let role = if *name == options.time_column {
                Role::Time
            } else if options.ignore_columns.contains(name) {
                Role::Ignore
            } else if options.tag_columns.contains(name) {
                Role::Tag(TagKey::new(name.as_str()).map_err(|e| format!("column {name:?}: {e}"))?)
            } else {
                let key = FieldKey::new(name.as_str())
                    .map_err(|e| format!("column {name:?} cannot be a field: {e}"))?;
                let kind = options.types.get(name).copied().unwrap_or_else(|| {
                    infer(sample.iter().filter_map(|(_, r)| {
                        let r = r.as_ref().ok()?;
                        let v = text(r.get(i)?).ok()?.trim();
                        (!v.is_empty()).then(|| v.to_owned())
                    }))
                });
                Role::Field(key, kind)
            };
            columns.push(role);
        }
        if !columns.iter().any(|c| matches!(c, Role::Field(..))) {
            return Err("the file has no field column (only time and tags)".to_owned());
        }
        Ok(CsvSource {
            reader,
            since,
            measurement,
            time_format: options.time_format,
            columns,
            sample,
            skipped,
            done,
        })
    }

    fn reading(&self, record: &ByteRecord) -> Result<Reading, String> {
        if record.len() > self.columns.len() {
            return Err(format!(
                "{} values, the header has {} columns",
                record.len(),
                self.columns.len()
            ));
        }
        let mut time = None;
        let mut reading = Reading::new(self.measurement.clone(), 0);
        for (role, raw) in self.columns.iter().zip(record.iter()) {
            let value = text(raw)?.trim();
            match role {
                Role::Time => {
                    let t = parse_time_text(value, self.time_format)
                        .map_err(|e| format!("time: {e}"))?;
                    time = Some(t);
                }
                Role::Tag(key) if !value.is_empty() => {
                    reading.tags.insert(key.clone(), value.to_owned());
                }
                Role::Field(key, kind) if !value.is_empty() => {
                    let v = parse_text(value, *kind).map_err(|e| format!("{key}: {e}"))?;
                    reading.fields.insert(key.clone(), v);
                }
                _ => {}
            }
        }
        reading.time_ns = time.ok_or("no time value")?;
        if reading.fields.is_empty() {
            return Err("no field values".to_owned());
        }
        Ok(reading)
    }

    fn take(&mut self, chunk: &mut Chunk, line: u64, record: Result<&ByteRecord, String>) {
        let at = Locator::Line(line);
        match record.and_then(|r| self.reading(r)) {
            Ok(r) => chunk.readings.push((at, r)),
            Err(e) => chunk.rejected.push((at, e)),
        }
    }
}

impl Source for CsvSource {
    fn next_chunk(&mut self, rows: usize) -> Result<Option<Chunk>, String> {
        let mut chunk = Chunk::default();
        let mut n = 0;
        while n < rows {
            let Some((line, record)) = self.sample.pop_front() else {
                break;
            };
            self.take(&mut chunk, line, record.as_ref().map_err(Clone::clone));
            n += 1;
        }
        let mut record = ByteRecord::new();
        while n < rows && !self.done {
            let line = self.reader.position().line();
            match self.reader.read_byte_record(&mut record) {
                Ok(true) => {
                    let line = record_line(&record, line);
                    self.take(&mut chunk, line, Ok(&record));
                }
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) if e.is_io_error() => return Err(format!("reading the file: {e}")),
                Err(e) => chunk.rejected.push((Locator::Line(line), e.to_string())),
            }
            self.since.store(0, Ordering::Relaxed);
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        chunk.bytes_done = self.skipped + self.reader.position().byte();
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_prefers_f64_for_numbers_and_falls_back_to_str() {
        let v = |xs: &[&str]| infer(xs.iter().map(|s| (*s).to_owned()));
        assert_eq!(v(&["1", "2.5", "-3e2"]), ValueKind::F64);
        assert_eq!(v(&["true", "FALSE", "t", "f"]), ValueKind::Bool);
        assert_eq!(v(&["1", "x"]), ValueKind::Str);
        assert_eq!(v(&["true", "1"]), ValueKind::Str);
        assert_eq!(v(&["NaN"]), ValueKind::Str);
        assert_eq!(v(&[]), ValueKind::F64);
    }
}
