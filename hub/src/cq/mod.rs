//! Continuous queries: downsampling that runs on a schedule, with Arc's
//! API (`/api/v1/continuous_queries`, see [`routes`]).
//!
//! A continuous query is an SQL statement over `{start_time}` and
//! `{end_time}` whose answer is written into a destination measurement of
//! the same database, an ordinary table:
//!
//! ```sql
//! SELECT date_bin(INTERVAL '1 hour', time) AS time, host, avg(temp) AS temp
//! FROM cpu WHERE time >= {start_time} AND time < {end_time}
//! GROUP BY 1, host
//! ```
//!
//! # Windows
//!
//! Windows are `[t, t + interval)`, aligned on the Unix epoch. A window
//! is *closed* once `continuous_queries.delay` has passed after its end.
//! Every `continuous_queries.poll_interval` the scheduler takes each
//! active query whose watermark (the end of the last window written) is
//! behind the last closed window and computes the windows from the
//! watermark, minus `lookback_windows` windows recomputed for late data,
//! to the last closed one. A query starts at the window holding its
//! creation (or at its `start_time`, which makes the scheduler backfill
//! from there). `POST .../execute` computes any range of closed windows.
//!
//! # Exactly once
//!
//! The windows are computed in chunks (`continuous_queries.backfill_chunk`
//! of time, at least one window; one window per chunk when the answer has
//! no `time` column, whose rows are then stamped with the window's start).
//! A chunk's answer *replaces* the destination's rows of the chunk's time
//! range in one Delta commit that also sets the query's `txn` (app id
//! `cq-<id>-<created ms>`) to the chunk's end ([`crate::table::Tables::replace_range`]).
//! So the rows and the watermark land together or not at all, a window
//! computed again (look-back, a manual execute, a retry after a crash) is
//! replaced, never doubled, and a hub killed at any point resumes from the
//! `txn` in the table. The metadata store keeps the watermark too, as a
//! hint (it also covers windows whose answer was empty and wrote nothing).
//! Every row of an answer must lie inside its chunk (else the execution
//! fails and writes nothing more): rows outside could not be replaced.
//!
//! The destination belongs to its query: other writes to its time range
//! are replaced by the next computation of their windows.

pub mod config;
pub mod routes;
pub mod rows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{AgentId, DatabaseName, Measurement};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::CqConfig;

use crate::meta::continuous::{ContinuousQuery, ExecutionStart};
use crate::meta::{Meta, format_ms, now_ms};
use crate::metrics as m;
use crate::query::QueryExecutor;
use crate::query::engine::{self, Limits, Probe};
use crate::server::ApiError;
use crate::table::{DeleteError, Origin, TableName, Tables, WriteRequest};
use rows::{NS_PER_MS, floor, substitute, to_write_form};

/// The answer of an execution: Arc's `ExecuteCQResponse` fields and the
/// windows computed.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub query_id: i64,
    pub query_name: String,
    pub execution_id: String,
    /// `completed`, `failed` or `dry_run`.
    pub status: String,
    /// The range computed (whole closed windows), RFC 3339.
    pub start_time: String,
    pub end_time: String,
    pub records_read: Option<i64>,
    pub records_written: i64,
    pub execution_time_seconds: f64,
    pub destination_measurement: String,
    pub dry_run: bool,
    pub executed_at: String,
    /// The statement of the first chunk, placeholders replaced.
    pub executed_query: Option<String>,
    pub windows_total: i64,
    pub windows_done: i64,
    pub error: Option<String>,
}

