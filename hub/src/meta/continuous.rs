//! Continuous query definitions and their executions, with Arc's fields
//! (see [`crate::cq`] for how they run).
//!
//! The watermark kept here (`watermark_ms`, shown as
//! `last_processed_time`) is a hint for the API and for windows that wrote
//! nothing; the truth for the windows that wrote rows is the destination
//! table's `txn` action, committed with the rows.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms, now_ms};

/// Executions kept per continuous query (older ones are dropped).
pub const EXECUTIONS_KEPT: i64 = 1000;

/// One continuous query as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContinuousQuery {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub database: String,
    pub source_measurement: String,
    pub destination_measurement: String,
    pub query: String,
    /// As given (`"1h"`, `"5m"`).
    pub interval: String,
    pub interval_seconds: f64,
    pub tag_columns: Vec<String>,
    /// Windows before the watermark recomputed by every scheduled run.
    pub lookback_windows: u32,
    pub retention_days: Option<u32>,
    pub delete_source_after_days: Option<u32>,
    pub is_active: bool,
    /// RFC 3339: the first window the scheduler computes.
    pub start_time: String,
    /// RFC 3339: the end of the last window written (`None`: none yet).
    pub last_processed_time: Option<String>,
    pub last_execution_time: Option<String>,
    pub last_execution_status: Option<String>,
    pub last_records_written: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub interval_ms: i64,
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(skip)]
    pub watermark_ms: Option<i64>,
}

/// A new continuous query (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewCq {
    pub name: String,
    pub description: Option<String>,
    pub database: String,
    pub source_measurement: String,
    pub destination_measurement: String,
    pub query: String,
    pub interval: String,
    pub interval_ms: i64,
    pub tag_columns: Vec<String>,
    pub lookback_windows: u32,
    pub start_ms: i64,
    pub is_active: bool,
}

/// What an update changes (`None`: unchanged). Validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct CqChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub query: Option<String>,
    pub interval: Option<(String, i64)>,
    pub tag_columns: Option<Vec<String>>,
    pub lookback_windows: Option<u32>,
    pub is_active: Option<bool>,
}

/// One execution, with Arc's fields and its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CqExecution {
    pub id: i64,
    pub query_id: i64,
    pub execution_id: String,
    /// RFC 3339, when it started.
    pub execution_time: String,
    /// `running`, `completed`, `failed`, `interrupted` (the hub stopped
    /// during it), `dry_run`.
    pub status: String,
    pub start_time: String,
    pub end_time: String,
    pub windows_total: i64,
    pub windows_done: i64,
    pub records_read: Option<i64>,
    pub records_written: i64,
    pub execution_duration_seconds: f64,
    pub error_message: Option<String>,
    /// Run by the scheduler (not `POST .../execute`).
    pub scheduled: bool,
}

/// An execution starting.
#[derive(Debug, Clone)]
pub struct ExecutionStart {
    pub query_id: i64,
    pub execution_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub windows_total: i64,
    pub scheduled: bool,
    pub dry_run: bool,
}

const SELECT: &str = "SELECT q.id, q.name, q.description, q.database, q.source_measurement,
        q.destination_measurement, q.query, q.interval, q.interval_ms, q.tag_columns,
        q.lookback_windows, q.start_ms, q.retention_days, q.delete_source_after_days,
        q.is_active, q.watermark_ms, q.created_at_ms, q.updated_at_ms,
        e.started_at_ms, e.status, e.records_written
    FROM continuous_queries q
    LEFT JOIN cq_executions e ON e.id = (
        SELECT max(id) FROM cq_executions WHERE query_id = q.id AND status <> 'dry_run')";

