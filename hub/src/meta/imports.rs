//! Bulk import jobs (see [`crate::import`]).
//!
//! A job is created once its file is fully received; its `key` (content
//! hash and target) is unique, so the same file imported twice into the
//! same place finds the first job instead of making a second one. Progress
//! is written after every committed chunk; the tables' `txn` is the truth
//! about which chunks are in (this record only tells where to resume).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Meta, MetaError, Result, now_ms};

/// A job's state.
pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";

/// One rejected line or record, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// 1-based line of the file (line protocol, CSV).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based row of the file (Parquet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    pub reason: String,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportJob {
    pub id: String,
    pub key: String,
    pub content_sha256: String,
    pub format: String,
    pub database: String,
    pub measurement: Option<String>,
    pub options: serde_json::Value,
    pub file_name: Option<String>,
    pub spool: String,
    pub state: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub chunks_done: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    pub rejections: Vec<RejectedRow>,
    pub measurements: Vec<String>,
    pub time_min_ns: Option<i64>,
    pub time_max_ns: Option<i64>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    /// The creating token's id (usage is counted under it).
    pub created_by_token: Option<i64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A new job (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewImportJob {
    pub id: String,
    pub key: String,
    pub content_sha256: String,
    pub format: String,
    pub database: String,
    pub measurement: Option<String>,
    pub options: serde_json::Value,
    pub file_name: Option<String>,
    pub spool: String,
    pub bytes_total: u64,
    pub created_by: Option<String>,
    /// The creating token's id (usage is counted under it).
    pub created_by_token: Option<i64>,
}

/// What a committed chunk moved.
#[derive(Debug, Clone, Default)]
pub struct ImportProgress {
    pub bytes_done: u64,
    pub chunks_done: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    pub rejections: Vec<RejectedRow>,
    pub measurements: Vec<String>,
    pub time_min_ns: Option<i64>,
    pub time_max_ns: Option<i64>,
}

/// What [`Meta::create_import_job`] did.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new job (or a failed or cancelled one with the same key, queued
    /// again with the new file).
    New(ImportJob),
    /// A job with the same key is queued, running or completed.
    Existing(ImportJob),
}

const SELECT: &str = "SELECT id, key, content_sha256, format, database, measurement, options,
    file_name, spool, state, bytes_total, bytes_done, chunks_done, rows_imported, rows_rejected,
    rejections, measurements, time_min_ns, time_max_ns, error, created_by, created_at_ms,
    started_at_ms, finished_at_ms, created_by_token FROM import_jobs";

