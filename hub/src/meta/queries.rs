//! The query history: every finished query (`/api/v1/query`, its Arrow
//! route, `/api/v1/query/explain` with `analyze`), kept across restarts
//! and bounded by count and age (`query.history_size`,
//! `query.history_max_age`).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms};

/// One query, running or finished (Arc's fields, plus bytes, files and
/// the plan of a slow query).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRecord {
    pub id: String,
    pub sql: String,
    /// The token's id (`None` with auth off).
    pub token_id: Option<i64>,
    pub token_name: String,
    pub remote_addr: Option<String>,
    pub database: Option<String>,
    /// `running`, `completed`, `failed`, `cancelled`, `timeout`.
    pub status: String,
    /// RFC 3339.
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: f64,
    pub row_count: u64,
    pub bytes_returned: u64,
    /// Data files in the tables the query read, and the ones it read after
    /// skipping files by their statistics.
    pub files_total: u64,
    pub files_scanned: u64,
    /// The most memory the query held at once (its reservations in the
    /// shared pool).
    pub peak_memory_bytes: u64,
    pub error: Option<String>,
    /// Slower than `query.slow_threshold`.
    pub slow: bool,
    /// A slow query's physical plan, with its metrics.
    pub plan: Option<String>,
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(skip)]
    pub end_ms: i64,
}

const COLUMNS: &str = "id, sql, token_id, token_name, remote_addr, database, status, start_ms,
    end_ms, duration_ms, row_count, bytes_returned, files_total, files_scanned, error, slow, plan,
    peak_memory";

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueryRecord> {
    let start_ms: i64 = r.get(7)?;
    let end_ms: i64 = r.get(8)?;
    Ok(QueryRecord {
        id: r.get(0)?,
        sql: r.get(1)?,
        token_id: r.get(2)?,
        token_name: r.get(3)?,
        remote_addr: r.get(4)?,
        database: r.get(5)?,
        status: r.get(6)?,
        start_time: format_ms(start_ms),
        end_time: Some(format_ms(end_ms)),
        duration_ms: r.get(9)?,
        row_count: count(r.get(10)?),
        bytes_returned: count(r.get(11)?),
        files_total: count(r.get(12)?),
        files_scanned: count(r.get(13)?),
        error: r.get(14)?,
        slow: r.get::<_, i64>(15)? != 0,
        plan: r.get(16)?,
        peak_memory_bytes: count(r.get(17)?),
        start_ms,
        end_ms,
    })
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Meta {
    /// Records a finished query, then drops the oldest beyond `keep` and
    /// those that started before `oldest_ms`.
    pub async fn record_query(&self, q: QueryRecord, keep: usize, oldest_ms: i64) -> Result<()> {
        self.call(move |c| {
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO query_history ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ),
                params![
                    q.id,
                    q.sql,
                    q.token_id,
                    q.token_name,
                    q.remote_addr,
                    q.database,
                    q.status,
                    q.start_ms,
                    q.end_ms,
                    q.duration_ms,
                    int(q.row_count),
                    int(q.bytes_returned),
                    int(q.files_total),
                    int(q.files_scanned),
                    q.error,
                    i64::from(q.slow),
                    q.plan,
                    int(q.peak_memory_bytes)
                ],
            )?;
            c.execute(
                "DELETE FROM query_history WHERE start_ms < ?1 OR seq <= (
                     SELECT seq FROM query_history ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![oldest_ms, i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` finished queries, newest first; only those of
    /// token `only` when given.
    pub async fn query_history(&self, limit: u32, only: Option<i64>) -> Result<Vec<QueryRecord>> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM query_history
                 WHERE ?1 IS NULL OR token_id = ?1 ORDER BY seq DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![only, i64::from(limit)], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// One finished query by id.
    pub async fn query_record(&self, id: &str) -> Result<Option<QueryRecord>> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM query_history WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, start_ms: i64, token: Option<i64>) -> QueryRecord {
        QueryRecord {
            id: id.to_owned(),
            sql: "SELECT 1".to_owned(),
            token_id: token,
            token_name: "t".to_owned(),
            remote_addr: Some("127.0.0.1:5".to_owned()),
            database: None,
            status: "completed".to_owned(),
            start_time: String::new(),
            end_time: None,
            duration_ms: 1.0,
            row_count: 1,
            bytes_returned: 10,
            files_total: 3,
            files_scanned: 1,
            peak_memory_bytes: 0,
            error: None,
            slow: false,
            plan: None,
            start_ms,
            end_ms: start_ms + 1,
        }
    }

    #[tokio::test]
    async fn history_is_bounded_by_count_and_age_and_filtered_by_token() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        for i in 0..10 {
            let token = if i % 2 == 0 { Some(1) } else { Some(2) };
            meta.record_query(record(&format!("q{i}"), 1_000 + i, token), 5, 0)
                .await
                .unwrap();
        }
        let all = meta.query_history(100, None).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["q9", "q8", "q7", "q6", "q5"]);
        let mine = meta.query_history(100, Some(1)).await.unwrap();
        assert!(mine.iter().all(|q| q.token_id == Some(1)) && mine.len() == 2);
        // Older than the age bound: gone at the next record.
        meta.record_query(record("new", 5_000, None), 100, 1_008)
            .await
            .unwrap();
        let ids: Vec<String> = meta
            .query_history(100, None)
            .await
            .unwrap()
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(ids, ["new", "q9", "q8"]);
        assert_eq!(
            meta.query_record("q9").await.unwrap().unwrap().files_total,
            3
        );
        assert!(meta.query_record("nope").await.unwrap().is_none());
    }
}
