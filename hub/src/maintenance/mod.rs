//! Background table maintenance: compaction, and retention followed by
//! vacuum, of every table.
//!
//! Two tracked tasks, one per `interval` (`[compaction]`, `[retention]`),
//! each starting its first run one interval after the hub starts. They
//! never run at the same time (one lock), and the HTTP triggers
//! (`POST /api/v1/compaction/run`, `POST /api/v1/retention/run`) take the
//! same lock, so a manual run waits for a scheduled one. Neither blocks
//! ingest or queries: each works on its own loaded copy of a table and
//! commits with Delta's optimistic concurrency (see
//! [`Tables::compact`] and [`Tables::expire`]).
//!
//! A run stops between tables when the hub shuts down; a commit in flight
//! finishes first. One table failing does not stop the run: the error is
//! logged, counted and reported, and the next table goes on.
//!
//! Retention: the days kept for `database.measurement` are its own policy,
//! else its database's, else `[retention] default_days` (0 = forever). The
//! partitions before `today - days` (UTC) go. Every table is then vacuumed
//! with `vacuum_grace`, which also deletes what compaction replaced.

mod background;
mod config;
pub mod lease;
pub mod policy;
pub mod policy_routes;
pub mod routes;

use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{CompactionConfig, RetentionConfig};

use crate::meta::Meta;
use crate::meta::retention::{days_for, policy_for};
use crate::table::{
    Ask, CompactionPolicy, CompactionReport, RetentionPlan, TableError, TableName, Tables,
};

/// The longest accepted retention, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Gauge: Unix time (seconds) of the end of the last compaction run.
pub const COMPACTION_LAST_RUN: &str = "ferry_compaction_last_run_timestamp_seconds";
/// Gauge: 1 while a compaction run is in progress.
pub const COMPACTION_RUNNING: &str = "ferry_compaction_running";
/// Gauge: Unix time (seconds) of the end of the last retention run.
pub const RETENTION_LAST_RUN: &str = "ferry_retention_last_run_timestamp_seconds";
/// Counter: tables whose maintenance failed, by task.
pub const MAINTENANCE_ERRORS: &str = "ferry_maintenance_errors_total";

/// What one compaction run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactionRun {
    /// RFC 3339, when the run ended.
    pub finished_at: String,
    pub tables: usize,
    #[serde(flatten)]
    pub report: CompactionReport,
    /// Tables that failed, with the reason.
    pub errors: Vec<String>,
}

/// What one retention run did, or (dry run) would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionRun {
    pub dry_run: bool,
    /// RFC 3339, when the run ended.
    pub finished_at: String,
    /// Tables with a policy, and what goes from each.
    pub tables: Vec<RetentionPlan>,
    pub rows: u64,
    pub files: u64,
    /// Data files vacuum deleted from storage (0 in a dry run).
    pub vacuumed_files: u64,
    pub errors: Vec<String>,
}