fn u(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportJob> {
    let options: String = r.get(6)?;
    let rejections: String = r.get(15)?;
    let measurements: String = r.get(16)?;
    Ok(ImportJob {
        id: r.get(0)?,
        key: r.get(1)?,
        content_sha256: r.get(2)?,
        format: r.get(3)?,
        database: r.get(4)?,
        measurement: r.get(5)?,
        options: serde_json::from_str(&options).unwrap_or(serde_json::Value::Null),
        file_name: r.get(7)?,
        spool: r.get(8)?,
        state: r.get(9)?,
        bytes_total: u(r, 10)?,
        bytes_done: u(r, 11)?,
        chunks_done: u(r, 12)?,
        rows_imported: u(r, 13)?,
        rows_rejected: u(r, 14)?,
        rejections: serde_json::from_str(&rejections).unwrap_or_default(),
        measurements: serde_json::from_str(&measurements).unwrap_or_default(),
        time_min_ns: r.get(17)?,
        time_max_ns: r.get(18)?,
        error: r.get(19)?,
        created_by: r.get(20)?,
        created_at_ms: r.get(21)?,
        started_at_ms: r.get(22)?,
        finished_at_ms: r.get(23)?,
        created_by_token: r.get(24)?,
    })
}

fn get(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<ImportJob>> {
    c.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
        .optional()
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Meta {
    /// Creates a queued job, or finds the one with the same key (see
    /// [`Created`]).
    pub async fn create_import_job(&self, new: NewImportJob) -> Result<Created> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let existing = tx
                .query_row(&format!("{SELECT} WHERE key = ?1"), [&new.key], row)
                .optional()?;
            let options = new.options.to_string();
            let created = match existing {
                Some(job) if job.state != FAILED && job.state != CANCELLED => {
                    Created::Existing(job)
                }
                Some(job) => {
                    tx.execute(
                        "UPDATE import_jobs SET state = ?2, spool = ?3, options = ?4,
                            file_name = ?5, error = NULL, finished_at_ms = NULL,
                            bytes_total = ?6, created_by = ?7, created_by_token = ?8
                         WHERE id = ?1",
                        params![
                            job.id,
                            QUEUED,
                            new.spool,
                            options,
                            new.file_name,
                            i(new.bytes_total),
                            new.created_by,
                            new.created_by_token
                        ],
                    )?;
                    let job = get(&tx, &job.id)?.ok_or_else(|| {
                        MetaError::Corrupt("import job vanished while re-queued".to_owned())
                    })?;
                    Created::New(job)
                }
                None => {
                    let seq: i64 = tx.query_row(
                        "SELECT coalesce(max(seq), 0) + 1 FROM import_jobs",
                        [],
                        |r| r.get(0),
                    )?;
                    tx.execute(
                        "INSERT INTO import_jobs (id, seq, key, content_sha256, format, database,
                            measurement, options, file_name, spool, state, bytes_total,
                            created_by, created_at_ms, created_by_token)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                        params![
                            new.id,
                            seq,
                            new.key,
                            new.content_sha256,
                            new.format,
                            new.database,
                            new.measurement,
                            options,
                            new.file_name,
                            new.spool,
                            QUEUED,
                            i(new.bytes_total),
                            new.created_by,
                            now_ms(),
                            new.created_by_token
                        ],
                    )?;
                    let job = get(&tx, &new.id)?.ok_or_else(|| {
                        MetaError::Corrupt("import job vanished after insert".to_owned())
                    })?;
                    Created::New(job)
                }
            };
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    /// One job.
    pub async fn import_job(&self, id: &str) -> Result<Option<ImportJob>> {
        let id = id.to_owned();
        self.call(move |c| Ok(get(c, &id)?)).await
    }

    /// The newest `limit` jobs, newest first.
    pub async fn list_import_jobs(&self, limit: usize) -> Result<Vec<ImportJob>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut stmt = c.prepare(&format!("{SELECT} ORDER BY seq DESC LIMIT ?1"))?;
            let rows = stmt.query_map([limit], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Jobs queued or running.
    pub async fn pending_import_jobs(&self) -> Result<u64> {
        self.call(|c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM import_jobs WHERE state IN ('queued', 'running')",
                [],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Takes the oldest queued job and marks it running.
    pub async fn claim_import_job(&self) -> Result<Option<ImportJob>> {
        self.call(|c| {
            let tx = c.savepoint()?;
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM import_jobs WHERE state = 'queued' ORDER BY seq LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE import_jobs SET state = ?2, started_at_ms = coalesce(started_at_ms, ?3)
                 WHERE id = ?1",
                params![id, RUNNING, now_ms()],
            )?;
            let job = get(&tx, &id)?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// Puts jobs a stopped or crashed hub left running back in the queue;
    /// answers how many.
    pub async fn requeue_running_imports(&self) -> Result<usize> {
        self.call(|c| {
            Ok(c.execute(
                "UPDATE import_jobs SET state = ?1 WHERE state = ?2",
                params![QUEUED, RUNNING],
            )?)
        })
        .await
    }

    /// Records a running job's progress.
    pub async fn import_progress(&self, id: &str, p: ImportProgress) -> Result<()> {
        let id = id.to_owned();
        self.call(move |c| {
            let rejections = serde_json::to_string(&p.rejections).unwrap_or_else(|_| "[]".into());
            let measurements =
                serde_json::to_string(&p.measurements).unwrap_or_else(|_| "[]".into());
            c.execute(
                "UPDATE import_jobs SET bytes_done = ?2, chunks_done = ?3, rows_imported = ?4,
                    rows_rejected = ?5, rejections = ?6, measurements = ?7, time_min_ns = ?8,
                    time_max_ns = ?9
                 WHERE id = ?1",
                params![
                    id,
                    i(p.bytes_done),
                    i(p.chunks_done),
                    i(p.rows_imported),
                    i(p.rows_rejected),
                    rejections,
                    measurements,
                    p.time_min_ns,
                    p.time_max_ns
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Ends a job in `state` (`completed`, `failed`, `cancelled`); a job
    /// that has already ended keeps its state.
    pub async fn finish_import_job(
        &self,
        id: &str,
        state: &'static str,
        error: Option<String>,
    ) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE import_jobs SET state = ?2, error = ?3, finished_at_ms = ?4
                 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, state, error, now_ms()],
            )?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, key: &str) -> NewImportJob {
        NewImportJob {
            id: id.to_owned(),
            key: key.to_owned(),
            content_sha256: "ab".repeat(32),
            format: "csv".to_owned(),
            database: "plant".to_owned(),
            measurement: Some("m".to_owned()),
            options: serde_json::json!({"delimiter": ","}),
            file_name: Some("a.csv".to_owned()),
            spool: "/tmp/a".to_owned(),
            bytes_total: 10,
            created_by: None,
            created_by_token: None,
        }
    }

    #[tokio::test]
    async fn same_key_finds_the_job_and_a_failed_one_is_queued_again() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        let Created::New(a) = meta.create_import_job(new("a", "k")).await.unwrap() else {
            panic!("first job not new");
        };
        assert_eq!(a.state, QUEUED);
        let Created::Existing(same) = meta.create_import_job(new("b", "k")).await.unwrap() else {
            panic!("same key made a second job");
        };
        assert_eq!(same.id, "a");
        let claimed = meta.claim_import_job().await.unwrap().unwrap();
        assert_eq!(claimed.state, RUNNING);
        assert!(meta.claim_import_job().await.unwrap().is_none());
        assert_eq!(meta.requeue_running_imports().await.unwrap(), 1);
        meta.claim_import_job().await.unwrap().unwrap();
        assert!(
            meta.finish_import_job("a", FAILED, Some("x".into()))
                .await
                .unwrap()
        );
        let Created::New(again) = meta.create_import_job(new("c", "k")).await.unwrap() else {
            panic!("failed job not queued again");
        };
        assert_eq!((again.id.as_str(), again.state.as_str()), ("a", QUEUED));
        assert_eq!(again.error, None);
    }
}