/// The continuous query service: executions and the scheduler.
#[derive(Debug, Clone)]
pub struct ContinuousQueries {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tables: Tables,
    meta: Meta,
    query: Arc<QueryExecutor>,
    config: CqConfig,
    /// One execution of a query at a time.
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// The `txn` app id of a query in its destination table.
pub fn app_id(cq: &ContinuousQuery) -> String {
    format!("cq-{}-{}", cq.id, cq.created_at_ms())
}

impl ContinuousQuery {
    fn created_at_ms(&self) -> i64 {
        humantime::parse_rfc3339(&self.created_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
    }
}

fn parse_names(cq: &ContinuousQuery) -> Result<(DatabaseName, TableName), ApiError> {
    let database = DatabaseName::new(cq.database.as_str())
        .map_err(|e| ApiError::bad_request(format!("database {:?}: {e}", cq.database)))?;
    let dest = Measurement::new(cq.destination_measurement.as_str()).map_err(|e| {
        ApiError::bad_request(format!(
            "destination_measurement {:?}: {e}",
            cq.destination_measurement
        ))
    })?;
    Ok((database.clone(), TableName::new(database, dest)))
}

impl ContinuousQueries {
    pub fn new(tables: Tables, meta: Meta, query: Arc<QueryExecutor>, config: CqConfig) -> Self {
        ContinuousQueries {
            inner: Arc::new(Inner {
                tables,
                meta,
                query,
                config,
                locks: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &CqConfig {
        &self.inner.config
    }

    /// Marks executions a stopped hub left running as interrupted and
    /// starts the scheduler (when enabled).
    pub async fn start(&self) {
        match self.inner.meta.interrupt_cq_executions().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                executions = n,
                "continuous query executions interrupted by the last stop"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark interrupted continuous query executions")
            }
        }
        if !self.inner.config.enabled {
            return;
        }
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let every = this.inner.config.poll_interval;
            loop {
                tokio::select! {
                    () = this.inner.stop.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                let pass = this.clone();
                if let Err(e) = tokio::spawn(async move { pass.schedule_once().await }).await {
                    crate::supervise::record(
                        "continuous queries",
                        "scheduler pass",
                        &e.to_string(),
                    );
                }
            }
        });
    }

    /// Asks the scheduler and every execution to stop at their next chunk.
    pub fn cancel(&self) {
        self.inner.stop.cancel();
    }

    /// Stops the scheduler and every execution between two chunks, and
    /// waits for them.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// The last closed window's end, in ms.
    fn closed_end(&self, interval_ms: i64) -> i64 {
        let delay = i64::try_from(self.inner.config.delay.as_millis()).unwrap_or(i64::MAX);
        floor(now_ms().saturating_sub(delay), interval_ms)
    }

    /// The watermark of `cq`: the hint, or the destination's `txn` when
    /// that is further.
    async fn watermark(&self, cq: &ContinuousQuery) -> Result<Option<i64>, ApiError> {
        let (_, dest) = parse_names(cq)?;
        let txn = self
            .inner
            .tables
            .app_version(&dest, &app_id(cq))
            .await
            .map_err(ApiError::from)?;
        Ok(match (cq.watermark_ms, txn) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }

    /// One pass of the scheduler over every active query.
    async fn schedule_once(&self) {
        if !self.inner.tables.lease().held() {
            return;
        }
        let queries = match self.inner.meta.list_cqs(None, Some(true)).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list continuous queries");
                return;
            }
        };
        for cq in queries {
            if self.inner.stop.is_cancelled() {
                return;
            }
            let closed = self.closed_end(cq.interval_ms);
            let hint = cq.watermark_ms.unwrap_or(cq.start_ms);
            let lag = (closed - hint).max(0) as f64 / 1000.0;
            metrics::gauge!(m::CQ_LAG, "query" => cq.name.clone()).set(lag);
            if closed <= hint {
                continue;
            }
            let watermark = match self.watermark(&cq).await {
                Ok(w) => w.unwrap_or(cq.start_ms).max(cq.start_ms),
                Err(e) => {
                    tracing::warn!(query = %cq.name, error = %e.message(), "cannot read the watermark");
                    continue;
                }
            };
            if closed <= watermark {
                let _ = self.inner.meta.advance_cq_watermark(cq.id, watermark).await;
                continue;
            }
            let back = cq
                .interval_ms
                .saturating_mul(i64::from(cq.lookback_windows));
            let from = watermark.saturating_sub(back).max(cq.start_ms);
            match self.run(&cq, (from, closed), false, true).await {
                Ok(done) if done.status == "failed" => tracing::warn!(
                    query = %cq.name,
                    error = done.error.as_deref().unwrap_or(""),
                    "continuous query failed"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(query = %cq.name, error = %e.message(), "continuous query failed")
                }
            }
        }
    }

    fn lock(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(id).or_default().clone()
    }

    /// `POST .../execute`: computes the closed windows of `[start, end)`
    /// (defaults: from the watermark to the last closed window).
    pub async fn execute(
        &self,
        cq: &ContinuousQuery,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        dry_run: bool,
    ) -> Result<Execution, ApiError> {
        let closed = self.closed_end(cq.interval_ms);
        let from = match start_ms {
            Some(s) => floor(s, cq.interval_ms),
            None => self.watermark(cq).await?.unwrap_or(cq.start_ms),
        };
        let to = floor(end_ms.unwrap_or(closed), cq.interval_ms).min(closed);
        if from >= to {
            return Err(ApiError::bad_request(format!(
                "no closed window in [{}, {}): windows of {} end at multiples of it, and close \
                 continuous_queries.delay ({}) after their end",
                format_ms(from),
                format_ms(end_ms.unwrap_or(closed)),
                cq.interval,
                humantime::format_duration(self.inner.config.delay)
            )));
        }
        // The execution runs as a task of the service: a client that goes
        // away does not stop it half-recorded; the hub's stop does,
        // between chunks.
        let (this, cq) = (self.clone(), cq.clone());
        let task = self
            .inner
            .tracker
            .spawn(async move { this.run(&cq, (from, to), dry_run, false).await });
        task.await
            .map_err(|e| ApiError::internal("continuous query execution", e))?
    }

