//! Retention policies: how many days of data to keep, per database or per
//! measurement, with Arc's policy fields (id, name, `retention_days`,
//! `buffer_days`, `is_active`) and a record of each execution. The
//! maintenance task enforces them (see [`crate::maintenance`]); the API
//! edits them (`/api/v1/retention`).
//!
//! A policy keeps `days + buffer_days` days (Arc deletes data older than
//! `retention_days + buffer_days`); an inactive policy is as if it were
//! not there. One policy per scope (`database`, `measurement`), and names
//! are unique.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms, now_ms};

/// Executions kept per policy (older ones are dropped as new ones come).
pub const EXECUTIONS_KEPT: i64 = 1000;

/// One policy. `measurement: None` covers every measurement of the
/// database that has no active policy of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionPolicy {
    pub id: i64,
    pub name: String,
    pub database: String,
    pub measurement: Option<String>,
    /// Ferry's name for `retention_days`.
    pub days: u32,
    pub retention_days: u32,
    pub buffer_days: u32,
    pub is_active: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The last real (not dry) execution: when, its status, rows deleted.
    pub last_execution_time: Option<String>,
    pub last_execution_status: Option<String>,
    pub last_deleted_count: Option<i64>,
}

impl RetentionPolicy {
    /// The days of data kept: `retention_days + buffer_days`.
    pub fn kept_days(&self) -> u32 {
        self.days.saturating_add(self.buffer_days)
    }
}

/// What an update changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub name: Option<String>,
    /// `Some(None)`: the whole database.
    pub measurement: Option<Option<String>>,
    pub retention_days: Option<u32>,
    pub buffer_days: Option<u32>,
    pub is_active: Option<bool>,
}

/// A new policy (Arc's create).
#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub name: String,
    pub database: String,
    pub measurement: Option<String>,
    pub retention_days: u32,
    pub buffer_days: u32,
    pub is_active: bool,
}

/// One execution of a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionExecution {
    pub id: i64,
    pub policy_id: i64,
    /// RFC 3339, when it started.
    pub execution_time: String,
    pub status: String,
    pub dry_run: bool,
    pub deleted_count: i64,
    pub files_deleted: i64,
    /// The first day kept.
    pub cutoff_date: Option<String>,
    pub execution_duration_ms: f64,
    pub error_message: Option<String>,
}

/// An execution to record.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    pub policy_id: i64,
    pub started_at_ms: i64,
    pub ok: bool,
    pub dry_run: bool,
    pub deleted_count: u64,
    pub files_deleted: u64,
    pub cutoff_date: Option<String>,
    pub duration_ms: f64,
    pub error: Option<String>,
}

const SELECT: &str = "SELECT p.id, p.name, p.database, p.measurement, p.days, p.buffer_days,
        p.is_active, p.created_at_ms, p.updated_at_ms,
        e.started_at_ms, e.status, e.deleted_count
    FROM retention p
    LEFT JOIN retention_executions e ON e.id = (
        SELECT max(id) FROM retention_executions WHERE policy_id = p.id AND dry_run = 0)";

