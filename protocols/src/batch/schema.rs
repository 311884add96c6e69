//! The Arrow schema rules: column types, roles and their validation.

use std::collections::HashSet;
use std::fmt;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::name::{FieldKey, NameError, TIME_COLUMN, TagKey};
use crate::reading::FieldType;

/// The Arrow field metadata key that says what a column is.
pub const ROLE_KEY: &str = "ferry.role";
/// The time zone of the `time` column.
pub const TIME_ZONE: &str = "UTC";

/// What a column holds, as stored under [`ROLE_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRole {
    /// The `time` column.
    Time,
    /// A tag: a dictionary-encoded string.
    Tag,
    /// A typed field.
    Field,
}

impl ColumnRole {
    /// The metadata value: `time`, `tag` or `field`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnRole::Time => "time",
            ColumnRole::Tag => "tag",
            ColumnRole::Field => "field",
        }
    }

    /// Parses a metadata value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "time" => Some(ColumnRole::Time),
            "tag" => Some(ColumnRole::Tag),
            "field" => Some(ColumnRole::Field),
            _ => None,
        }
    }

    /// The role of an Arrow field, from its metadata (`None` if absent or unknown).
    pub fn of(field: &Field) -> Option<Self> {
        field.metadata().get(ROLE_KEY).and_then(|r| Self::parse(r))
    }
}

