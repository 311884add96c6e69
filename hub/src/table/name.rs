//! Table names and the write request / outcome types.

use std::fmt;
use std::str::FromStr;

use deltalake::arrow::array::RecordBatch;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{AgentId, DatabaseName, Measurement};

use super::error::TableError;

/// `database.measurement`: one Delta table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub database: DatabaseName,
    pub measurement: Measurement,
}

impl TableName {
    pub fn new(database: DatabaseName, measurement: Measurement) -> Self {
        TableName {
            database,
            measurement,
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.measurement)
    }
}

impl FromStr for TableName {
    type Err = TableError;

    /// `db.measurement`, split at the first `.` (a database name has none).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (db, m) = s.split_once('.').ok_or_else(|| {
            TableError::InvalidData(format!("table name {s:?} is not database.measurement"))
        })?;
        let database = DatabaseName::new(db)
            .map_err(|e| TableError::InvalidData(format!("table name {s:?}: {e}")))?;
        let measurement = Measurement::new(m)
            .map_err(|e| TableError::InvalidData(format!("table name {s:?}: {e}")))?;
        Ok(TableName::new(database, measurement))
    }
}

/// Where the rows of a write came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A segment uploaded by an agent: deduplicated by `(agent, seq)`.
    Segment { agent: AgentId, seq: SegmentSeq },
    /// A direct write (line protocol, MessagePack): not deduplicated.
    Write,
}

/// Rows for one table.
///
/// Every batch must pass [`ferry_protocols::batch::validate_schema`]; the
/// batches of one request may differ in their columns (they are merged).
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub table: TableName,
    pub batches: Vec<RecordBatch>,
    pub origin: Origin,
}

impl WriteRequest {
    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What became of a [`WriteRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The rows are in table version `version`, durable in the object store.
    Committed { version: i64, rows: u64 },
    /// A segment that is already in the table; nothing was written.
    /// `version` is the commit that holds it when known (a duplicate within
    /// one batch), `None` when it was found in the table's transaction log.
    Duplicate { version: Option<i64> },
}