/// The maintenance service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Maintenance {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tables: Tables,
    meta: Meta,
    compaction: CompactionConfig,
    retention: RetentionConfig,
    /// One maintenance run at a time.
    lock: tokio::sync::Mutex<()>,
    /// The lower-priority thread compactions run on (`None`: `nice = 0`, or
    /// the thread could not start; they run on the shared runtime).
    background: Option<background::Background>,
    last_compaction: Mutex<Option<CompactionRun>>,
    last_retention: Mutex<Option<RetentionRun>>,
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Maintenance {
    pub fn new(
        tables: Tables,
        meta: Meta,
        compaction: CompactionConfig,
        retention: RetentionConfig,
    ) -> Self {
        let trigger = if compaction.enabled {
            compaction.trigger_files
        } else {
            0
        };
        tables.requests().set_compact_after(trigger);
        let background = (compaction.nice > 0)
            .then(|| background::Background::start(compaction.nice))
            .and_then(|started| {
                started
                    .inspect_err(|e| warn!(error = %e, "compaction runs on the shared threads"))
                    .ok()
            });
        Maintenance {
            inner: Arc::new(Inner {
                tables,
                meta,
                compaction,
                retention,
                lock: tokio::sync::Mutex::new(()),
                background,
                last_compaction: Mutex::new(None),
                last_retention: Mutex::new(None),
            }),
        }
    }

    pub fn compaction_config(&self) -> &CompactionConfig {
        &self.inner.compaction
    }

    pub fn retention_config(&self) -> &RetentionConfig {
        &self.inner.retention
    }

    pub fn last_compaction(&self) -> Option<CompactionRun> {
        self.inner
            .last_compaction
            .lock()
            .ok()
            .and_then(|g| g.clone())
    }

    pub fn last_retention(&self) -> Option<RetentionRun> {
        self.inner
            .last_retention
            .lock()
            .ok()
            .and_then(|g| g.clone())
    }

    /// Starts the scheduled tasks on `tracker`; they end when `stop` is
    /// cancelled. Each pass runs as a task of its own: a pass that panics
    /// is logged, counted (`ferry_hub_task_panics_total`) and recorded as
    /// a failed pass, and the schedule goes on (see `crate::supervise`).
    pub fn spawn(&self, tracker: &TaskTracker, stop: CancellationToken) {
        // Checkpoints and compactions asked by writers, each kind in its
        // own worker: a long compaction never holds up a checkpoint.
        for kind in [Ask::Checkpoint, Ask::Compact] {
            let this = self.clone();
            let until = stop.clone();
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        () = until.cancelled() => break,
                        () = this.inner.tables.requests().asked(kind) => {}
                    }
                    let (pass, stop) = (this.clone(), until.clone());
                    if let Err(e) =
                        tokio::spawn(async move { pass.answer_requests(kind, &stop).await }).await
                    {
                        crate::supervise::record(
                            "maintenance requests",
                            "asked tables",
                            &panic_message(e),
                        );
                    }
                }
            });
        }
        if self.inner.compaction.enabled {
            let this = self.clone();
            let stop = stop.clone();
            let every = self.inner.compaction.interval;
            tracker.spawn(async move {
                while sleep_or_stop(every, &stop).await {
                    if !this.inner.tables.lease().held() {
                        continue;
                    }
                    let (pass, until) = (this.clone(), stop.clone());
                    match tokio::spawn(async move { pass.compact_all(&until).await }).await {
                        Ok(run) if !run.errors.is_empty() => {
                            warn!(errors = ?run.errors, "compaction run had errors");
                        }
                        Ok(_) => {}
                        Err(e) => this.compaction_panicked(e),
                    }
                }
            });
        }
        if !self.inner.retention.enabled {
            return;
        }
        let this = self.clone();
        let every = self.inner.retention.interval;
        tracker.spawn(async move {
            while sleep_or_stop(every, &stop).await {
                if !this.inner.tables.lease().held() {
                    continue;
                }
                let (pass, until) = (this.clone(), stop.clone());
                match tokio::spawn(async move { pass.enforce_retention(false, &until).await }).await
                {
                    Ok(Ok(run)) if !run.errors.is_empty() => {
                        warn!(errors = ?run.errors, "retention run had errors");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e, "retention run failed"),
                    Err(e) => this.retention_panicked(e),
                }
            }
        });
    }

    fn compaction_panicked(&self, e: tokio::task::JoinError) {
        metrics::gauge!(COMPACTION_RUNNING).set(0.0);
        let message = panic_message(e);
        crate::supervise::record("compaction", "every table", &message);
        if let Ok(mut last) = self.inner.last_compaction.lock() {
            *last = Some(CompactionRun {
                errors: vec![format!("internal fault: {message}")],
                finished_at: now_rfc3339(),
                ..CompactionRun::default()
            });
        }
    }

    fn retention_panicked(&self, e: tokio::task::JoinError) {
        let message = panic_message(e);
        crate::supervise::record("retention", "every table", &message);
        if let Ok(mut last) = self.inner.last_retention.lock() {
            *last = Some(RetentionRun {
                errors: vec![format!("internal fault: {message}")],
                finished_at: now_rfc3339(),
                ..RetentionRun::default()
            });
        }
    }

    /// Does what table writers asked of `kind` since the last time:
    /// compacts the tables that gathered `trigger_files` new files (under
    /// the maintenance lock, so never beside a scheduled run), or writes
    /// the checkpoints their logs are due (never behind a compaction).
    pub async fn answer_requests(&self, kind: Ask, stop: &CancellationToken) {
        let policy = self.inner.compaction.policy();
        for name in self.inner.tables.requests().take_kind(kind) {
            if stop.is_cancelled() {
                break;
            }
            match kind {
                // Another writer holds the lease: its scheduled runs
                // compact this table too.
                Ask::Compact if !self.inner.tables.lease().held() => {}
                Ask::Compact => {
                    let _guard = self.inner.lock.lock().await;
                    if let Err(e) = self.compact(&name, &policy).await {
                        metrics::counter!(MAINTENANCE_ERRORS, "task" => "compaction").increment(1);
                        warn!(table = %name, error = %e, "compaction asked by the writer failed");
                    }
                }
                Ask::Checkpoint => {
                    if let Err(e) = self.inner.tables.checkpoint(&name).await {
                        metrics::counter!(MAINTENANCE_ERRORS, "task" => "checkpoint").increment(1);
                        warn!(table = %name, error = %e, "checkpoint failed");
                    }
                }
            }
        }
    }

    /// Compacts one table, on the compaction thread if there is one.
    async fn compact(
        &self,
        name: &TableName,
        policy: &CompactionPolicy,
    ) -> Result<CompactionReport, TableError> {
        let (tables, name, policy) = (self.inner.tables.clone(), name.clone(), *policy);
        let task = async move { tables.compact(&name, &policy, Utc::now()).await };
        match &self.inner.background {
            Some(background) => background
                .run(task)
                .await
                .unwrap_or(Err(TableError::ShuttingDown)),
            None => task.await,
        }
    }

    /// Compacts every table, one after the other.
    pub async fn compact_all(&self, stop: &CancellationToken) -> CompactionRun {
        let _guard = self.inner.lock.lock().await;
        #[cfg(test)]
        if crate::test_faults::take(crate::test_faults::Fault::CompactionPanic, "") {
            panic!("test fault: a compaction pass panics");
        }
        metrics::gauge!(COMPACTION_RUNNING).set(1.0);
        let policy = self.inner.compaction.policy();
        let mut run = CompactionRun::default();
        match self.inner.tables.list().await {
            Err(e) => run.errors.push(format!("listing tables: {e}")),
            Ok(names) => {
                for name in names {
                    if stop.is_cancelled() {
                        break;
                    }
                    run.tables += 1;
                    match self.compact(&name, &policy).await {
                        Ok(report) => run.report.add(&report),
                        Err(e) => {
                            metrics::counter!(MAINTENANCE_ERRORS, "task" => "compaction")
                                .increment(1);
                            run.errors.push(format!("{name}: {e}"));
                        }
                    }
                }
            }
        }
        run.finished_at = now_rfc3339();
        metrics::gauge!(COMPACTION_RUNNING).set(0.0);
        metrics::gauge!(COMPACTION_LAST_RUN).set(Utc::now().timestamp() as f64);
        if run.report.partitions > 0 {
            info!(
                partitions = run.report.partitions,
                files_removed = run.report.files_removed,
                files_added = run.report.files_added,
                "compaction run done"
            );
        }
        if let Ok(mut last) = self.inner.last_compaction.lock() {
            *last = Some(run.clone());
        }
        run
    }

    /// Expires every table by its policy (or only plans it, with
    /// `dry_run`), then vacuums every table.
    pub async fn enforce_retention(
        &self,
        dry_run: bool,
        stop: &CancellationToken,
    ) -> Result<RetentionRun, crate::meta::MetaError> {
        let _guard = self.inner.lock.lock().await;
        let policies = self.inner.meta.list_retention().await?;
        let today = Utc::now().date_naive();
        let mut run = RetentionRun {
            dry_run,
            ..RetentionRun::default()
        };
        let names = match self.inner.tables.list().await {
            Ok(n) => n,
            Err(e) => {
                run.errors.push(format!("listing tables: {e}"));
                Vec::new()
            }
        };
        let started = std::time::Instant::now();
        let started_ms = crate::meta::now_ms();
        let mut executions = policy::Executions::default();
        for name in &names {
            if stop.is_cancelled() {
                break;
            }
            let days = days_for(
                &policies,
                name.database.as_str(),
                name.measurement.as_str(),
                self.inner.retention.default_days,
            );
            let Some(days) = days else { continue };
            let keep_from = keep_from(today, days);
            let policy = policy_for(&policies, name.database.as_str(), name.measurement.as_str());
            match self.inner.tables.expire(name, keep_from, dry_run).await {
                Ok(plan) => {
                    executions.add(policy, keep_from, Ok(&plan));
                    run.rows += plan.rows;
                    run.files += plan.files;
                    run.tables.push(plan);
                }
                Err(e) => {
                    executions.add(policy, keep_from, Err(&e));
                    self.failed(&mut run, name, "retention", e);
                }
            }
        }
        if !dry_run {
            executions
                .record(&self.inner.meta, false, started_ms, started.elapsed())
                .await;
        }
        if !dry_run {
            for name in &names {
                if stop.is_cancelled() {
                    break;
                }
                match self
                    .inner
                    .tables
                    .vacuum(name, self.inner.retention.vacuum_grace)
                    .await
                {
                    Ok(n) => run.vacuumed_files += n,
                    Err(e) => self.failed(&mut run, name, "vacuum", e),
                }
            }
            metrics::gauge!(RETENTION_LAST_RUN).set(Utc::now().timestamp() as f64);
        }
        run.finished_at = now_rfc3339();
        if !dry_run && let Ok(mut last) = self.inner.last_retention.lock() {
            *last = Some(run.clone());
        }
        Ok(run)
    }

    fn failed(&self, run: &mut RetentionRun, name: &TableName, task: &'static str, e: TableError) {
        metrics::counter!(MAINTENANCE_ERRORS, "task" => task).increment(1);
        run.errors.push(format!("{name} ({task}): {e}"));
    }
}

