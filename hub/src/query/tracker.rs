//! The queries in flight and the history of finished ones.
//!
//! Every query (`/api/v1/query`, `/api/v1/query/arrow`, `explain` with
//! `analyze`) is registered when its request arrives, with a cancellation
//! token, and shows in `GET /api/v1/queries/active` until it ends; then it
//! is recorded in the metadata store (`query_history`, kept across
//! restarts: the newest `query.history_size`, none older than
//! `query.history_max_age`). A query slower than `query.slow_threshold` is
//! logged at `warn` with its physical plan and metrics, and recorded with
//! that plan. SQL is kept up to [`SQL_KEPT`] bytes, a plan up to
//! [`PLAN_KEPT`]. A query whose client went away before its answer is
//! dropped from the active list without a history entry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::engine::plan_text;
use crate::auth::{Principal, Role};
use crate::meta::Meta;
use crate::meta::queries::QueryRecord;
use crate::metrics as m;
use crate::server::ApiError;
use deltalake::datafusion::execution::memory_pool::MemoryPool;

use super::engine::Probe;

/// Bytes of a query's SQL kept in the active list and the history.
pub const SQL_KEPT: usize = 16 * 1024;
/// Bytes of a slow query's plan kept in the history.
pub const PLAN_KEPT: usize = 64 * 1024;

/// How finished queries are kept and which are slow.
#[derive(Debug, Clone)]
pub struct HistoryLimits {
    pub size: usize,
    pub max_age: Duration,
    pub slow_threshold: Duration,
}

#[derive(Debug)]
struct Running {
    record: QueryRecord,
    cancel: CancellationToken,
    started: Instant,
    probe: Probe,
}

/// The registry; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Tracker {
    active: Mutex<BTreeMap<String, Running>>,
    meta: Meta,
    limits: HistoryLimits,
}

/// A registered query: its id, cancellation token and file counter. Taken
/// back by [`Tracker::finish`]; dropped without it (the client went away),
/// it leaves the active list.
#[derive(Debug)]
pub struct Ticket {
    pub id: String,
    pub cancel: CancellationToken,
    pub probe: Probe,
    tracker: Arc<Tracker>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.id);
    }
}