fn small(v: Option<i64>) -> Option<u32> {
    v.map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContinuousQuery> {
    let tags: Option<String> = r.get(9)?;
    let interval_ms: i64 = r.get(8)?;
    let start_ms: i64 = r.get(11)?;
    let watermark_ms: Option<i64> = r.get(15)?;
    let last_ms: Option<i64> = r.get(18)?;
    Ok(ContinuousQuery {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        database: r.get(3)?,
        source_measurement: r.get(4)?,
        destination_measurement: r.get(5)?,
        query: r.get(6)?,
        interval: r.get(7)?,
        interval_seconds: interval_ms as f64 / 1000.0,
        tag_columns: tags
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        lookback_windows: small(Some(r.get(10)?)).unwrap_or(0),
        retention_days: small(r.get(12)?),
        delete_source_after_days: small(r.get(13)?),
        is_active: r.get::<_, i64>(14)? != 0,
        start_time: format_ms(start_ms),
        last_processed_time: watermark_ms.map(format_ms),
        last_execution_time: last_ms.map(format_ms),
        last_execution_status: r.get(19)?,
        last_records_written: r.get(20)?,
        created_at: format_ms(r.get(16)?),
        updated_at: format_ms(r.get(17)?),
        interval_ms,
        start_ms,
        watermark_ms,
    })
}

fn execution(r: &rusqlite::Row<'_>) -> rusqlite::Result<CqExecution> {
    let duration_ms: f64 = r.get(11)?;
    Ok(CqExecution {
        id: r.get(0)?,
        query_id: r.get(1)?,
        execution_id: r.get(2)?,
        execution_time: format_ms(r.get(3)?),
        status: r.get(4)?,
        start_time: format_ms(r.get(5)?),
        end_time: format_ms(r.get(6)?),
        windows_total: r.get(7)?,
        windows_done: r.get(8)?,
        records_read: r.get(9)?,
        records_written: r.get(10)?,
        execution_duration_seconds: duration_ms / 1000.0,
        error_message: r.get(12)?,
        scheduled: r.get::<_, i64>(13)? != 0,
    })
}

fn by_id(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<ContinuousQuery>> {
    c.query_row(&format!("{SELECT} WHERE q.id = ?1"), params![id], row)
        .optional()
}

fn tags_json(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

fn name_taken(c: &rusqlite::Connection, name: &str, except: i64) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM continuous_queries WHERE name = ?1 AND id <> ?2",
        params![name, except],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

impl Meta {
    /// Every continuous query, by id; narrowed to a database or a state.
    pub async fn list_cqs(
        &self,
        database: Option<String>,
        is_active: Option<bool>,
    ) -> Result<Vec<ContinuousQuery>> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "{SELECT} WHERE (?1 IS NULL OR q.database = ?1)
                     AND (?2 IS NULL OR q.is_active = ?2) ORDER BY q.id"
            ))?;
            let rows = stmt.query_map(params![database, is_active.map(i64::from)], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// One continuous query by id.
    pub async fn cq(&self, id: i64) -> Result<Option<ContinuousQuery>> {
        self.call(move |c| Ok(by_id(c, id)?)).await
    }

    /// Creates a continuous query; `Ok(Err(reason))` when its name is taken.
    pub async fn create_cq(
        &self,
        new: NewCq,
    ) -> Result<std::result::Result<ContinuousQuery, String>> {
        self.call(move |c| {
            if name_taken(c, &new.name, -1)? {
                return Ok(Err(format!(
                    "a continuous query named {:?} already exists",
                    new.name
                )));
            }
            let now = now_ms();
            c.execute(
                "INSERT INTO continuous_queries (name, description, database, source_measurement,
                     destination_measurement, query, interval_ms, interval, tag_columns,
                     lookback_windows, start_ms, is_active, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
                params![
                    new.name,
                    new.description,
                    new.database,
                    new.source_measurement,
                    new.destination_measurement,
                    new.query,
                    new.interval_ms,
                    new.interval,
                    tags_json(&new.tag_columns),
                    i64::from(new.lookback_windows),
                    new.start_ms,
                    i64::from(new.is_active),
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            Ok(by_id(c, id)?.ok_or_else(|| format!("continuous query {id} vanished")))
        })
        .await
    }

    /// Applies `change` to query `id`: `None` if there is none,
    /// `Some(Err(reason))` when the new name is taken.
    pub async fn update_cq(
        &self,
        id: i64,
        change: CqChange,
    ) -> Result<Option<std::result::Result<ContinuousQuery, String>>> {
        self.call(move |c| {
            let Some(old) = by_id(c, id)? else {
                return Ok(None);
            };
            let name = change.name.unwrap_or(old.name);
            if name_taken(c, &name, id)? {
                return Ok(Some(Err(format!(
                    "a continuous query named {name:?} already exists"
                ))));
            }
            let (interval, interval_ms) =
                change.interval.unwrap_or((old.interval, old.interval_ms));
            c.execute(
                "UPDATE continuous_queries SET name = ?2, description = ?3, query = ?4,
                     interval = ?5, interval_ms = ?6, tag_columns = ?7, lookback_windows = ?8,
                     is_active = ?9, updated_at_ms = ?10
                 WHERE id = ?1",
                params![
                    id,
                    name,
                    change.description.or(old.description),
                    change.query.unwrap_or(old.query),
                    interval,
                    interval_ms,
                    tags_json(&change.tag_columns.unwrap_or(old.tag_columns)),
                    i64::from(change.lookback_windows.unwrap_or(old.lookback_windows)),
                    i64::from(change.is_active.unwrap_or(old.is_active)),
                    now_ms()
                ],
            )?;
            Ok(by_id(c, id)?.map(Ok))
        })
        .await
    }

    /// Deletes query `id` and its executions; the deleted one, or `None`.
    pub async fn delete_cq(&self, id: i64) -> Result<Option<ContinuousQuery>> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let found = by_id(&tx, id)?;
            tx.execute("DELETE FROM continuous_queries WHERE id = ?1", params![id])?;
            tx.execute("DELETE FROM cq_executions WHERE query_id = ?1", params![id])?;
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    /// Moves the watermark hint of query `id` forward to `ms` (never back).
    pub async fn advance_cq_watermark(&self, id: i64, ms: i64) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE continuous_queries SET watermark_ms = max(coalesce(watermark_ms, ?2), ?2)
                 WHERE id = ?1",
                params![id, ms],
            )?;
            Ok(())
        })
        .await
    }

    /// Records an execution as running (or, for a dry run, as `dry_run`),
    /// keeping the newest [`EXECUTIONS_KEPT`] of its query.
    pub async fn start_cq_execution(&self, e: ExecutionStart) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO cq_executions (query_id, execution_id, started_at_ms, status,
                     start_ms, end_ms, windows_total, scheduled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    e.query_id,
                    e.execution_id,
                    now_ms(),
                    if e.dry_run { "dry_run" } else { "running" },
                    e.start_ms,
                    e.end_ms,
                    e.windows_total,
                    i64::from(e.scheduled)
                ],
            )?;
            c.execute(
                "DELETE FROM cq_executions WHERE query_id = ?1 AND id <= (
                     SELECT id FROM cq_executions WHERE query_id = ?1
                     ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![e.query_id, EXECUTIONS_KEPT],
            )?;
            Ok(())
        })
        .await
    }

    /// Records an execution's progress (and, with `status`, its end).
    /// (`records_read` stays null: the rows a query read are not counted.)
    pub async fn update_cq_execution(
        &self,
        execution_id: &str,
        windows_done: i64,
        records_written: i64,
        duration_ms: f64,
        end: Option<(&str, Option<String>)>,
    ) -> Result<()> {
        let execution_id = execution_id.to_owned();
        let (status, error) = match end {
            Some((status, error)) => (Some(status.to_owned()), error),
            None => (None, None),
        };
        self.call(move |c| {
            c.execute(
                "UPDATE cq_executions SET windows_done = ?2, records_written = ?3,
                     duration_ms = ?4, status = coalesce(?5, status), error = coalesce(?6, error)
                 WHERE execution_id = ?1",
                params![
                    execution_id,
                    windows_done,
                    records_written,
                    duration_ms,
                    status,
                    error
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks the executions left `running` by a hub that stopped (or
    /// crashed) during them as `interrupted`; how many.
    pub async fn interrupt_cq_executions(&self) -> Result<usize> {
        self.call(|c| {
            Ok(c.execute(
                "UPDATE cq_executions SET status = 'interrupted',
                     error = 'the hub stopped during this execution; the windows it did not \
                              commit are computed again'
                 WHERE status = 'running'",
                [],
            )?)
        })
        .await
    }

    /// The newest `limit` executions of query `id`, newest first.
    pub async fn cq_executions(&self, id: i64, limit: u32) -> Result<Vec<CqExecution>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, query_id, execution_id, started_at_ms, status, start_ms, end_ms,
                     windows_total, windows_done, records_read, records_written, duration_ms,
                     error, scheduled
                 FROM cq_executions WHERE query_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, i64::from(limit)], execution)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
