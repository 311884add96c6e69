//! Appends of constant cost: a commit through delta-kernel's transaction API
//! on a log-only snapshot.
//!
//! deltalake's write path brings the table's state up to date after every
//! commit by replaying the whole active file list and parsing every file's
//! statistics, so a commit's cost grew with the files in the table (170 ms
//! after 100 commits, 335 ms after 250, for the same 10,000 rows). A
//! [`Log`] holds only what an append needs: a kernel [`SnapshotRef`] (the
//! log segment, protocol and metadata, never the file list), advanced
//! incrementally after each commit from the commit the kernel wrote. The
//! `txn` version of an agent is read from that snapshot on demand (and
//! cached by the writer).
//!
//! The data files are written by deltalake's [`RecordBatchWriter`], which
//! computes each file's statistics; [`add_files`] carries them, whole
//! (`numRecords`, `nullCount`, `minValues`, `maxValues`), into the kernel's
//! `add` actions, so file skipping in Ferry and in every other engine
//! keeps working.
//!
//! A commit writes `_delta_log/<version>.json` with put-if-absent. If
//! another writer (compaction, retention, another hub) took that version,
//! [`Log::append`] answers [`Appended::Lost`]; the writer advances the
//! snapshot, checks that no agent's `txn` moved past what it commits (else
//! the batch is refused: exactly-once holds), and tries again on the next
//! version with the same files.
//!
//! Checkpoints are not written inline: the commit that reaches a multiple of
//! `delta.checkpointInterval` (default 100) asks maintenance for one.

use std::collections::HashMap;
use std::sync::Arc;

use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryIntoArrow;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::transaction::CommitResult;
use delta_kernel::{Engine, Snapshot, SnapshotRef};
use deltalake::DeltaTableError;
use deltalake::arrow::array::{
    ArrayRef, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder, StructArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::kernel::Add;
use deltalake::logstore::LogStoreRef;

use super::local_log::log_exists;

/// Checkpoint interval when the table does not set `delta.checkpointInterval`.
const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;
/// Log retention when the table does not set `delta.logRetentionDuration`.
const DEFAULT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A table's log as an appender sees it.
#[derive(Clone)]
pub(crate) struct Log {
    engine: Arc<dyn Engine>,
    root: String,
    snapshot: SnapshotRef,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("root", &self.root)
            .field("version", &self.snapshot.version())
            .finish()
    }
}

/// What an append did.
pub(crate) enum Appended {
    /// Committed as this version.
    Committed(u64),
    /// Another writer took the version first; nothing was committed.
    Lost,
}

/// The table's root URL, ending in `/` as the kernel joins paths onto it.
fn root_of(log_store: &LogStoreRef) -> String {
    let mut root = log_store.root_url().clone();
    if !root.path().ends_with('/') {
        let path = format!("{}/", root.path());
        root.set_path(&path);
    }
    root.to_string()
}

/// What the kernel says when the commit files it listed skip a version
/// (a local disk's listing is listed again first: `local_log.rs`).
#[cfg(test)]
pub(crate) const LISTING_GAP: &str = "Expected contiguous commit files";

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeltaTableError> + Send + 'static,
) -> Result<T, DeltaTableError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeltaTableError::Generic(format!("kernel task failed: {e}")))?
}

