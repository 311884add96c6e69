//! The store's error type.

use std::path::PathBuf;

use ferry_protocols::batch::BatchError;
use ferry_protocols::segment::SegmentError;

/// Everything that can go wrong in the buffer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "buffer schema version {found} is newer than this agent understands ({supported}); upgrade the agent or move the buffer aside"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("buffer metadata {key:?} holds an invalid value {value:?}")]
    BadMeta { key: String, value: String },
    #[error("the store is closed")]
    Closed,
    #[error("the buffer changed while a segment was being cut; retry")]
    Stale,
    #[error("segment: {0}")]
    Segment(#[from] SegmentError),
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether this is the disk being full (SQLITE_FULL or `max_page_count`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}
