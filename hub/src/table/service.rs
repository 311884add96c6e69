//! [`Tables`]: the handle the rest of the hub uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock};

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::batcher::{self, Command};
use super::config::{ResolvedStorage, StorageConfig, TableConfig, redacted};
use super::error::TableError;
use super::listing::Known;
use super::metrics as m;
use super::name::{TableName, WriteOutcome, WriteRequest};
use super::requests::Requests;
use super::scan::ScanFiles;
use super::writer::{Pending, TableWriter};

static REGISTER_HANDLERS: Once = Once::new();

/// Every Ferry table in one store: writes go through per-table commit
/// batchers, reads through the catalog of [`Tables::register_catalog`].
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tables {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) storage: Arc<ResolvedStorage>,
    pub(super) config: TableConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Each table's queue and its one-writer lock (held by its batcher for
    /// the batcher's whole life). Entries of idle tables are pruned.
    batchers: Mutex<HashMap<TableName, Batcher>>,
    /// Loaded tables for queries, brought up to date when a query names
    /// them, with when each was last used; entries unused for
    /// `tables.idle_timeout` are dropped.
    pub(super) readers: tokio::sync::Mutex<HashMap<TableName, Reader>>,
    /// The tables that exist, as far as this hub knows (`listing.rs`).
    pub(super) known: RwLock<Known>,
    /// Requests handed to a batcher queue so far.
    pushed: AtomicU64,
    /// What writers ask of maintenance (checkpoints, compactions).
    pub(super) requests: Requests,
    /// The last-value caches, fed by every commit.
    pub(super) last_caches: crate::lastcache::Registry,
    /// On a read replica (`replica.role = "reader"`): how old a cached
    /// table may be when a query uses it without reading the log again.
    pub(super) follow: std::sync::OnceLock<std::time::Duration>,
    /// Milliseconds since the snapshot the latest query used was known to
    /// be the latest (a replica's lag; 0 on a writer).
    pub(super) served_age_ms: AtomicU64,
    /// Whether this hub runs the tables' scheduled maintenance.
    pub(super) lease: crate::maintenance::lease::Lease,
}

/// A loaded table in the reader cache: the table, the files its scan reads
/// at that version (built on first use, see [`ScanFiles`]) and when a query
/// last named it.
#[derive(Debug, Clone)]
pub(super) struct Reader {
    pub(super) table: DeltaTable,
    pub(super) scan: Option<Arc<ScanFiles>>,
    pub(super) used: std::time::Instant,
    /// When `table` was last known to be the table's latest version.
    pub(super) checked: std::time::Instant,
}

/// A table's queue, its writer lock and the Arrow bytes of the writes it
/// holds (queued or committing; both outlive one batcher).
#[derive(Debug)]
struct Batcher {
    tx: mpsc::Sender<Command>,
    writer_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held by the writer around each append and by a compaction around
    /// its commit (see `compact.rs`).
    commit_gate: Arc<tokio::sync::Mutex<()>>,
    queued: Arc<AtomicU64>,
}

