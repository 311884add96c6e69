//! Retention of one table: whole `day` partitions before a cutoff are
//! deleted in one Delta commit (operation `DELETE`, `dataChange = true`, no
//! file rewritten), then `vacuum` removes the data files that no version
//! younger than the grace period references.
//!
//! Retention works on days: a policy of `N` days keeps the partitions of
//! the last `N` UTC days before today plus today, so a row is kept at least
//! `N` days and at most `N + 1`.

use chrono::NaiveDate;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};
use serde::Serialize;

use super::compact::parse_day;
use super::schema::PARTITION_COLUMN;

/// What retention deletes (or, in a dry run, would delete) from one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    /// `database.measurement`.
    pub table: String,
    /// The first day kept; partitions before it go.
    pub keep_from: Option<NaiveDate>,
    /// The days deleted, oldest first.
    pub days: Vec<NaiveDate>,
    pub files: u64,
    /// Rows in those files (from the file statistics).
    pub rows: u64,
    pub bytes: u64,
    /// The table version that holds the delete (`None`: dry run, or nothing to delete).
    pub version: Option<u64>,
}

/// The files of `table` in partitions before `keep_from`, as `remove` actions.
pub(crate) fn plan(
    table: &DeltaTable,
    label: &str,
    keep_from: NaiveDate,
) -> Result<(RetentionPlan, Vec<Action>), DeltaTableError> {
    let mut out = RetentionPlan {
        table: label.to_owned(),
        keep_from: Some(keep_from),
        ..RetentionPlan::default()
    };
    let mut removes = Vec::new();
    for view in table.snapshot()?.log_data().iter() {
        let values = view.partition_values_map();
        let Some(day) = parse_day(values.get(PARTITION_COLUMN)) else {
            continue;
        };
        if day >= keep_from {
            continue;
        }
        if !out.days.contains(&day) {
            out.days.push(day);
        }
        out.files += 1;
        out.bytes += u64::try_from(view.size()).unwrap_or(0);
        out.rows += view
            .num_records()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        removes.push(Action::Remove(view.remove_action(true)));
    }
    out.days.sort();
    Ok((out, removes))
}

/// Commits `removes` as one `DELETE` of the partitions before `keep_from`.
pub(crate) async fn apply(
    table: &DeltaTable,
    keep_from: NaiveDate,
    removes: Vec<Action>,
) -> Result<u64, DeltaTableError> {
    let operation = DeltaOperation::Delete {
        predicate: Some(format!("{PARTITION_COLUMN} < '{keep_from}'")),
    };
    let commit = CommitBuilder::default()
        .with_actions(removes)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(commit.version())
}

/// Deletes the files no version younger than `grace` needs, including files
/// a failed commit left behind. Returns how many files went.
pub(crate) async fn vacuum(
    table: DeltaTable,
    grace: std::time::Duration,
) -> Result<u64, DeltaTableError> {
    let grace = chrono::Duration::from_std(grace)
        .map_err(|e| DeltaTableError::Generic(format!("vacuum grace: {e}")))?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(grace)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await?;
    Ok(metrics.files_deleted.len() as u64)
}
