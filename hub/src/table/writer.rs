//! One table's commit logic: deduplicate, validate, evolve the schema, and
//! make one Delta commit for a batch of write requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use ferry_protocols::batch::{merge_schema, validate_schema};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::config::ResolvedStorage;
use super::error::TableError;
use super::metrics as m;
use super::name::{Origin, TableName, WriteOutcome, WriteRequest};
use super::schema::{
    PARTITION_COLUMN, batch_bytes, check_u64_range, parquet_properties, to_logical, to_storage,
    to_storage_batch,
};

/// zstd level of the files a commit writes: cheap, it is on the write path.
const COMMIT_ZSTD_LEVEL: i32 = 1;

/// A queued request and where its answer goes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) request: WriteRequest,
    pub(crate) reply: oneshot::Sender<Result<WriteOutcome, TableError>>,
}

impl Pending {
    fn answer(self, result: Result<WriteOutcome, TableError>) {
        // The writer may have gone away (HTTP client disconnected): nothing to do.
        let _ = self.reply.send(result);
    }
}

/// Opens the Delta table at `url` (not loading its log).
pub(crate) fn open_table(
    storage: &ResolvedStorage,
    url: &str,
) -> Result<DeltaTable, DeltaTableError> {
    let url = deltalake::ensure_table_uri(url)?;
    DeltaTableBuilder::from_url(url)?
        .with_storage_options(storage.options.clone())
        .build()
}

