//! Retention by policy: Arc's `POST /api/v1/retention/{id}/execute`, and
//! the execution record each policy gets from every real retention run
//! (scheduled or manual), shown by `GET /api/v1/retention/{id}/executions`
//! and in the policy's `last_execution_*` fields.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::{Maintenance, keep_from};
use crate::meta::retention::{ExecutionRecord, RetentionPolicy, policy_for};
use crate::meta::{Meta, MetaError};
use crate::table::{RetentionPlan, TableError};

/// What one policy did in a run, summed over its tables.
#[derive(Debug, Default)]
struct Done {
    keep_from: Option<NaiveDate>,
    rows: u64,
    files: u64,
    errors: Vec<String>,
}

/// The executions of one retention run, by policy.
#[derive(Debug, Default)]
pub(super) struct Executions {
    by_policy: BTreeMap<i64, Done>,
}

impl Executions {
    /// Counts one table's outcome for the policy that applied to it
    /// (`None`: the default days, no policy to record).
    pub(super) fn add(
        &mut self,
        policy: Option<&RetentionPolicy>,
        keep_from: NaiveDate,
        outcome: Result<&RetentionPlan, &TableError>,
    ) {
        let Some(policy) = policy else { return };
        let done = self.by_policy.entry(policy.id).or_default();
        done.keep_from = Some(keep_from);
        match outcome {
            Ok(plan) => {
                done.rows += plan.rows;
                done.files += plan.files;
            }
            Err(e) => done.errors.push(e.to_string()),
        }
    }

    /// Records one execution per policy; a failure to record is logged
    /// (the retention itself is done).
    pub(super) async fn record(self, meta: &Meta, dry_run: bool, started_ms: i64, took: Duration) {
        for (policy_id, done) in self.by_policy {
            let record = ExecutionRecord {
                policy_id,
                started_at_ms: started_ms,
                ok: done.errors.is_empty(),
                dry_run,
                deleted_count: done.rows,
                files_deleted: done.files,
                cutoff_date: done.keep_from.map(|d| d.to_string()),
                duration_ms: took.as_secs_f64() * 1000.0,
                error: (!done.errors.is_empty()).then(|| done.errors.join("; ")),
            };
            if let Err(e) = meta.record_retention_execution(record).await {
                tracing::warn!(policy_id, error = %e, "recording a retention execution failed");
            }
        }
    }
}

/// `POST /api/v1/retention/{id}/execute`'s answer (Arc's fields, plus
/// `tables` and `errors`).
#[derive(Debug, Serialize)]
pub struct PolicyExecution {
    pub policy_id: i64,
    pub policy_name: String,
    pub deleted_count: u64,
    pub files_deleted: u64,
    pub execution_time_ms: f64,
    pub dry_run: bool,
    /// The first day kept (`YYYY-MM-DD`): partitions before it go.
    pub cutoff_date: String,
    /// The measurements that lost data (or would).
    pub affected_measurements: Vec<String>,
    /// Every table the policy covers, and what goes from each.
    pub tables: Vec<RetentionPlan>,
    pub errors: Vec<String>,
}

impl Maintenance {
    /// Expires (or with `dry_run` only plans) the tables `policy` covers
    /// now: its own measurement, or every measurement of its database
    /// without an active policy of its own. Vacuum is left to the
    /// scheduled run. The execution is recorded.
    pub async fn execute_policy(
        &self,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<PolicyExecution, MetaError> {
        let _guard = self.inner.lock.lock().await;
        let started = Instant::now();
        let started_ms = crate::meta::now_ms();
        let policies = self.inner.meta.list_retention().await?;
        let keep = keep_from(Utc::now().date_naive(), policy.kept_days());
        let mut out = PolicyExecution {
            policy_id: policy.id,
            policy_name: policy.name.clone(),
            deleted_count: 0,
            files_deleted: 0,
            execution_time_ms: 0.0,
            dry_run,
            cutoff_date: keep.to_string(),
            affected_measurements: Vec::new(),
            tables: Vec::new(),
            errors: Vec::new(),
        };
        let names = match self.inner.tables.list().await {
            Ok(names) => names,
            Err(e) => {
                out.errors.push(format!("listing tables: {e}"));
                Vec::new()
            }
        };
        let mut executions = Executions::default();
        for name in names.iter().filter(|n| {
            policy_for(&policies, n.database.as_str(), n.measurement.as_str())
                .is_some_and(|p| p.id == policy.id)
        }) {
            match self.inner.tables.expire(name, keep, dry_run).await {
                Ok(plan) => {
                    executions.add(Some(policy), keep, Ok(&plan));
                    out.deleted_count += plan.rows;
                    out.files_deleted += plan.files;
                    if plan.files > 0 {
                        out.affected_measurements.push(name.measurement.to_string());
                    }
                    out.tables.push(plan);
                }
                Err(e) => {
                    executions.add(Some(policy), keep, Err(&e));
                    out.errors.push(format!("{name}: {e}"));
                }
            }
        }
        if out.tables.is_empty() && out.errors.is_empty() {
            // Nothing to expire still counts as an execution.
            executions.by_policy.insert(
                policy.id,
                Done {
                    keep_from: Some(keep),
                    ..Done::default()
                },
            );
        }
        executions
            .record(&self.inner.meta, dry_run, started_ms, started.elapsed())
            .await;
        out.execution_time_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }
}
