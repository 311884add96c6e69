//! Segment errors.

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;

use crate::batch::{BatchError, ColumnRole, SchemaError};
use crate::name::NameError;

/// Why a segment could not be written or was rejected on read. Every
/// variant names the key or column at fault where there is one.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment is {len} bytes; a Parquet file is at least 12")]
    TooShort { len: usize },
    #[error("segment is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not a Parquet file: missing PAR1 magic at the {at}")]
    BadMagic { at: &'static str },
    #[error("truncated segment: the footer claims {footer_len} bytes but the file has {len}")]
    Truncated { footer_len: usize, len: usize },
    #[error("unsupported segment format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("segment metadata key {key:?} is missing")]
    MissingKey { key: &'static str },
    #[error("segment metadata key {key:?} appears more than once")]
    DuplicateKey { key: &'static str },
    #[error("segment metadata key {key:?} has value {value:?}; expected {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("segment metadata key {key:?}: {source}")]
    BadName {
        key: &'static str,
        #[source]
        source: NameError,
    },
    #[error("ferry.tag_columns lists {column:?} more than once")]
    DuplicateTag { column: String },
    #[error("ferry.tag_columns lists {column:?} but the file has no such column")]
    UnknownTag { column: String },
    #[error("{role} column {column:?} is stored as {found}; expected {expected}")]
    BadColumn {
        column: String,
        role: ColumnRole,
        found: String,
        expected: &'static str,
    },
    #[error("reading id range is inverted: first {first} > last {last}")]
    BadReadingRange { first: u64, last: u64 },
    #[error("segment schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("segment data: {0}")]
    Batch(#[from] BatchError),
    #[error("a segment holds at least one row")]
    Empty,
    #[error("rows are not sorted by tags then time at row {row}")]
    NotSorted { row: usize },
    #[error("ferry.row_count says {metadata} rows but the {source_of_truth} has {actual}")]
    RowCountMismatch {
        metadata: u64,
        actual: u64,
        source_of_truth: &'static str,
    },
    #[error("segment metadata key {key:?} says {metadata} but the data says {actual}")]
    TimeMismatch {
        key: &'static str,
        metadata: i64,
        actual: i64,
    },
    #[error(
        "checksum mismatch: ferry.checksum is {metadata:08x} but the data hashes to {actual:08x}"
    )]
    ChecksumMismatch { metadata: u32, actual: u32 },
    #[error("the footer declares {declared} bytes of decoded data; the limit is {max}")]
    TooMuchData { declared: u64, max: u64 },
    #[error("row group {row_group}, column chunk {column}: {reason}")]
    BadColumnChunk {
        row_group: usize,
        column: usize,
        reason: &'static str,
    },
    #[error("invalid Parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("decoding failed: {0}")]
    Arrow(#[from] ArrowError),
    #[error("the Parquet decoder panicked on this input: corrupt segment")]
    DecoderPanic,
}
