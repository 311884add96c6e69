//! Deleting the rows of one table that match a SQL predicate
//! (`POST /api/v1/delete`).
//!
//! # How
//!
//! The predicate is one SQL expression over the table's columns (`host =
//! 'a' AND time < '2026-01-01'`), parsed and type-checked by DataFusion
//! against the table's schema; anything else (a statement, a subquery, an
//! unknown column, a non-boolean expression) is refused before a file is
//! read. A row is deleted where the predicate is true (not where it is
//! false or null, as in SQL's `DELETE`).
//!
//! 1. **Plan.** The file statistics in the log rule files out: a file whose
//!    bounds cannot satisfy the predicate is never read. A file whose bounds
//!    say every row matches (the predicate's negation is ruled out and every
//!    column it names is never null, e.g. `time` or `day` ranges) is
//!    dropped whole by metadata, counted by its statistics, and never read.
//!    Every other candidate file is read, one at a time, and its matching
//!    rows counted.
//! 2. **Apply** (not in a dry run). Each file with matching rows is read
//!    again and its other rows written to a new file (one in, at most one
//!    out, so memory is about one file); one Delta commit, operation
//!    `DELETE`, removes the old files and adds the new ones, all with
//!    `dataChange = true`. Files without a matching row are left alone.
//!
//! # Concurrency
//!
//! Ingest goes on throughout: appends add new files and never touch the
//! ones a delete rewrites, so every acknowledged row the predicate does not
//! match stays. Rows committed after the plan started are not deleted even
//! if they match. The commit is made under the table's commit gate (like a
//! compaction's), on the latest version, after checking that every file it
//! removes is still in the table; if a compaction, retention or another
//! delete removed one meanwhile, nothing is committed and the delete is
//! planned again (up to [`ATTEMPTS`] times, then 409).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::{Array, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{filter_record_batch, not, prep_null_mask_filter};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::{DFSchema, Result as DfResult};
use deltalake::datafusion::execution::SessionState;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::logical_expr::simplify::SimplifyContext;
use deltalake::datafusion::optimizer::simplify_expressions::ExprSimplifier;
use deltalake::datafusion::physical_plan::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::compact::{COMPACT_ZSTD_LEVEL, conform, epoch_days, parse_day};
use super::error::TableError;
use super::metrics as m;
use super::name::TableName;
use super::scan::ScanFiles;
use super::schema::{PARTITION_COLUMN, parquet_properties};
use super::service::Tables;

/// Plans tried before a delete that keeps losing its files to concurrent
/// compactions answers 409.
pub(super) const ATTEMPTS: usize = 3;

/// `[delete]` of `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeleteConfig {
    /// `POST /api/v1/delete` answers 403 `forbidden` when off.
    pub enabled: bool,
    /// A real delete of more rows than this, or of every row of a table,
    /// needs `"confirm": true`.
    pub confirm_threshold: u64,
}

impl Default for DeleteConfig {
    fn default() -> Self {
        DeleteConfig {
            enabled: true,
            confirm_threshold: 10_000,
        }
    }
}

/// What a delete removed (or, in a dry run, would remove) from one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeleteReport {
    /// Rows matching the predicate.
    pub deleted_count: u64,
    /// Files holding at least one matching row.
    pub affected_files: u64,
    /// Of those, files rewritten with their other rows.
    pub rewritten_files: u64,
    /// Of those, files dropped whole (every row matched), by their
    /// statistics or after reading them.
    pub removed_files: u64,
    /// Files read to count or rewrite their rows.
    pub files_read: u64,
    /// Rows in the table when the delete was planned.
    pub table_rows: u64,
    /// The affected files' paths in the table.
    pub files_processed: Vec<String>,
    /// The table version holding the delete (`None`: dry run or nothing matched).
    pub version: Option<u64>,
}

impl DeleteReport {
    /// Whether the predicate matches every row of a non-empty table.
    pub fn is_whole_table(&self) -> bool {
        self.table_rows > 0 && self.deleted_count >= self.table_rows
    }
}

