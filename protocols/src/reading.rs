//! The reading: one point in time of one measurement.
//!
//! A [`Reading`] is what every codec produces and what the agent buffers: a
//! measurement, an ordered map of tags, an ordered, non-empty map of typed
//! fields, and a timestamp in nanoseconds since the Unix epoch (UTC).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{FieldKey, Measurement, TagKey};

/// Tags, ordered by key.
pub type Tags = BTreeMap<TagKey, String>;
/// Fields, ordered by key.
pub type Fields = BTreeMap<FieldKey, FieldValue>;

/// A field's value. The variant is the field's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum FieldValue {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

/// The type of a field, independent of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    F64,
    I64,
    U64,
    Bool,
    Str,
}

impl FieldValue {
    /// The value's type.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::F64(_) => FieldType::F64,
            FieldValue::I64(_) => FieldType::I64,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::Bool(_) => FieldType::Bool,
            FieldValue::Str(_) => FieldType::Str,
        }
    }
}

impl FieldType {
    /// The lowercase name used in errors and docs (`f64`, `i64`, `u64`, `bool`, `str`).
    pub fn name(self) -> &'static str {
        match self {
            FieldType::F64 => "f64",
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::Bool => "bool",
            FieldType::Str => "str",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One point: a measurement, its tags, at least one field, and a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub measurement: Measurement,
    pub tags: Tags,
    pub fields: Fields,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
}

impl Reading {
    /// A reading with no tags and no fields yet.
    pub fn new(measurement: Measurement, time_ns: i64) -> Self {
        Reading {
            measurement,
            tags: Tags::new(),
            fields: Fields::new(),
            time_ns,
        }
    }

    /// Adds a tag, replacing any earlier value for the same key.
    pub fn with_tag(mut self, key: TagKey, value: impl Into<String>) -> Self {
        self.tags.insert(key, value.into());
        self
    }

    /// Adds a field, replacing any earlier value for the same key.
    pub fn with_field(mut self, key: FieldKey, value: FieldValue) -> Self {
        self.fields.insert(key, value);
        self
    }
}
