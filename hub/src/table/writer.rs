//! One table's commit logic: deduplicate, validate, evolve the schema, and
//! make one Delta commit for a batch of write requests.

mod commit;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::logstore::LogStoreRef;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::{BlindDeltaTable, DeltaTable, DeltaTableBuilder, DeltaTableError};
use ferry_protocols::batch::{merge_schema, validate_schema};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::append::Log;
use super::config::ResolvedStorage;
use super::error::TableError;
use super::local_log::log_exists;
use super::metrics as m;
use super::name::{Origin, TableName, WriteOutcome, WriteRequest};
use super::requests::Requests;
use super::schema::{
    PARTITION_COLUMN, check_u64_range, parquet_properties, to_logical, to_storage, to_storage_batch,
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

/// Opens the Delta table at `url` (not loading its log), through the
/// store [`super::store::root_store`] builds.
pub(crate) fn open_table(
    storage: &ResolvedStorage,
    url: &str,
) -> Result<DeltaTable, DeltaTableError> {
    let url = deltalake::ensure_table_uri(url)?;
    let builder = DeltaTableBuilder::from_url(url.clone())?;
    if url.scheme() != "file" && storage.encryption.is_none() {
        return builder
            .with_storage_options(storage.options.clone())
            .build();
    }
    let (store, _) = super::store::root_store(storage, &url)?;
    builder
        .with_storage_options(storage.options.clone())
        .with_storage_backend(store, url)
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
    if !log_exists(table.object_store().as_ref()).await? {
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
    /// The table's log store, opened once.
    log_store: Option<LogStoreRef>,
    /// The log-only snapshot appends commit on. `None`: not loaded, no
    /// table yet, or dropped after a failed commit or a schema change.
    log: Option<Log>,
    /// Builds the data files of appends (`RecordBatchWriter`), at the
    /// schema of `log`; dropped when the schema changes.
    files: Option<BlindDeltaTable>,
    /// Asks maintenance for checkpoints and compactions.
    requests: Requests,
    /// Last committed segment sequence per agent, as read from (or written
    /// to) the table log at the loaded version.
    txns: HashMap<String, i64>,
    writer_properties: WriterProperties,
    limits: ColumnLimits,
    /// Files added since the last ask for a compaction.
    files_since_ask: u64,
    /// Held around each append; a compaction of the table takes it for
    /// its commit, so the two do not race for versions on this hub.
    commit_gate: Arc<tokio::sync::Mutex<()>>,
    /// Fed the rows of every commit before it is answered.
    last_caches: crate::lastcache::Registry,
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
        requests: Requests,
        commit_gate: Arc<tokio::sync::Mutex<()>>,
        last_caches: crate::lastcache::Registry,
    ) -> Self {
        let url = storage.table_url(&name);
        let writer_properties = parquet_properties(COMMIT_ZSTD_LEVEL);
        TableWriter {
            label: name.to_string(),
            name,
            url,
            storage,
            log_store: None,
            log: None,
            files: None,
            requests,
            txns: HashMap::new(),
            writer_properties,
            limits,
            files_since_ask: 0,
            commit_gate,
            last_caches,
        }
    }

    fn storage_error(&self, e: DeltaTableError) -> TableError {
        TableError::storage(&self.label, e)
    }

    fn log_store(&mut self) -> Result<LogStoreRef, DeltaTableError> {
        if let Some(store) = &self.log_store {
            return Ok(store.clone());
        }
        let store = open_table(&self.storage, &self.url)?.log_store();
        self.log_store = Some(store.clone());
        Ok(store)
    }

    /// Makes `self.log` the version to commit on top of: as it is for a
    /// single writer (the hub's own commits keep it true), advanced to the
    /// latest version when other hubs write the table.
    async fn refresh(&mut self) -> Result<(), DeltaTableError> {
        match &mut self.log {
            Some(_) if !self.storage.multi_writer => Ok(()),
            Some(log) => {
                let before = log.version();
                log.advance().await?;
                if log.version() != before {
                    self.txns.clear();
                }
                Ok(())
            }
            None => {
                self.txns.clear();
                let store = self.log_store()?;
                self.log = Log::load(&store).await?;
                Ok(())
            }
        }
    }

    /// The last committed sequence of `agent`, from the cache or the table log.
    async fn committed(&mut self, agent: &str) -> Result<Option<i64>, DeltaTableError> {
        if let Some(v) = self.txns.get(agent) {
            return Ok(Some(*v));
        }
        let Some(log) = &self.log else {
            return Ok(None);
        };
        #[cfg(test)]
        if crate::test_faults::take(crate::test_faults::Fault::TxnRead, &self.label) {
            return Err(DeltaTableError::Generic(
                "test fault: the txn read fails".to_owned(),
            ));
        }
        let version = log.app_version(agent).await?;
        if let Some(v) = version {
            self.txns.insert(agent.to_owned(), v);
        }
        Ok(version)
    }

    fn current_schema(&self) -> Result<Option<Schema>, TableError> {
        match &self.log {
            None => Ok(None),
            Some(log) => {
                let arrow = log.arrow_schema().map_err(|e| self.storage_error(e))?;
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
            self.log = None;
            let error = self.storage_error(e);
            warn!(table = %self.label, error = %error, "cannot load table");
            for p in batch {
                p.answer(Err(error.clone()));
            }
            return;
        }
        let before = match self.current_schema() {
            Ok(s) => s,
            Err(error) => {
                for p in batch {
                    p.answer(Err(error.clone()));
                }
                return;
            }
        };
        let mut working = before.clone();

        let mut accepted: Vec<Accepted> = Vec::with_capacity(batch.len());
        let mut in_batch: HashSet<(String, i64)> = HashSet::new();
        let mut same_batch_duplicates: Vec<Pending> = Vec::new();
        // Agents whose `txn` could not be read in this batch: none of their
        // later segments may commit, or the retry of the failed one (a lower
        // sequence) would be taken for a duplicate.
        let mut unreadable: HashMap<String, TableError> = HashMap::new();
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
                    if let Some(error) = unreadable.get(&agent) {
                        pending.answer(Err(error.clone()));
                        continue;
                    }
                    match self.committed(&agent).await {
                        Err(e) => {
                            let error = self.storage_error(e);
                            unreadable.insert(agent, error.clone());
                            pending.answer(Err(error));
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
        let evolves = before.as_ref() != Some(&working);
        self.write(ready, same_batch_duplicates, batches, evolves)
            .await;
    }

    pub(crate) fn name(&self) -> &TableName {
        &self.name
    }
}
