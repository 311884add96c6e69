//! InfluxDB line protocol: a zero-copy parser and a writer.
//!
//! # Grammar
//!
//! A body is a sequence of bytes split into lines at every `\n`. Each line is
//! one of:
//!
//! - **blank**: only spaces, tabs and `\r`; skipped;
//! - **a comment**: its first character after leading spaces and tabs is `#`;
//!   skipped;
//! - **a point**:
//!
//! ```text
//! line        = ws* measurement ("," tag)* " "+ field ("," field)* (" "+ timestamp)? ws*
//! tag         = tag-key "=" tag-value
//! field       = field-key "=" field-value
//! field-value = float | integer | unsigned | boolean | string
//! float       = "-"? (digits ("." digits?)? | "." digits) (("e" | "E") ("+" | "-")? digits)?
//! integer     = "-"? digits "i"                     (must fit in an i64)
//! unsigned    = digits "u"                          (must fit in a u64)
//! boolean     = t | T | true | True | TRUE | f | F | false | False | FALSE
//! string      = '"' (any character but '"' and '\', or '\' followed by anything)* '"'
//! timestamp   = "-"? digits                         (must fit in an i64)
//! ws          = " " | "\t" | "\r"                   (leading: " " and "\t" only)
//! ```
//!
//! # Escaping
//!
//! | where | ends at | `\` escapes |
//! |---|---|---|
//! | measurement | `,` ` ` | `,` ` ` (and `=` `\`, accepted but never needed) |
//! | tag key, field key | `=` `,` ` ` | `,` `=` ` ` `\` |
//! | tag value | `,` ` ` | `,` `=` ` ` `\` |
//! | string field value | `"` | `"` `\` |
//!
//! A backslash before any other character is a literal backslash, so `a\b`
//! reads as `a\b` and `\\` reads as `\` (as in the InfluxDB v2 reference).
//! Double quotes in measurements, keys and tag values are literal characters;
//! an unescaped `=` in a measurement or a tag value is literal too. Numbers,
//! booleans and timestamps have no escapes.
//!
//! # Rules
//!
//! - **Timestamps** are read in the caller's [`Precision`] and converted to
//!   nanoseconds; a result outside the i64 range is an error. A line without
//!   one gets the caller's default time.
//! - **Floats** must be finite: `NaN`, `inf` and values that overflow an f64
//!   (`1e400`) are rejected. A number without a suffix is a float, so `1` is
//!   the float 1.0. `-0` is the float −0.0.
//! - **Names** go through [`Measurement::new`](crate::Measurement::new),
//!   [`TagKey::new`](crate::TagKey::new) and
//!   [`FieldKey::new`](crate::FieldKey::new); a rejected name rejects the line.
//!   Tag values may not be empty; string field values may.
//! - **Duplicate** tag or field keys in one line: the last one wins.
//! - Tags may come in **any order**.
//! - **Newlines** always end a line, even inside a quoted string: line
//!   protocol cannot carry `\n` in a tag or field value, and the writer
//!   refuses to write one.
//! - Leading spaces and tabs, trailing spaces, tabs and `\r` (so CRLF line
//!   endings), and runs of spaces between the sections are accepted.
//!
//! # Compatibility
//!
//! Everything this writer produces is read identically by InfluxData's
//! `influxdb_line_protocol` parser (a property test checks it), except tag
//! values holding a tab and names or tag values ending in a backslash, which
//! that parser refuses. This parser is more lenient in a few places: floats
//! may be written `.5` or `1.`, a tab inside a name or tag value is a literal
//! character rather than a separator, and a name may end in an escaped
//! backslash. It is stricter in one: the Go parser lets a quoted string span
//! lines, this one does not.
//!
//! # Errors
//!
//! A bad line yields a [`LineError`] carrying its 1-based line number and the
//! 1-based byte column of the problem, and parsing carries on with the next
//! line. Invalid UTF-8 is an error for the line that holds it only. Nothing
//! panics on any input.
//!
//! # Use
//!
//! [`parse_lines`] is the zero-copy layer: it yields a [`ParsedLine`] per
//! line, borrowing from the body and allocating only the tag and field lists
//! and the pieces that needed unescaping. [`parse`] turns a whole body into
//! owned [`Reading`]s and keeps the first [`MAX_KEPT_ERRORS`] errors plus a
//! count. [`write_reading`] and [`to_line`] write a reading back; with
//! [`Precision::Ns`], `parse(write(r)) == r` for every reading the writer
//! accepts.

mod error;
mod line;
mod parse;
#[cfg(test)]
mod tests;
mod value;
mod write;

pub use error::{LineError, LineErrorKind, Snippet, WriteError};
pub use line::{ParsedField, ParsedLine, ParsedTag, ParsedTimestamp, ParsedValue};
pub use parse::{Lines, parse_lines};
pub use write::{to_line, write_reading, write_readings};

use crate::reading::Reading;
use crate::time::Precision;

/// How many line errors [`parse`] keeps; the rest are only counted.
pub const MAX_KEPT_ERRORS: usize = 100;

/// The result of parsing a whole body with [`parse`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseOutput {
    /// One reading per good line, in body order.
    pub readings: Vec<Reading>,
    /// The first [`MAX_KEPT_ERRORS`] errors, in body order.
    pub errors: Vec<LineError>,
    /// How many lines were rejected in all (`>= errors.len()`).
    pub error_count: usize,
}

impl ParseOutput {
    /// True if no line was rejected.
    pub fn is_clean(&self) -> bool {
        self.error_count == 0
    }

    /// Errors counted but not kept.
    pub fn dropped_errors(&self) -> usize {
        self.error_count - self.errors.len()
    }
}

/// Parses a whole body into owned readings.
///
/// Timestamps are read in `precision`; lines without one get
/// `default_time_ns`. Bad lines are reported in
/// [`ParseOutput::errors`] and do not stop the others.
pub fn parse(body: &[u8], precision: Precision, default_time_ns: i64) -> ParseOutput {
    let mut out = ParseOutput::default();
    for line in parse_lines(body) {
        match line.and_then(|l| l.into_reading(precision, default_time_ns)) {
            Ok(reading) => out.readings.push(reading),
            Err(e) => {
                out.error_count += 1;
                if out.errors.len() < MAX_KEPT_ERRORS {
                    out.errors.push(e);
                }
            }
        }
    }
    out
}
