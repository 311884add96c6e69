//! How a checked batch reaches the table's log. Appends to a table whose
//! schema they do not change go through the log-only snapshot
//! (`append.rs`): their cost does not grow with the files in the table.
//! The first commit of a table and a commit that adds columns go through
//! deltalake's write path (it creates the table or evolves its schema);
//! the log is loaded again after them.

use std::collections::HashMap;
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{BlindDeltaTable, DeltaTableError};
use tracing::{debug, warn};

use super::super::append::{Appended, Log};
use super::super::metrics as m;
use super::super::name::WriteOutcome;
use super::super::schema::{PARTITION_COLUMN, batch_bytes};
use super::{Accepted, Pending, TableWriter, load_latest, open_table};

/// Tries of one append when other writers keep taking the next version.
const MAX_TRIES: usize = 15;

/// `engineInfo` of the hub's commits.
const ENGINE_INFO: &str = concat!("ferry-hub/", env!("CARGO_PKG_VERSION"));

impl TableWriter {
    /// Commits `batches` (the converted rows of `ready`) and answers every
    /// request of the batch.
    pub(super) async fn write(
        &mut self,
        ready: Vec<Accepted>,
        duplicates: Vec<Pending>,
        batches: Vec<RecordBatch>,
        evolves: bool,
    ) {
        let mut txns: HashMap<String, i64> = HashMap::new();
        for (agent, seq) in ready.iter().filter_map(|a| a.segment.clone()) {
            let e = txns.entry(agent).or_insert(seq);
            *e = (*e).max(seq);
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let bytes = batch_bytes(&batches);
        let started = Instant::now();
        let result = if self.log.is_some() && !evolves {
            self.append(batches, &txns).await
        } else {
            self.write_through(batches, &txns).await
        };
        metrics::histogram!(m::COMMIT_SECONDS, "table" => self.label.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(version) => {
                self.txns.extend(txns);
                let label = self.label.clone();
                metrics::counter!(m::COMMITS, "table" => label.clone()).increment(1);
                metrics::counter!(m::ROWS_COMMITTED, "table" => label.clone())
                    .increment(u64::try_from(rows).unwrap_or(u64::MAX));
                metrics::counter!(m::BYTES_COMMITTED, "table" => label.clone()).increment(bytes);
                debug!(table = %label, version, rows, requests = ready.len(), "committed");
                for a in &ready {
                    self.last_caches
                        .observe(&self.name, &a.pending.request.batches);
                }
                for a in ready {
                    let rows = u64::try_from(a.pending.request.rows()).unwrap_or(u64::MAX);
                    a.pending
                        .answer(Ok(WriteOutcome::Committed { version, rows }));
                }
                if !duplicates.is_empty() {
                    metrics::counter!(m::DUPLICATES, "table" => label)
                        .increment(u64::try_from(duplicates.len()).unwrap_or(u64::MAX));
                }
                for d in duplicates {
                    d.answer(Ok(WriteOutcome::Duplicate {
                        version: Some(version),
                    }));
                }
            }
            Err(e) => {
                // Load again before the next commit: another writer may have won.
                self.log = None;
                self.files = None;
                metrics::counter!(m::COMMIT_FAILURES, "table" => self.label.clone()).increment(1);
                let error = self.storage_error(e);
                warn!(table = %self.label, error = %error, requests = ready.len(), "commit failed");
                for p in ready.into_iter().map(|a| a.pending).chain(duplicates) {
                    p.answer(Err(error.clone()));
                }
            }
        }
    }

    /// The table that builds data files at the schema of `self.log`.
    async fn files_table(&mut self) -> Result<&BlindDeltaTable, DeltaTableError> {
        let Some(log) = &self.log else {
            return Err(DeltaTableError::Generic(
                "the table's log is not loaded".into(),
            ));
        };
        let schema = log.arrow_schema()?;
        let current = match &self.files {
            Some(files) => files.arrow_schema()?.as_ref() == &schema,
            None => false,
        };
        if !current {
            let store = self.log_store()?;
            self.files = Some(BlindDeltaTable::try_new_with_log_store(store).await?);
        }
        self.files
            .as_ref()
            .ok_or_else(|| DeltaTableError::Generic("no data file writer".into()))
    }

    /// Appends on the log-only snapshot: writes the data files (with their
    /// statistics), then commits their `add`s and the agents' `txn`s as the
    /// next version, again on the next one if another writer took it.
    async fn append(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: &HashMap<String, i64>,
    ) -> Result<i64, DeltaTableError> {
        let properties = self.writer_properties.clone();
        let mut writer = RecordBatchWriter::for_blind_appends(self.files_table().await?)?
            .with_writer_properties(properties);
        for batch in batches {
            writer.write(batch).await?;
        }
        let adds = writer.flush().await?;
        let added = u64::try_from(adds.len()).unwrap_or(u64::MAX);
        let gate = self.commit_gate.clone();
        let _gate = gate.lock().await;
        let mut tries = 0;
        let before = self.log.as_ref().map_or(0, Log::version);
        loop {
            let Some(log) = self.log.as_mut() else {
                return Err(DeltaTableError::Generic(
                    "the table's log is not loaded".into(),
                ));
            };
            let version = match log.append(&adds, txns, ENGINE_INFO).await? {
                Appended::Committed(version) => version,
                Appended::Lost => {
                    tries += 1;
                    metrics::counter!(m::COMMIT_RETRIES, "table" => self.label.clone())
                        .increment(1);
                    if tries >= MAX_TRIES {
                        return Err(DeltaTableError::Generic(format!(
                            "other writers took the next version {tries} times in a row"
                        )));
                    }
                    let schema = log.arrow_schema()?;
                    log.advance().await?;
                    if log.arrow_schema()? != schema {
                        return Err(DeltaTableError::Generic(
                            "another writer changed the table's schema during the commit".into(),
                        ));
                    }
                    // Exactly once: no segment of this batch may have been
                    // committed by another writer meanwhile.
                    self.txns.clear();
                    for (agent, seq) in txns {
                        if log
                            .app_version(agent)
                            .await?
                            .is_some_and(|done| done >= *seq)
                        {
                            return Err(DeltaTableError::Generic(format!(
                                "agent {agent}'s segment {seq} was committed by another writer"
                            )));
                        }
                    }
                    continue;
                }
            };
            let checkpoint = log.checkpoint_due(before, version);
            self.requests
                .files_added(&self.name, &mut self.files_since_ask, added);
            if checkpoint {
                self.requests.checkpoint(&self.name);
            }
            return i64::try_from(version).map_err(|_| {
                DeltaTableError::Generic(format!("table version {version} overflows"))
            });
        }
    }

    /// The first commit of a table, or one that adds columns: through
    /// deltalake's write path, which creates the table or evolves its
    /// schema. The log is loaded again before the next commit.
    async fn write_through(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: &HashMap<String, i64>,
    ) -> Result<i64, DeltaTableError> {
        self.log = None;
        self.files = None;
        let (table, exists) = match load_latest(&self.storage, &self.url).await? {
            Some(table) => (table, true),
            None => (open_table(&self.storage, &self.url)?, false),
        };
        let properties = CommitProperties::default().with_application_transactions(
            txns.iter()
                .map(|(agent, seq)| Transaction::new(agent, *seq))
                .collect(),
        );
        let mut builder = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_writer_properties(self.writer_properties.clone())
            .with_commit_properties(properties);
        if !exists {
            builder = builder
                .with_partition_columns([PARTITION_COLUMN])
                .with_table_name(self.label.clone());
        }
        let table = builder.await?;
        let v = table.version().ok_or_else(|| {
            DeltaTableError::Generic("the write returned a table without a version".into())
        })?;
        i64::try_from(v)
            .map_err(|_| DeltaTableError::Generic(format!("table version {v} overflows")))
    }
}
