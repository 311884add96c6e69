//! The segment's Arrow schema, rebuilt from the Parquet schema and
//! `ferry.tag_columns`.
//!
//! The reader never decodes the `ARROW:schema` footer entry: it is a base64
//! IPC flatbuffer that arrow-ipc decodes with panics on malformed input, and
//! a segment comes from the network. Instead each Parquet column is mapped to
//! the one canonical column it can be: `time` to
//! [`time_column`], each listed tag to [`tag_column`], everything else to a
//! [`field_column`] of the type its Parquet type stores. The result is handed
//! to parquet-rs as the schema to decode into, so tags decode straight into
//! `Dictionary(Int32, Utf8)` and every batch carries the role metadata.

use std::collections::HashSet;

use arrow_schema::{Field, Schema};
use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::schema::types::{SchemaDescriptor, Type, TypePtr};

use super::SegmentError;
use crate::batch::{ColumnRole, SchemaError, field_column, tag_column, time_column};
use crate::name::{FieldKey, TIME_COLUMN, TagKey};
use crate::reading::FieldType;

const TIME_EXPECTED: &str = "a required INT64 TIMESTAMP(NANOS, adjusted to UTC)";
const TAG_EXPECTED: &str = "an optional UTF-8 BYTE_ARRAY";
const FIELD_EXPECTED: &str =
    "an optional DOUBLE, INT64 (signed or unsigned), BOOLEAN or UTF-8 BYTE_ARRAY";

/// How a Parquet column is stored, for error messages.
fn describe(ty: &Type) -> String {
    let info = ty.get_basic_info();
    let repetition = if info.has_repetition() {
        format!("{:?}", info.repetition())
    } else {
        "no repetition".to_owned()
    };
    if !ty.is_primitive() {
        return format!("a {repetition} group");
    }
    format!(
        "{repetition} {:?} (logical type {:?}, converted type {:?})",
        ty.get_physical_type(),
        info.logical_type_ref(),
        info.converted_type()
    )
}

/// The physical type and annotations of a primitive column whose repetition
/// is `want`, or `None` for a group or another repetition.
fn primitive(
    ty: &Type,
    want: Repetition,
) -> Option<(PhysicalType, Option<&LogicalType>, ConvertedType)> {
    let info = ty.get_basic_info();
    if !ty.is_primitive() || !info.has_repetition() || info.repetition() != want {
        return None;
    }
    Some((
        ty.get_physical_type(),
        info.logical_type_ref(),
        info.converted_type(),
    ))
}

fn is_time(ty: &Type) -> bool {
    matches!(
        primitive(ty, Repetition::REQUIRED),
        Some((PhysicalType::INT64, Some(LogicalType::Timestamp(ts)), _))
            if ts.is_adjusted_to_u_t_c && matches!(ts.unit, TimeUnit::NANOS)
    )
}

/// UTF-8 strings, annotated the way parquet-rs reads as `Utf8`.
fn is_utf8(logical: Option<&LogicalType>, converted: ConvertedType) -> bool {
    matches!(
        (logical, converted),
        (Some(LogicalType::String), _) | (None, ConvertedType::UTF8)
    )
}

fn is_tag(ty: &Type) -> bool {
    matches!(
        primitive(ty, Repetition::OPTIONAL),
        Some((PhysicalType::BYTE_ARRAY, logical, converted)) if is_utf8(logical, converted)
    )
}

/// The field type a column stores, following parquet-rs's own mapping to
/// Arrow for the annotations it accepts.
fn field_type(ty: &Type) -> Option<FieldType> {
    let (physical, logical, converted) = primitive(ty, Repetition::OPTIONAL)?;
    match (physical, logical, converted) {
        (PhysicalType::DOUBLE, None, ConvertedType::NONE) => Some(FieldType::F64),
        (PhysicalType::BOOLEAN, None, ConvertedType::NONE) => Some(FieldType::Bool),
        (PhysicalType::INT64, None, ConvertedType::NONE | ConvertedType::INT_64) => {
            Some(FieldType::I64)
        }
        (PhysicalType::INT64, None, ConvertedType::UINT_64) => Some(FieldType::U64),
        (PhysicalType::INT64, Some(LogicalType::Integer(int)), _) if int.bit_width == 64 => {
            Some(if int.is_signed {
                FieldType::I64
            } else {
                FieldType::U64
            })
        }
        (PhysicalType::BYTE_ARRAY, logical, converted) if is_utf8(logical, converted) => {
            Some(FieldType::Str)
        }
        _ => None,
    }
}

fn bad_column(ty: &Type, role: ColumnRole, expected: &'static str) -> SegmentError {
    SegmentError::BadColumn {
        column: ty.name().to_owned(),
        role,
        found: describe(ty),
        expected,
    }
}

/// The Arrow schema a segment with Parquet schema `parquet` and tag columns
/// `tags` decodes into. Checks each column's Parquet type against its role
/// and that every listed tag is a column; the caller checks the schema rules
/// (order, names, duplicates) with [`validate_schema`](crate::batch::validate_schema).
pub(crate) fn expected_schema(
    parquet: &SchemaDescriptor,
    tags: &[TagKey],
) -> Result<Schema, SegmentError> {
    let root = parquet.root_schema();
    // The root is always a group (parquet-rs checks); no columns otherwise.
    let fields: &[TypePtr] = if root.is_group() {
        root.get_fields()
    } else {
        &[]
    };
    let listed: HashSet<&str> = tags.iter().map(TagKey::as_str).collect();
    let mut columns: Vec<Field> = Vec::with_capacity(fields.len());
    for ty in fields {
        let name = ty.name();
        let bad_name = |source| SchemaError::BadName {
            column: name.to_owned(),
            source,
        };
        let column = if name == TIME_COLUMN {
            if !is_time(ty) {
                return Err(bad_column(ty, ColumnRole::Time, TIME_EXPECTED));
            }
            time_column()
        } else if listed.contains(name) {
            if !is_tag(ty) {
                return Err(bad_column(ty, ColumnRole::Tag, TAG_EXPECTED));
            }
            tag_column(&TagKey::new(name).map_err(bad_name)?)
        } else {
            let t =
                field_type(ty).ok_or_else(|| bad_column(ty, ColumnRole::Field, FIELD_EXPECTED))?;
            field_column(&FieldKey::new(name).map_err(bad_name)?, t)
        };
        columns.push(column);
    }
    let present: HashSet<&str> = columns.iter().map(|c| c.name().as_str()).collect();
    if let Some(missing) = tags.iter().find(|t| !present.contains(t.as_str())) {
        return Err(SegmentError::UnknownTag {
            column: missing.to_string(),
        });
    }
    Ok(Schema::new(columns))
}
