//! The durable buffer: every reading the agent accepts lives here until the
//! hub has acknowledged the segment that carries it.
//!
//! # Guarantees
//!
//! - **Accepted means durable.** [`StoreHandle::append`] with
//!   [`Durability::Durable`](crate::ingest::Durability) resolves `Ok` only
//!   after the SQLite transaction holding the readings has committed with
//!   `synchronous = FULL`. A rejection (`Full`, `StorageError`,
//!   `ShuttingDown`) means none of the append's readings was stored.
//! - **Exactly one place.** A reading is in `readings`, or in exactly one
//!   segment (`pending` or `quarantined`), or it was acknowledged by the
//!   hub, or it was dropped and counted. Cutting a segment inserts the
//!   segment and deletes its readings in one transaction.
//! - **Bounded disk.** The accounted size (see below) never exceeds
//!   `store.max_bytes` after a commit. A segment of many rows is smaller
//!   than its readings (Parquet with zstd), but a small one is larger by
//!   its file's metadata (about 1.5 KiB), so readings are only taken while
//!   2 KiB per group of buffered readings stay free for cutting them
//!   (`Mem::cut_reserve`); under `reject_new` a cut that still does not
//!   fit (a group cut into several small segments) may overshoot by the
//!   rest. A model test (`model_tests.rs`, seeds in
//!   `agent/proptest-regressions/`) checks `max_bytes + 4 KiB`. SQLite's
//!   `max_page_count` is a hard cap at `2 × max_bytes + 64 MiB` in case the
//!   estimate is wrong; hitting it is a storage error, not a crash.
//! - **Every drop is counted**, by [`DropReason`], in the
//!   `ferry_agent_store_drops_total{reason}` metric and in `meta`
//!   (persisted in the same transaction as the drop, so the counts survive
//!   restarts).
//! - **Disk errors never crash the agent or corrupt the buffer.** A failed
//!   commit (ENOSPC, read-only file system, SQLITE_FULL, I/O error) rolls
//!   back; the waiting durable appends get `RejectReason::StorageError` (so
//!   the broker does not acknowledge them), QoS 0 rows of that commit are
//!   dropped as `qos0_storage_error`, the error is logged at ERROR once per
//!   change of state, and every later commit tries again.
//! - **Sequences are strictly increasing**, across restarts and even when
//!   every segment was deleted (`meta.next_seq`, advanced in the cut's
//!   transaction). Sequences start at 1 and have no gaps in what is cut.
//!
//! Not guaranteed: QoS 0 readings are lost if the process dies within
//! `qos0_max_delay` of their arrival; readings dropped by `drop_oldest`
//! are gone (counted).
//!
//! # On-disk format (schema version 1)
//!
//! One SQLite database (`store.path`, default
//! `/var/lib/ferry-agent/buffer.db`) in WAL mode, plus its `-wal` and `-shm`.
//! `PRAGMA user_version` is the schema version; [`schema::SCHEMA_VERSION`]
//! lists the migrations that run in order at open, each in its own
//! transaction. A database from a newer agent is refused with
//! [`StoreError::SchemaTooNew`] and left untouched.
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `meta` | `key`, `value` (text) | `next_seq`, `agent_id`, `drops.<reason>` |
//! | `groups` | `id`, `database`, `measurement` | one row per table ever seen; never deleted |
//! | `readings` | `id` (AUTOINCREMENT: never reused), `grp`, `durable` (0/1), `received_ns` (agent clock), `time_ns`, `size` (accounted bytes), `body` | indexes `(grp, id)` and a partial index on `id WHERE durable = 0` |
//! | `segments` | `seq`, `grp`, `first_reading_id`, `last_reading_id`, `rows`, `bytes`, `oldest_received_ns`, `created_ns`, `state` (`pending`/`quarantined`), `reason`, `file` (the segment file) | index `(state, first_reading_id)` |
//! | `dead_letters` | `id`, `received_ns`, `topic`, `source`, `error`, `size`, `payload` | capped at `dead_letter_max` rows, oldest first |
//!
//! `body` is the compact binary encoding of the tags and fields described
//! in [`codec`]: exact round trip (f64 bits, i64 vs u64).
//!
//! # Durability settings
//!
//! `journal_mode = WAL`, `synchronous = FULL`: in WAL mode `NORMAL` does not
//! fsync the WAL at commit, so a power loss can roll back the last
//! transactions after they were acknowledged. `FULL` fsyncs at every
//! commit; group commit amortises that fsync over many appends.
//! `journal_size_limit = 64 MiB` truncates the WAL after checkpoints.
//! Checkpoints run on a thread of their own, so commits (and the
//! acknowledgements behind them) do not wait for the database file's
//! fsync; the writer checkpoints itself only when the WAL reaches 4 times
//! `store.wal_checkpoint` (`checkpoint.rs`, decision 0026).
//!
//! # Group commit
//!
//! One writer thread owns the connection and reads commands from a bounded
//! channel (`queue_capacity`; a full queue makes `append` wait:
//! backpressure, never a silent drop). Durable appends are batched: the
//! writer commits them once `commit_interval` has passed since the last
//! commit started (at once after a quiet spell, so a lone reading waits
//! only for its fsync; under load, every commit takes what queued while
//! the previous one ran, and there is at most one commit per interval),
//! when `max_batch` readings are pending, or before any other
//! command (so every command sees all earlier appends). QoS 0 readings wait
//! in memory (at most `max_batch` of them) until `qos0_max_delay` has
//! passed on the injected [`Clock`], or ride along with a durable commit.
//!
//! Two more connections keep work off the writer: the checkpointer's
//! (`checkpoint.rs`, decision 0026) and the segmenter's [`RowReader`], on
//! which a cut reads its group's readings (one `SELECT`, one committed
//! state) while commits go on. The writer only finds the due group, and
//! later deletes the readings in the cut's own transaction.
//!
//! # Accounting and `when_full`
//!
//! Accounted bytes = Σ readings (`body` + 48) + Σ segments (`file` + 160) +
//! Σ dead letters (payload + strings + 48), kept as running totals that are
//! recomputed from the tables at open. The overheads approximate SQLite's
//! per-row cost (record header, rowid, index entries) and are checked by a
//! test against the real file size. When a commit needs room:
//!
//! 1. a best-effort reading may only evict older best-effort readings; if
//!    that is not enough it is dropped (`qos0_full`). QoS 0 never displaces
//!    durable data.
//! 2. a durable append first evicts best-effort readings (`qos0_full`), then
//!    dead letters (`dead_letter_full`). Then, with `drop_oldest`:
//!    quarantined segments (`quarantined_full`; the hub already refused
//!    them), then the oldest durable data, whichever is older by reading id:
//!    buffered readings or a whole pending segment (`oldest_full`, counted
//!    in readings). With `reject_new`: the append is refused with
//!    `RejectReason::Full` (`rejected_full`) and nothing durable is deleted.
//! 3. a dead letter may only evict older dead letters, else it is dropped.
//!
//! An append is stored whole or refused whole.
//!
//! # Crash recovery
//!
//! At open: `PRAGMA quick_check` (or `integrity_check`, per
//! `store.integrity_check`). A file that is not a database or fails the
//! check is renamed to `buffer.db.corrupt-<unix-seconds>` (with its `-wal`
//! and `-shm`), logged at ERROR, never deleted, and a fresh buffer starts.
//! SQLite's WAL recovery handles torn commits: a transaction is either
//! entirely in the buffer after a crash or not at all.
//!
//! # Shutdown
//!
//! [`StoreHandle::shutdown`], or dropping every handle, commits everything
//! queued (QoS 0 included), checkpoints the WAL (`TRUNCATE`) and closes.

mod checkpoint;
pub mod clock;
pub mod codec;
pub mod config;
mod db;
pub mod error;
mod handle;
pub mod metrics;
mod room;
pub mod schema;
mod segments;
mod types;
mod writer;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{IntegrityCheck, SegmentConfig, StoreConfig, WhenFull};
pub use error::StoreError;
pub use handle::{Committing, StoreHandle};
pub use types::{Appended, DeadLetter, DropReason, PendingSegment, StoreStatus};

#[cfg(test)]
pub(crate) use segments::BACKLOG_SEGMENTS;
pub(crate) use segments::{CutLimits, DueGroup, RowReader, SegmentCut};
