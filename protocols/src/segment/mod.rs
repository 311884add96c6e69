//! The segment file format: how a gateway ships one batch of readings.
//!
//! A segment is **one ordinary Parquet file** holding the rows of one
//! `database.measurement`, written by one agent. Any Parquet reader can open
//! it; Ferry's reader ([`read_segment`]) also checks every rule below.
//!
//! # Layout
//!
//! - **Schema:** the batch rules of [`crate::batch`]: `time`
//!   (`Timestamp(Nanosecond, "UTC")`, non-null), then tag columns
//!   (`Dictionary(Int32, Utf8)`), then field columns, each Arrow field
//!   carrying `ferry.role`. Writers emit the canonical order (tags sorted by
//!   key, then fields sorted by key); readers accept any order that passes
//!   [`validate_schema`](crate::batch::validate_schema). The writer also
//!   emits the standard `ARROW:schema` footer entry for other readers, but
//!   Ferry's reader never decodes it (see *Schema on read* below).
//! - **Parquet column types:** `time` is a required INT64
//!   `TIMESTAMP(NANOS, isAdjustedToUTC = true)`; a tag is an optional UTF-8
//!   (`STRING` logical type) BYTE_ARRAY; a field is optional and, by type:
//!   f64 DOUBLE, i64 INT64 (no annotation or `INT(64, signed)`), u64 INT64
//!   `INT(64, unsigned)`, bool BOOLEAN, str UTF-8 BYTE_ARRAY. No nested
//!   columns.
//! - **Sort order:** rows are sorted by the tag columns in schema order
//!   (null before any value, values in UTF-8 byte order), then by `time`.
//!   Equal keys may appear in any order. The writer rejects unsorted input
//!   ([`SegmentError::NotSorted`]);
//!   [`crate::batch::ReadingBatch::to_record_batch`] produces sorted batches.
//! - **Encoding:** zstd compression (level [`WriteOptions::zstd_level`],
//!   default 1) on every column, Parquet's default encodings (dictionary
//!   with plain fallback) and column chunk / page statistics. One row group
//!   per [`WriteOptions::max_row_group_rows`] rows (default 1 Mi).
//! - **No empty segments:** a segment holds at least one row.
//!
//! # Key-value metadata
//!
//! In the Parquet footer (`FileMetaData.key_value_metadata`). Integers are
//! canonical decimal (no sign, no leading zeros, except the `i64` times
//! which may start with `-`). Every key must be present exactly once;
//! other keys (including `ARROW:schema`) are ignored.
//!
//! | key | value |
//! |---|---|
//! | `ferry.format_version` | [`FORMAT_VERSION`], decimal `u32`. Checked first. |
//! | `ferry.agent_id` | the writer's [`AgentId`] |
//! | `ferry.sequence` | [`SegmentSeq`]: the agent's segment counter, `u64`, strictly increasing per agent |
//! | `ferry.first_reading_id` | smallest buffer row id of the agent's SQLite buffer in this segment, `u64` |
//! | `ferry.last_reading_id` | largest such id, `u64`, ≥ first (ids may have gaps: other measurements) |
//! | `ferry.database` | [`DatabaseName`] |
//! | `ferry.measurement` | [`Measurement`] |
//! | `ferry.min_time_ns` | smallest `time`, `i64` ns since the epoch |
//! | `ferry.max_time_ns` | largest `time`, `i64`, ≥ min |
//! | `ferry.row_count` | number of rows, `u64`, 1..=[`MAX_ROWS`]; equals the footer's `num_rows` |
//! | `ferry.checksum` | CRC32C of the canonical encoding below, 8 lowercase hex digits |
//! | `ferry.tag_columns` | the tag column names in schema order, as a compact JSON array of strings (`["host","room"]`, `[]` for none): no whitespace, only `"` and `\` escaped (names hold no control characters) |
//!
//! # Checksum encoding (version 1)
//!
//! CRC-32C (Castagnoli, initial value 0, as the `crc32c` crate computes it)
//! of this byte stream, all integers little-endian:
//!
//! 1. `u32` number of columns; then per column in schema order: `u32` name
//!    length, the UTF-8 name, and one type byte: `0x01` time, `0x02` tag,
//!    `0x10` f64, `0x11` i64, `0x12` u64, `0x13` bool, `0x14` str.
//! 2. `u64` number of rows.
//! 3. Column by column in schema order, each column's values in row order
//!    (row groups concatenated): `0x00` for null, else `0x01` then the
//!    value: time / i64 as `i64` (8 bytes); u64 as `u64`; f64 as its IEEE-754
//!    bits (`u64`, NaN payloads kept); bool as one byte `0`/`1`; tag and str
//!    as `u32` byte length and the UTF-8 bytes (the *value*, not the
//!    dictionary index, so dictionary layout does not matter).
//!
//! The writer computes it from the `RecordBatch` it encodes; the reader
//! recomputes it from what it decodes. A mismatch means corruption, or a
//! writer and a reader that disagree on the values.
//!
//! # Schema on read
//!
//! The `ARROW:schema` entry is a base64 Arrow IPC flatbuffer, and arrow-ipc
//! panics on some malformed ones, so the reader ignores it. It rebuilds the
//! Arrow schema from the Parquet schema and `ferry.tag_columns`: `time`
//! becomes the `time` column, each listed name a tag column, every other
//! column a field of the type its Parquet type stores (table above). A
//! column of any other Parquet type, a listed tag that is not a column, or a
//! list not in schema order is rejected. Batches then decode straight into
//! that schema (tags as `Dictionary(Int32, Utf8)`, every field carrying
//! `ferry.role`), so a segment reads the same whatever `ARROW:schema` holds.
//!
//! # Validation on read
//!
//! [`read_segment_meta`] reads only the footer: size bounds, `PAR1` magic at
//! both ends, footer length, version, every key, that every column chunk
//! lies inside the data region, the Parquet column types, the schema rules,
//! the footer row count, and bounds on the declared decoded size.
//! [`read_segment`] adds a full decode and checks the row count, the
//! min/max time, the sort order and the checksum against the data.
//!
//! # Versioning
//!
//! [`FORMAT_VERSION`] changes when the layout, the sort order, a key's
//! meaning or the checksum encoding changes. A reader rejects versions it
//! does not know with [`SegmentError::UnsupportedVersion`] (a distinct error,
//! so the hub can answer "upgrade me" instead of "corrupt"). Adding an
//! optional `ferry.*` key does not change the version; readers ignore keys
//! they do not know. Hubs are upgraded before agents and keep reading every
//! older version they ever accepted.
//!
//! # Limits on hostile input
//!
//! Segments above [`MAX_SEGMENT_BYTES`] and footers that declare more than
//! [`MAX_DECODED_BYTES`] of uncompressed data are refused before decoding.
//! The footer is checked before parquet-rs trusts it (column chunk offsets,
//! column types), and `ARROW:schema` is never decoded. Each data page's
//! definition levels are checked before parquet-rs decodes them (its
//! decoder trusts run lengths). Page decoding runs
//! under `catch_unwind` as a second line of defence, so a decoder panic on a
//! corrupt page becomes [`SegmentError::DecoderPanic`] where panics unwind
//! (not under `panic = "abort"` or libFuzzer). Not guarded: a corrupt *page header* can
//! still make parquet-rs reserve up to 2 GiB (its `i32`
//! `uncompressed_page_size`) for one page before zstd fails; that memory is
//! reserved, rarely touched.

