//! What line protocol and MessagePack writes share: grouping readings into
//! one batch per measurement, committing each table, and the answer.
//!
//! # Partial writes (InfluxDB 3's `accept_partial`)
//!
//! * Every good line is committed, every bad one is reported: the answer is
//!   `204` when all lines were good, else `400` `partial_write` with one
//!   [`ErrorDetail`] per rejected line (the first 100; the message counts
//!   all) — as InfluxDB 3's `/api/v3/write_lp` with `accept_partial=true`,
//!   its default.
//! * `?accept_partial=false`: any bad line rejects the whole request before
//!   anything is committed (`400` `bad_request` with the details).
//! * Nothing good at all: `400` `bad_request` with the details (nothing is
//!   committed, so this is not a partial write).
//! * A field whose type conflicts with its table rejects that table's lines;
//!   when it is the only problem, the answer is `409` `schema_conflict`.
//! * The tables of one body commit concurrently (one commit window for the
//!   whole body, however many measurements it holds).
//! * A storage failure on any table is `503` `unavailable`; the other tables
//!   stay committed (writes carry no idempotency key, so a client retry can
//!   duplicate them; segments do not have this problem).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deltalake::arrow::array::RecordBatch;
use ferry_protocols::api::{ErrorCode, ErrorDetail};
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::{DatabaseName, Measurement, Reading};

use crate::server::{ApiError, ApiResult};
use crate::table::{Origin, TableError, TableName, Tables, WriteOutcome, WriteRequest};

/// Most per-line details in one answer.
pub(crate) const MAX_DETAILS: usize = 100;
/// Longest `original_line` quoted back, in bytes.
const MAX_ORIGINAL_LINE: usize = 256;

/// Where a reading came from in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locator {
    /// 1-based line number (line protocol).
    Line(u64),
    /// 0-based record index (MessagePack).
    Record(u64),
    /// Unknown position (a MessagePack reading, after decoding).
    Unknown,
}

/// One rejected line or record.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub at: Locator,
    pub message: String,
}

/// A body turned into record batches, one per measurement, plus what was
/// rejected on the way.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub tables: Vec<PreparedTable>,
    /// The first [`MAX_DETAILS`] rejections.
    pub rejected: Vec<Rejection>,
    /// All rejections.
    pub rejected_count: usize,
}

#[derive(Debug)]
pub(crate) struct PreparedTable {
    pub measurement: Measurement,
    pub batch: RecordBatch,
    /// Positions of the rows, for reporting a table-level rejection.
    pub locators: Vec<Locator>,
}

impl Prepared {
    /// `Ok` if `principal` may write every table of this body into
    /// `database`; else a 403 naming the first it may not (nothing of the
    /// body is written).
    /// [`Self::check_writable`], then the ingest quotas of the token and
    /// the database for this body's rows and `received` bytes.
    pub(crate) fn admit(
        &self,
        quotas: &crate::quota::Quotas,
        principal: &crate::auth::Principal,
        database: &DatabaseName,
        received: usize,
    ) -> ApiResult<()> {
        self.check_writable(principal, database)?;
        let rows: u64 = self.tables.iter().map(|t| t.batch.num_rows() as u64).sum();
        quotas.admit(principal, database.as_str(), rows, received as u64)
    }

    pub(crate) fn check_writable(
        &self,
        principal: &crate::auth::Principal,
        database: &DatabaseName,
    ) -> ApiResult<()> {
        if principal.can(crate::auth::Permission::Write) {
            return Ok(());
        }
        for t in &self.tables {
            principal.require_on(
                crate::auth::Permission::Write,
                database.as_str(),
                t.measurement.as_str(),
            )?;
        }
        Ok(())
    }

