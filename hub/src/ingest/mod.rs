//! The write endpoints.
//!
//! | route | module | body |
//! |---|---|---|
//! | `POST /api/v1/segments` | [`segments`] | a segment file from an agent |
//! | `POST /api/v1/segments/batch` | [`segment_batch`] | several segments of one agent |
//! | `POST /write`, `/api/v2/write`, `/api/v1/write/line-protocol` | [`line_protocol`] | InfluxDB line protocol |
//! | `POST /api/v1/write/msgpack` | [`msgpack`] | Arc MessagePack |
//!
//! All need a token with the `write` role. Bodies are limited to
//! `server.max_body` (also after decompression). Every answer is sent only
//! after the commit holding the rows is durable: a `2xx` means the rows are
//! in the table. Decoding runs on the blocking pool, so a large body does
//! not stall other requests.
//!
//! # Guarantees
//!
//! * Segments are committed exactly once per `(agent, sequence)` (the table
//!   module's Delta `txn` check); a replay is answered `duplicate`.
//! * Line protocol and MessagePack writes are **not** idempotent: a client
//!   that retries after a lost answer may write twice (as with InfluxDB).
//! * A bad line or record never takes its body down: the good ones are
//!   committed and the bad ones reported ([`write`]).

pub mod budget;
mod config;
pub mod line_protocol;
pub mod msgpack;
pub(crate) mod params;
pub mod segment_batch;
pub mod segments;
pub(crate) mod write;

pub use config::IngestConfig;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics as m;

/// `source` label of segment uploads.
pub const SOURCE_SEGMENT: &str = "segment";
/// `source` label of line protocol writes.
pub const SOURCE_LINE_PROTOCOL: &str = "line_protocol";
/// `source` label of MessagePack writes.
pub const SOURCE_MSGPACK: &str = "msgpack";

/// Now, in nanoseconds since the epoch: the time of lines without one.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counts a write in the ingest metrics.
pub(crate) fn record_ingest(source: &'static str, bytes: usize, rows: u64, rejected: usize) {
    metrics::counter!(m::BYTES_INGESTED, "source" => source).increment(bytes as u64);
    metrics::counter!(m::ROWS_INGESTED, "source" => source).increment(rows);
    if rejected > 0 {
        metrics::counter!(m::ROWS_REJECTED, "source" => source).increment(rejected as u64);
    }
}
