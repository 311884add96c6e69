//! Errors of the line protocol parser and writer.

use std::fmt;

use crate::name::NameError;
use crate::time::Precision;

/// The longest key or value quoted back in an error message, in bytes.
/// Longer ones are cut at a character boundary and end with `…`.
const MAX_SNIPPET: usize = 64;

/// A piece of input quoted back in an error, cut to 64 bytes so
/// that one huge bad value cannot blow up an error report.
#[derive(Clone, PartialEq, Eq)]
pub struct Snippet(String);

impl Snippet {
    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= MAX_SNIPPET {
            return Snippet(s.to_owned());
        }
        let mut end = MAX_SNIPPET;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = s.get(..end).unwrap_or_default().to_owned();
        cut.push('…');
        Snippet(cut)
    }

    /// The (possibly cut) text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rejected line: where, and why.
///
/// Displays as `line 3, column 12: expected '=' after field key "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct LineError {
    /// 1-based line number in the body (every `\n` starts a new line,
    /// including blank and comment lines).
    pub line: usize,
    /// 1-based byte column in the line where the problem was found.
    pub column: usize,
    /// What is wrong.
    pub kind: LineErrorKind,
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("expected a measurement")]
    MissingMeasurement,
    #[error("expected a tag key after ','")]
    EmptyTagKey,
    #[error("expected '=' after tag key {key:?}")]
    ExpectedTagEquals { key: Snippet },
    #[error("tag {key:?} has an empty value")]
    EmptyTagValue { key: Snippet },
    #[error("expected a field set after the measurement and tags")]
    MissingFields,
    #[error("expected a field key")]
    EmptyFieldKey,
    #[error("expected '=' after field key {key:?}")]
    ExpectedFieldEquals { key: Snippet },
    #[error("field {key:?} has no value")]
    MissingFieldValue { key: Snippet },
    #[error("string value of field {key:?} has no closing '\"'")]
    UnterminatedString { key: Snippet },
    #[error("expected ',' or ' ' after the string value of field {key:?}")]
    ExpectedSeparator { key: Snippet },
    #[error(
        "field {key:?} has the invalid value {value:?}: expected a float (1.5), \
         an integer (12i), an unsigned integer (12u), a boolean (t, false, ...) or a \"string\""
    )]
    InvalidFieldValue { key: Snippet, value: Snippet },
    #[error("field {key:?}: {value} is out of range for an i64")]
    IntegerOutOfRange { key: Snippet, value: Snippet },
    #[error("field {key:?}: {value} is out of range for a u64")]
    UnsignedOutOfRange { key: Snippet, value: Snippet },
    #[error("field {key:?}: {value} is out of range for a finite f64")]
    FloatOutOfRange { key: Snippet, value: Snippet },
    #[error("invalid timestamp {value:?}: expected an integer")]
    InvalidTimestamp { value: Snippet },
    #[error("timestamp {value} does not fit in an i64")]
    TimestampTooLarge { value: Snippet },
    #[error(
        "timestamp {value} in {precision} is outside the i64 nanosecond range (years 1677 to 2262)"
    )]
    TimestampOutOfRange {
        value: Snippet,
        precision: Precision,
    },
    #[error("unexpected characters after the timestamp")]
    TrailingCharacters,
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Why a [`Reading`](crate::Reading) cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("field {field:?} is {value}: line protocol cannot express non-finite floats")]
    NonFiniteFloat { field: String, value: f64 },
    #[error("reading of {measurement:?} has no fields: a line needs at least one")]
    NoFields { measurement: String },
    #[error("measurement {measurement:?} starts with '#', which line protocol reads as a comment")]
    CommentMeasurement { measurement: String },
    #[error("tag {key:?} has an empty value, which line protocol cannot express")]
    EmptyTagValue { key: String },
    #[error("{what} {name:?} contains a newline, which line protocol cannot express")]
    Newline { what: &'static str, name: String },
}
