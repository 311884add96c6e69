//! Parquet files: a time column (a timestamp of any unit, an integer epoch
//! read by `time_format`, or text), tag columns (text), and every other
//! column a field: floats and decimals `f64`, signed integers `i64`,
//! unsigned `u64`, booleans `bool`, text `str` (dates and timestamps
//! besides the time column are stored as their text). `types` overrides a
//! field's type. Nested and binary columns are refused before a job is
//! made. Rows are read a batch at a time, never the whole file.

use std::fs::File;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use deltalake::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use ferry_protocols::lines::{TimeFormat, ValueKind, parse_time_text};
use ferry_protocols::time::infer_float_to_nanos;
use ferry_protocols::{FieldKey, FieldValue, Measurement, Precision, Reading, TagKey};

use super::options::ImportOptions;
use super::source::{Chunk, Source};
use crate::ingest::write::Locator;

enum Role {
    Ignore,
    Time,
    Tag(TagKey),
    Field(FieldKey, ValueKind),
}

pub(crate) struct ParquetSource {
    reader: ParquetRecordBatchReader,
    /// Rows of the current batch not handed out yet.
    pending: Option<(RecordBatch, usize)>,
    columns: Vec<Role>,
    measurement: Measurement,
    time_format: TimeFormat,
    rows_total: u64,
    rows_read: u64,
    bytes_total: u64,
}

fn kind_of(data_type: &DataType) -> Option<ValueKind> {
    use DataType as D;
    Some(match data_type {
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) | D::Decimal256(..) => {
            ValueKind::F64
        }
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => ValueKind::I64,
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => ValueKind::U64,
        D::Boolean => ValueKind::Bool,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => ValueKind::Str,
        D::Date32 | D::Date64 | D::Timestamp(..) | D::Time32(_) | D::Time64(_) => ValueKind::Str,
        D::Dictionary(_, value) => return kind_of(value),
        _ => return None,
    })
}

fn target(kind: ValueKind) -> DataType {
    match kind {
        ValueKind::F64 => DataType::Float64,
        ValueKind::I64 => DataType::Int64,
        ValueKind::U64 => DataType::UInt64,
        ValueKind::Bool => DataType::Boolean,
        ValueKind::Str => DataType::Utf8,
    }
}

