//! Replacing one time range of a table in one commit, with a `txn`
//! (continuous queries, [`crate::cq`]).
//!
//! The commit removes the rows of `[from, to)` (whole files by their
//! statistics, other files rewritten with their rows outside the range, as
//! a delete does: `delete.rs`), adds the new rows, and sets the caller's
//! `txn` version: the rows and the watermark land together or not at all.
//! Running the same replacement twice leaves the table as once: every row
//! of the range is the new one.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use ferry_protocols::batch::{merge_schema, validate_schema};

use super::append::Log;
use super::compact::{COMPACT_ZSTD_LEVEL, conform};
use super::delete::{ATTEMPTS, DeleteError};
use super::error::TableError;
use super::name::TableName;
use super::schema::{
    check_u64_range, parquet_properties, to_logical, to_storage, to_storage_batch,
};
use super::service::Tables;

/// What a replacement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Rows of the range removed.
    pub removed_rows: u64,
    /// Rows added.
    pub added_rows: u64,
    /// The table version holding it (`None`: nothing to commit).
    pub version: Option<u64>,
}

/// RFC 3339 with nanoseconds, as a SQL literal's content.
pub fn rfc3339_ns(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Tables {
    /// The `txn` version `app` committed in table `name` (`None`: no such
    /// table, or no `txn` of `app`).
    pub async fn app_version(
        &self,
        name: &TableName,
        app: &str,
    ) -> Result<Option<i64>, TableError> {
        let label = name.to_string();
        let Some(table) = self.load(name).await? else {
            return Ok(None);
        };
        let log = Log::load(&table.log_store())
            .await
            .map_err(|e| TableError::storage(&label, e))?;
        match log {
            Some(log) => log
                .app_version(app)
                .await
                .map_err(|e| TableError::storage(&label, e)),
            None => Ok(None),
        }
    }

    /// Replaces the rows of `name` whose time is in `[from_ns, to_ns)` by
    /// `batches` (in the write form: each passes `validate_schema`, every
    /// row inside the range) and moves `app`'s `txn` to `watermark` (never
    /// back), in one commit; none when there is nothing to remove or add.
    /// The table must exist (else `NoTable`) and hold every column of
    /// `batches`; rows with new columns over a range the table holds no row
    /// of, below the `txn`, are `NewColumns` (append them through
    /// [`Tables::write`]), elsewhere `InvalidData`.
    pub async fn replace_range(
        &self,
        name: &TableName,
        (from_ns, to_ns): (i64, i64),
        batches: &[RecordBatch],
        app: &str,
        watermark: i64,
    ) -> Result<Replaced, DeleteError> {
        let label = name.to_string();
        let invalid = |m: String| DeleteError::Table(TableError::InvalidData(m));
        let predicate = format!(
            "time >= '{}' AND time < '{}'",
            rfc3339_ns(from_ns),
            rfc3339_ns(to_ns)
        );
        for _ in 0..ATTEMPTS {
            let plan = self.plan_delete(name, &predicate, true).await?;
            let storage = |e| DeleteError::Table(TableError::storage(&label, e));
            let logical = to_logical(&plan.schema, &label)?;
            let mut new_columns = false;
            for batch in batches {
                validate_schema(&batch.schema()).map_err(|e| invalid(e.to_string()))?;
                check_u64_range(batch)?;
                let grown = merge_schema(&logical, &batch.schema())
                    .map_err(|conflict| invalid(format!("table {label}: {conflict}")))?;
                if grown.fields().len() != logical.fields().len() {
                    new_columns = true;
                }
            }
            let current = self.app_version(name, app).await?;
            if new_columns {
                if plan.report.deleted_count == 0 && current.is_none_or(|c| c < watermark) {
                    return Err(DeleteError::NewColumns(label));
                }
                return Err(invalid(format!(
                    "the rows have columns {label} lacks, and {label} already holds rows of \
                     this range: write the new columns to a new table"
                )));
            }
            let added_rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            // Nothing to remove or add: no commit (the caller keeps the
            // watermark of empty windows; computing them again is harmless).
            if plan.report.deleted_count == 0 && added_rows == 0 {
                return Ok(Replaced::default());
            }
            let target = Arc::new(to_storage(&logical));
            let mut writer = RecordBatchWriter::for_table(&plan.table)
                .map_err(storage)?
                .with_writer_properties(parquet_properties(COMPACT_ZSTD_LEVEL));
            for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                let stored = to_storage_batch(batch, &target)?;
                let conformed = conform(&stored, &plan.schema, 0).map_err(storage)?;
                writer.write(conformed).await.map_err(storage)?;
            }
            let mut extra: Vec<Action> = writer
                .flush()
                .await
                .map_err(storage)?
                .into_iter()
                .map(|mut add| {
                    add.data_change = true;
                    Action::Add(add)
                })
                .collect();
            extra.push(Action::Txn(Transaction::new(
                app,
                current.map_or(watermark, |c| c.max(watermark)),
            )));
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: None,
                predicate: Some(predicate.clone()),
            };
            if let Some(report) = self.commit_plan(name, plan, extra, operation).await? {
                return Ok(Replaced {
                    removed_rows: report.deleted_count,
                    added_rows,
                    version: report.version,
                });
            }
        }
        Err(DeleteError::Conflict(label))
    }
}
