//! Encoding query results: JSON (Arc's shape), CSV and Arrow IPC.
//!
//! Every format is produced from the same Arrow record batches.
//!
//! # JSON
//!
//! `{"success": true, "columns": [...], "data": [[row], ...], "row_count": n,
//! "execution_time_ms": t, "timestamp": "<RFC 3339>", "truncated": bool}` —
//! Arc's reply (its client requires `success`), plus `truncated`. Values: integers and floats as JSON numbers (NaN and
//! infinities as `null`, which JSON cannot hold), booleans, strings (tag
//! dictionaries decoded), timestamps as RFC 3339 strings in UTC
//! (`2026-11-26T12:00:00.123456Z`, fraction digits as needed), dates as
//! `YYYY-MM-DD`, anything else as Arrow's display string.
//!
//! # CSV and Arrow
//!
//! CSV has a header row and Arrow's formatting (timestamps RFC 3339).
//! Arrow is an IPC *stream* (`application/vnd.apache.arrow.stream`). Both
//! report truncation and the row count in the headers `x-ferry-truncated`
//! and `x-ferry-row-count`.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, temporal_conversions as tc};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;
use serde_json::Value;

use super::engine::QueryOutput;

/// The JSON answer.
#[derive(Debug, Serialize)]
pub struct JsonAnswer {
    /// Always `true` (errors are answered with an error status and body);
    /// Arc's clients require the field.
    pub success: bool,
    pub columns: Vec<String>,
    pub data: Vec<Vec<Value>>,
    pub row_count: usize,
    pub execution_time_ms: u64,
    /// When the answer was made (UTC).
    pub timestamp: String,
    pub truncated: bool,
}

/// Builds the JSON answer.
pub fn to_json(output: &QueryOutput, execution_time_ms: u64) -> Result<JsonAnswer, ArrowError> {
    let columns = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut data: Vec<Vec<Value>> = Vec::with_capacity(output.row_count);
    for batch in &output.batches {
        let cols: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            data.push(
                cols.iter()
                    .map(|c| c.get(row).cloned().unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    Ok(JsonAnswer {
        success: true,
        columns,
        row_count: data.len(),
        data,
        execution_time_ms,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        truncated: output.truncated,
    })
}

/// CSV with a header row.
pub fn to_csv(output: &QueryOutput) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = deltalake::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        if output.batches.is_empty() {
            let empty = RecordBatch::new_empty(plain_schema(&output.schema));
            writer.write(&empty)?;
        }
        for batch in &output.batches {
            writer.write(&plain_batch(batch)?)?;
        }
    }
    Ok(buf)
}

/// An Arrow IPC stream.
pub fn to_arrow(output: &QueryOutput) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer =
            deltalake::arrow::ipc::writer::StreamWriter::try_new(&mut buf, &output.schema)?;
        for batch in &output.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    Ok(buf)
}

