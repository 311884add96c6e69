//! Metric names of the table capability (Prometheus, via the `metrics` crate).
//!
//! Every metric carries a `table` label (`database.measurement`), but for
//! the replica's snapshot age.

/// Counter: Delta commits made by the batcher.
pub const COMMITS: &str = "ferry_table_commits_total";
/// Counter: commits that failed (every request in them got the error).
pub const COMMIT_FAILURES: &str = "ferry_table_commit_failures_total";
/// Counter: appends tried again because another writer took the version.
pub const COMMIT_RETRIES: &str = "ferry_table_commit_retries_total";
/// Histogram, seconds: writing a checkpoint (asked by the table's writer).
pub const CHECKPOINT_SECONDS: &str = "ferry_table_checkpoint_seconds";
/// Histogram, seconds: from starting a commit to the object store confirming it.
pub const COMMIT_SECONDS: &str = "ferry_table_commit_seconds";
/// Counter: rows committed.
pub const ROWS_COMMITTED: &str = "ferry_table_rows_committed_total";
/// Counter: Arrow in-memory bytes of the committed batches (before Parquet encoding).
pub const BYTES_COMMITTED: &str = "ferry_table_bytes_committed_total";
/// Counter: segments answered `Duplicate` (replays).
pub const DUPLICATES: &str = "ferry_table_duplicate_segments_total";
/// Counter: requests rejected with a schema conflict.
pub const SCHEMA_CONFLICTS: &str = "ferry_table_schema_conflicts_total";
/// Counter: requests rejected as invalid data.
pub const INVALID_REQUESTS: &str = "ferry_table_invalid_requests_total";
/// Counter: write requests pushed into a table's queue. Queue depth = pushed - popped.
pub const QUEUE_PUSHED: &str = "ferry_table_queue_pushed_total";
/// Counter: write requests taken from a table's queue by its batcher.
pub const QUEUE_POPPED: &str = "ferry_table_queue_popped_total";
/// Histogram, seconds (no labels): on a read replica, how long before a
/// query the table snapshot it used was known to be the latest (at most
/// `replica.max_staleness`).
pub const REPLICA_SNAPSHOT_AGE: &str = "ferry_hub_replica_snapshot_age_seconds";
/// Counter: writes refused because the table held `tables.max_queued_bytes`.
pub const QUEUE_REFUSED: &str = "ferry_table_queue_refused_total";
/// Gauge: requests in the table's queue right now (sampled by the batcher).
pub const QUEUE_DEPTH: &str = "ferry_table_queue_depth";
/// Histogram, seconds: compacting one partition, read to commit.
pub const COMPACTION_SECONDS: &str = "ferry_table_compaction_seconds";
/// Counter: small files replaced by compaction.
pub const COMPACTION_FILES_REMOVED: &str = "ferry_table_compaction_files_removed_total";
/// Counter: files written by compaction.
pub const COMPACTION_FILES_ADDED: &str = "ferry_table_compaction_files_added_total";
/// Counter: bytes of the files compaction replaced.
pub const COMPACTION_BYTES: &str = "ferry_table_compaction_bytes_total";
/// Counter: rows rewritten by compaction.
pub const COMPACTION_ROWS: &str = "ferry_table_compaction_rows_total";
/// Counter: partitions whose compaction failed (left as they were).
pub const COMPACTION_FAILURES: &str = "ferry_table_compaction_failures_total";
/// Counter: rows deleted by retention.
pub const RETENTION_ROWS: &str = "ferry_table_retention_rows_deleted_total";
/// Counter: files removed from the table by retention.
pub const RETENTION_FILES: &str = "ferry_table_retention_files_deleted_total";
/// Counter: files deleted from storage by vacuum.
pub const VACUUM_FILES: &str = "ferry_table_vacuum_files_deleted_total";
/// Counter: rows deleted by `POST /api/v1/delete`.
pub const DELETE_ROWS: &str = "ferry_table_delete_rows_total";
/// Counter: files rewritten without the deleted rows.
pub const DELETE_FILES_REWRITTEN: &str = "ferry_table_delete_files_rewritten_total";
/// Histogram, seconds: applying a delete (rewrite and commit, after its plan).
pub const DELETE_SECONDS: &str = "ferry_table_delete_seconds";
/// Counter: delete commits dropped because a file they remove was removed
/// meanwhile (planned again, up to three times).
pub const DELETE_CONFLICTS: &str = "ferry_table_delete_conflicts_total";
