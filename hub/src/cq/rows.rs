//! Windows, and a query's answer turned into rows to write.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimestampNanosecondType};
use ferry_protocols::batch::{
    field_column, field_data_type, field_type_of, tag_column, tag_data_type, time_column,
    time_data_type,
};
use ferry_protocols::name::TIME_COLUMN;
use ferry_protocols::reading::FieldType;
use ferry_protocols::{FieldKey, TagKey};

use crate::table::rfc3339_ns;

/// Nanoseconds in a millisecond.
pub const NS_PER_MS: i64 = 1_000_000;

/// The start of the window (of `interval_ms`, aligned on the Unix epoch)
/// holding `ms`.
pub fn floor(ms: i64, interval_ms: i64) -> i64 {
    ms - ms.rem_euclid(interval_ms)
}

/// `{start_time}` and `{end_time}` replaced by the window bounds as quoted
/// RFC 3339 literals.
pub fn substitute(query: &str, from_ms: i64, to_ms: i64) -> String {
    let literal = |ms: i64| format!("'{}'", rfc3339_ns(ms.saturating_mul(NS_PER_MS)));
    query
        .replace("{start_time}", &literal(from_ms))
        .replace("{end_time}", &literal(to_ms))
}

/// Whether a column of this type is a tag when the query names no
/// `tag_columns`: the strings.
fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// The field type a column of type `dt` is stored as, if any.
pub fn stored_type(dt: &DataType) -> Option<FieldType> {
    if let Some(t) = field_type_of(dt) {
        return Some(t);
    }
    match dt {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => Some(FieldType::I64),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => Some(FieldType::U64),
        DataType::Float16
        | DataType::Float32
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(FieldType::F64),
        t if is_text(t) => Some(FieldType::Str),
        _ => None,
    }
}

/// Checks a query's answer columns: `time` (if there) is a timestamp,
/// every other column can be stored, every tag column is there.
pub fn check_columns(schema: &Schema, tags: &[String]) -> Result<(), String> {
    for f in schema.fields() {
        if f.name() == TIME_COLUMN {
            if !matches!(f.data_type(), DataType::Timestamp(..)) {
                return Err(format!(
                    "the column \"time\" is of type {}, not a timestamp",
                    f.data_type()
                ));
            }
            continue;
        }
        if stored_type(f.data_type()).is_none() {
            return Err(format!(
                "column {:?} is of type {}, which cannot be stored; cast it to DOUBLE, BIGINT, \
                 BOOLEAN or VARCHAR in the query",
                f.name(),
                f.data_type()
            ));
        }
    }
    if let Some(missing) = tags.iter().find(|t| schema.field_with_name(t).is_err()) {
        return Err(format!(
            "tag column {missing:?} is not a column of the query's answer"
        ));
    }
    Ok(())
}