/// The schema with dictionary columns replaced by their value type.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, v) => f.as_ref().clone().with_data_type(v.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The batch with dictionary columns decoded (the CSV writer's need).
fn plain_batch(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = plain_schema(batch.schema_ref());
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(_, v) => cast(c, v),
            _ => Ok(Arc::clone(c)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

fn ints<I>(values: impl Iterator<Item = Option<I>>) -> Vec<Value>
where
    Value: From<I>,
{
    values
        .map(|v| v.map(Value::from).unwrap_or(Value::Null))
        .collect()
}

fn float(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// One column as JSON values.
fn column_values(col: &ArrayRef) -> Result<Vec<Value>, ArrowError> {
    Ok(match col.data_type() {
        DataType::Null => vec![Value::Null; col.len()],
        DataType::Boolean => col
            .as_boolean()
            .iter()
            .map(|v| v.map(Value::Bool).unwrap_or(Value::Null))
            .collect(),
        DataType::Int8 => ints(col.as_primitive::<Int8Type>().iter()),
        DataType::Int16 => ints(col.as_primitive::<Int16Type>().iter()),
        DataType::Int32 => ints(col.as_primitive::<Int32Type>().iter()),
        DataType::Int64 => ints(col.as_primitive::<Int64Type>().iter()),
        DataType::UInt8 => ints(col.as_primitive::<UInt8Type>().iter()),
        DataType::UInt16 => ints(col.as_primitive::<UInt16Type>().iter()),
        DataType::UInt32 => ints(col.as_primitive::<UInt32Type>().iter()),
        DataType::UInt64 => ints(col.as_primitive::<UInt64Type>().iter()),
        DataType::Float32 => col
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| float(v.map(f64::from)))
            .collect(),
        DataType::Float64 => col
            .as_primitive::<Float64Type>()
            .iter()
            .map(float)
            .collect(),
        DataType::Utf8 => strings(col.as_string::<i32>().iter()),
        DataType::LargeUtf8 => strings(col.as_string::<i64>().iter()),
        DataType::Utf8View => strings(col.as_string_view().iter()),
        DataType::Dictionary(_, value) => column_values(&cast(col, value)?)?,
        DataType::Timestamp(unit, _) => timestamps(col, *unit)?,
        _ => {
            let options = FormatOptions::default().with_null("");
            let formatter = ArrayFormatter::try_new(col.as_ref(), &options)?;
            (0..col.len())
                .map(|i| {
                    if col.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(i).to_string())
                    }
                })
                .collect()
        }
    })
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Value> {
    values
        .map(|v| {
            v.map(|s| Value::String(s.to_owned()))
                .unwrap_or(Value::Null)
        })
        .collect()
}

/// Timestamps as RFC 3339 in UTC (Arrow stores UTC instants whatever the
/// column's time zone).
fn timestamps(col: &ArrayRef, unit: TimeUnit) -> Result<Vec<Value>, ArrowError> {
    let as_i64 = cast(col, &DataType::Int64)?;
    let values = as_i64.as_primitive::<Int64Type>();
    let convert = match unit {
        TimeUnit::Second => tc::timestamp_s_to_datetime,
        TimeUnit::Millisecond => tc::timestamp_ms_to_datetime,
        TimeUnit::Microsecond => tc::timestamp_us_to_datetime,
        TimeUnit::Nanosecond => tc::timestamp_ns_to_datetime,
    };
    Ok(values
        .iter()
        .map(|v| {
            v.and_then(convert)
                .map(|dt| Value::String(dt.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()))
                .unwrap_or(Value::Null)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        DictionaryArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };

    fn output() -> QueryOutput {
        let time: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![
                1_700_000_000_123_000_000,
                1_700_000_001_000_000_000,
            ])
            .with_timezone("UTC"),
        );
        let tag: ArrayRef = Arc::new(
            vec![Some("a"), None]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        let f: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)]));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(7)]));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        let batch = RecordBatch::try_from_iter(vec![
            ("time", time),
            ("host", tag),
            ("f", f),
            ("i", i),
            ("s", s),
        ])
        .unwrap();
        QueryOutput::from_batches(batch.schema(), vec![batch], 10)
    }

    #[test]
    fn json_values() {
        let j = to_json(&output(), 3).unwrap();
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(
            v["data"],
            serde_json::json!([
                ["2023-11-14T22:13:20.123Z", "a", 1.5, null, "x"],
                ["2023-11-14T22:13:21Z", null, null, 7, "y"]
            ])
        );
        assert_eq!(v["row_count"], 2);
        assert_eq!(v["success"], true);
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(v["columns"][1], "host");
    }

    #[test]
    fn csv_and_arrow() {
        let csv = String::from_utf8(to_csv(&output()).unwrap()).unwrap();
        assert!(csv.starts_with("time,host,f,i,s\n"), "{csv}");
        assert_eq!(csv.lines().count(), 3);
        let ipc = to_arrow(&output()).unwrap();
        let reader =
            deltalake::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
                .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
    }

    #[test]
    fn truncation() {
        let out = output();
        let cut = QueryOutput::from_batches(out.schema.clone(), out.batches, 1);
        assert!(cut.truncated);
        assert_eq!(cut.row_count, 1);
    }
}