impl Log {
    /// The latest version of the table at `log_store`; `None` if it has no log.
    pub(crate) async fn load(log_store: &LogStoreRef) -> Result<Option<Log>, DeltaTableError> {
        // No log yet: say so without asking the kernel.
        if !log_exists(log_store.object_store(None).as_ref()).await? {
            return Ok(None);
        }
        let engine = log_store.engine(None);
        let root = root_of(log_store);
        let (e, r) = (engine.clone(), root.clone());
        let built = blocking(move || match Snapshot::builder_for(r).build(e.as_ref()) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(err) if err.to_string().contains("No files in log segment") => Ok(None),
            Err(err) => Err(DeltaTableError::from(err)),
        })
        .await?;
        Ok(built.map(|snapshot| Log {
            engine,
            root,
            snapshot,
        }))
    }

    pub(crate) fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// The table's storage schema (with Ferry's field metadata).
    pub(crate) fn arrow_schema(&self) -> Result<Schema, DeltaTableError> {
        let schema = self.snapshot.schema();
        Ok(schema.as_ref().try_into_arrow()?)
    }

    /// Moves to the latest version (reads only the commits since this one).
    pub(crate) async fn advance(&mut self) -> Result<(), DeltaTableError> {
        let (engine, current) = (self.engine.clone(), self.snapshot.clone());
        self.snapshot =
            blocking(move || Ok(Snapshot::builder_from(current).build(engine.as_ref())?)).await?;
        Ok(())
    }

    /// The last `txn` version of `app_id`, if any.
    pub(crate) async fn app_version(&self, app_id: &str) -> Result<Option<i64>, DeltaTableError> {
        let (engine, snapshot, app) = (
            self.engine.clone(),
            self.snapshot.clone(),
            app_id.to_owned(),
        );
        blocking(move || Ok(snapshot.get_app_id_version(&app, engine.as_ref())?)).await
    }

    /// Whether the commit of `version`, by a writer that was at `before`,
    /// should be followed by a checkpoint: it crossed a multiple of the
    /// interval (even when another writer took the multiple itself).
    pub(crate) fn checkpoint_due(&self, before: u64, version: u64) -> bool {
        let every = self
            .snapshot
            .table_properties()
            .checkpoint_interval
            .map_or(DEFAULT_CHECKPOINT_INTERVAL, |n| n.get());
        version / every > before / every
    }

    /// Writes a checkpoint at this version, then deletes the log files
    /// before it that are older than the table's log retention (30 days
    /// unless `delta.logRetentionDuration` says otherwise; not when
    /// `delta.enableExpiredLogCleanup` is false). Returns the log files
    /// deleted.
    pub(crate) async fn checkpoint(
        &self,
        log_store: &LogStoreRef,
    ) -> Result<usize, DeltaTableError> {
        let (engine, snapshot) = (self.engine.clone(), self.snapshot.clone());
        blocking(move || {
            snapshot.checkpoint(engine.as_ref(), None)?;
            Ok(())
        })
        .await?;
        let properties = self.snapshot.table_properties();
        if properties.enable_expired_log_cleanup == Some(false) {
            return Ok(0);
        }
        let keep = properties
            .log_retention_duration
            .unwrap_or(DEFAULT_LOG_RETENTION);
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        deltalake::checkpoints::cleanup_expired_logs_for(
            self.version(),
            log_store.as_ref(),
            cutoff,
            None,
        )
        .await
    }

    /// Commits `adds` and the agents' `txn` versions as the next version.
    /// On success the snapshot is at the new version.
    pub(crate) async fn append(
        &mut self,
        adds: &[Add],
        txns: &HashMap<String, i64>,
        engine_info: &str,
    ) -> Result<Appended, DeltaTableError> {
        let (engine, snapshot) = (self.engine.clone(), self.snapshot.clone());
        let txns: Vec<(String, i64)> = txns.iter().map(|(a, v)| (a.clone(), *v)).collect();
        let adds = adds.to_vec();
        let info = engine_info.to_owned();
        let (appended, next) = blocking(move || {
            let mut txn = snapshot
                .clone()
                .transaction(Box::new(FileSystemCommitter::new()), engine.as_ref())?
                .with_operation("WRITE".to_owned())
                .with_engine_info(info)
                .with_data_change(true);
            for (agent, version) in txns {
                txn = txn.with_transaction_id(agent, version);
            }
            let stats: Schema = txn.stats_schema()?.as_ref().try_into_arrow()?;
            let batch = add_files(&adds, &stats)?;
            txn.add_files(Box::new(ArrowEngineData::new(batch)));
            match txn.commit(engine.as_ref())? {
                CommitResult::CommittedTransaction(done) => {
                    let version = done.commit_version();
                    let next = match done.post_commit_snapshot() {
                        Some(s) => s.clone(),
                        None => Snapshot::builder_from(snapshot)
                            .at_version(version)
                            .build(engine.as_ref())?,
                    };
                    Ok((Appended::Committed(version), Some(next)))
                }
                CommitResult::ConflictedTransaction(_) => Ok((Appended::Lost, None)),
                CommitResult::RetryableTransaction(_) => Ok((Appended::Lost, None)),
            }
        })
        .await?;
        if let Some(next) = next {
            self.snapshot = next;
        }
        Ok(appended)
    }
}

/// The kernel's `add_files` input for `adds`: path, partition values, size,
/// modification time, and the statistics deltalake computed (JSON) decoded
/// into the table's stats schema `stats`.
fn add_files(adds: &[Add], stats: &Schema) -> Result<RecordBatch, DeltaTableError> {
    let generic = |e: &dyn std::fmt::Display| DeltaTableError::Generic(e.to_string());
    let paths: ArrayRef = Arc::new(StringArray::from_iter_values(
        adds.iter().map(|a| a.path.as_str()),
    ));
    let mut partitions = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for add in adds {
        let mut values: Vec<_> = add.partition_values.iter().collect();
        values.sort();
        for (key, value) in values {
            partitions.keys().append_value(key);
            partitions.values().append_option(value.as_deref());
        }
        partitions.append(true).map_err(|e| generic(&e))?;
    }
    let partitions: ArrayRef = Arc::new(partitions.finish());
    let sizes: ArrayRef = Arc::new(Int64Array::from_iter_values(adds.iter().map(|a| a.size)));
    let times: ArrayRef = Arc::new(Int64Array::from_iter_values(
        adds.iter().map(|a| a.modification_time),
    ));

    let stats_fields = stats.fields().clone();
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::new(stats.clone()))
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| generic(&e))?;
    for add in adds {
        let json = add.stats.as_deref().unwrap_or("{}");
        decoder.decode(json.as_bytes()).map_err(|e| generic(&e))?;
        decoder.decode(b"\n").map_err(|e| generic(&e))?;
    }
    let decoded = decoder
        .flush()
        .map_err(|e| generic(&e))?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::new(stats.clone())));
    if decoded.num_rows() != adds.len() {
        return Err(DeltaTableError::Generic(format!(
            "statistics of {} files decoded into {} rows",
            adds.len(),
            decoded.num_rows()
        )));
    }
    let stats_array: ArrayRef = Arc::new(StructArray::from(decoded));

    let schema = Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("partitionValues", partitions.data_type().clone(), false),
        Field::new("size", DataType::Int64, false),
        Field::new("modificationTime", DataType::Int64, false),
        Field::new("stats", DataType::Struct(stats_fields), true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![paths, partitions, sizes, times, stats_array],
    )
    .map_err(DeltaTableError::from)
}
