//! Ferry's Arrow schema ("logical", see [`ferry_protocols::batch`]) and the
//! schema the Delta table stores ("storage"), and the conversion of batches
//! between them.
//!
//! | logical (segments, writes) | storage (Delta) | Delta type |
//! |---|---|---|
//! | `time` `Timestamp(ns, "UTC")` | `time` `Timestamp(µs, "UTC")`, floor to µs | `timestamp` |
//! | tag `Dictionary(Int32, Utf8)` | `Utf8` | `string` |
//! | field `UInt64` | `Int64` + metadata `ferry.type = "u64"`; values above `i64::MAX` rejected | `long` |
//! | field `Float64`/`Int64`/`Boolean`/`Utf8` | same | `double`/`long`/`boolean`/`string` |
//! | — | `day` `Date32`, `ferry.role = "partition"`, UTC day of `time` | `date` (partition) |
//!
//! Data files are zstd Parquet ([`parquet_properties`]): `time` is
//! delta-encoded (sorted or nearly sorted stamps cost a few bits each
//! instead of eight bytes), and a column's dictionary stops at 128 KiB, so a
//! float column of mostly distinct values falls back to plain encoding
//! early instead of carrying a dictionary as big as its data.
//!
//! Every column keeps its `ferry.role` field metadata: Delta stores it in
//! the column's `metadata` in the table schema (`metaData.schemaString`), so
//! tag vs field survives in the table log and readers see it.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, new_null_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampNanosecondType, UInt64Type,
};
use ferry_protocols::batch::{
    ColumnRole, ROLE_KEY, TIME_ZONE, field_column, field_type_of, tag_column, time_column,
};
use ferry_protocols::name::TIME_COLUMN;
use ferry_protocols::{FieldKey, FieldType, TagKey};

use deltalake::parquet::basic::{Compression, Encoding, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;

use super::error::TableError;

/// The largest dictionary page of a column chunk before it falls back to
/// plain encoding.
const DICTIONARY_PAGE_LIMIT: usize = 128 * 1024;

/// How the hub writes Parquet: commits with zstd level 1 (cheap, on the
/// write path), compaction with a higher level (background work, files that
/// stay). See the module docs for the encodings.
pub(crate) fn parquet_properties(zstd_level: i32) -> WriterProperties {
    let time = ColumnPath::from(TIME_COLUMN);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED)
        .build()
}

/// The partition column: the UTC calendar day of `time`.
pub const PARTITION_COLUMN: &str = "day";
/// `ferry.role` of the partition column.
pub const PARTITION_ROLE: &str = "partition";
/// Field metadata key marking an `Int64` storage column that holds a Ferry `u64` field.
pub const TYPE_KEY: &str = "ferry.type";
/// The [`TYPE_KEY`] value for `u64` fields.
pub const TYPE_U64: &str = "u64";

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// `Timestamp(Microsecond, "UTC")`: Delta's `timestamp`.
pub fn storage_time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into()))
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The storage schema of a valid logical schema, with the partition column last.
pub(crate) fn to_storage(logical: &Schema) -> Schema {
    let mut out: Vec<Field> = Vec::with_capacity(logical.fields().len() + 1);
    for f in logical.fields() {
        let role = ColumnRole::of(f);
        let field = match role {
            Some(ColumnRole::Time) => Field::new(TIME_COLUMN, storage_time_type(), false)
                .with_metadata(meta(&[(ROLE_KEY, "time")])),
            Some(ColumnRole::Tag) => {
                Field::new(f.name(), DataType::Utf8, true).with_metadata(meta(&[(ROLE_KEY, "tag")]))
            }
            Some(ColumnRole::Field) | None => match f.data_type() {
                DataType::UInt64 => Field::new(f.name(), DataType::Int64, true)
                    .with_metadata(meta(&[(ROLE_KEY, "field"), (TYPE_KEY, TYPE_U64)])),
                dt => Field::new(f.name(), dt.clone(), true)
                    .with_metadata(meta(&[(ROLE_KEY, "field")])),
            },
        };
        out.push(field);
    }
    out.push(
        Field::new(PARTITION_COLUMN, DataType::Date32, false)
            .with_metadata(meta(&[(ROLE_KEY, PARTITION_ROLE)])),
    );
    Schema::new(out)
}