/// The first day kept by a policy of `days` days on `today`.
pub fn keep_from(today: NaiveDate, days: u32) -> NaiveDate {
    today
        .checked_sub_days(chrono::Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MIN)
}

/// Sleeps `every`; `false` if `stop` was cancelled first.
async fn sleep_or_stop(every: std::time::Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(every) => true,
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => crate::supervise::panic_text(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_keeps_its_days_before_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(
            keep_from(today, 7),
            NaiveDate::from_ymd_opt(2026, 11, 19).unwrap()
        );
        assert_eq!(
            keep_from(today, 1),
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
        );
    }

    /// A compaction pass that panics is recorded as failed; the schedule
    /// goes on and the next pass runs.
    #[tokio::test]
    async fn a_panicking_pass_does_not_stop_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::table::StorageConfig::Fs(crate::table::config::FsConfig {
            path: dir.path().join("tables"),
            multi_writer: false,
        });
        let stop = CancellationToken::new();
        let tables = Tables::open(
            &storage,
            &crate::table::TableConfig::default(),
            stop.clone(),
        )
        .await
        .unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        let compaction = CompactionConfig {
            interval: std::time::Duration::from_millis(50),
            ..CompactionConfig::default()
        };
        let maintenance = Maintenance::new(tables, meta, compaction, RetentionConfig::default());
        crate::test_faults::arm(crate::test_faults::Fault::CompactionPanic, "");
        let tracker = TaskTracker::new();
        maintenance.spawn(&tracker, stop.clone());

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut saw_fault = false;
        loop {
            if let Some(run) = maintenance.last_compaction() {
                if run.errors.iter().any(|e| e.contains("internal fault")) {
                    saw_fault = true;
                } else if saw_fault {
                    break; // a clean pass after the panicking one
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no pass after the panic"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
