//! Bulk import: CSV, Parquet and line protocol files as jobs.
//!
//! A file arrives in one request (raw body or multipart field `file`,
//! streamed to disk, never held in memory) or as a resumable upload in
//! pieces ([`spool`]); either way it is hashed on arrival. The request's
//! options ([`options`]) and the hash make the job's key: the same file
//! imported the same way again finds its first job and writes nothing.
//!
//! A job reads its file in chunks of `import.chunk_rows` input rows
//! ([`source`]) and commits each chunk with a Delta `txn` (app id: the
//! key, version: the chunk's number) in every table it touches, so a
//! chunk is in a table once, whatever happens: a hub killed mid-job
//! queues the job again at start and resumes it, and chunks already in
//! are answered as duplicates (counted, not written). Parsing the next
//! chunk overlaps the commit of the previous one.
//!
//! Jobs run `import.max_running_jobs` at a time in the background, beside
//! ingest: a commit of an import chunk shares its table's commit like any
//! write. See `docs/hub-api-data.md` for the routes and
//! `docs/decisions/0013-bulk-import.md` for the choices.

pub mod cli;
mod config;
pub(crate) mod csv;
#[cfg(test)]
mod fuzz_tests;
mod job;
pub mod options;
pub(crate) mod parquet;
pub mod routes;
pub(crate) mod source;
mod spool;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::ImportConfig;

use crate::meta::Meta;
use crate::table::Tables;

/// The import service: received files, the job queue and its workers.
#[derive(Debug, Clone)]
pub struct Imports {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tables: Tables,
    /// Usage: the rows a job commits count for the token that created it.
    quotas: crate::quota::Quotas,
    meta: Meta,
    config: ImportConfig,
    max_columns: usize,
    spool: spool::Spool,
    /// `import.max_uploads`.
    uploads: Arc<Semaphore>,
    /// A job was queued.
    wake: Notify,
    /// Jobs asked to stop (`DELETE /api/v1/import/jobs/{id}`).
    cancelled: Mutex<HashSet<String>>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Imports {
    pub fn new(
        tables: Tables,
        meta: Meta,
        config: ImportConfig,
        spool_dir: PathBuf,
        max_columns: usize,
        quotas: crate::quota::Quotas,
    ) -> Self {
        Imports {
            inner: Arc::new(Inner {
                quotas,
                spool: spool::Spool::new(spool_dir, &config),
                uploads: Arc::new(Semaphore::new(config.max_uploads)),
                tables,
                meta,
                config,
                max_columns,
                wake: Notify::new(),
                cancelled: Mutex::new(HashSet::new()),
                stop: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &ImportConfig {
        &self.inner.config
    }

    /// Prepares the spool, queues the jobs a stopped hub left running, and
    /// starts the workers.
    pub async fn start(&self) -> std::io::Result<()> {
        self.inner.spool.prepare()?;
        match self.inner.meta.requeue_running_imports().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "import jobs interrupted by the last stop resume"),
            Err(e) => tracing::warn!(error = %e, "cannot queue interrupted import jobs"),
        }
        for _ in 0..self.inner.config.max_running_jobs {
            let this = self.clone();
            self.inner.tracker.spawn(async move { this.work().await });
        }
        Ok(())
    }

    /// Asks the workers to stop after their current chunk.
    pub fn cancel(&self) {
        self.inner.stop.cancel();
    }

    /// Stops the workers (a running job stays queued for the next start)
    /// and waits for them.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    async fn work(&self) {
        let inner = &self.inner;
        loop {
            if inner.stop.is_cancelled() {
                return;
            }
            match inner.meta.claim_import_job().await {
                Ok(Some(job)) => {
                    let this = self.clone();
                    let id = job.id.clone();
                    // A panic fails this job, not the worker.
                    if let Err(e) =
                        tokio::spawn(async move { job::run(&this.inner, job).await }).await
                    {
                        crate::supervise::record("import", "job", &e.to_string());
                        let _ = inner
                            .meta
                            .finish_import_job(
                                &id,
                                crate::meta::imports::FAILED,
                                Some(format!("internal fault: {e}")),
                            )
                            .await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = inner.stop.cancelled() => return,
                        () = inner.wake.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take an import job");
                    tokio::select! {
                        () = inner.stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        }
    }
}