mod batch_body;
mod checksum;
mod columns;
mod error;
mod meta;
mod pages;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::fmt;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::batch::{BatchError, readings_from_record_batch};
use crate::name::{AgentId, DatabaseName, Measurement};
use crate::reading::Reading;

pub use batch_body::{BATCH_MAGIC, SegmentBatchError, decode_batch, encode_batch};
pub use error::SegmentError;
pub use meta::keys;
pub use read::{MAX_DECODED_BYTES, MAX_SEGMENT_BYTES, read_segment, read_segment_meta};
pub use write::{WriteOptions, write_segment, write_segment_with};

/// The segment format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The most rows one segment may hold (the agent's `segment.max_rows` is
/// capped at the same number). Bounds the work of decoding a hostile file.
pub const MAX_ROWS: u64 = 1_000_000;

/// An agent's segment counter: strictly increasing per agent, the Delta
/// transaction version of the segment's commit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SegmentSeq(pub u64);

impl SegmentSeq {
    /// The next sequence number, or `None` at `u64::MAX`.
    pub fn next(self) -> Option<SegmentSeq> {
        self.0.checked_add(1).map(SegmentSeq)
    }

    /// The value as a Delta `txn` version (a signed long), or `None` above `i64::MAX`.
    pub fn as_delta_version(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }
}

impl fmt::Display for SegmentSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the writer is told about a segment: who wrote it and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub agent_id: AgentId,
    pub sequence: SegmentSeq,
    /// Smallest buffer row id carried.
    pub first_reading_id: u64,
    /// Largest buffer row id carried (≥ `first_reading_id`).
    pub last_reading_id: u64,
    pub database: DatabaseName,
    pub measurement: Measurement,
}

/// Everything a segment's footer says about it: the header, plus what the
/// writer computed from the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub header: SegmentHeader,
    pub format_version: u32,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub row_count: u64,
    pub checksum: u32,
}

impl SegmentMeta {
    /// The table the segment belongs to: `database.measurement`.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.header.database, self.header.measurement)
    }
}

/// A decoded, validated segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub meta: SegmentMeta,
    /// The rows, in file order (one or more batches, same schema).
    pub batches: Vec<RecordBatch>,
}

impl Segment {
    /// The rows as readings, in file order.
    pub fn readings(&self) -> Result<Vec<Reading>, BatchError> {
        let mut out = Vec::with_capacity(usize::try_from(self.meta.row_count).unwrap_or(0));
        for batch in &self.batches {
            out.extend(readings_from_record_batch(
                batch,
                &self.meta.header.measurement,
            )?);
        }
        Ok(out)
    }
}