/// The logical schema of a table's storage schema: `time`, then the tags,
/// then the fields, each group in table order; the partition column dropped.
pub(crate) fn to_logical(storage: &Schema, table: &str) -> Result<Schema, TableError> {
    let unsupported = |reason: String| TableError::UnsupportedTable {
        table: table.to_owned(),
        reason,
    };
    let mut time = None;
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for f in storage.fields() {
        let role = f.metadata().get(ROLE_KEY).map(String::as_str);
        match role {
            Some(PARTITION_ROLE) => {}
            _ if f.name() == PARTITION_COLUMN && role.is_none() => {}
            Some("time") => {
                if !matches!(f.data_type(), DataType::Timestamp(_, Some(tz)) if tz.as_ref() == TIME_ZONE)
                {
                    return Err(unsupported(format!(
                        "column \"time\" has type {}",
                        f.data_type()
                    )));
                }
                time = Some(time_column());
            }
            Some("tag") => {
                let key = TagKey::new(f.name().as_str())
                    .map_err(|e| unsupported(format!("tag column {:?}: {e}", f.name())))?;
                if *f.data_type() != DataType::Utf8 {
                    return Err(unsupported(format!(
                        "tag column {:?} has type {}",
                        f.name(),
                        f.data_type()
                    )));
                }
                tags.push(tag_column(&key));
            }
            Some("field") => {
                let key = FieldKey::new(f.name().as_str())
                    .map_err(|e| unsupported(format!("field column {:?}: {e}", f.name())))?;
                let is_u64 = f.metadata().get(TYPE_KEY).map(String::as_str) == Some(TYPE_U64);
                let t = match (f.data_type(), is_u64) {
                    (DataType::Int64, true) => FieldType::U64,
                    (dt, false) if *dt != DataType::UInt64 => {
                        field_type_of(dt).ok_or_else(|| {
                            unsupported(format!("field column {:?} has type {dt}", f.name()))
                        })?
                    }
                    (dt, _) => {
                        return Err(unsupported(format!(
                            "field column {:?} has type {dt} and ferry.type {:?}",
                            f.name(),
                            f.metadata().get(TYPE_KEY)
                        )));
                    }
                };
                fields.push(field_column(&key, t));
            }
            other => {
                return Err(unsupported(format!(
                    "column {:?} has no valid ferry.role (found {other:?})",
                    f.name()
                )));
            }
        }
    }
    let time = time.ok_or_else(|| unsupported("no \"time\" column".to_owned()))?;
    let mut columns = Vec::with_capacity(1 + tags.len() + fields.len());
    columns.push(time);
    columns.extend(tags);
    columns.extend(fields);
    Ok(Schema::new(columns))
}

/// Checks that no `u64` value is above `i64::MAX` (Delta has no unsigned type).
pub(crate) fn check_u64_range(batch: &RecordBatch) -> Result<(), TableError> {
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if let Some(a) = col.as_primitive_opt::<UInt64Type>()
            && let Some((row, v)) = a
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.filter(|v| i64::try_from(*v).is_err()).map(|v| (i, v)))
        {
            return Err(TableError::InvalidData(format!(
                "u64 field {:?} holds {v} at row {row}; tables store u64 fields as signed 64-bit integers, so the limit is {}",
                f.name(),
                i64::MAX
            )));
        }
    }
    Ok(())
}

/// The UTC day (days since 1970-01-01) of a nanosecond timestamp.
pub(crate) fn day_of(ns: i64) -> i32 {
    let days = ns.div_euclid(NANOS_PER_DAY);
    // |i64::MAX / NANOS_PER_DAY| is about 106 751, far inside i32.
    i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX })
}

fn internal(e: impl std::fmt::Display) -> TableError {
    TableError::InvalidData(format!("cannot convert the batch for the table: {e}"))
}

/// Converts a batch that passed `validate_schema` (and [`check_u64_range`])
/// into `target`, a storage schema from [`to_storage`] of a logical schema
/// that `merge_schema` grew from the batch's schema. Columns the batch lacks
/// become nulls.
pub(crate) fn to_storage_batch(
    batch: &RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch, TableError> {
    let schema = batch.schema();
    let rows = batch.num_rows();
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| internal("no nanosecond \"time\" column"))?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column: ArrayRef = if field.name() == PARTITION_COLUMN
            && field.metadata().get(ROLE_KEY).map(String::as_str) == Some(PARTITION_ROLE)
        {
            Arc::new(Date32Array::from_iter_values(
                time.values().iter().map(|ns| day_of(*ns)),
            ))
        } else if field.name() == TIME_COLUMN {
            Arc::new(
                time.unary::<_, TimestampMicrosecondType>(|ns| ns.div_euclid(1000))
                    .with_timezone(TIME_ZONE),
            )
        } else {
            match schema.index_of(field.name()) {
                Ok(i) => convert(batch.column(i), field)?,
                Err(_) => new_null_array(field.data_type(), rows),
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(internal)
}

fn convert(array: &ArrayRef, field: &FieldRef) -> Result<ArrayRef, TableError> {
    if array.data_type() == field.data_type() {
        Ok(array.clone())
    } else {
        cast(array, field.data_type()).map_err(internal)
    }
}

/// Arrow in-memory size of the batches, for the bytes metric.
pub(crate) fn batch_bytes(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| u64::try_from(b.get_array_memory_size()).unwrap_or(u64::MAX))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_of_handles_negative_times() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(NANOS_PER_DAY - 1), 0);
        assert_eq!(day_of(NANOS_PER_DAY), 1);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(i64::MIN), -106_752);
    }

    #[test]
    fn storage_round_trips_to_logical() {
        let tag = TagKey::new("site").unwrap();
        let u = FieldKey::new("count").unwrap();
        let v = FieldKey::new("value").unwrap();
        let logical = ferry_protocols::batch::canonical_schema(
            [&tag],
            [(&u, FieldType::U64), (&v, FieldType::F64)],
        );
        let storage = to_storage(&logical);
        assert_eq!(storage.fields().len(), 5);
        assert_eq!(storage.field(0).data_type(), &storage_time_type());
        assert_eq!(storage.field(1).data_type(), &DataType::Utf8);
        assert_eq!(storage.field(2).data_type(), &DataType::Int64);
        let back = to_logical(&storage, "db.m").unwrap();
        assert_eq!(back, logical);
    }
}