    pub(crate) fn reject(&mut self, at: Locator, message: String) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_DETAILS {
            self.rejected.push(Rejection { at, message });
        }
    }

    /// Groups readings by measurement; a reading that conflicts with its
    /// batch (the first type seen wins) or would take it past `max_columns`
    /// columns is rejected before anything is allocated for it.
    pub(crate) fn group(
        &mut self,
        readings: impl IntoIterator<Item = (Locator, Reading)>,
        max_columns: usize,
    ) {
        let mut groups: BTreeMap<Measurement, (ReadingBatch, Vec<Locator>)> = BTreeMap::new();
        for (at, reading) in readings {
            // Look up before inserting: no copy of the name for every line.
            if !groups.contains_key(&reading.measurement) {
                let batch =
                    ReadingBatch::with_max_columns(reading.measurement.clone(), max_columns);
                groups.insert(reading.measurement.clone(), (batch, Vec::new()));
            }
            let Some((batch, locators)) = groups.get_mut(&reading.measurement) else {
                self.reject(at, "measurement group missing".to_owned());
                continue;
            };
            match batch.push(&reading) {
                Ok(()) => locators.push(at),
                Err(e) => self.reject(at, e.to_string()),
            }
        }
        for (measurement, (batch, locators)) in groups {
            if batch.is_empty() {
                continue;
            }
            match batch.to_record_batch() {
                Ok(rb) => self.tables.push(PreparedTable {
                    measurement,
                    batch: rb,
                    locators,
                }),
                Err(e) => {
                    let msg = format!("measurement {measurement}: {e}");
                    for at in locators {
                        self.reject(at, msg.clone());
                    }
                }
            }
        }
    }
}

/// What committing a prepared body did.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    pub rows: u64,
    /// True if a table rejected its rows for a schema conflict.
    pub schema_conflict: bool,
}