/// Why a delete was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("table {0} does not exist")]
    NoTable(String),
    #[error("the where clause is not a boolean expression over the table's columns: {0}")]
    BadPredicate(String),
    #[error("table {table}: {reason}")]
    Unsupported { table: String, reason: String },
    #[error(
        "table {0}: its files kept changing under the delete (compaction, retention or \
         another delete); nothing was deleted, retry"
    )]
    Conflict(String),
    /// A replacement (`replace.rs`) brings columns the table lacks, over a
    /// range the table holds no row of and below the caller's `txn`: the
    /// rows can be appended through the writer instead.
    #[error("table {0} lacks columns of the rows to write")]
    NewColumns(String),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// One file of the plan.
#[derive(Debug, Clone)]
struct Target {
    location: deltalake::Path,
    remove: deltalake::kernel::Remove,
    day: i32,
    /// Rows matching the predicate.
    matched: u64,
    /// Rows in the file.
    rows: u64,
    /// The file's other rows, already written (one pass), as `add`s.
    adds: Option<Vec<Action>>,
}

/// A planned delete: the files it touches and the table version it read.
pub(super) struct Plan {
    pub(super) table: DeltaTable,
    predicate: Arc<dyn PhysicalExpr>,
    pub(super) schema: SchemaRef,
    targets: Vec<Target>,
    pub(super) report: DeleteReport,
}

/// What the predicate became: the logical form (for file skipping) and the
/// physical one (for rows), over `schema`.
fn compile(
    state: &SessionState,
    schema: &SchemaRef,
    predicate: &str,
) -> Result<(Expr, Arc<dyn PhysicalExpr>), DeleteError> {
    let bad = |e: &dyn std::fmt::Display| DeleteError::BadPredicate(e.to_string());
    if predicate.trim().is_empty() {
        return Err(DeleteError::BadPredicate(
            "it is empty; to delete every row say `true` and confirm".to_owned(),
        ));
    }
    let df_schema = DFSchema::try_from(schema.clone()).map_err(|e| bad(&e))?;
    let expr = state
        .create_logical_expr(predicate, &df_schema)
        .and_then(|e| simplified(&df_schema, e))
        .map_err(|e| bad(&e))?;
    let physical = state
        .create_physical_expr(expr.clone(), &df_schema)
        .map_err(|e| bad(&e))?;
    match physical.data_type(schema).map_err(|e| bad(&e))? {
        DataType::Boolean => Ok((expr, physical)),
        other => Err(DeleteError::BadPredicate(format!(
            "it is of type {other}, not boolean"
        ))),
    }
}

/// `expr` with its types coerced and constants folded (`time < '2026-01-01'`
/// becomes a comparison with a timestamp literal, `NOT (a < b)` becomes
/// `a >= b`): the forms file statistics can decide.
fn simplified(df_schema: &DFSchema, expr: Expr) -> DfResult<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(df_schema.clone()))
        .build();
    let simplifier = ExprSimplifier::new(context);
    let coerced = simplifier.coerce(expr, df_schema)?;
    simplifier.simplify(coerced)
}

/// Whether every column `expr` names is never null in `schema` (the
/// partition column never is in Ferry's files), so that a predicate of the
/// forms the statistics understand is never null either.
fn never_null(expr: &Expr, schema: &SchemaRef) -> bool {
    expr.column_refs().iter().all(|c| {
        c.name == PARTITION_COLUMN
            || schema
                .field_with_name(&c.name)
                .is_ok_and(|f| !f.is_nullable())
    })
}