/// Bytes a write holds against its table's `tables.max_queued_bytes`,
/// given back when the write is answered or abandoned.
struct QueuedBytes {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl QueuedBytes {
    /// Takes `bytes` unless the table already holds some and would then
    /// hold more than `limit`.
    fn take(counter: Arc<AtomicU64>, bytes: u64, limit: u64) -> Result<Self, u64> {
        let before = counter.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before.saturating_add(bytes) > limit {
            counter.fetch_sub(bytes, Ordering::AcqRel);
            return Err(before);
        }
        Ok(QueuedBytes { counter, bytes })
    }
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Tables {
    /// Checks the storage config, lists the store once (so bad credentials
    /// or a missing bucket fail here), and returns the handle. Batchers stop
    /// when `shutdown` is cancelled, after committing what they hold.
    pub async fn open(
        storage: &StorageConfig,
        config: &TableConfig,
        shutdown: CancellationToken,
    ) -> Result<Tables, TableError> {
        Tables::open_with(storage, config, None, shutdown).await
    }

    /// Makes this a read replica's tables: other hubs write the store, and
    /// a cached table checked less than `max_staleness` ago is served
    /// without reading its log again. Set once, before serving.
    pub fn follow_writers(&self, max_staleness: std::time::Duration) {
        let _ = self.inner.follow.set(max_staleness);
    }

    /// On a read replica, how long before the latest query the snapshot
    /// it used was known to be the latest; `None` on a writer.
    pub fn replica_lag(&self) -> Option<std::time::Duration> {
        self.inner.follow.get().map(|_| {
            std::time::Duration::from_millis(
                self.inner
                    .served_age_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// [`Tables::open`], encrypting every object when `encryption` is
    /// given. A store written with encryption is refused without it, and
    /// encryption is refused for a store that holds plaintext tables
    /// ([`crate::encryption::lake`]).
    pub async fn open_with(
        storage: &StorageConfig,
        config: &TableConfig,
        encryption: Option<Arc<crate::encryption::Encryption>>,
        shutdown: CancellationToken,
    ) -> Result<Tables, TableError> {
        REGISTER_HANDLERS.call_once(|| {
            deltalake::aws::register_handlers(None);
            deltalake::azure::register_handlers(None);
        });
        let mut resolved = storage.resolve()?;
        resolved.encryption = encryption;
        let root_url = url::Url::parse(&resolved.root)
            .map_err(|e| TableError::Config(format!("{}: {e}", resolved.root)))?;
        let (raw, root) = super::store::plain_root_store(&resolved, &root_url)
            .map_err(|e| TableError::Config(format!("{}: {e}", resolved.root)))?;
        crate::encryption::lake::check(
            raw.as_ref(),
            &root,
            resolved.encryption.as_deref(),
            &resolved.root,
        )
        .await
        .map_err(TableError::Config)?;
        info!(
            root = %resolved.root,
            options = ?redacted(&resolved.options),
            multi_writer = resolved.multi_writer,
            encrypted = resolved.encryption.is_some(),
            "opening tables"
        );
        let tables = Tables {
            inner: Arc::new(Inner {
                storage: Arc::new(resolved),
                config: config.clone(),
                shutdown,
                tracker: TaskTracker::new(),
                batchers: Mutex::new(HashMap::new()),
                readers: tokio::sync::Mutex::new(HashMap::new()),
                known: RwLock::new(Known::default()),
                pushed: AtomicU64::new(0),
                requests: Requests::default(),
                last_caches: crate::lastcache::Registry::default(),
                follow: std::sync::OnceLock::new(),
                served_age_ms: AtomicU64::new(0),
                lease: crate::maintenance::lease::Lease::default(),
            }),
        };
        let existing = tables.list().await?;
        info!(tables = existing.len(), "tables opened");
        Ok(tables)
    }

    /// `[encryption]`, when on.
    pub fn encryption(&self) -> Option<&Arc<crate::encryption::Encryption>> {
        self.inner.storage.encryption.as_ref()
    }

    /// The store without encryption, and the root's path in it: the raw
    /// objects, for the re-encryption job.
    pub(crate) fn raw_root(
        &self,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path), TableError> {
        let storage = &self.inner.storage;
        let url = url::Url::parse(&storage.root)
            .map_err(|e| TableError::Config(format!("{}: {e}", storage.root)))?;
        super::store::plain_root_store(storage, &url)
            .map_err(|e| TableError::storage(&storage.root, e))
    }

    /// Whether this hub runs the tables' scheduled maintenance (compaction,
    /// retention, continuous queries, alert rules): always when it writes
    /// them alone; with several writers, while it holds the lease.
    pub fn lease(&self) -> &crate::maintenance::lease::Lease {
        &self.inner.lease
    }

    /// Whether other hubs may commit to these tables (`multi_writer`).
    pub fn multi_writer(&self) -> bool {
        self.inner.storage.multi_writer
    }

    /// What the tables' writers ask of maintenance.
    pub fn requests(&self) -> &Requests {
        &self.inner.requests
    }

    /// The last-value caches (fed by every commit of this hub).
    pub fn last_caches(&self) -> &crate::lastcache::Registry {
        &self.inner.last_caches
    }

    fn sender(
        &self,
        table: &TableName,
    ) -> Result<(mpsc::Sender<Command>, Arc<AtomicU64>), TableError> {
        let inner = &self.inner;
        let mut batchers = inner
            .batchers
            .lock()
            .map_err(|_| TableError::ShuttingDown)?;
        if let Some(b) = batchers.get(table).filter(|b| !b.tx.is_closed()) {
            return Ok((b.tx.clone(), b.queued.clone()));
        }
        if inner.shutdown.is_cancelled() {
            return Err(TableError::ShuttingDown);
        }
        // Tables whose batcher has ended and released its lock are
        // forgotten; a batcher still draining keeps its entry (and its lock,
        // which the replacement below waits on).
        batchers.retain(|name, b| {
            name == table
                || !b.tx.is_closed()
                || b.writer_lock.try_lock().is_err()
                || b.queued.load(Ordering::Acquire) > 0
        });
        let (writer_lock, commit_gate, queued) = batchers
            .get(table)
            .map(|b| {
                (
                    b.writer_lock.clone(),
                    b.commit_gate.clone(),
                    b.queued.clone(),
                )
            })
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel(inner.config.queue_depth.get());
        let writer = TableWriter::new(
            table.clone(),
            inner.storage.clone(),
            inner.config.column_limits(),
            inner.requests.clone(),
            commit_gate.clone(),
            inner.last_caches.clone(),
        );
        let run = batcher::run(
            writer,
            rx,
            inner.config.clone(),
            inner.shutdown.clone(),
            writer_lock.clone(),
        );
        let label = table.to_string();
        // Supervised: a panic ends this table's batcher only. Its queue is
        // dropped, so every write it held or had queued is answered at once
        // (`WriterFailed`, 503) instead of hanging, and the next write to
        // the table starts a new batcher (the closed sender is replaced).
        inner.tracker.spawn(async move {
            if let Err(e) = tokio::spawn(run).await
                && e.is_panic()
            {
                crate::supervise::panicked("batcher", &label, e);
            }
        });
        batchers.insert(
            table.clone(),
            Batcher {
                tx: tx.clone(),
                writer_lock,
                commit_gate,
                queued: queued.clone(),
            },
        );
        Ok((tx, queued))
    }

    /// The commit gate of `table`'s writer on this hub, when it has one.
    pub(super) fn commit_gate(&self, table: &TableName) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.inner
            .batchers
            .lock()
            .ok()?
            .get(table)
            .map(|b| b.commit_gate.clone())
    }

    fn has_batcher(&self, table: &TableName) -> bool {
        self.inner
            .batchers
            .lock()
            .is_ok_and(|b| b.get(table).is_some_and(|b| !b.tx.is_closed()))
    }

    /// The error for a write whose batcher went away.
    fn gone(&self, table: &TableName) -> TableError {
        if self.inner.shutdown.is_cancelled() {
            TableError::ShuttingDown
        } else {
            TableError::WriterFailed {
                table: table.to_string(),
            }
        }
    }

    /// Queues rows for `request.table`. Resolves once the commit holding them
    /// is durable in the object store (or with the reason it is not). Waits
    /// while the table's queue is full.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, TableError> {
        let table = request.table.clone();
        let mut answers = self.submit(&table, vec![request]).await?;
        answers.pop().unwrap_or_else(|| Err(self.gone(&table)))
    }

    /// Queues several requests for one table, all for `table`, so that they
    /// land in the same commit: one answer per request, in order. The whole
    /// group fails if it cannot be queued (the first answer then holds the
    /// reason for every request). A request rejected on its own (a schema
    /// conflict, a duplicate segment) does not hold back the others.
    pub async fn write_group(
        &self,
        table: &TableName,
        requests: Vec<WriteRequest>,
    ) -> Vec<Result<WriteOutcome, TableError>> {
        let count = requests.len();
        if let Some(other) = requests.iter().find(|r| r.table != *table) {
            let error = TableError::InvalidData(format!(
                "a write group for {table} holds a request for {}",
                other.table
            ));
            return vec![Err(error); count];
        }
        match self.submit(table, requests).await {
            Ok(answers) => answers,
            Err(error) => vec![Err(error); count],
        }
    }

    /// Hands `requests` to the table's batcher as one command and waits for
    /// their answers.
    async fn submit(
        &self,
        table: &TableName,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<Result<WriteOutcome, TableError>>, TableError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(TableError::ShuttingDown);
        }
        super::config::check_storage_form(table).map_err(TableError::InvalidData)?;
        let label = table.to_string();
        if !self.has_batcher(table) {
            self.check_table_count(table).await?;
        }
        let bytes: usize = requests
            .iter()
            .flat_map(|r| r.batches.iter())
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let limit = self.inner.config.max_queued_bytes.as_u64();
        let mut answers = Vec::with_capacity(requests.len());
        let group: Vec<Pending> = requests
            .into_iter()
            .map(|request| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Pending { request, reply }
            })
            .collect();
        let pushed = group.len() as u64;
        let mut command = Command::Write(group);
        let mut held_bytes = None;
        // A batcher that went idle closes its queue; the write then goes to
        // the new batcher the next `sender` starts (once, a second closed
        // queue means the batcher failed).
        for attempt in 0..2 {
            let (tx, queued) = self.sender(table)?;
            if held_bytes.is_none() {
                let held = QueuedBytes::take(queued, bytes as u64, limit).map_err(|queued| {
                    metrics::counter!(m::QUEUE_REFUSED, "table" => label.clone()).increment(1);
                    TableError::QueueFull {
                        table: label.clone(),
                        queued: bytesize::ByteSize::b(queued),
                        limit: self.inner.config.max_queued_bytes,
                    }
                })?;
                held_bytes = Some(held);
            }
            match tx.send(command).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) if attempt == 0 => command = back,
                Err(_) => return Err(self.gone(table)),
            }
        }
        self.inner.pushed.fetch_add(pushed, Ordering::Relaxed);
        metrics::counter!(m::QUEUE_PUSHED, "table" => label).increment(pushed);
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(answer.await.map_err(|_| self.gone(table)).and_then(|o| o));
        }
        drop(held_bytes);
        if outcomes.iter().any(Result::is_ok) {
            self.remember(table);
        }
        Ok(outcomes)
    }

    /// Requests handed to a batcher so far (for tests that must not race shutdown).
    #[cfg(test)]
    pub(crate) fn pushed(&self) -> u64 {
        self.inner.pushed.load(Ordering::Relaxed)
    }

    /// Commits everything queued so far, in every table, and waits for it.
    pub async fn flush(&self) {
        let senders: Vec<mpsc::Sender<Command>> = match self.inner.batchers.lock() {
            Ok(b) => b.values().map(|b| b.tx.clone()).collect(),
            Err(_) => return,
        };
        let mut waits = Vec::with_capacity(senders.len());
        for tx in senders {
            let (done, wait) = oneshot::channel();
            if tx.send(Command::Flush(done)).await.is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }

    /// Waits until every batcher has stopped. Call after cancelling the
    /// shutdown token: the batchers commit what they hold, then end.
    pub async fn wait_stopped(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// How many tables hold a live batcher and how many a cached reader.
    #[cfg(test)]
    pub(crate) async fn held(&self) -> (usize, usize) {
        let batchers = self
            .inner
            .batchers
            .lock()
            .map_or(0, |b| b.values().filter(|b| !b.tx.is_closed()).count());
        (batchers, self.inner.readers.lock().await.len())
    }
}
