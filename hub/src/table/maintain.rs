//! Table maintenance entry points on [`Tables`]: compaction, retention and
//! vacuum of one table. Scheduling lives in [`crate::maintenance`].

use chrono::{DateTime, NaiveDate, Utc};
use tracing::{debug, info, warn};

use super::append::Log;
use super::compact::{self, CompactionPolicy, CompactionReport};
use super::error::TableError;
use super::metrics as m;
use super::name::TableName;
use super::retention::{self, RetentionPlan};
use super::service::Tables;

impl Tables {
    /// Compacts the partitions of `name` that `policy` selects at `now`. A
    /// partition whose commit fails is counted in `failed_partitions` and
    /// left as it was; the others still commit.
    pub async fn compact(
        &self,
        name: &TableName,
        policy: &CompactionPolicy,
        now: DateTime<Utc>,
    ) -> Result<CompactionReport, TableError> {
        let label = name.to_string();
        let mut report = CompactionReport::default();
        let Some(mut table) = self.load(name).await? else {
            return Ok(report);
        };
        let plans =
            compact::plan(&table, policy, now).map_err(|e| TableError::storage(&label, e))?;
        for plan in plans {
            let started = std::time::Instant::now();
            let gate = self.commit_gate(name);
            match compact::compact_partition(&table, &plan, policy, gate).await {
                Ok(done) => {
                    metrics::histogram!(m::COMPACTION_SECONDS, "table" => label.clone())
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(m::COMPACTION_FILES_REMOVED, "table" => label.clone())
                        .increment(done.files_removed);
                    metrics::counter!(m::COMPACTION_FILES_ADDED, "table" => label.clone())
                        .increment(done.files_added);
                    metrics::counter!(m::COMPACTION_BYTES, "table" => label.clone())
                        .increment(done.bytes_removed);
                    metrics::counter!(m::COMPACTION_ROWS, "table" => label.clone())
                        .increment(done.rows);
                    info!(
                        table = %label,
                        day = %plan.day(),
                        files_removed = done.files_removed,
                        files_added = done.files_added,
                        rows = done.rows,
                        "compacted"
                    );
                    report.add(&done);
                }
                Err(e) => {
                    metrics::counter!(m::COMPACTION_FAILURES, "table" => label.clone())
                        .increment(1);
                    warn!(table = %label, day = %plan.day(), error = %e, "compaction of a partition failed; it is left as it was");
                    report.failed_partitions += 1;
                }
            }
            // The next partition commits on top of what just happened.
            table
                .update_incremental(None)
                .await
                .map_err(|e| TableError::storage(&label, e))?;
        }
        Ok(report)
    }

    /// Deletes (or with `dry_run` only lists) the partitions of `name` before
    /// `keep_from`.
    pub async fn expire(
        &self,
        name: &TableName,
        keep_from: NaiveDate,
        dry_run: bool,
    ) -> Result<RetentionPlan, TableError> {
        let label = name.to_string();
        let Some(table) = self.load(name).await? else {
            return Ok(RetentionPlan {
                table: label,
                keep_from: Some(keep_from),
                ..RetentionPlan::default()
            });
        };
        let (mut plan, removes) = retention::plan(&table, &label, keep_from)
            .map_err(|e| TableError::storage(&label, e))?;
        if dry_run || removes.is_empty() {
            return Ok(plan);
        }
        let version = retention::apply(&table, keep_from, removes)
            .await
            .map_err(|e| TableError::storage(&label, e))?;
        plan.version = Some(version);
        metrics::counter!(m::RETENTION_ROWS, "table" => label.clone()).increment(plan.rows);
        metrics::counter!(m::RETENTION_FILES, "table" => label.clone()).increment(plan.files);
        info!(
            table = %label,
            keep_from = %keep_from,
            days = plan.days.len(),
            files = plan.files,
            rows = plan.rows,
            version,
            "expired old partitions"
        );
        Ok(plan)
    }

    /// Writes a checkpoint of `name` at its latest version and deletes the
    /// log files older than the table's log retention that it makes
    /// unnecessary. Appends do not write checkpoints inline (their cost
    /// would grow with the table's files); their writer asks for one here.
    pub async fn checkpoint(&self, name: &TableName) -> Result<(), TableError> {
        let label = name.to_string();
        let url = self.inner.storage.table_url(name);
        let storage_err = |e| TableError::storage(&label, e);
        let store = super::writer::open_table(&self.inner.storage, &url)
            .map_err(storage_err)?
            .log_store();
        let Some(log) = Log::load(&store).await.map_err(storage_err)? else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let cleaned = log.checkpoint(&store).await.map_err(storage_err)?;
        metrics::histogram!(m::CHECKPOINT_SECONDS, "table" => label.clone())
            .record(started.elapsed().as_secs_f64());
        debug!(table = %label, version = log.version(), cleaned, "checkpoint written");
        Ok(())
    }

    /// Vacuums `name`: deletes files unreferenced for longer than `grace`.
    pub async fn vacuum(
        &self,
        name: &TableName,
        grace: std::time::Duration,
    ) -> Result<u64, TableError> {
        let label = name.to_string();
        let Some(table) = self.load(name).await? else {
            return Ok(0);
        };
        let deleted = retention::vacuum(table, grace)
            .await
            .map_err(|e| TableError::storage(&label, e))?;
        metrics::counter!(m::VACUUM_FILES, "table" => label.clone()).increment(deleted);
        debug!(table = %label, deleted, "vacuumed");
        Ok(deleted)
    }
}
