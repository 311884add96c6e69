//! Unit tests: one or more per rule of the line protocol reference, plus
//! property tests.

mod escapes;
mod lines;
mod proptests;
mod values;
mod writer;

use super::*;
use crate::reading::FieldValue;
use crate::time::Precision;

const DEFAULT_NS: i64 = 42;

fn parse_ns(body: &str) -> ParseOutput {
    parse(body.as_bytes(), Precision::Ns, DEFAULT_NS)
}

/// The single reading of a one-line body that must parse.
fn one(body: &str) -> Reading {
    let out = parse_ns(body);
    assert!(out.is_clean(), "{body:?}: {:?}", out.errors);
    assert_eq!(out.readings.len(), 1, "{body:?}");
    out.readings.into_iter().next().unwrap()
}

/// The single error of a one-line body that must fail.
fn fail(body: &str) -> LineError {
    let out = parse_ns(body);
    assert!(
        out.readings.is_empty(),
        "{body:?} parsed: {:?}",
        out.readings
    );
    assert_eq!(out.errors.len(), 1, "{body:?}");
    out.errors.into_iter().next().unwrap()
}

fn field<'r>(r: &'r Reading, key: &str) -> &'r FieldValue {
    r.fields
        .get(key)
        .unwrap_or_else(|| panic!("no field {key:?} in {r:?}"))
}

fn tag<'r>(r: &'r Reading, key: &str) -> &'r str {
    r.tags
        .get(key)
        .unwrap_or_else(|| panic!("no tag {key:?} in {r:?}"))
}
