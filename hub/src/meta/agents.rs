//! The agents the hub has heard from, updated on every segment upload.
//!
//! The counters are advisory (the fleet view): they are updated after the
//! table commit, so a crash between the two can under-count. The tables are
//! the truth for what was received.

use ferry_protocols::AgentId;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Meta, MetaError, Result, format_ms, now_ms};

/// What one segment upload tells about its agent.
#[derive(Debug, Clone)]
pub struct AgentReport {
    pub agent: AgentId,
    /// The segment's sequence and rows added, if it was committed (a
    /// duplicate reports the sequence with 0 rows; a failure reports `None`).
    pub committed: Option<(u64, u64)>,
    pub backlog_readings: Option<u64>,
    pub backlog_bytes: Option<u64>,
    pub version: Option<String>,
    /// Segments of this upload the hub could not accept, and the last
    /// reason.
    pub failed: u64,
    pub error: Option<String>,
}

/// A gateway's history is sampled at most this often.
pub const SAMPLE_EVERY_MS: i64 = 60_000;
/// And kept this long.
pub const SAMPLES_KEPT_MS: i64 = 86_400_000;

/// One sample of a gateway's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSample {
    /// RFC 3339.
    pub at: String,
    pub backlog_readings: Option<u64>,
    pub rows_received: u64,
    pub segments_received: u64,
    pub uploads_failed: u64,
}

/// One agent as the fleet endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AgentRecord {
    pub id: String,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// The highest committed segment sequence.
    pub last_sequence: Option<u64>,
    pub segments_received: u64,
    pub rows_received: u64,
    /// Readings still buffered at the agent, as it last reported.
    pub backlog_readings: Option<u64>,
    /// Bytes still buffered at the agent, as it last reported.
    pub backlog_bytes: Option<u64>,
    pub version: Option<String>,
    /// Segments the hub could not accept (a failed commit, a refused
    /// segment of a batch), since the gateway was first seen.
    pub uploads_failed: u64,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

type AgentRow = (
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
);

