//! Schema evolution: how a table's schema grows when new data arrives.

use std::collections::HashMap;
use std::fmt;

use arrow_schema::{DataType, Field, FieldRef, Schema};

use super::schema::{ColumnRole, check_time, time_column};
use crate::name::TIME_COLUMN;

/// One side of a [`SchemaConflict`]: a column as one schema declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSpec {
    /// The schema has no column of that name.
    Missing,
    /// The column's role (`None` if its `ferry.role` is absent or unknown) and type.
    Present {
        role: Option<ColumnRole>,
        data_type: DataType,
    },
}

impl ColumnSpec {
    fn of(field: &Field) -> Self {
        ColumnSpec::Present {
            role: ColumnRole::of(field),
            data_type: field.data_type().clone(),
        }
    }
}

impl fmt::Display for ColumnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnSpec::Missing => f.write_str("no such column"),
            ColumnSpec::Present {
                role: Some(role),
                data_type,
            } => write!(f, "a {role} of type {data_type}"),
            ColumnSpec::Present {
                role: None,
                data_type,
            } => write!(
                f,
                "a column without a valid ferry.role, of type {data_type}"
            ),
        }
    }
}

/// Incoming data declares a column differently from the existing schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "column {column:?} conflicts: the existing schema has {existing}, the incoming data has {incoming}"
)]
pub struct SchemaConflict {
    pub column: String,
    pub existing: ColumnSpec,
    pub incoming: ColumnSpec,
}

fn same(a: &Field, b: &Field) -> bool {
    a.data_type() == b.data_type() && ColumnRole::of(a) == ColumnRole::of(b)
}

/// Merges `incoming` into `existing` (a table's schema) and returns the new
/// table schema.
///
/// - A column in both must have the same data type and the same role;
///   otherwise it is a [`SchemaConflict`]. Nullability is not compared (tags
///   and fields are always nullable).
/// - `time` must be the first column of both, a non-null
///   `Timestamp(Nanosecond, "UTC")` with role `time`.
/// - A column only in `existing` stays (incoming rows hold null there).
/// - Resulting order: `time`; the existing tags in their order; the new tags
///   sorted by name; the existing fields in their order; the new fields sorted
///   by name. Existing columns never move relative to each other, and tags
///   stay before fields, so the result passes
///   [`validate_schema`](super::validate_schema) if both inputs do.
/// - A new column without a valid role is a conflict against
///   [`ColumnSpec::Missing`].
/// - The existing schema's metadata and field metadata are kept.
///
/// When nothing is new, the result equals `existing`.
pub fn merge_schema(existing: &Schema, incoming: &Schema) -> Result<Schema, SchemaConflict> {
    let time_conflict = |e: Option<&FieldRef>, i: Option<&FieldRef>| SchemaConflict {
        column: TIME_COLUMN.to_owned(),
        existing: e.map_or(ColumnSpec::Missing, |f| ColumnSpec::of(f)),
        incoming: i.map_or(ColumnSpec::Missing, |f| ColumnSpec::of(f)),
    };
    let e_time = existing.fields().first();
    let i_time = incoming.fields().first();
    let e_ok = e_time.is_some_and(|f| check_time(f).is_ok());
    let i_ok = i_time.is_some_and(|f| check_time(f).is_ok());
    if !e_ok || !i_ok {
        let i_time = incoming.fields().iter().find(|f| f.name() == TIME_COLUMN);
        let e_time = if e_ok {
            e_time
        } else {
            existing.fields().iter().find(|f| f.name() == TIME_COLUMN)
        };
        return Err(time_conflict(e_time, i_time));
    }

    let by_name: HashMap<&str, &FieldRef> = existing
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f))
        .collect();
    let mut new_tags: Vec<&FieldRef> = Vec::new();
    let mut new_fields: Vec<&FieldRef> = Vec::new();
    for column in incoming.fields().iter().skip(1) {
        match by_name.get(column.name().as_str()) {
            Some(old) if same(old, column) => {}
            Some(old) => {
                return Err(SchemaConflict {
                    column: column.name().clone(),
                    existing: ColumnSpec::of(old),
                    incoming: ColumnSpec::of(column),
                });
            }
            None => match ColumnRole::of(column) {
                Some(ColumnRole::Tag) => new_tags.push(column),
                Some(ColumnRole::Field) => new_fields.push(column),
                Some(ColumnRole::Time) | None => {
                    return Err(SchemaConflict {
                        column: column.name().clone(),
                        existing: ColumnSpec::Missing,
                        incoming: ColumnSpec::of(column),
                    });
                }
            },
        }
    }
    if new_tags.is_empty() && new_fields.is_empty() {
        return Ok(existing.clone());
    }
    new_tags.sort_by(|a, b| a.name().cmp(b.name()));
    new_fields.sort_by(|a, b| a.name().cmp(b.name()));

    let rest = &existing.fields()[1..];
    let tag_end = rest
        .iter()
        .position(|f| ColumnRole::of(f) != Some(ColumnRole::Tag))
        .unwrap_or(rest.len());
    let mut columns: Vec<FieldRef> = Vec::with_capacity(existing.fields().len() + 8);
    columns.push(
        existing
            .fields()
            .first()
            .cloned()
            .unwrap_or_else(|| time_column().into()),
    );
    columns.extend(rest[..tag_end].iter().cloned());
    columns.extend(new_tags.into_iter().cloned());
    columns.extend(rest[tag_end..].iter().cloned());
    columns.extend(new_fields.into_iter().cloned());
    Ok(Schema::new_with_metadata(
        columns,
        existing.metadata().clone(),
    ))
}