impl ParquetSource {
    pub(crate) fn open(
        file: File,
        bytes_total: u64,
        options: &ImportOptions,
    ) -> Result<ParquetSource, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format!("not a readable Parquet file: {e}"))?;
        let rows_total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        if !names.contains(&options.time_column.as_str()) {
            return Err(format!(
                "the time column {:?} is not in the file ({}); set time_column",
                options.time_column,
                names.join(", ")
            ));
        }
        for t in options
            .tag_columns
            .iter()
            .chain(options.types.keys())
            .chain(&options.ignore_columns)
        {
            if !names.contains(&t.as_str()) {
                return Err(format!("column {t:?} is not in the file"));
            }
        }
        let mut columns = Vec::with_capacity(names.len());
        for field in schema.fields() {
            let name = field.name();
            let role = if options.ignore_columns.contains(name) {
                Role::Ignore
            } else if *name == options.time_column {
                match field.data_type() {
                    DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Int64
                    | DataType::Int32
                    | DataType::UInt64
                    | DataType::Float64
                    | DataType::Utf8
                    | DataType::LargeUtf8 => Role::Time,
                    other => {
                        return Err(format!("time column {name:?} has type {other}, not a time"));
                    }
                }
            } else if options.tag_columns.contains(name) {
                if kind_of(field.data_type()) != Some(ValueKind::Str) {
                    return Err(format!(
                        "tag column {name:?} has type {}; tags are text",
                        field.data_type()
                    ));
                }
                Role::Tag(TagKey::new(name.as_str()).map_err(|e| format!("column {name:?}: {e}"))?)
            } else {
                let key = FieldKey::new(name.as_str())
                    .map_err(|e| format!("column {name:?} cannot be a field: {e}"))?;
                let kind = match options.types.get(name) {
                    Some(k) => *k,
                    None => kind_of(field.data_type()).ok_or_else(|| {
                        format!(
                            "column {name:?} has type {}, which Ferry cannot store (write the file without it)",
                            field.data_type()
                        )
                    })?,
                };
                Role::Field(key, kind)
            };
            columns.push(role);
        }
        if !columns.iter().any(|c| matches!(c, Role::Field(..))) {
            return Err("the file has no field column (only time and tags)".to_owned());
        }
        let batch = options.chunk_rows.clamp(1, 65_536);
        let reader = builder
            .with_batch_size(batch)
            .build()
            .map_err(|e| format!("reading the Parquet file: {e}"))?;
        Ok(ParquetSource {
            reader,
            pending: None,
            columns,
            measurement: Measurement::new(options.measurement.as_deref().unwrap_or(""))
                .map_err(|e| format!("measurement: {e}"))?,
            time_format: options.time_format,
            rows_total,
            rows_read: 0,
            bytes_total,
        })
    }

    /// The time of every row (`Err` with why for a row without one).
    fn times(&self, array: &ArrayRef) -> Result<Vec<Result<i64, String>>, String> {
        let n = array.len();
        let unit = match self.time_format {
            TimeFormat::S => Some(Precision::S),
            TimeFormat::Ms => Some(Precision::Ms),
            TimeFormat::Us => Some(Precision::Us),
            TimeFormat::Ns => Some(Precision::Ns),
            TimeFormat::Auto | TimeFormat::Rfc3339 => None,
        };
        let null = || Err("no time value".to_owned());
        let range = || Err("time out of range".to_owned());
        let out = match array.data_type() {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                let ns = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))
                    .map_err(|e| format!("time column: {e}"))?;
                let ns = ns.as_primitive::<TimestampNanosecondType>();
                (0..n)
                    .map(|i| {
                        if ns.is_null(i) {
                            null()
                        } else {
                            Ok(ns.value(i))
                        }
                    })
                    .collect()
            }
            DataType::Float64 => {
                let f = array.as_primitive::<Float64Type>();
                (0..n)
                    .map(|i| {
                        if f.is_null(i) {
                            return null();
                        }
                        let v = f.value(i);
                        let ns = match unit {
                            Some(u) => {
                                let ns = v * u.nanos_per_unit() as f64;
                                (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64)
                            }
                            None => infer_float_to_nanos(v),
                        };
                        ns.map_or_else(range, Ok)
                    })
                    .collect()
            }
            DataType::Utf8 | DataType::LargeUtf8 => {
                let s = cast(array, &DataType::Utf8).map_err(|e| format!("time column: {e}"))?;
                let s = s.as_string::<i32>();
                (0..n)
                    .map(|i| {
                        if s.is_null(i) {
                            return null();
                        }
                        parse_time_text(s.value(i), self.time_format).map_err(|e| e.to_string())
                    })
                    .collect()
            }
            _ => {
                let v = cast(array, &DataType::Int64).map_err(|e| format!("time column: {e}"))?;
                let v = v.as_primitive::<Int64Type>();
                (0..n)
                    .map(|i| {
                        if v.is_null(i) {
                            return null();
                        }
                        let t = v.value(i);
                        let ns = match unit {
                            Some(u) => u.to_nanos(t),
                            None => Precision::infer_to_nanos(t),
                        };
                        ns.map_or_else(range, Ok)
                    })
                    .collect()
            }
        };
        Ok(out)
    }

    /// Rows `[from, to)` of `batch` as readings.
    fn convert(
        &self,
        batch: &RecordBatch,
        from: usize,
        to: usize,
        chunk: &mut Chunk,
    ) -> Result<(), String> {
        let batch = batch.slice(from, to - from);
        let mut times = Vec::new();
        let mut typed: Vec<Option<ArrayRef>> = Vec::with_capacity(self.columns.len());
        for (role, array) in self.columns.iter().zip(batch.columns()) {
            match role {
                Role::Time => {
                    times = self.times(array)?;
                    typed.push(None);
                }
                Role::Ignore => typed.push(None),
                Role::Tag(_) => typed.push(Some(
                    cast(array, &DataType::Utf8).map_err(|e| format!("tag column: {e}"))?,
                )),
                Role::Field(key, kind) => typed.push(Some(
                    cast(array, &target(*kind)).map_err(|e| format!("column {key}: {e}"))?,
                )),
            }
        }
        for (row, time) in times.into_iter().enumerate() {
            let at = Locator::Record(self.rows_read + row as u64);
            let time = match time {
                Ok(t) => t,
                Err(e) => {
                    chunk.rejected.push((at, format!("time: {e}")));
                    continue;
                }
            };
            let mut reading = Reading::new(self.measurement.clone(), time);
            for (role, array) in self.columns.iter().zip(&typed) {
                let Some(a) = array else { continue };
                if a.is_null(row) {
                    continue;
                }
                match role {
                    Role::Tag(k) => {
                        let v = a.as_string::<i32>().value(row);
                        if !v.is_empty() {
                            reading.tags.insert(k.clone(), v.to_owned());
                        }
                    }
                    Role::Field(k, kind) => {
                        let v = match kind {
                            ValueKind::F64 => {
                                let v = a.as_primitive::<Float64Type>().value(row);
                                if !v.is_finite() {
                                    continue;
                                }
                                FieldValue::F64(v)
                            }
                            ValueKind::I64 => {
                                FieldValue::I64(a.as_primitive::<Int64Type>().value(row))
                            }
                            ValueKind::U64 => {
                                FieldValue::U64(a.as_primitive::<UInt64Type>().value(row))
                            }
                            ValueKind::Bool => FieldValue::Bool(a.as_boolean().value(row)),
                            ValueKind::Str => {
                                FieldValue::Str(a.as_string::<i32>().value(row).to_owned())
                            }
                        };
                        reading.fields.insert(k.clone(), v);
                    }
                    Role::Time | Role::Ignore => {}
                }
            }
            if reading.fields.is_empty() {
                chunk.rejected.push((at, "no field values".to_owned()));
            } else {
                chunk.readings.push((at, reading));
            }
        }
        Ok(())
    }
}

impl Source for ParquetSource {
    fn next_chunk(&mut self, rows: usize) -> Result<Option<Chunk>, String> {
        let mut chunk = Chunk::default();
        let mut taken = 0usize;
        while taken < rows {
            let (batch, offset) = match self.pending.take() {
                Some(p) => p,
                None => match self.reader.next() {
                    Some(Ok(b)) => (b, 0),
                    Some(Err(e)) => return Err(format!("reading the Parquet file: {e}")),
                    None => break,
                },
            };
            let end = batch.num_rows().min(offset + (rows - taken));
            self.convert(&batch, offset, end, &mut chunk)?;
            let n = end - offset;
            taken += n;
            self.rows_read += n as u64;
            if end < batch.num_rows() {
                self.pending = Some((batch, end));
            }
        }
        if taken == 0 {
            return Ok(None);
        }
        chunk.bytes_done = if self.rows_total == 0 {
            self.bytes_total
        } else {
            let done = u128::from(self.bytes_total) * u128::from(self.rows_read)
                / u128::from(self.rows_total);
            u64::try_from(done).unwrap_or(self.bytes_total)
        };
        Ok(Some(chunk))
    }
}