fn days(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetentionPolicy> {
    let measurement: String = r.get(3)?;
    let retention_days = days(r.get(4)?);
    let last_ms: Option<i64> = r.get(9)?;
    Ok(RetentionPolicy {
        id: r.get(0)?,
        name: r.get(1)?,
        database: r.get(2)?,
        measurement: (!measurement.is_empty()).then_some(measurement),
        days: retention_days,
        retention_days,
        buffer_days: days(r.get(5)?),
        is_active: r.get::<_, i64>(6)? != 0,
        created_at: format_ms(r.get(7)?),
        updated_at: format_ms(r.get(8)?),
        last_execution_time: last_ms.map(format_ms),
        last_execution_status: r.get(10)?,
        last_deleted_count: r.get(11)?,
    })
}

fn execution(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetentionExecution> {
    Ok(RetentionExecution {
        id: r.get(0)?,
        policy_id: r.get(1)?,
        execution_time: format_ms(r.get(2)?),
        status: r.get(3)?,
        dry_run: r.get::<_, i64>(4)? != 0,
        deleted_count: r.get(5)?,
        files_deleted: r.get(6)?,
        cutoff_date: r.get(7)?,
        execution_duration_ms: r.get(8)?,
        error_message: r.get(9)?,
    })
}

/// The default name of a policy for a scope: `db` or `db.measurement`.
fn scope_name(database: &str, measurement: &str) -> String {
    if measurement.is_empty() {
        database.to_owned()
    } else {
        format!("{database}.{measurement}")
    }
}

fn by_id(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<RetentionPolicy>> {
    c.query_row(&format!("{SELECT} WHERE p.id = ?1"), params![id], row)
        .optional()
}

impl Meta {
    /// Every policy, by database then measurement (database-wide first).
    pub async fn list_retention(&self) -> Result<Vec<RetentionPolicy>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("{SELECT} ORDER BY p.database, p.measurement"))?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// One policy by id.
    pub async fn retention_policy(&self, id: i64) -> Result<Option<RetentionPolicy>> {
        self.call(move |c| Ok(by_id(c, id)?)).await
    }

    /// Creates or replaces the days of the policy of `database` (and
    /// `measurement`), keeping its name, buffer and state; a new one is
    /// named after its scope, active, without buffer.
    pub async fn set_retention(
        &self,
        database: &str,
        measurement: Option<&str>,
        days: u32,
    ) -> Result<RetentionPolicy> {
        let database = database.to_owned();
        let measurement = measurement.unwrap_or_default().to_owned();
        self.call(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO retention (name, database, measurement, days, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (database, measurement)
                 DO UPDATE SET days = excluded.days, updated_at_ms = excluded.updated_at_ms",
                params![scope_name(&database, &measurement), database, measurement, i64::from(days), now],
            )?;
            Ok(c.query_row(
                &format!("{SELECT} WHERE p.database = ?1 AND p.measurement = ?2"),
                params![database, measurement],
                row,
            )?)
        })
        .await
    }

    /// Creates a policy; `Ok(Err(reason))` when its name or scope is taken.
    pub async fn create_retention(
        &self,
        new: NewPolicy,
    ) -> Result<std::result::Result<RetentionPolicy, String>> {
        self.call(move |c| {
            let measurement = new.measurement.clone().unwrap_or_default();
            let taken: Option<String> = c
                .query_row(
                    "SELECT name FROM retention WHERE name = ?1 OR (database = ?2 AND measurement = ?3)",
                    params![new.name, new.database, measurement],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(existing) = taken {
                return Ok(Err(format!(
                    "a retention policy named {existing:?} already has this name or covers {}",
                    scope_name(&new.database, &measurement)
                )));
            }
            let now = now_ms();
            c.execute(
                "INSERT INTO retention (name, database, measurement, days, buffer_days, is_active,
                     created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    new.name,
                    new.database,
                    measurement,
                    i64::from(new.retention_days),
                    i64::from(new.buffer_days),
                    i64::from(new.is_active),
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            Ok(by_id(c, id)?.ok_or_else(|| format!("policy {id} vanished")))
        })
        .await
    }

    /// Applies `change` to policy `id`: `None` if there is no such policy,
    /// `Some(Err(reason))` when the new name or scope is taken.
    pub async fn update_retention(
        &self,
        id: i64,
        change: PolicyChange,
    ) -> Result<Option<std::result::Result<RetentionPolicy, String>>> {
        self.call(move |c| {
            let Some(old) = by_id(c, id)? else {
                return Ok(None);
            };
            let name = change.name.unwrap_or(old.name);
            let measurement = change
                .measurement
                .unwrap_or(old.measurement)
                .unwrap_or_default();
            let clash: Option<String> = c
                .query_row(
                    "SELECT name FROM retention
                     WHERE id <> ?1 AND (name = ?2 OR (database = ?3 AND measurement = ?4))",
                    params![id, name, old.database, measurement],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = clash {
                return Ok(Some(Err(format!(
                    "the retention policy {other:?} already has this name or covers {}",
                    scope_name(&old.database, &measurement)
                ))));
            }
            c.execute(
                "UPDATE retention SET name = ?2, measurement = ?3, days = ?4, buffer_days = ?5,
                     is_active = ?6, updated_at_ms = ?7
                 WHERE id = ?1",
                params![
                    id,
                    name,
                    measurement,
                    i64::from(change.retention_days.unwrap_or(old.days)),
                    i64::from(change.buffer_days.unwrap_or(old.buffer_days)),
                    i64::from(change.is_active.unwrap_or(old.is_active)),
                    now_ms()
                ],
            )?;
            Ok(by_id(c, id)?.map(Ok))
        })
        .await
    }

    /// Deletes the policy of a scope; the deleted one, or `None`.
    pub async fn delete_retention(
        &self,
        database: &str,
        measurement: Option<&str>,
    ) -> Result<Option<RetentionPolicy>> {
        let database = database.to_owned();
        let measurement = measurement.unwrap_or_default().to_owned();
        self.call(move |c| {
            let id: Option<i64> = c
                .query_row(
                    "SELECT id FROM retention WHERE database = ?1 AND measurement = ?2",
                    params![database, measurement],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => delete_by_id(c, id),
                None => Ok(None),
            }
        })
        .await
    }

    /// Deletes policy `id` and its executions; the deleted one, or `None`.
    pub async fn delete_retention_by_id(&self, id: i64) -> Result<Option<RetentionPolicy>> {
        self.call(move |c| delete_by_id(c, id)).await
    }

    /// Records an execution, keeping the newest [`EXECUTIONS_KEPT`] per policy.
    pub async fn record_retention_execution(&self, e: ExecutionRecord) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO retention_executions (policy_id, started_at_ms, status, dry_run,
                     deleted_count, files_deleted, cutoff_date, duration_ms, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    e.policy_id,
                    e.started_at_ms,
                    if e.ok { "completed" } else { "failed" },
                    i64::from(e.dry_run),
                    i64::try_from(e.deleted_count).unwrap_or(i64::MAX),
                    i64::try_from(e.files_deleted).unwrap_or(i64::MAX),
                    e.cutoff_date,
                    e.duration_ms,
                    e.error
                ],
            )?;
            c.execute(
                "DELETE FROM retention_executions WHERE policy_id = ?1 AND id <= (
                     SELECT id FROM retention_executions WHERE policy_id = ?1
                     ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![e.policy_id, EXECUTIONS_KEPT],
            )?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` executions of policy `id`, newest first.
    pub async fn retention_executions(
        &self,
        id: i64,
        limit: u32,
    ) -> Result<Vec<RetentionExecution>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, policy_id, started_at_ms, status, dry_run, deleted_count,
                     files_deleted, cutoff_date, duration_ms, error
                 FROM retention_executions WHERE policy_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, i64::from(limit)], execution)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

fn delete_by_id(c: &mut rusqlite::Connection, id: i64) -> Result<Option<RetentionPolicy>> {
    let tx = c.savepoint()?;
    let found = by_id(&tx, id)?;
    tx.execute("DELETE FROM retention WHERE id = ?1", params![id])?;
    tx.execute(
        "DELETE FROM retention_executions WHERE policy_id = ?1",
        params![id],
    )?;
    tx.commit()?;
    Ok(found)
}

/// The active policy that applies to `database.measurement`: its own, else
/// its database's.
pub fn policy_for<'a>(
    policies: &'a [RetentionPolicy],
    database: &str,
    measurement: &str,
) -> Option<&'a RetentionPolicy> {
    let active = || policies.iter().filter(|p| p.is_active);
    active()
        .find(|p| p.database == database && p.measurement.as_deref() == Some(measurement))
        .or_else(|| active().find(|p| p.database == database && p.measurement.is_none()))
}

/// The days to keep for `database.measurement`: its active policy's
/// (`retention_days + buffer_days`), else `default_days` (0 = keep forever
/// → `None`).
pub fn days_for(
    policies: &[RetentionPolicy],
    database: &str,
    measurement: &str,
    default_days: u32,
) -> Option<u32> {
    policy_for(policies, database, measurement)
        .map(RetentionPolicy::kept_days)
        .or((default_days > 0).then_some(default_days))
}

#[cfg(test)]
mod tests;
