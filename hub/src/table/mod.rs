//! Delta tables: storage backends, the commit batcher, exactly-once
//! segments and schema evolution.
//!
//! # Layout
//!
//! One Delta table per `database.measurement`, at
//! `<root>/<database>/<measurement>/` where `<root>` comes from `[storage]`
//! ([`StorageConfig`]: a local directory, `s3://bucket/prefix/` or
//! `az://container/prefix/`). Directory names keep ASCII letters, digits,
//! `_`, `-` and `.`; any other byte is written `+HH` (`my sensor` →
//! `my+20sensor`).
//!
//! Columns (see `schema.rs` for the full mapping), each with its
//! `ferry.role` in the Delta column metadata:
//!
//! | column | Delta type | notes |
//! |---|---|---|
//! | `time` | `timestamp` (µs, UTC), not null | Ferry's ns times are floored to µs: see `docs/decisions/0002-table-time-precision.md` |
//! | tags | `string` | dictionary encoding is an in-memory detail |
//! | fields | `double` / `long` / `boolean` / `string` | `u64` fields are `long` with `ferry.type = "u64"`; values above `i64::MAX` are rejected |
//! | `day` | `date`, partition column | the UTC day of `time`; the name `day` is reserved |
//!
//! Partitioning by `day` prunes whole days when a query filters on `day`
//! (`WHERE day = DATE '2026-11-26'` or a range). A filter on `time` alone
//! does not prune partitions, but still skips files by their `time`
//! min/max statistics. Data files are Parquet with zstd, `time`
//! delta-encoded (see `schema.rs`).
//!
//! # Commits
//!
//! Each table has one batcher task (`batcher.rs`) with a bounded queue
//! (`[tables] queue_depth`; a full queue makes [`Tables::write`] wait). It
//! collects requests while the previous commit runs (group commit; or for
//! `commit_interval` when set), up to `max_commit_rows` rows or a
//! [`Tables::flush`], and makes **one** Delta commit for all of them: an
//! append through delta-kernel on a log-only snapshot (`append.rs`; its
//! cost does not grow with the table's files), or, for the first commit of
//! a table and one that adds columns, deltalake's `write` (append, schema
//! mode merge). Every request is answered only after that commit returned, i.e.
//! after its log entry is durable in the object store; if the commit fails,
//! every request in it gets the error and nothing of it is visible.
//!
//! # Exactly once
//!
//! A segment is `(agent, seq)`, with seq strictly increasing per agent. A
//! commit that holds segments carries one Delta `txn` action per agent:
//! `appId` = the agent id, `version` = the highest seq of that agent in the
//! commit. Before committing, the batcher reads the agent's last `txn`
//! version from the table log (cached in memory after the first read) and
//! answers [`WriteOutcome::Duplicate`] for every segment with
//! `seq <= version`: the agent sends in order, so such a segment is a
//! replay of one already committed. Two requests with the same `(agent,
//! seq)` in one batch commit once; the second is a duplicate of that
//! commit. Because the txn is in the same commit as the rows, a crash
//! between commit and acknowledgement only makes the agent resend a
//! segment that the next check calls a duplicate, also in a new hub
//! process. Do not set `delta.setTransactionRetentionDuration` on Ferry
//! tables: expired txns would let replays through.
//!
//! With `multi_writer = true` the batcher reloads the log before each
//! commit, and Delta's conflict check rejects a commit whose `txn` app id
//! another writer committed concurrently; the agent's retry then finds the
//! duplicate. That is only sound on stores with an atomic conditional put
//! (see [`config`](self::config) docs).
//!
//! # Schema evolution
//!
//! The table is created by its first commit, with that data's schema. A
//! request that brings a new tag or field adds the column. A column whose
//! type or role differs from the table's is a
//! [`TableError::SchemaConflict`] naming the column, both sides and the
//! table; only that request is rejected, the rest of the batch commits.
//! Each request is checked against the table schema grown by the requests
//! before it in the same batch.
//!
//! # Reads
//!
//! [`Tables::register_catalog`] makes the tables a query's default
//! DataFusion catalog (`database.measurement`). A table is loaded, at its
//! latest version, only when the statement names it (`catalog.rs`), so what
//! [`Tables::write`] acknowledged is visible to the next query and a query
//! costs the same however many tables the lake holds. The list of tables
//! (`SHOW`, `information_schema`) is the hub's memory of the store
//! (`listing.rs`), listed at start and by maintenance, and kept true by the
//! hub's own commits.
//!
//! # Maintenance
//!
//! `compact.rs` (merge small files, sorted by tags then time),
//! `retention.rs` (delete old day partitions, vacuum) and `maintain.rs`
//! (their entry points on [`Tables`]); the schedule and the API are in
//! [`crate::maintenance`].

mod append;
pub(crate) mod batcher;
mod catalog;
mod compact;
pub mod config;
#[doc(hidden)]
pub mod conformance;
mod delete;
mod error;
mod listing;
mod local_log;
mod local_update;
mod maintain;
pub mod metrics;
mod name;
mod replace;
mod requests;
mod retention;
mod scan;
mod schema;
mod service;
mod sort_key;
mod store;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_append;
#[cfg(test)]
mod tests_bounds;
#[cfg(test)]
mod tests_delete;

pub use catalog::{NotReadable, TableSummary};
pub use compact::{CompactionPolicy, CompactionReport};
pub use config::{
    Addressing, AzureConfig, ConditionalPut, FsConfig, S3Config, StorageConfig, TableConfig,
};
pub use delete::{DeleteConfig, DeleteError, DeleteReport};
pub use error::TableError;
pub use name::{Origin, TableName, WriteOutcome, WriteRequest};
pub use replace::{Replaced, rfc3339_ns};
pub use requests::{Ask, Requests, Wanted};
pub use retention::RetentionPlan;
pub use scan::ScanCounter;
pub use schema::{PARTITION_COLUMN, PARTITION_ROLE, TYPE_KEY, TYPE_U64, storage_time_type};
pub use service::Tables;