/// The rows of `bytes` (one data file of partition `day`) in `schema`, and
/// for each whether `predicate` is true.
fn evaluate(
    bytes: Bytes,
    schema: &SchemaRef,
    day: i32,
    predicate: &Arc<dyn PhysicalExpr>,
) -> Result<Vec<(RecordBatch, BooleanArray)>, DeltaTableError> {
    let df = |e: deltalake::datafusion::error::DataFusionError| {
        DeltaTableError::Generic(format!("evaluating the predicate: {e}"))
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = conform(&batch?, schema, day)?;
        let value = predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(df)?;
        let Some(mask) = value.as_any().downcast_ref::<BooleanArray>() else {
            return Err(DeltaTableError::Generic(
                "the predicate did not give booleans".to_owned(),
            ));
        };
        // Null is not true: the row stays. (`prep_null_mask_filter`
        // expects a null buffer.)
        let mask = if mask.null_count() > 0 {
            prep_null_mask_filter(mask)
        } else {
            mask.clone()
        };
        out.push((batch, mask));
    }
    Ok(out)
}

/// Reads `target`'s file and evaluates `predicate` on its rows.
async fn read_and_evaluate(
    table: &DeltaTable,
    target: &Target,
    schema: &SchemaRef,
    predicate: &Arc<dyn PhysicalExpr>,
) -> Result<Vec<(RecordBatch, BooleanArray)>, DeltaTableError> {
    let bytes = table
        .object_store()
        .get(&target.location)
        .await?
        .bytes()
        .await?;
    let (schema, predicate, day) = (schema.clone(), predicate.clone(), target.day);
    tokio::task::spawn_blocking(move || evaluate(bytes, &schema, day, &predicate))
        .await
        .map_err(|e| DeltaTableError::Generic(format!("delete task: {e}")))?
}

/// Writes the rows of `evaluated` whose predicate is not true as a new
/// file of the table; its `add`s (`dataChange = true`).
async fn rewrite_kept(
    table: &DeltaTable,
    evaluated: Vec<(RecordBatch, BooleanArray)>,
) -> Result<Vec<Action>, DeltaTableError> {
    let kept = tokio::task::spawn_blocking(move || {
        evaluated
            .iter()
            .map(|(batch, mask)| Ok(filter_record_batch(batch, &not(mask)?)?))
            .collect::<Result<Vec<_>, DeltaTableError>>()
    })
    .await
    .map_err(|e| DeltaTableError::Generic(format!("delete task: {e}")))??;
    let mut writer = RecordBatchWriter::for_table(table)?
        .with_writer_properties(parquet_properties(COMPACT_ZSTD_LEVEL));
    for batch in kept {
        if batch.num_rows() > 0 {
            writer.write(batch).await?;
        }
    }
    Ok(writer
        .flush()
        .await?
        .into_iter()
        .map(|mut add| {
            add.data_change = true;
            Action::Add(add)
        })
        .collect())
}

impl Tables {
    /// Deletes the rows of `name` where `predicate` is true, or with
    /// `dry_run` only counts them. `allow` sees the plan's report before
    /// anything is committed and may refuse (confirmation rules). With
    /// `confirmed` (the caller will not refuse), files are read once:
    /// counted and rewritten in the same pass; otherwise they are counted
    /// first and read again to be rewritten once `allow` agreed.
    pub async fn delete_rows<E>(
        &self,
        name: &TableName,
        predicate: &str,
        dry_run: bool,
        confirmed: bool,
        allow: impl Fn(&DeleteReport) -> Result<(), E>,
    ) -> Result<Result<DeleteReport, E>, DeleteError> {
        let label = name.to_string();
        for _ in 0..ATTEMPTS {
            let started = std::time::Instant::now();
            let plan = self
                .plan_delete(name, predicate, confirmed && !dry_run)
                .await?;
            if dry_run || plan.targets.is_empty() {
                return Ok(Ok(plan.report));
            }
            if let Err(refused) = allow(&plan.report) {
                return Ok(Err(refused));
            }
            match self.apply_delete(name, plan, predicate).await? {
                Some(report) => {
                    metrics::counter!(m::DELETE_ROWS, "table" => label.clone())
                        .increment(report.deleted_count);
                    metrics::counter!(m::DELETE_FILES_REWRITTEN, "table" => label.clone())
                        .increment(report.rewritten_files);
                    metrics::histogram!(m::DELETE_SECONDS, "table" => label.clone())
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!(
                        table = %label,
                        predicate,
                        rows = report.deleted_count,
                        rewritten = report.rewritten_files,
                        removed = report.removed_files,
                        version = report.version,
                        "deleted rows"
                    );
                    return Ok(Ok(report));
                }
                None => {
                    metrics::counter!(m::DELETE_CONFLICTS, "table" => label.clone()).increment(1);
                }
            }
        }
        Err(DeleteError::Conflict(label))
    }