/// Commits every table of `prepared` into `database`, all at once: each
/// table's batcher takes its rows into its next commit, so a body that
/// touches many tables waits for about one commit window, not one per
/// table. Rows of a table that rejects them as client errors become
/// rejections; a storage error on any table is answered 503 (tables that
/// committed stay committed, and the message says how many rows).
pub(crate) async fn commit(
    tables: &Tables,
    database: &DatabaseName,
    prepared: &mut Prepared,
) -> ApiResult<Committed> {
    let mut done = Committed::default();
    let pending = std::mem::take(&mut prepared.tables);
    let writes = pending.iter().map(|t| {
        tables.write(WriteRequest {
            table: TableName {
                database: database.clone(),
                measurement: t.measurement.clone(),
            },
            batches: vec![t.batch.clone()],
            origin: Origin::Write,
        })
    });
    let results = futures_util::future::join_all(writes).await;
    let mut failure: Option<TableError> = None;
    for (t, result) in pending.into_iter().zip(results) {
        match result {
            Ok(WriteOutcome::Committed { rows, .. }) => done.rows += rows,
            Ok(WriteOutcome::Duplicate { .. }) => {}
            Err(e) if e.is_client_error() => {
                if matches!(e, TableError::SchemaConflict { .. }) {
                    done.schema_conflict = true;
                }
                let msg = format!("table {}.{}: {e}", database, t.measurement);
                for at in t.locators {
                    prepared.reject(at, msg.clone());
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        let mut err = ApiError::from(e);
        if done.rows > 0 {
            err.body.message = format!(
                "{} ({} rows of other tables were committed)",
                err.body.message, done.rows
            );
        }
        return Err(err);
    }
    Ok(done)
}

/// The answer to a write once everything possible was committed.
pub(crate) fn answer(
    prepared: &Prepared,
    committed: &Committed,
    original: impl Fn(&[Locator]) -> Vec<Option<String>>,
) -> Response {
    if prepared.rejected_count == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let details = details(prepared, original);
    let n = prepared.rejected_count;
    let first = first_of(&details);
    let error = if committed.rows > 0 {
        ApiError::new(
            ErrorCode::PartialWrite,
            format!(
                "partial write: {} rows committed, {n} rejected{}{first}",
                committed.rows,
                shown(n)
            ),
        )
    } else if committed.schema_conflict {
        ApiError::new(
            ErrorCode::SchemaConflict,
            format!(
                "nothing written: {n} rows conflict with their table's schema or were rejected{}{first}",
                shown(n)
            ),
        )
    } else {
        ApiError::bad_request(format!("nothing written: {n} rejected{}{first}", shown(n)))
    };
    error.with_details(details).into_response()
}

/// The answer when `accept_partial=false` and something was rejected.
pub(crate) fn reject_all(
    prepared: &Prepared,
    original: impl Fn(&[Locator]) -> Vec<Option<String>>,
) -> ApiError {
    let n = prepared.rejected_count;
    let details = details(prepared, original);
    ApiError::bad_request(format!(
        "nothing written (accept_partial=false): {n} rejected{}{}",
        shown(n),
        first_of(&details)
    ))
    .with_details(details)
}

/// `"; first: line 3: <error>"`: clients that show only `message` (the
/// InfluxDB client libraries do) still learn what to fix.
fn first_of(details: &[ErrorDetail]) -> String {
    let Some(d) = details.first() else {
        return String::new();
    };
    let at = match (d.line_number, d.record_index) {
        (Some(line), _) => format!("line {line}: "),
        (None, Some(record)) => format!("record {record}: "),
        (None, None) => String::new(),
    };
    format!("; first: {at}{}", d.error_message)
}

fn shown(n: usize) -> String {
    if n > MAX_DETAILS {
        format!("; the first {MAX_DETAILS} are listed")
    } else {
        String::new()
    }
}

fn details(
    prepared: &Prepared,
    original: impl Fn(&[Locator]) -> Vec<Option<String>>,
) -> Vec<ErrorDetail> {
    // Body order: parse errors and later (batch, table) rejections interleave.
    let mut rejected: Vec<&Rejection> = prepared.rejected.iter().collect();
    rejected.sort_by_key(|r| match r.at {
        Locator::Line(n) | Locator::Record(n) => (0, n),
        Locator::Unknown => (1, 0),
    });
    let locators: Vec<Locator> = rejected.iter().map(|r| r.at).collect();
    let originals = original(&locators);
    rejected
        .into_iter()
        .zip(originals.into_iter().chain(std::iter::repeat(None)))
        .map(|(r, original_line)| ErrorDetail {
            line_number: match r.at {
                Locator::Line(n) => Some(n),
                _ => None,
            },
            record_index: match r.at {
                Locator::Record(n) => Some(n),
                _ => None,
            },
            error_message: r.message.clone(),
            original_line,
        })
        .collect()
}

/// The text of the given 1-based lines of `body`, each cut to 256 bytes, in
/// the order asked; one pass over the body.
pub(crate) fn original_lines(body: &[u8], locators: &[Locator]) -> Vec<Option<String>> {
    let mut wanted: Vec<u64> = locators
        .iter()
        .filter_map(|l| match l {
            Locator::Line(n) => Some(*n),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found: BTreeMap<u64, String> = BTreeMap::new();
    let mut next = wanted.iter().peekable();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i as u64 + 1;
        let Some(&&want) = next.peek() else { break };
        if n == want {
            found.insert(n, cut(line));
            next.next();
        }
    }
    locators
        .iter()
        .map(|l| match l {
            Locator::Line(n) => found.get(n).cloned(),
            _ => None,
        })
        .collect()
}

fn cut(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    if text.len() <= MAX_ORIGINAL_LINE {
        return text.into_owned();
    }
    let mut end = MAX_ORIGINAL_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = text[..end].to_owned();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_lines_in_one_pass() {
        let body = b"a\nb\r\nc\n";
        let got = original_lines(
            body,
            &[
                Locator::Line(3),
                Locator::Line(2),
                Locator::Record(0),
                Locator::Line(9),
            ],
        );
        assert_eq!(got, vec![Some("c".into()), Some("b".into()), None, None]);
    }
}