/// Loads the latest version of the table at `url`; `None` if there is no table yet.
pub(crate) async fn load_latest(
    storage: &ResolvedStorage,
    url: &str,
) -> Result<Option<DeltaTable>, DeltaTableError> {
    let mut table = open_table(storage, url)?;
    // No log yet: say so without asking the kernel, which logs an ERROR
    // for a missing log.
    let log = deltalake::Path::from("_delta_log");
    let listed = table
        .object_store()
        .list_with_delimiter(Some(&log))
        .await
        .map_err(DeltaTableError::from)?;
    if listed.objects.is_empty() {
        return Ok(None);
    }
    match table.load().await {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state one table's batcher keeps between commits.
#[derive(Debug)]
pub(crate) struct TableWriter {
    name: TableName,
    label: String,
    url: String,
    storage: Arc<ResolvedStorage>,
    /// `None`: not loaded (or dropped after a failed commit).
    table: Option<DeltaTable>,
    /// Whether the table has a log (`table` is loaded).
    exists: bool,
    /// Last committed segment sequence per agent, as read from (or written
    /// to) the table log at the loaded version.
    txns: HashMap<String, i64>,
    writer_properties: WriterProperties,
    limits: ColumnLimits,
}

/// The column limits of `[tables]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnLimits {
    pub(crate) max_columns: usize,
    pub(crate) max_new_columns: usize,
}

/// A request that passed every check, converted later.
struct Accepted {
    pending: Pending,
    segment: Option<(String, i64)>,
}

impl TableWriter {
    pub(crate) fn new(
        name: TableName,
        storage: Arc<ResolvedStorage>,
        limits: ColumnLimits,
    ) -> Self {
        let url = storage.table_url(&name);
        let writer_properties = parquet_properties(COMMIT_ZSTD_LEVEL);
        TableWriter {
            label: name.to_string(),
            name,
            url,
            storage,
            table: None,
            exists: false,
            txns: HashMap::new(),
            writer_properties,
            limits,
        }
    }

    fn storage_error(&self, e: DeltaTableError) -> TableError {
        TableError::storage(&self.label, e)
    }

    /// Makes `self.table` the version to commit on top of.
    async fn refresh(&mut self) -> Result<(), DeltaTableError> {
        match &mut self.table {
            Some(_) if self.exists && !self.storage.multi_writer => Ok(()),
            Some(table) if self.exists => {
                let before = table.version();
                table.update_incremental(None).await?;
                if table.version() != before {
                    self.txns.clear();
                }
                Ok(())
            }
            _ => {
                self.txns.clear();
                match load_latest(&self.storage, &self.url).await? {
                    Some(table) => {
                        self.table = Some(table);
                        self.exists = true;
                    }
                    None => {
                        self.table = Some(open_table(&self.storage, &self.url)?);
                        self.exists = false;
                    }
                }
                Ok(())
            }
        }
    }

    /// The last committed sequence of `agent`, from the cache or the table log.
    async fn committed(&mut self, agent: &str) -> Result<Option<i64>, DeltaTableError> {
        if let Some(v) = self.txns.get(agent) {
            return Ok(Some(*v));
        }
        let Some(table) = self.table.as_ref().filter(|_| self.exists) else {
            return Ok(None);
        };
        let version = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), agent)
            .await?;
        if let Some(v) = version {
            self.txns.insert(agent.to_owned(), v);
        }
        Ok(version)
    }

    fn current_schema(&self) -> Result<Option<Schema>, TableError> {
        match self.table.as_ref().filter(|_| self.exists) {
            None => Ok(None),
            Some(table) => {
                let state = table.snapshot().map_err(|e| self.storage_error(e))?;
                let arrow = state.snapshot().arrow_schema();
                to_logical(&arrow, &self.label).map(Some)
            }
        }
    }

    fn reject(&self, pending: Pending, error: TableError) {
        let metric = match error {
            TableError::SchemaConflict { .. } => m::SCHEMA_CONFLICTS,
            _ => m::INVALID_REQUESTS,
        };
        metrics::counter!(metric, "table" => self.label.clone()).increment(1);
        debug!(table = %self.label, error = %error, "write rejected");
        pending.answer(Err(error));
    }

    /// Checks one request against `working` (the table schema grown by the
    /// earlier requests of this batch) and grows it.
    fn check_request(
        &self,
        request: &WriteRequest,
        working: &mut Option<Schema>,
    ) -> Result<(), TableError> {
        if request.rows() == 0 {
            return Err(TableError::InvalidData(
                "the write holds no rows".to_owned(),
            ));
        }
        let mut grown = working.clone();
        for batch in &request.batches {
            let schema = batch.schema();
            validate_schema(&schema).map_err(|e| TableError::InvalidData(e.to_string()))?;
            if schema.fields().iter().any(|f| f.name() == PARTITION_COLUMN) {
                return Err(TableError::InvalidData(format!(
                    "column name {PARTITION_COLUMN:?} is reserved for the table's partition column"
                )));
            }
            check_u64_range(batch)?;
            grown = Some(match &grown {
                None => schema.as_ref().clone(),
                Some(current) => merge_schema(current, &schema).map_err(|conflict| {
                    TableError::SchemaConflict {
                        table: self.label.clone(),
                        conflict,
                    }
                })?,
            });
        }
        self.check_columns(working.as_ref(), grown.as_ref())?;
        *working = grown;
        Ok(())
    }

    /// `tables.max_columns` and `tables.max_new_columns`: a request may not
    /// grow the table past either (checked before anything is written).
    fn check_columns(
        &self,
        before: Option<&Schema>,
        after: Option<&Schema>,
    ) -> Result<(), TableError> {
        let Some(after) = after else { return Ok(()) };
        let known = |name: &str| before.is_some_and(|b| b.field_with_name(name).is_ok());
        let added: Vec<&str> = after
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !known(n))
            .collect();
        if before.is_some() && added.len() > self.limits.max_new_columns {
            return Err(TableError::InvalidData(format!(
                "table {}: the write adds {} new columns (first {:?}); at most tables.max_new_columns ({}) per write",
                self.label,
                added.len(),
                added[0],
                self.limits.max_new_columns
            )));
        }
        if after.fields().len() > self.limits.max_columns {
            let column = added.last().copied().unwrap_or("?");
            return Err(TableError::InvalidData(format!(
                "table {}: column {column:?} would make {} columns; tables.max_columns is {}",
                self.label,
                after.fields().len(),
                self.limits.max_columns
            )));
        }
        Ok(())
    }

    /// Commits a batch of requests as one Delta commit and answers each one.
    pub(crate) async fn commit(&mut self, batch: Vec<Pending>) {
        if let Err(e) = self.refresh().await {
            self.table = None;
            let error = self.storage_error(e);
            warn!(table = %self.label, error = %error, "cannot load table");
            for p in batch {
                p.answer(Err(error.clone()));
            }
            return;
        }
        let mut working = match self.current_schema() {
            Ok(s) => s,
            Err(error) => {
                for p in batch {
                    p.answer(Err(error.clone()));
                }
                return;
            }
        };

        let mut accepted: Vec<Accepted> = Vec::with_capacity(batch.len());
        let mut in_batch: HashSet<(String, i64)> = HashSet::new();
        let mut same_batch_duplicates: Vec<Pending> = Vec::new();
        for pending in batch {
            let origin = pending.request.origin.clone();
            let segment = match &origin {
                Origin::Write => None,
                Origin::Segment { agent, seq } => {
                    let Some(seq) = seq.as_delta_version() else {
                        self.reject(
                            pending,
                            TableError::InvalidData(format!(
                                "segment sequence {seq} is above {}",
                                i64::MAX
                            )),
                        );
                        continue;
                    };
                    let agent = agent.as_str().to_owned();
                    match self.committed(&agent).await {
                        Err(e) => {
                            pending.answer(Err(self.storage_error(e)));
                            continue;
                        }
                        Ok(Some(done)) if seq <= done => {
                            metrics::counter!(m::DUPLICATES, "table" => self.label.clone())
                                .increment(1);
                            debug!(table = %self.label, agent, seq, committed = done, "duplicate segment");
                            pending.answer(Ok(WriteOutcome::Duplicate { version: None }));
                            continue;
                        }
                        Ok(_) => {}
                    }
                    if in_batch.contains(&(agent.clone(), seq)) {
                        same_batch_duplicates.push(pending);
                        continue;
                    }
                    Some((agent, seq))
                }
            };
            if let Err(error) = self.check_request(&pending.request, &mut working) {
                self.reject(pending, error);
                continue;
            }
            if let Some(key) = &segment {
                in_batch.insert(key.clone());
            }
            accepted.push(Accepted { pending, segment });
        }
        let Some(working) = working.filter(|_| !accepted.is_empty()) else {
            return;
        };

        let target = Arc::new(to_storage(&working));
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut ready: Vec<Accepted> = Vec::with_capacity(accepted.len());
        for a in accepted {
            let converted: Result<Vec<RecordBatch>, TableError> = a
                .pending
                .request
                .batches
                .iter()
                .map(|b| to_storage_batch(b, &target))
                .collect();
            match converted {
                Ok(c) => {
                    batches.extend(c.into_iter().filter(|b| b.num_rows() > 0));
                    ready.push(a);
                }
                Err(error) => self.reject(a.pending, error),
            }
        }
        if ready.is_empty() {
            return;
        }
        self.write(ready, same_batch_duplicates, batches).await;
    }

    async fn write(
        &mut self,
        ready: Vec<Accepted>,
        duplicates: Vec<Pending>,
        batches: Vec<RecordBatch>,
    ) {
        let mut txns: HashMap<String, i64> = HashMap::new();
        for (agent, seq) in ready.iter().filter_map(|a| a.segment.clone()) {
            let e = txns.entry(agent).or_insert(seq);
            *e = (*e).max(seq);
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let bytes = batch_bytes(&batches);
        let Some(table) = self.table.clone() else {
            return;
        };
        let properties = CommitProperties::default()
            .with_application_transactions(
                txns.iter()
                    .map(|(agent, seq)| Transaction::new(agent, *seq))
                    .collect(),
            )
            .with_metadata([
                ("ferry.requests".to_owned(), serde_json::json!(ready.len())),
                ("ferry.rows".to_owned(), serde_json::json!(rows)),
            ]);
        let mut builder = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_writer_properties(self.writer_properties.clone())
            .with_commit_properties(properties);
        if !self.exists {
            builder = builder
                .with_partition_columns([PARTITION_COLUMN])
                .with_table_name(self.label.clone());
        }

        let started = Instant::now();
        let result = builder.await;
        metrics::histogram!(m::COMMIT_SECONDS, "table" => self.label.clone())
            .record(started.elapsed().as_secs_f64());
        let result = result.and_then(|t| {
            let v = t.version().ok_or_else(|| {
                DeltaTableError::Generic("the write returned a table without a version".into())
            })?;
            let v = i64::try_from(v)
                .map_err(|_| DeltaTableError::Generic(format!("table version {v} overflows")))?;
            Ok((t, v))
        });
        match result {
            Ok((table, version)) => {
                self.table = Some(table);
                self.exists = true;
                self.txns.extend(txns);
                let label = self.label.clone();
                metrics::counter!(m::COMMITS, "table" => label.clone()).increment(1);
                metrics::counter!(m::ROWS_COMMITTED, "table" => label.clone())
                    .increment(u64::try_from(rows).unwrap_or(u64::MAX));
                metrics::counter!(m::BYTES_COMMITTED, "table" => label.clone()).increment(bytes);
                debug!(table = %label, version, rows, requests = ready.len(), "committed");
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
                // Reload before the next commit: another writer may have won.
                self.table = None;
                self.exists = false;
                metrics::counter!(m::COMMIT_FAILURES, "table" => self.label.clone()).increment(1);
                let error = self.storage_error(e);
                warn!(table = %self.label, error = %error, requests = ready.len(), "commit failed");
                for p in ready.into_iter().map(|a| a.pending).chain(duplicates) {
                    p.answer(Err(error.clone()));
                }
            }
        }
    }

    pub(crate) fn name(&self) -> &TableName {
        &self.name
    }
}
