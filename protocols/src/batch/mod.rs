//! The columnar batch and the Arrow schema rules.
//!
//! Every table, segment and query result in Ferry has the same shape:
//!
//! | position | column | Arrow type | nullable | `ferry.role` |
//! |---|---|---|---|---|
//! | first | `time` | `Timestamp(Nanosecond, "UTC")` | no | `time` |
//! | then | one per tag key | `Dictionary(Int32, Utf8)` | yes | `tag` |
//! | then | one per field key | f64 → `Float64`, i64 → `Int64`, u64 → `UInt64`, bool → `Boolean`, str → `Utf8` | yes | `field` |
//!
//! The role lives in each Arrow field's metadata under [`ROLE_KEY`], so a
//! reader tells tags from fields without guessing from types; Parquet keeps
//! it in the `ARROW:schema` footer entry. Column names pass [`TagKey`](crate::TagKey) /
//! [`FieldKey`] validation, so `time` is never a tag or a field.
//! [`validate_schema`] checks all of this. A [`ReadingBatch`] (and so every
//! segment) uses the *canonical* order: tags sorted by key, then fields
//! sorted by key. A table grown by [`merge_schema`] keeps its old columns
//! in place and adds new ones (see there), so only grouping is required.
//!
//! # Building a batch
//!
//! [`ReadingBatch::push`] appends one [`Reading`](crate::Reading) of the
//! batch's measurement as a row. A tag or field that a row lacks is null in
//! that row. A reading is accepted whole or rejected whole; a rejected
//! reading leaves the batch unchanged, so one bad reading never takes its
//! batch down. It is rejected when:
//!
//! - it belongs to another measurement ([`BatchError::WrongMeasurement`]);
//! - it has no fields ([`BatchError::NoFields`]);
//! - a key is a tag in one place and a field in another, in the batch or
//!   within the reading ([`BatchError::NameCollision`]);
//! - **type conflict rule:** within a batch the first type seen for a field
//!   wins. A later reading with another type for that field is rejected
//!   ([`BatchError::TypeConflict`]). Nothing is coerced: an `i64` into an
//!   `f64` column would silently lose precision above 2^53, and `1` vs `1.0`
//!   from a sloppy sender is better reported than guessed. A field's type
//!   across batches (a table) is governed by [`merge_schema`].
//!
//! [`ReadingBatch::to_record_batch`] sorts rows by tag values (tag-key
//! order, null first, byte order), then time, stably.
//!
//! # Back to readings
//!
//! [`readings_from_record_batch`] is the reverse. A row whose fields are all
//! null is an error ([`BatchError::EmptyRow`]), not skipped.

mod builder;
mod merge;
mod schema;
mod view;

#[cfg(test)]
mod tests;

pub use builder::ReadingBatch;
pub use merge::{ColumnSpec, SchemaConflict, merge_schema};
pub use schema::{
    ColumnRole, ROLE_KEY, SchemaError, SchemaLayout, TIME_ZONE, canonical_schema, field_column,
    field_data_type, field_type_of, tag_column, tag_data_type, time_column, time_data_type,
    validate_schema,
};
pub use view::readings_from_record_batch;

pub(crate) use view::{BatchView, FieldArray, first_unsorted_row};

use arrow_schema::ArrowError;

use crate::name::{FieldKey, Measurement};
use crate::reading::FieldType;

/// The most columns (time, tags and fields) a batch holds unless told
/// otherwise; the hub's `tables.max_columns` and the agent's
/// `segment.max_columns` default to it.
pub const DEFAULT_MAX_COLUMNS: usize = 1024;

/// Why a reading or a record batch was rejected.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading of measurement {found:?} pushed into a batch of {expected:?}")]
    WrongMeasurement {
        expected: Measurement,
        found: Measurement,
    },
    #[error("reading has no fields")]
    NoFields,
    #[error("{name:?} is used both as a tag and as a field")]
    NameCollision { name: String },
    #[error(
        "field {field:?} is {existing} in this batch but the reading has {incoming}; the first type seen wins"
    )]
    TypeConflict {
        field: FieldKey,
        existing: FieldType,
        incoming: FieldType,
    },
    #[error("a tag has more distinct values than an Int32 dictionary can index")]
    TooManyTagValues,
    #[error(
        "measurement {measurement}: column {column:?} would be one more than the limit of {limit} columns (time, tags and fields)"
    )]
    TooManyColumns {
        measurement: Measurement,
        column: String,
        limit: usize,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("column {column:?} does not have the type its schema declares")]
    ColumnType { column: String },
    #[error("column \"time\" holds a null")]
    NullTime,
    #[error("tag column {column:?} has a dictionary key out of range at row {row}")]
    BadDictionaryKey { column: String, row: usize },
    #[error("row {row} has no non-null field")]
    EmptyRow { row: usize },
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}
