//! Errors of the table capability.

use std::sync::Arc;

use ferry_protocols::batch::SchemaConflict;

/// Why a write, a listing or a registration failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TableError {
    /// The incoming data declares a column differently from the table
    /// (type or role). Nothing of that request was written. HTTP 409.
    #[error("table {table}: {conflict}")]
    SchemaConflict {
        table: String,
        #[source]
        conflict: SchemaConflict,
    },
    /// The request itself is malformed (bad schema, a value Delta cannot
    /// hold, no rows, a reserved column name). HTTP 400.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// The object store or the Delta log failed, or a concurrent writer won
    /// the commit. Nothing of the batch is visible; retry. HTTP 503.
    #[error("table {table}: storage error: {source}")]
    Storage {
        table: String,
        #[source]
        source: Arc<deltalake::DeltaTableError>,
    },
    /// The table exists but was not written by Ferry (no `ferry.role`
    /// metadata, unsupported column types). HTTP 500: an operator must look.
    #[error("table {table} is not a Ferry table: {reason}")]
    UnsupportedTable { table: String, reason: String },
    /// The `[storage]` section is unusable.
    #[error("storage config: {0}")]
    Config(String),
    /// A DataFusion error while registering tables.
    #[error("datafusion: {0}")]
    DataFusion(Arc<deltalake::datafusion::error::DataFusionError>),
    /// The hub is stopping; the write was not taken. HTTP 503.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The table's batcher failed (a panic, an internal fault) while it held
    /// the write. The write may or may not have been committed; retry
    /// (segments are deduplicated). The next write starts a new batcher.
    /// HTTP 503.
    #[error(
        "table {table}: its writer failed while holding this write (an internal fault); \
         it may or may not have been committed; retry"
    )]
    WriterFailed { table: String },
    /// The table already holds `tables.max_queued_bytes` of writes queued
    /// or committing. Nothing was taken; retry shortly. HTTP 503 with
    /// `Retry-After`.
    #[error(
        "table {table} holds {queued} of writes waiting to commit, tables.max_queued_bytes is \
         {limit}; retry shortly"
    )]
    QueueFull {
        table: String,
        queued: bytesize::ByteSize,
        limit: bytesize::ByteSize,
    },
}

impl TableError {
    /// `true` for errors the client caused (4xx): retrying the same request fails again.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            TableError::SchemaConflict { .. } | TableError::InvalidData(_)
        )
    }

    pub(crate) fn storage(table: impl ToString, e: deltalake::DeltaTableError) -> Self {
        TableError::Storage {
            table: table.to_string(),
            source: Arc::new(e),
        }
    }
}

impl From<deltalake::datafusion::error::DataFusionError> for TableError {
    fn from(e: deltalake::datafusion::error::DataFusionError) -> Self {
        TableError::DataFusion(Arc::new(e))
    }
}