    /// Plans `cq`'s statement for the window starting at `from_ms`: its
    /// answer's columns.
    /// Planned with `principal`'s read grants: a statement that reads a
    /// table the principal may not read is refused (403 naming it), so a
    /// database-scoped admin cannot make the hub copy other data into its
    /// database.
    pub async fn check(
        &self,
        principal: &crate::auth::Principal,
        database: &DatabaseName,
        query: &str,
        interval_ms: i64,
        tags: &[String],
    ) -> Result<(), ApiError> {
        let from = floor(now_ms(), interval_ms);
        let sql = substitute(query, from, from.saturating_add(interval_ms));
        let probe = Probe::new(self.inner.query.memory_pool());
        let schema = engine::output_schema(
            &self.inner.tables,
            &sql,
            Some(database),
            self.inner.query.session_base().for_principal(principal),
            self.limits(),
            probe,
        )
        .await?;
        rows::check_columns(&schema, tags).map_err(|e| ApiError::bad_request(format!("query: {e}")))
    }

    async fn answer_schema(
        &self,
        database: &DatabaseName,
        sql: &str,
    ) -> Result<deltalake::arrow::datatypes::SchemaRef, ApiError> {
        let probe = Probe::new(self.inner.query.memory_pool());
        engine::output_schema(
            &self.inner.tables,
            sql,
            Some(database),
            self.inner.query.session_base(),
            self.limits(),
            probe,
        )
        .await
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: self.inner.config.max_chunk_rows,
            max_result_bytes: usize::MAX,
            max_string_bytes: self.inner.query.config().max_string_bytes.as_u64(),
        }
    }