    /// Which files hold matching rows, and how many.
    /// With `rewrite`, each file read is also rewritten without its
    /// matching rows in the same pass (the rewritten files stay
    /// unreferenced, for vacuum, if the plan is not committed).
    pub(super) async fn plan_delete(
        &self,
        name: &TableName,
        predicate: &str,
        rewrite: bool,
    ) -> Result<Plan, DeleteError> {
        let label = name.to_string();
        let storage = |e| DeleteError::Table(TableError::storage(&label, e));
        let table = self
            .load(name)
            .await?
            .ok_or_else(|| DeleteError::NoTable(label.clone()))?;
        let snapshot = table.snapshot().map_err(storage)?;
        let schema: SchemaRef = snapshot.snapshot().arrow_schema();
        let ctx = SessionContext::new();
        let state = ctx.state();
        let (expr, physical) = compile(&state, &schema, predicate)?;
        let Some(files) = ScanFiles::of(&table, false) else {
            return Err(DeleteError::Unsupported {
                table: label,
                reason: "the table has deletion vectors or column mapping (written by another \
                         engine); Ferry does not rewrite such tables"
                    .to_owned(),
            });
        };
        let may_match = files.keep(&state, std::slice::from_ref(&expr));
        let negated = DFSchema::try_from(schema.clone())
            .and_then(|df_schema| simplified(&df_schema, Expr::Not(Box::new(expr.clone()))));
        let all_match = if let (true, Ok(negated)) = (never_null(&expr, &schema), negated) {
            files
                .keep(&state, &[negated])
                .into_iter()
                .map(|some_row_survives| !some_row_survives)
                .collect()
        } else {
            vec![false; may_match.len()]
        };
        let views: Vec<_> = snapshot.log_data().iter().collect();
        if views.len() != may_match.len() || !files.same_order(&views) {
            return Err(DeleteError::Table(TableError::storage(
                &label,
                DeltaTableError::Generic("the table's file list changed while read".to_owned()),
            )));
        }
        let mut report = DeleteReport::default();
        let mut targets = Vec::new();
        for (i, view) in views.iter().enumerate() {
            let rows = view
                .num_records()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            report.table_rows += rows;
            if !may_match[i] {
                continue;
            }
            let Some(day) = parse_day(view.partition_values_map().get(PARTITION_COLUMN)) else {
                continue;
            };
            let mut target = Target {
                location: view.object_store_path(),
                remove: view.remove_action(true),
                day: epoch_days(day),
                matched: rows,
                rows,
                adds: None,
            };
            if !all_match[i] || view.num_records().is_none() {
                let evaluated = read_and_evaluate(&table, &target, &schema, &physical)
                    .await
                    .map_err(storage)?;
                report.files_read += 1;
                (target.matched, target.rows) =
                    evaluated
                        .iter()
                        .fold((0u64, 0u64), |(hit, all), (b, mask)| {
                            (hit + mask.true_count() as u64, all + b.num_rows() as u64)
                        });
                if rewrite && target.matched > 0 && target.matched < target.rows {
                    target.adds = Some(rewrite_kept(&table, evaluated).await.map_err(storage)?);
                }
            }
            if target.matched == 0 {
                continue;
            }
            report.deleted_count += target.matched;
            report.affected_files += 1;
            if target.matched == target.rows {
                report.removed_files += 1;
            } else {
                report.rewritten_files += 1;
            }
            report.files_processed.push(target.location.to_string());
            targets.push(target);
        }
        Ok(Plan {
            table,
            predicate: physical,
            schema,
            targets,
            report,
        })
    }

