//! Where queries run: a tokio runtime of their own, one DataFusion memory
//! pool and spill directory for all of them, and admission.
//!
//! * **Apart from ingest.** DataFusion work runs on the query runtime's
//!   threads (`query.threads`), never on the runtime that answers writes,
//!   segment uploads, `/health` and `/metrics`: a query that keeps its
//!   threads busy delays other queries, not ingest.
//! * **Memory.** Every query's session shares one `RuntimeEnv` whose
//!   `FairSpillPool` holds `query.memory_limit`: sorts and aggregations
//!   spill to `query.spill_dir` (at most `query.spill_max`) beyond their
//!   fair share, and a query that cannot fit fails with
//!   `resources_exhausted` instead of growing the heap.
//! * **Admission.** At most `query.max_concurrent` queries run; up to
//!   `query.max_queued` more wait (each at most `query.queue_timeout`, then
//!   503 with `Retry-After`); beyond, 429 with `Retry-After`. One token (or,
//!   with auth off, one client address) runs at most `query.max_per_token`
//!   queries, fewer than `max_concurrent` by default, so that it cannot take
//!   every slot; its next `query.max_queued_per_token` wait, and beyond
//!   that it is answered 429.
//! * **Time.** `query.timeout` counts from admission to the last row: the
//!   client has its 504 then, because the request waits on the query task
//!   from the other runtime, and the task is aborted. Every operator of the
//!   plan is wrapped so that it yields to the scheduler between batches
//!   ([`super::coop`]), so an aborted query stops at its next batch and gives
//!   its thread and its memory back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use deltalake::datafusion::config::ConfigOptions;
use deltalake::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use ferry_protocols::api::ErrorCode;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::config::QueryConfig;
use super::engine::SessionBase;
use crate::metrics as m;
use crate::server::ApiError;

/// Why the executor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("query runtime: {0}")]
    Runtime(std::io::Error),
    #[error("query.spill_dir {path}: {source}")]
    SpillDir {
        path: String,
        source: std::io::Error,
    },
    #[error("query memory pool: {0}")]
    DataFusion(String),
    #[error("{0}")]
    Options(String),
}

/// The query runtime and its limits. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct QueryExecutor {
    handle: tokio::runtime::Handle,
    /// Owned so that it stops with the executor; taken in `Drop`.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    env: Arc<RuntimeEnv>,
    /// `query.datafusion` over DataFusion's defaults.
    options: Arc<ConfigOptions>,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    per_token: TokenMap,
    config: QueryConfig,
}

/// One token's queries in the system: a semaphore of `max_per_token`
/// running slots and the count of its queries running or waiting.
#[derive(Debug)]
struct TokenState {
    running: Arc<Semaphore>,
    present: usize,
}

type TokenMap = Arc<Mutex<HashMap<String, TokenState>>>;

/// Counts a token's queries down again however the request ends.
struct TokenSlot {
    map: TokenMap,
    who: String,
    running: Arc<Semaphore>,
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.get_mut(&self.who) {
            state.present = state.present.saturating_sub(1);
            if state.present == 0 {
                map.remove(&self.who);
            }
        }
    }
}