    /// Computes the windows of `[from, to)` in chunks, recording the
    /// execution and its progress.
    async fn run(
        &self,
        cq: &ContinuousQuery,
        (from, to): (i64, i64),
        dry_run: bool,
        scheduled: bool,
    ) -> Result<Execution, ApiError> {
        let lock = self.lock(cq.id);
        let _running = lock.lock().await;
        let started = Instant::now();
        let (database, dest) = parse_names(cq)?;
        let interval = cq.interval_ms;
        let windows_total = (to - from) / interval;
        let first_sql = substitute(&cq.query, from, from + interval);
        let has_time = self
            .answer_schema(&database, &first_sql)
            .await?
            .field_with_name(ferry_protocols::name::TIME_COLUMN)
            .is_ok();
        let chunk_ms =
            i64::try_from(self.inner.config.backfill_chunk.as_millis()).unwrap_or(i64::MAX);
        let per_chunk = if has_time {
            (chunk_ms / interval).max(1)
        } else {
            1
        };
        let execution_id = format!(
            "cq-{}-{}",
            if scheduled { "sched" } else { "exec" },
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut answer = Execution {
            query_id: cq.id,
            query_name: cq.name.clone(),
            execution_id: execution_id.clone(),
            status: "completed".to_owned(),
            start_time: format_ms(from),
            end_time: format_ms(to),
            records_read: None,
            records_written: 0,
            execution_time_seconds: 0.0,
            destination_measurement: cq.destination_measurement.clone(),
            dry_run,
            executed_at: format_ms(now_ms()),
            executed_query: Some(substitute(
                &cq.query,
                from,
                (from + per_chunk * interval).min(to),
            )),
            windows_total,
            windows_done: 0,
            error: None,
        };
        let meta = &self.inner.meta;
        meta.start_cq_execution(ExecutionStart {
            query_id: cq.id,
            execution_id: execution_id.clone(),
            start_ms: from,
            end_ms: to,
            windows_total,
            scheduled,
            dry_run,
        })
        .await?;
        if dry_run {
            answer.status = "dry_run".to_owned();
            return Ok(answer);
        }
        let app = app_id(cq);
        let mut a = from;
        while a < to {
            if self.inner.stop.is_cancelled() {
                answer.status = "interrupted".to_owned();
                answer.error =
                    Some("the hub is stopping; the next run computes the rest".to_owned());
                break;
            }
            let b = a.saturating_add(per_chunk.saturating_mul(interval)).min(to);
            match self.chunk(cq, &database, &dest, &app, (a, b)).await {
                Ok(written) => {
                    answer.records_written += i64::try_from(written).unwrap_or(i64::MAX);
                    answer.windows_done += (b - a) / interval;
                    metrics::counter!(m::CQ_WINDOWS, "query" => cq.name.clone())
                        .increment(u64::try_from((b - a) / interval).unwrap_or(0));
                    metrics::counter!(m::CQ_ROWS, "query" => cq.name.clone()).increment(written);
                    meta.advance_cq_watermark(cq.id, b).await?;
                }
                Err(e) => {
                    answer.status = if self.inner.stop.is_cancelled() {
                        "interrupted"
                    } else {
                        "failed"
                    }
                    .to_owned();
                    answer.error = Some(format!(
                        "window {} to {}: {}",
                        format_ms(a),
                        format_ms(b),
                        e.message()
                    ));
                    break;
                }
            }
            answer.execution_time_seconds = started.elapsed().as_secs_f64();
            meta.update_cq_execution(
                &execution_id,
                answer.windows_done,
                answer.records_written,
                started.elapsed().as_secs_f64() * 1000.0,
                None,
            )
            .await?;
            a = b;
        }
        answer.execution_time_seconds = started.elapsed().as_secs_f64();
        meta.update_cq_execution(
            &execution_id,
            answer.windows_done,
            answer.records_written,
            answer.execution_time_seconds * 1000.0,
            Some((answer.status.as_str(), answer.error.clone())),
        )
        .await?;
        let outcome = if answer.status == "completed" {
            "completed"
        } else {
            "failed"
        };
        metrics::counter!(m::CQ_EXECUTIONS, "query" => cq.name.clone(), "outcome" => outcome)
            .increment(1);
        tracing::info!(
            query = %cq.name,
            execution = %execution_id,
            from = %format_ms(from),
            to = %format_ms(to),
            windows = answer.windows_done,
            rows = answer.records_written,
            status = %answer.status,
            "continuous query executed"
        );
        Ok(answer)
    }

    /// Computes and commits one chunk; the rows written.
    async fn chunk(
        &self,
        cq: &ContinuousQuery,
        database: &DatabaseName,
        dest: &TableName,
        app: &str,
        (a, b): (i64, i64),
    ) -> Result<u64, ApiError> {
        let sql = substitute(&cq.query, a, b);
        let (tables, db, base, limits) = (
            self.inner.tables.clone(),
            database.clone(),
            self.inner.query.session_base(),
            self.limits(),
        );
        let probe = Probe::new(self.inner.query.memory_pool());
        let output = self
            .inner
            .query
            .run(
                &format!("cq:{}", cq.name),
                &self.inner.stop.child_token(),
                async move { engine::run(&tables, &sql, Some(&db), base, limits, probe).await },
            )
            .await?;
        if output.truncated {
            return Err(ApiError::bad_request(format!(
                "the chunk's answer has more than continuous_queries.max_chunk_rows ({}) rows; \
                 lower continuous_queries.backfill_chunk",
                self.inner.config.max_chunk_rows
            )));
        }
        let batches: Vec<RecordBatch> = output
            .batches
            .iter()
            .filter(|batch| batch.num_rows() > 0)
            .map(|batch| to_write_form(batch, &cq.tag_columns, (a, b)))
            .collect::<Result<_, _>>()
            .map_err(ApiError::bad_request)?;
        self.commit(dest, app, (a, b), batches).await
    }

    /// Replaces the destination's rows of `[a, b)` by `batches` with the
    /// watermark `b`; a new table (or new columns over a range the table
    /// has no row of) is appended with the same `txn` instead.
    async fn commit(
        &self,
        dest: &TableName,
        app: &str,
        (a, b): (i64, i64),
        batches: Vec<RecordBatch>,
    ) -> Result<u64, ApiError> {
        let tables = &self.inner.tables;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let range = (a.saturating_mul(NS_PER_MS), b.saturating_mul(NS_PER_MS));
        match tables.replace_range(dest, range, &batches, app, b).await {
            Ok(replaced) => return Ok(replaced.added_rows),
            // A new destination, or new columns over a range it holds no
            // row of: appended with the same `txn`.
            Err(DeleteError::NoTable(_) | DeleteError::NewColumns(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if rows == 0 {
            return Ok(0);
        }
        let agent =
            AgentId::new(app).map_err(|e| ApiError::internal("continuous query app id", e))?;
        let seq = SegmentSeq(u64::try_from(b).unwrap_or(0));
        let outcome = tables
            .write(WriteRequest {
                table: dest.clone(),
                batches,
                origin: Origin::Segment { agent, seq },
            })
            .await?;
        Ok(match outcome {
            crate::table::WriteOutcome::Committed { rows, .. } => rows,
            crate::table::WriteOutcome::Duplicate { .. } => 0,
        })
    }
}