impl fmt::Display for ColumnRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Timestamp(Nanosecond, "UTC")`.
pub fn time_data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into()))
}

/// `Dictionary(Int32, Utf8)`.
pub fn tag_data_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The Arrow type of a field type.
pub fn field_data_type(t: FieldType) -> DataType {
    match t {
        FieldType::F64 => DataType::Float64,
        FieldType::I64 => DataType::Int64,
        FieldType::U64 => DataType::UInt64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Str => DataType::Utf8,
    }
}

/// The field type of an Arrow type, if it is one of the five field types.
pub fn field_type_of(dt: &DataType) -> Option<FieldType> {
    match dt {
        DataType::Float64 => Some(FieldType::F64),
        DataType::Int64 => Some(FieldType::I64),
        DataType::UInt64 => Some(FieldType::U64),
        DataType::Boolean => Some(FieldType::Bool),
        DataType::Utf8 => Some(FieldType::Str),
        _ => None,
    }
}

fn with_role(field: Field, role: ColumnRole) -> Field {
    field.with_metadata([(ROLE_KEY.to_owned(), role.as_str().to_owned())].into())
}

/// The `time` column: non-null, role `time`.
pub fn time_column() -> Field {
    with_role(
        Field::new(TIME_COLUMN, time_data_type(), false),
        ColumnRole::Time,
    )
}

/// A tag column: nullable, role `tag`.
pub fn tag_column(key: &TagKey) -> Field {
    with_role(
        Field::new(key.as_str(), tag_data_type(), true),
        ColumnRole::Tag,
    )
}

/// A field column: nullable, role `field`.
pub fn field_column(key: &FieldKey, t: FieldType) -> Field {
    with_role(
        Field::new(key.as_str(), field_data_type(t), true),
        ColumnRole::Field,
    )
}

/// The canonical schema: `time`, then tags sorted by key, then fields sorted by key.
pub fn canonical_schema<'a>(
    tags: impl IntoIterator<Item = &'a TagKey>,
    fields: impl IntoIterator<Item = (&'a FieldKey, FieldType)>,
) -> Schema {
    let mut tags: Vec<&TagKey> = tags.into_iter().collect();
    tags.sort();
    let mut fields: Vec<(&FieldKey, FieldType)> = fields.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut columns = Vec::with_capacity(1 + tags.len() + fields.len());
    columns.push(time_column());
    columns.extend(tags.into_iter().map(tag_column));
    columns.extend(fields.into_iter().map(|(k, t)| field_column(k, t)));
    Schema::new(columns)
}

/// Where the columns of a valid schema are, by role, in schema order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaLayout {
    /// Tag columns: (column index, key).
    pub tags: Vec<(usize, TagKey)>,
    /// Field columns: (column index, key, type).
    pub fields: Vec<(usize, FieldKey, FieldType)>,
}

/// A schema that breaks the rules. Every variant names the column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("the first column must be \"time\", found {found}")]
    TimeNotFirst { found: String },
    #[error(
        "column \"time\" must be a non-null Timestamp(Nanosecond, \"UTC\") with ferry.role = \"time\"; found {found}"
    )]
    BadTime { found: String },
    #[error("column {column:?} has no ferry.role metadata (expected \"tag\" or \"field\")")]
    MissingRole { column: String },
    #[error("column {column:?} has an unknown ferry.role {role:?}")]
    UnknownRole { column: String, role: String },
    #[error("column {column:?} has ferry.role \"time\" but only the first column may")]
    MisplacedTime { column: String },
    #[error("column {column:?}: {source}")]
    BadName {
        column: String,
        #[source]
        source: NameError,
    },
    #[error("{role} column {column:?} has type {found}; expected {expected}")]
    BadType {
        column: String,
        role: ColumnRole,
        found: DataType,
        expected: &'static str,
    },
    #[error("{role} column {column:?} must be nullable")]
    NotNullable { column: String, role: ColumnRole },
    #[error("column {column:?} appears more than once")]
    Duplicate { column: String },
    #[error("tag column {column:?} comes after a field column; tags must precede fields")]
    TagAfterField { column: String },
}

fn describe(field: &Field) -> String {
    format!(
        "{} {}{}, ferry.role = {:?}",
        field.name(),
        field.data_type(),
        if field.is_nullable() {
            " (nullable)"
        } else {
            ""
        },
        field
            .metadata()
            .get(ROLE_KEY)
            .map(String::as_str)
            .unwrap_or("<none>")
    )
}

/// Checks that `field` is exactly the `time` column.
pub(crate) fn check_time(field: &Field) -> Result<(), SchemaError> {
    if field.name() != TIME_COLUMN {
        return Err(SchemaError::TimeNotFirst {
            found: format!("{:?}", field.name()),
        });
    }
    if *field.data_type() != time_data_type()
        || field.is_nullable()
        || ColumnRole::of(field) != Some(ColumnRole::Time)
    {
        return Err(SchemaError::BadTime {
            found: describe(field),
        });
    }
    Ok(())
}

/// Checks that `schema` follows the rules and says where its tags and fields are.
///
/// The rules: the first column is `time` (non-null `Timestamp(Nanosecond,
/// "UTC")`, role `time`); then every tag column (nullable `Dictionary(Int32,
/// Utf8)`, role `tag`, a valid [`TagKey`]); then every field column (nullable,
/// one of Float64, Int64, UInt64, Boolean, Utf8, role `field`, a valid
/// [`FieldKey`]); no name twice. Within the tag and field groups any order is
/// valid: segments use sorted order, tables grown by
/// [`merge_schema`](super::merge_schema) append. Schema-level metadata is ignored.
pub fn validate_schema(schema: &Schema) -> Result<SchemaLayout, SchemaError> {
    let mut columns = schema.fields().iter();
    match columns.next() {
        Some(first) => check_time(first)?,
        None => {
            return Err(SchemaError::TimeNotFirst {
                found: "no columns".to_owned(),
            });
        }
    }
    let mut layout = SchemaLayout {
        tags: Vec::new(),
        fields: Vec::new(),
    };
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, field) in columns.enumerate() {
        let index = i + 1;
        let name = field.name();
        if !seen.insert(name.as_str()) {
            return Err(SchemaError::Duplicate {
                column: name.clone(),
            });
        }
        let role = match field.metadata().get(ROLE_KEY) {
            None => {
                return Err(SchemaError::MissingRole {
                    column: name.clone(),
                });
            }
            Some(r) => ColumnRole::parse(r).ok_or_else(|| SchemaError::UnknownRole {
                column: name.clone(),
                role: r.clone(),
            })?,
        };
        let bad_name = |source| SchemaError::BadName {
            column: name.clone(),
            source,
        };
        if !field.is_nullable() && role != ColumnRole::Time {
            return Err(SchemaError::NotNullable {
                column: name.clone(),
                role,
            });
        }
        match role {
            ColumnRole::Time => {
                return Err(SchemaError::MisplacedTime {
                    column: name.clone(),
                });
            }
            ColumnRole::Tag => {
                let key = TagKey::new(name.as_str()).map_err(bad_name)?;
                if !layout.fields.is_empty() {
                    return Err(SchemaError::TagAfterField {
                        column: name.clone(),
                    });
                }
                if *field.data_type() != tag_data_type() {
                    return Err(SchemaError::BadType {
                        column: name.clone(),
                        role,
                        found: field.data_type().clone(),
                        expected: "Dictionary(Int32, Utf8)",
                    });
                }
                layout.tags.push((index, key));
            }
            ColumnRole::Field => {
                let key = FieldKey::new(name.as_str()).map_err(bad_name)?;
                let t = field_type_of(field.data_type()).ok_or_else(|| SchemaError::BadType {
                    column: name.clone(),
                    role,
                    found: field.data_type().clone(),
                    expected: "one of Float64, Int64, UInt64, Boolean, Utf8",
                })?;
                layout.fields.push((index, key, t));
            }
        }
    }
    Ok(layout)
}
