//! A parsed line that borrows from the body, and its conversion to an owned
//! [`Reading`].

use std::borrow::Cow;

use super::error::{LineError, LineErrorKind, Snippet};
use crate::name::{FieldKey, Measurement, NameError, TagKey};
use crate::reading::{FieldValue, Reading};
use crate::time::Precision;

/// One syntactically valid line, borrowing from the body wherever no
/// unescaping was needed.
///
/// Tags and fields are kept in input order, duplicates included; names are
/// not validated yet. [`ParsedLine::into_reading`] validates the names, applies
/// "last one wins" to duplicate keys and converts the timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine<'a> {
    /// 1-based line number in the body.
    pub line: usize,
    pub measurement: Cow<'a, str>,
    /// 1-based byte column where the measurement starts.
    pub measurement_column: usize,
    pub tags: Vec<ParsedTag<'a>>,
    /// At least one field.
    pub fields: Vec<ParsedField<'a>>,
    pub timestamp: Option<ParsedTimestamp>,
}

/// A tag, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTag<'a> {
    pub key: Cow<'a, str>,
    /// Never empty.
    pub value: Cow<'a, str>,
    /// 1-based byte column where the key starts.
    pub column: usize,
}

/// A field, unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedField<'a> {
    pub key: Cow<'a, str>,
    pub value: ParsedValue<'a>,
    /// 1-based byte column where the key starts.
    pub column: usize,
}

/// A field value. Floats are always finite.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

/// A timestamp as written, in the body's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTimestamp {
    pub value: i64,
    /// 1-based byte column where the timestamp starts.
    pub column: usize,
}

impl ParsedValue<'_> {
    /// The owned value.
    pub fn into_field_value(self) -> FieldValue {
        match self {
            ParsedValue::F64(v) => FieldValue::F64(v),
            ParsedValue::I64(v) => FieldValue::I64(v),
            ParsedValue::U64(v) => FieldValue::U64(v),
            ParsedValue::Bool(v) => FieldValue::Bool(v),
            ParsedValue::Str(v) => FieldValue::Str(v.into_owned()),
        }
    }
}

impl ParsedLine<'_> {
    /// The timestamp in nanoseconds: the line's own, read in `precision`, or
    /// `default_time_ns` if the line has none.
    pub fn time_ns(&self, precision: Precision, default_time_ns: i64) -> Result<i64, LineError> {
        match self.timestamp {
            None => Ok(default_time_ns),
            Some(ts) => precision.to_nanos(ts.value).ok_or_else(|| LineError {
                line: self.line,
                column: ts.column,
                kind: LineErrorKind::TimestampOutOfRange {
                    value: Snippet::new(&ts.value.to_string()),
                    precision,
                },
            }),
        }
    }

    /// Validates the names and builds the owned [`Reading`]. A later tag or
    /// field with the same key replaces an earlier one.
    pub fn into_reading(
        self,
        precision: Precision,
        default_time_ns: i64,
    ) -> Result<Reading, LineError> {
        let line = self.line;
        let at = |column: usize| {
            move |e: NameError| LineError {
                line,
                column,
                kind: LineErrorKind::Name(e),
            }
        };
        let time_ns = self.time_ns(precision, default_time_ns);
        let measurement =
            Measurement::new(self.measurement).map_err(at(self.measurement_column))?;
        let mut reading = Reading::new(measurement, 0);
        for tag in self.tags {
            let key = TagKey::new(tag.key).map_err(at(tag.column))?;
            reading.tags.insert(key, tag.value.into_owned());
        }
        for field in self.fields {
            let key = FieldKey::new(field.key).map_err(at(field.column))?;
            reading.fields.insert(key, field.value.into_field_value());
        }
        // Reported after the names, so that errors come in column order.
        reading.time_ns = time_ns?;
        Ok(reading)
    }
}
