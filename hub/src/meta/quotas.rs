//! Quota overrides per token and per database, and daily usage (ingest,
//! queries, stored bytes) for billing.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Meta, Result, now_ms};

/// Limits of one token or database; `None`: the config's default, `Some(0)`:
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    #[serde(default)]
    pub rows_per_second: Option<u64>,
    #[serde(default)]
    pub bytes_per_second: Option<u64>,
    /// Databases only: bytes stored.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// Which limits a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaScope {
    Token,
    Database,
}

impl QuotaScope {
    fn as_str(self) -> &'static str {
        match self {
            QuotaScope::Token => "token",
            QuotaScope::Database => "database",
        }
    }
}

/// A stored override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaOverride {
    pub scope: QuotaScope,
    pub key: String,
    #[serde(flatten)]
    pub limits: QuotaLimits,
}

/// Usage added since the last flush, for one (day, token, database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub rows_ingested: u64,
    pub bytes_ingested: u64,
    pub queries: u64,
    pub query_ms: u64,
}

/// One row of `GET /api/v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub day: String,
    pub token_id: i64,
    pub token_name: String,
    pub database: String,
    pub rows_ingested: i64,
    pub bytes_ingested: i64,
    pub queries: i64,
    pub query_ms: i64,
}

/// Stored bytes of a database on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageRow {
    pub day: String,
    pub database: String,
    pub bytes: i64,
}

fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn to_u64(n: Option<i64>) -> Option<u64> {
    n.map(|n| u64::try_from(n).unwrap_or(0))
}

impl Meta {
    /// Every override.
    pub async fn quota_overrides(&self) -> Result<Vec<QuotaOverride>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT scope, key, rows_per_second, bytes_per_second, max_bytes FROM quotas
                 ORDER BY scope, key",
            )?;
            let rows = stmt.query_map([], |r| {
                let scope: String = r.get(0)?;
                Ok(QuotaOverride {
                    scope: if scope == "token" {
                        QuotaScope::Token
                    } else {
                        QuotaScope::Database
                    },
                    key: r.get(1)?,
                    limits: QuotaLimits {
                        rows_per_second: to_u64(r.get(2)?),
                        bytes_per_second: to_u64(r.get(3)?),
                        max_bytes: to_u64(r.get(4)?),
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Sets (or, with `None`, removes) the override of `scope`/`key`;
    /// whether there was one before.
    pub async fn set_quota(
        &self,
        scope: QuotaScope,
        key: String,
        limits: Option<QuotaLimits>,
    ) -> Result<bool> {
        self.call(move |c| {
            let existed = c
                .query_row(
                    "SELECT 1 FROM quotas WHERE scope = ?1 AND key = ?2",
                    params![scope.as_str(), key],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            match limits {
                Some(l) => {
                    c.execute(
                        "INSERT INTO quotas (scope, key, rows_per_second, bytes_per_second, max_bytes, updated_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (scope, key) DO UPDATE SET rows_per_second = excluded.rows_per_second,
                           bytes_per_second = excluded.bytes_per_second, max_bytes = excluded.max_bytes,
                           updated_at_ms = excluded.updated_at_ms",
                        params![
                            scope.as_str(),
                            key,
                            to_i64(l.rows_per_second),
                            to_i64(l.bytes_per_second),
                            to_i64(l.max_bytes),
                            now_ms()
                        ],
                    )?;
                }
                None => {
                    c.execute(
                        "DELETE FROM quotas WHERE scope = ?1 AND key = ?2",
                        params![scope.as_str(), key],
                    )?;
                }
            }
            Ok(existed)
        })
        .await
    }

    /// Adds `deltas` to the daily usage, in one transaction.
    pub async fn add_usage(
        &self,
        deltas: Vec<((String, i64, String, String), UsageDelta)>,
    ) -> Result<()> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO usage_daily (day, token_id, token_name, database, rows_ingested,
                       bytes_ingested, queries, query_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (day, token_id, database) DO UPDATE SET
                       token_name = excluded.token_name,
                       rows_ingested = rows_ingested + excluded.rows_ingested,
                       bytes_ingested = bytes_ingested + excluded.bytes_ingested,
                       queries = queries + excluded.queries,
                       query_ms = query_ms + excluded.query_ms",
                )?;
                for ((day, token_id, token_name, database), d) in deltas {
                    stmt.execute(params![
                        day,
                        token_id,
                        token_name,
                        database,
                        to_i64(Some(d.rows_ingested)),
                        to_i64(Some(d.bytes_ingested)),
                        to_i64(Some(d.queries)),
                        to_i64(Some(d.query_ms)),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes usage and storage rows of days before `day`.
    pub async fn prune_usage(&self, day: String) -> Result<()> {
        self.call(move |c| {
            c.execute("DELETE FROM usage_daily WHERE day < ?1", [&day])?;
            c.execute("DELETE FROM storage_daily WHERE day < ?1", [&day])?;
            Ok(())
        })
        .await
    }

    /// Records the stored bytes of each database today.
    pub async fn record_storage(&self, day: String, sizes: Vec<(String, u64)>) -> Result<()> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            for (database, bytes) in sizes {
                tx.execute(
                    "INSERT INTO storage_daily (day, database, bytes, measured_at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (day, database) DO UPDATE SET bytes = excluded.bytes,
                       measured_at_ms = excluded.measured_at_ms",
                    params![day, database, to_i64(Some(bytes)), now],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Usage rows from `since` to `until` (days, inclusive), optionally of
    /// one token or database; and the stored bytes of those days.
    pub async fn usage(
        &self,
        since: String,
        until: String,
        token_id: Option<i64>,
        database: Option<String>,
    ) -> Result<(Vec<UsageRow>, Vec<StorageRow>)> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT day, token_id, token_name, database, rows_ingested, bytes_ingested, queries, query_ms
                 FROM usage_daily WHERE day >= ?1 AND day <= ?2
                   AND (?3 IS NULL OR token_id = ?3) AND (?4 IS NULL OR database = ?4)
                 ORDER BY day, token_id, database LIMIT 100000",
            )?;
            let usage = stmt
                .query_map(params![since, until, token_id, database], |r| {
                    Ok(UsageRow {
                        day: r.get(0)?,
                        token_id: r.get(1)?,
                        token_name: r.get(2)?,
                        database: r.get(3)?,
                        rows_ingested: r.get(4)?,
                        bytes_ingested: r.get(5)?,
                        queries: r.get(6)?,
                        query_ms: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare(
                "SELECT day, database, bytes FROM storage_daily WHERE day >= ?1 AND day <= ?2
                   AND (?3 IS NULL OR database = ?3) ORDER BY day, database LIMIT 100000",
            )?;
            let storage = stmt
                .query_map(params![since, until, database], |r| {
                    Ok(StorageRow {
                        day: r.get(0)?,
                        database: r.get(1)?,
                        bytes: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((usage, storage))
        })
        .await
    }
}