/// A query's answer over the window `[from_ms, to_ms)` as a batch to
/// write: `time` first (the answer's own, every row inside the window;
/// without one, the window's start), then tags (`tags`, or every string
/// column when `tags` is empty) and fields.
pub fn to_write_form(
    batch: &RecordBatch,
    tags: &[String],
    (from_ms, to_ms): (i64, i64),
) -> Result<RecordBatch, String> {
    let rows = batch.num_rows();
    let schema = batch.schema();
    check_columns(&schema, tags)?;
    let (from, to) = (from_ms * NS_PER_MS, to_ms * NS_PER_MS);
    let time: ArrayRef = match batch.column_by_name(TIME_COLUMN) {
        Some(column) => {
            let ns = cast(column, &time_data_type()).map_err(|e| e.to_string())?;
            let values = ns.as_primitive::<TimestampNanosecondType>();
            if values.null_count() > 0 {
                return Err("the query returned a row whose time is null".to_owned());
            }
            if let Some(t) = values.values().iter().find(|t| **t < from || **t >= to) {
                return Err(format!(
                    "the query returned a row at {}, outside its window [{}, {}); bucket \
                     the window's rows (date_bin(..., time) AS time) and filter on \
                     {{start_time}} and {{end_time}}",
                    rfc3339_ns(*t),
                    rfc3339_ns(from),
                    rfc3339_ns(to)
                ));
            }
            ns
        }
        None => Arc::new(TimestampNanosecondArray::from(vec![from; rows]).with_timezone("UTC")),
    };
    // `time`, then tags, then fields (the write form's order).
    let mut fields: Vec<Field> = vec![time_column()];
    let mut columns: Vec<ArrayRef> = vec![time];
    let mut value_fields: Vec<Field> = Vec::new();
    let mut values: Vec<ArrayRef> = Vec::new();
    for (f, column) in schema.fields().iter().zip(batch.columns()) {
        if f.name() == TIME_COLUMN {
            continue;
        }
        let is_tag = if tags.is_empty() {
            is_text(f.data_type())
        } else {
            tags.contains(f.name())
        };
        let bad = |e: ferry_protocols::NameError| format!("column {:?}: {e}", f.name());
        if is_tag {
            let key = TagKey::new(f.name().as_str()).map_err(bad)?;
            let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            columns.push(cast(&text, &tag_data_type()).map_err(|e| e.to_string())?);
            fields.push(tag_column(&key));
        } else {
            let key = FieldKey::new(f.name().as_str()).map_err(bad)?;
            let t = stored_type(f.data_type()).ok_or_else(|| {
                format!(
                    "column {:?} of type {} cannot be stored",
                    f.name(),
                    f.data_type()
                )
            })?;
            values.push(cast(column, &field_data_type(t)).map_err(|e| e.to_string())?);
            value_fields.push(field_column(&key, t));
        }
    }
    fields.extend(value_fields);
    columns.extend(values);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Float64Array, Int32Array, StringArray};
    use deltalake::arrow::datatypes::TimeUnit;
    use ferry_protocols::batch::validate_schema;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn windows_align_on_the_epoch() {
        assert_eq!(floor(HOUR + 5, HOUR), HOUR);
        assert_eq!(floor(HOUR, HOUR), HOUR);
        assert_eq!(floor(-5, HOUR), -HOUR);
        assert_eq!(
            substitute("t >= {start_time} AND t < {end_time}", 0, HOUR),
            "t >= '1970-01-01T00:00:00Z' AND t < '1970-01-01T01:00:00Z'"
        );
    }

    fn answer(times: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("host", DataType::Utf8, true),
            Field::new("avg_temp", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
        ]));
        let n = times.len();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    deltalake::arrow::array::TimestampMicrosecondArray::from(times)
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["a"; n])),
                Arc::new(Float64Array::from(vec![1.5; n])),
                Arc::new(Int32Array::from(vec![3; n])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn answers_become_valid_writes_with_strings_as_tags() {
        let out = to_write_form(&answer(vec![0, 1_000]), &[], (0, HOUR)).unwrap();
        validate_schema(&out.schema()).unwrap();
        assert_eq!(out.schema().field(1).name(), "host");
        assert_eq!(out.schema().field(1).data_type(), &tag_data_type());
        assert_eq!(out.schema().field(3).data_type(), &DataType::Int64);
        // Named tags: the string is then a field.
        let out = to_write_form(&answer(vec![0]), &["n".to_owned()], (0, HOUR)).unwrap();
        validate_schema(&out.schema()).unwrap();
        assert_eq!(out.schema().field(1).name(), "n");
        assert_eq!(out.schema().field(1).data_type(), &tag_data_type());
        assert_eq!(out.schema().field(2).data_type(), &DataType::Utf8);
    }

    #[test]
    fn rows_outside_the_window_are_refused() {
        let err = to_write_form(&answer(vec![HOUR * 1000]), &[], (0, HOUR)).unwrap_err();
        assert!(err.contains("outside its window"), "{err}");
        let err = to_write_form(&answer(vec![0]), &["nosuch".to_owned()], (0, HOUR)).unwrap_err();
        assert!(err.contains("nosuch"), "{err}");
    }
}