    /// Rewrites (what the plan has not yet) and commits `plan` as a
    /// `DELETE`; `None` if a file it removes was removed by another commit
    /// meanwhile (nothing committed).
    pub(super) async fn apply_delete(
        &self,
        name: &TableName,
        plan: Plan,
        predicate: &str,
    ) -> Result<Option<DeleteReport>, DeleteError> {
        let operation = DeltaOperation::Delete {
            predicate: Some(predicate.to_owned()),
        };
        self.commit_plan(name, plan, Vec::new(), operation).await
    }

    /// Rewrites (what the plan has not yet) and commits `plan` with
    /// `extra` actions as `operation`; `None` if a file it removes was
    /// removed by another commit meanwhile (nothing committed).
    pub(super) async fn commit_plan(
        &self,
        name: &TableName,
        plan: Plan,
        extra: Vec<Action>,
        operation: DeltaOperation,
    ) -> Result<Option<DeleteReport>, DeleteError> {
        let label = name.to_string();
        let storage = |e| DeleteError::Table(TableError::storage(&label, e));
        let Plan {
            table,
            predicate: physical,
            schema,
            targets,
            mut report,
        } = plan;
        let mut actions = Vec::new();
        for target in &targets {
            actions.push(Action::Remove(target.remove.clone()));
            if target.matched == target.rows {
                continue;
            }
            let adds = match &target.adds {
                Some(adds) => adds.clone(),
                None => {
                    let evaluated = read_and_evaluate(&table, target, &schema, &physical)
                        .await
                        .map_err(storage)?;
                    rewrite_kept(&table, evaluated).await.map_err(storage)?
                }
            };
            actions.extend(adds);
        }
        let _gate = match self.commit_gate(name) {
            Some(g) => Some(g.lock_owned().await),
            None => None,
        };
        let mut fresh = table.clone();
        fresh.update_incremental(None).await.map_err(storage)?;
        let active: HashSet<String> = fresh
            .snapshot()
            .map_err(storage)?
            .log_data()
            .iter()
            .map(|v| v.object_store_path().to_string())
            .collect();
        if targets
            .iter()
            .any(|t| !active.contains(t.location.as_ref()))
        {
            return Ok(None);
        }
        actions.extend(extra);
        let commit = CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(fresh.snapshot().map_err(storage)?),
                fresh.log_store(),
                operation,
            )
            .await
            .map_err(storage)?;
        report.version = Some(commit.version());
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{Field, Schema, TimeUnit};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("host", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
            Field::new(PARTITION_COLUMN, DataType::Date32, true),
        ]))
    }

    #[test]
    fn predicates_are_one_boolean_expression_over_known_columns() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let ok = |p: &str| compile(&state, &schema(), p).map(|_| ());
        assert!(ok("host = 'a' AND time < '2026-01-01T00:00:00Z'").is_ok());
        assert!(ok("temp > 3 OR temp IS NULL").is_ok());
        assert!(ok("day < DATE '2026-01-02'").is_ok());
        assert!(ok("true").is_ok());
        for bad in [
            "",
            "   ",
            "temp + 1",
            "nosuch = 1",
            "1=1; DROP TABLE x",
            "host IN (SELECT host FROM other)",
            "EXISTS (SELECT 1)",
            "host = ",
        ] {
            assert!(
                matches!(ok(bad), Err(DeleteError::BadPredicate(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn only_never_null_columns_allow_dropping_files_by_statistics() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let expr = |p: &str| compile(&state, &schema(), p).unwrap().0;
        assert!(never_null(
            &expr("time < '2026-01-01T00:00:00Z'"),
            &schema()
        ));
        assert!(never_null(&expr("day <= DATE '2026-01-01'"), &schema()));
        assert!(!never_null(&expr("temp > 3"), &schema()));
        assert!(!never_null(
            &expr("time < '2026-01-01T00:00:00Z' AND host = 'a'"),
            &schema()
        ));
    }
}