/// Aborts the query task if the request goes away (client gone, timeout).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueryExecutor {
    /// Builds the runtime, the memory pool and the spill directory.
    /// `spill_dir` is created if missing and emptied of earlier spill files.
    pub fn new(config: &QueryConfig, spill_dir: &std::path::Path) -> Result<Self, ExecutorError> {
        let options = Arc::new(config.session_options().map_err(ExecutorError::Options)?);
        let threads = config.thread_count();
        let spill_err = |source| ExecutorError::SpillDir {
            path: spill_dir.display().to_string(),
            source,
        };
        if spill_dir.exists() {
            std::fs::remove_dir_all(spill_dir).map_err(spill_err)?;
        }
        std::fs::create_dir_all(spill_dir).map_err(spill_err)?;
        let memory = usize::try_from(config.memory_limit.as_u64()).unwrap_or(usize::MAX);
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![spill_dir.to_path_buf()]))
                    .with_max_temp_directory_size(config.spill_max.as_u64()),
            )
            .build_arc()
            .map_err(|e| ExecutorError::DataFusion(e.to_string()))?;
        // Built last: a runtime dropped on an error path above would panic
        // (this runs inside the hub's own runtime).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ferry-query")
            .enable_all()
            .build()
            .map_err(ExecutorError::Runtime)?;
        let running = config.max_concurrent.get();
        Ok(QueryExecutor {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            env,
            options,
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(Semaphore::new(running + config.max_queued)),
            waiting: Arc::new(AtomicUsize::new(0)),
            per_token: Arc::new(Mutex::new(HashMap::new())),
            config: config.clone(),
        })
    }

    /// What every query session starts from: the shared runtime env (the
    /// memory pool, the spill directory, the Parquet metadata cache) and
    /// the session options.
    pub fn session_base(&self) -> SessionBase {
        SessionBase {
            env: self.env.clone(),
            options: self.options.clone(),
            readable: None,
        }
    }

    /// The memory pool every query shares (each query counts its own
    /// share in front of it, [`super::memory`]).
    pub fn memory_pool(
        &self,
    ) -> Arc<dyn deltalake::datafusion::execution::memory_pool::MemoryPool> {
        self.env.memory_pool.clone()
    }

    /// The limits.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Runs `work` on the query runtime for the token `who`, within the
    /// admission limits and `query.timeout`, until `cancel` fires
    /// (`DELETE /api/v1/queries/{id}`; waiting or running).
    pub async fn run<T, F>(
        &self,
        who: &str,
        cancel: &CancellationToken,
        work: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let Ok(_admitted) = self.admitted.clone().try_acquire_owned() else {
            metrics::counter!(m::QUERIES_REFUSED, "reason" => "queue_full").increment(1);
            return Err(ApiError::too_many_requests(
                format!(
                    "{} queries are running and {} waiting (query.max_concurrent, query.max_queued); retry shortly",
                    self.config.max_concurrent, self.config.max_queued
                ),
                1,
            ));
        };
        let token = self.token_slot(who)?;
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.timeout;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::QUERIES_WAITING).increment(1.0);
        let wait = self.config.queue_timeout.min(self.config.timeout);
        // A token's own slot first, then a shared one: a token that already
        // runs max_per_token queries waits without holding a shared slot, so
        // one client never takes every slot from the others.
        let mut waited_for_own = true;
        let permit = tokio::select! {
            p = tokio::time::timeout(wait, async {
                let own = token.running.clone().acquire_owned().await?;
                waited_for_own = false;
                let shared = self.running.clone().acquire_owned().await?;
                Ok::<_, tokio::sync::AcquireError>((own, shared))
            }) => Some(p),
            () = cancel.cancelled() => None,
        };
        let Some(permit) = permit else {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!(m::QUERIES_WAITING).decrement(1.0);
            return Err(cancelled());
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::QUERIES_WAITING).decrement(1.0);
        let _permits = match permit {
            Ok(Ok(p)) => p,
            _ => {
                metrics::counter!(m::QUERIES_REFUSED, "reason" => "queue_timeout").increment(1);
                let busy = if waited_for_own {
                    format!(
                        "this token already runs {} queries (query.max_per_token)",
                        self.config.max_per_token
                    )
                } else {
                    format!(
                        "{} queries are running (query.max_concurrent)",
                        self.config.max_concurrent
                    )
                };
                return Err(ApiError::unavailable(format!(
                    "no query slot within {}: {busy}; retry shortly",
                    humantime::format_duration(wait),
                ))
                .with_retry_after(2));
            }
        };
        metrics::gauge!(m::QUERIES_RUNNING).increment(1.0);
        let task = AbortOnDrop(self.handle.spawn(work));
        let result = tokio::time::timeout_at(deadline, async {
            let mut task = task;
            tokio::select! {
                r = &mut task.0 => Some(r),
                () = cancel.cancelled() => None,
            }
        })
        .await;
        metrics::gauge!(m::QUERIES_RUNNING).decrement(1.0);
        match result {
            Ok(None) => Err(cancelled()),
            Ok(Some(Ok(answer))) => answer,
            Ok(Some(Err(e))) if e.is_panic() => {
                crate::supervise::panicked("query", who, e);
                Err(ApiError::new(
                    ErrorCode::Internal,
                    "internal error: the query engine failed on this query (logged)",
                ))
            }
            Ok(Some(Err(_))) => Err(ApiError::unavailable("the query was cancelled")),
            Err(_) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "the query ran longer than query.timeout ({})",
                    humantime::format_duration(self.config.timeout)
                ),
            )),
        }
    }

    /// Queries running or waiting now.
    pub fn busy(&self) -> usize {
        self.config.max_concurrent.get() - self.running.available_permits()
            + self.waiting.load(Ordering::Relaxed)
    }

    fn token_slot(&self, who: &str) -> Result<TokenSlot, ApiError> {
        let mut map = self.per_token.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.config.max_per_token.get();
        let state = map.entry(who.to_owned()).or_insert_with(|| TokenState {
            running: Arc::new(Semaphore::new(running)),
            present: 0,
        });
        let most = running + self.config.max_queued_per_token;
        if state.present >= most {
            metrics::counter!(m::QUERIES_REFUSED, "reason" => "per_token").increment(1);
            return Err(ApiError::too_many_requests(
                format!(
                    "this token already has {} queries running or waiting (query.max_per_token + query.max_queued_per_token); retry when one has finished",
                    state.present
                ),
                1,
            ));
        }
        state.present += 1;
        Ok(TokenSlot {
            map: self.per_token.clone(),
            who: who.to_owned(),
            running: state.running.clone(),
        })
    }

    /// Stops the runtime without waiting for queries still running (their
    /// requests have been answered or abandoned by then).
    pub fn shutdown(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
    }
}

/// The answer to a query cancelled through the API.
fn cancelled() -> ApiError {
    ApiError::unavailable("the query was cancelled (DELETE /api/v1/queries/{id})")
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        let runtime = self
            .runtime
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
    }
}