fn read_row(r: &Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

impl Meta {
    /// Records a segment upload: last seen now, the backlog and version it
    /// reported, and (when committed) its sequence and rows.
    pub async fn record_agent(&self, report: AgentReport) -> Result<()> {
        self.call(move |c| {
            let now = now_ms();
            let (seq, rows, segments) = match report.committed {
                Some((seq, rows)) => (Some(to_i64(seq)), to_i64(rows), 1_i64),
                None => (None, 0, 0),
            };
            c.execute(
                "INSERT INTO agents (id, first_seen_ms, last_seen_ms, last_sequence,
                                     segments_received, rows_received,
                                     backlog_readings, backlog_bytes, version,
                                     uploads_failed, last_error, last_error_ms)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET
                   last_seen_ms = excluded.last_seen_ms,
                   last_sequence = max(coalesce(last_sequence, excluded.last_sequence),
                                       coalesce(excluded.last_sequence, last_sequence)),
                   segments_received = segments_received + excluded.segments_received,
                   rows_received = rows_received + excluded.rows_received,
                   backlog_readings = coalesce(excluded.backlog_readings, backlog_readings),
                   backlog_bytes = coalesce(excluded.backlog_bytes, backlog_bytes),
                   version = coalesce(excluded.version, version),
                   uploads_failed = uploads_failed + excluded.uploads_failed,
                   last_error = coalesce(excluded.last_error, last_error),
                   last_error_ms = coalesce(excluded.last_error_ms, last_error_ms)",
                params![
                    report.agent.as_str(),
                    now,
                    seq,
                    segments,
                    rows,
                    report.backlog_readings.map(to_i64),
                    report.backlog_bytes.map(to_i64),
                    report.version,
                    to_i64(report.failed),
                    report.error,
                    report.error.as_ref().map(|_| now),
                ],
            )?;
            // At most one sample a minute per gateway, a day of them.
            let last: Option<i64> = c.query_row(
                "SELECT max(at_ms) FROM agent_samples WHERE agent_id = ?1",
                [report.agent.as_str()],
                |r| r.get(0),
            )?;
            if last.is_none_or(|at| now - at >= SAMPLE_EVERY_MS) {
                c.execute(
                    "INSERT OR REPLACE INTO agent_samples
                       (agent_id, at_ms, backlog_readings, rows_received, segments_received, uploads_failed)
                     SELECT id, ?2, backlog_readings, rows_received, segments_received, uploads_failed
                     FROM agents WHERE id = ?1",
                    params![report.agent.as_str(), now],
                )?;
                c.execute(
                    "DELETE FROM agent_samples WHERE agent_id = ?1 AND at_ms < ?2",
                    params![report.agent.as_str(), now - SAMPLES_KEPT_MS],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// The last sequence committed (or answered duplicate) for `agent`;
    /// `None` if the hub has not seen it.
    pub async fn agent_last_sequence(&self, agent: &AgentId) -> Result<Option<u64>> {
        let id = agent.as_str().to_owned();
        self.call(move |c| {
            let seq: Option<Option<i64>> = c
                .query_row(
                    "SELECT last_sequence FROM agents WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(to_u64(seq.flatten()))
        })
        .await
    }

    /// A gateway's history, oldest first.
    pub async fn agent_samples(&self, agent: String) -> Result<Vec<AgentSample>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT at_ms, backlog_readings, rows_received, segments_received, uploads_failed
                 FROM agent_samples WHERE agent_id = ?1 ORDER BY at_ms",
            )?;
            let rows = stmt.query_map([agent], |r| {
                Ok(AgentSample {
                    at: format_ms(r.get(0)?),
                    backlog_readings: to_u64(r.get(1)?),
                    rows_received: to_u64(Some(r.get(2)?)).unwrap_or(0),
                    segments_received: to_u64(Some(r.get(3)?)).unwrap_or(0),
                    uploads_failed: to_u64(Some(r.get(4)?)).unwrap_or(0),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Every agent, by id.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT id, first_seen_ms, last_seen_ms, last_sequence, segments_received,
                        rows_received, backlog_readings, backlog_bytes, version,
                        uploads_failed, last_error, last_error_ms
                 FROM agents ORDER BY id",
            )?;
            let rows = stmt.query_map([], read_row)?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    id,
                    first,
                    last,
                    seq,
                    segments,
                    rows,
                    bl_r,
                    bl_b,
                    version,
                    failed,
                    error,
                    error_ms,
                ) = row?;
                out.push(AgentRecord {
                    id,
                    first_seen: format_ms(first),
                    last_seen: format_ms(last),
                    last_sequence: to_u64(seq),
                    segments_received: to_u64(Some(segments)).ok_or_else(|| {
                        MetaError::Corrupt("negative segments_received".to_owned())
                    })?,
                    rows_received: to_u64(Some(rows)).unwrap_or(0),
                    backlog_readings: to_u64(bl_r),
                    backlog_bytes: to_u64(bl_b),
                    version,
                    uploads_failed: to_u64(Some(failed)).unwrap_or(0),
                    last_error: error,
                    last_error_at: error_ms.map(format_ms),
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upsert_accumulates() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        let agent = AgentId::new("gw-1").unwrap();
        let report = |committed, backlog| AgentReport {
            agent: agent.clone(),
            committed,
            backlog_readings: backlog,
            backlog_bytes: None,
            version: Some("0.1.0".into()),
            failed: u64::from(committed.is_none() && backlog == Some(9)),
            error: (committed.is_none() && backlog == Some(9)).then(|| "boom".to_owned()),
        };
        meta.record_agent(report(Some((1, 10)), Some(5)))
            .await
            .unwrap();
        meta.record_agent(report(Some((2, 7)), None)).await.unwrap();
        meta.record_agent(report(None, Some(0))).await.unwrap();
        let agents = meta.list_agents().await.unwrap();
        assert_eq!(agents.len(), 1);
        let a = &agents[0];
        assert_eq!(a.id, "gw-1");
        assert_eq!(a.last_sequence, Some(2));
        assert_eq!(a.rows_received, 17);
        assert_eq!(a.segments_received, 2);
        assert_eq!(a.backlog_readings, Some(0));
        assert_eq!(a.version.as_deref(), Some("0.1.0"));
        assert_eq!(a.uploads_failed, 0);
        meta.record_agent(report(None, Some(9))).await.unwrap();
        let a = &meta.list_agents().await.unwrap()[0];
        assert_eq!(a.uploads_failed, 1);
        assert_eq!(a.last_error.as_deref(), Some("boom"));
        // One sample, taken at the first report: the others came within a
        // minute of it.
        let samples = meta.agent_samples("gw-1".into()).await.unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].rows_received, 10);
    }
}