/// How a query ended, for its record.
#[derive(Debug)]
pub struct Finished<'a> {
    pub error: Option<&'a ApiError>,
    pub rows: u64,
    pub bytes: u64,
    pub plan: Option<&'a Arc<dyn deltalake::datafusion::physical_plan::ExecutionPlan>>,
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes]", &s[..end], s.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Tracker {
    pub fn new(meta: Meta, limits: HistoryLimits) -> Self {
        Tracker {
            active: Mutex::new(BTreeMap::new()),
            meta,
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a query of `principal` from `remote`, whose memory comes
    /// from `pool`.
    pub fn start(
        self: &Arc<Self>,
        principal: &Principal,
        remote: Option<SocketAddr>,
        database: Option<&str>,
        sql: &str,
        pool: Arc<dyn MemoryPool>,
    ) -> Ticket {
        let id = uuid::Uuid::new_v4().to_string();
        let cancel = CancellationToken::new();
        let probe = Probe::new(pool);
        let now_ms = crate::meta::now_ms();
        let record = QueryRecord {
            id: id.clone(),
            sql: cut(sql, SQL_KEPT),
            token_id: principal.token_id,
            token_name: principal.name.clone(),
            remote_addr: remote.map(|a| a.to_string()),
            database: database.map(str::to_owned),
            status: "running".to_owned(),
            start_time: crate::meta::format_ms(now_ms),
            end_time: None,
            duration_ms: 0.0,
            row_count: 0,
            bytes_returned: 0,
            files_total: 0,
            files_scanned: 0,
            peak_memory_bytes: 0,
            error: None,
            slow: false,
            plan: None,
            start_ms: now_ms,
            end_ms: now_ms,
        };
        self.lock().insert(
            id.clone(),
            Running {
                record,
                cancel: cancel.clone(),
                started: Instant::now(),
                probe: probe.clone(),
            },
        );
        Ticket {
            id,
            cancel,
            probe,
            tracker: self.clone(),
        }
    }

    /// Ends `ticket`'s query: out of the active list, into the history
    /// (and the slow-query log).
    pub async fn finish(&self, ticket: Ticket, done: Finished<'_>) {
        let Some(running) = self.lock().remove(&ticket.id) else {
            return;
        };
        let took = running.started.elapsed();
        let mut record = running.record;
        let (files, scanned) = running.probe.scan.get();
        record.files_total = files;
        record.files_scanned = scanned;
        record.peak_memory_bytes = running.probe.memory.peak() as u64;
        record.duration_ms = ms(took);
        record.end_ms = record.start_ms + i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        record.end_time = Some(crate::meta::format_ms(record.end_ms));
        record.row_count = done.rows;
        record.bytes_returned = done.bytes;
        record.status = match done.error {
            None => "completed",
            Some(_) if running.cancel.is_cancelled() => "cancelled",
            Some(e) if e.code() == ferry_protocols::api::ErrorCode::Timeout => "timeout",
            Some(_) => "failed",
        }
        .to_owned();
        record.error = done.error.map(|e| e.body.message.clone());
        if took >= self.limits.slow_threshold {
            record.slow = true;
            record.plan = done.plan.map(|p| cut(&plan_text(p, true), PLAN_KEPT));
            metrics::counter!(m::SLOW_QUERIES).increment(1);
            tracing::warn!(
                id = %record.id,
                token = %record.token_name,
                ms = record.duration_ms as u64,
                rows = record.row_count,
                status = %record.status,
                sql = %cut(&record.sql, 1024),
                plan = record.plan.as_deref().unwrap_or("(none)"),
                "slow query (query.slow_threshold)"
            );
        }
        let oldest = crate::meta::now_ms()
            - i64::try_from(self.limits.max_age.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = self
            .meta
            .record_query(record, self.limits.size, oldest)
            .await
        {
            tracing::warn!(error = %e, "recording a query in the history failed");
        }
        drop(ticket);
    }

    /// The queries running or waiting now, oldest first: every one for an
    /// admin, else only the principal's own.
    pub fn active(&self, principal: &Principal) -> Vec<QueryRecord> {
        self.lock()
            .values()
            .filter(|r| sees(principal, &r.record))
            .map(|r| {
                let mut record = r.record.clone();
                record.duration_ms = ms(r.started.elapsed());
                (record.files_total, record.files_scanned) = r.probe.scan.get();
                record.peak_memory_bytes = r.probe.memory.peak() as u64;
                record
            })
            .collect()
    }

    /// One running query the principal may see.
    pub fn running(&self, principal: &Principal, id: &str) -> Option<QueryRecord> {
        self.active(principal).into_iter().find(|r| r.id == id)
    }

    /// Cancels a running query the principal may see: `false` if there is
    /// none by that id.
    pub fn cancel(&self, principal: &Principal, id: &str) -> bool {
        let map = self.lock();
        match map.get(id) {
            Some(r) if sees(principal, &r.record) => {
                r.cancel.cancel();
                metrics::counter!(m::QUERIES_CANCELLED).increment(1);
                tracing::info!(id, by = %principal.name, "query cancelled");
                true
            }
            _ => false,
        }
    }
}

/// An admin sees every query; anyone else only those of their own token.
pub fn sees(principal: &Principal, record: &QueryRecord) -> bool {
    principal.role == Role::Admin
        || (principal.token_id.is_some() && principal.token_id == record.token_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        let s = "é".repeat(10);
        let c = cut(&s, 5);
        assert!(c.starts_with("éé…"), "{c}");
        assert!(c.ends_with("[20 bytes]"), "{c}");
    }
}
