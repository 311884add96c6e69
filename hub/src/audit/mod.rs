//! The audit log: who did what to which target, from where, and how it
//! ended.
//!
//! # What is recorded
//!
//! - **Every administrative request** ([`events::event_type`] lists them:
//!   tokens, retention, compaction runs, continuous queries, last-value
//!   caches, deletes, imports, query cancellation), successful or not, as
//!   one entry with the actor (token name and id), the peer address, the
//!   target, the database, the outcome (`success`, `failure`) and the HTTP
//!   status. The entry is written before the answer leaves the hub, so an
//!   acknowledged action is in the log. Handlers add what only they know
//!   (a created token's id, a delete's database) as an [`AuditNote`]
//!   response extension.
//! - **Every authentication failure** (401: missing, malformed, unknown,
//!   expired, revoked or rotated-out token) and every authorization failure
//!   (403), as `auth.failure` and `auth.denied` entries. These are the one
//!   thing a client can make the hub write at will, so failures with the
//!   same source, actor and reason within `audit.failure_window` are one
//!   entry with a `count`; a flood costs one write per window.
//!
//! No entry holds a token's secret, and the hub never logs one.
//!
//! # Tamper evidence
//!
//! The entries form a hash chain ([`crate::meta::audit`]); `GET
//! /api/v1/admin/audit-log/verify` and `ferry-hub audit-verify` check it.

pub mod config;
pub mod events;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::AuditConfig;

use crate::meta::audit::NewAuditEntry;
use crate::meta::{Meta, now_ms};
use crate::metrics as m;

/// What a handler tells the audit log about the action it did, as a
/// response extension (`(Extension(note), Json(..))`).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub target: Option<String>,
    pub database: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// What identifies failures coalesced into one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey {
    /// `auth.failure` (401) or `auth.denied` (403).
    pub event_type: &'static str,
    pub source: Option<String>,
    pub actor: String,
    pub actor_token_id: Option<i64>,
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
struct Tally {
    first_ms: i64,
    count: i64,
    status: u16,
    /// The last route asked (method and path template).
    target: Option<String>,
}

/// The audit log's writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    meta: Meta,
    config: AuditConfig,
    failures: Arc<Mutex<HashMap<FailureKey, Tally>>>,
}

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Audit {
    pub fn new(meta: Meta, config: AuditConfig) -> Self {
        Audit {
            meta,
            config,
            failures: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Writes `entry` durably before returning. A failed write is logged
    /// and counted; the caller's action stands.
    pub async fn record(&self, entry: NewAuditEntry) {
        if !self.config.enabled {
            return;
        }
        // Detached: a client that goes away after its action committed
        // cancels this request's future, not the entry.
        let audit = self.clone();
        let written = tokio::spawn(async move { audit.write(vec![entry]).await });
        if let Err(e) = written.await {
            metrics::counter!(m::AUDIT_WRITE_ERRORS).increment(1);
            tracing::error!(error = %e, "the audit log writer task failed");
        }
    }

    async fn write(&self, entries: Vec<NewAuditEntry>) {
        let types: Vec<String> = entries.iter().map(|e| e.event_type.clone()).collect();
        match self.meta.append_audit(entries).await {
            Ok(_) => {
                for t in types {
                    metrics::counter!(m::AUDIT_ENTRIES, "event_type" => t).increment(1);
                }
            }
            Err(e) => {
                metrics::counter!(m::AUDIT_WRITE_ERRORS).increment(types.len() as u64);
                tracing::error!(error = %e, entries = types.len(), "writing the audit log failed");
            }
        }
    }

    /// Counts one authentication or authorization failure; it is written
    /// with the others of its key at the end of the window.
    pub fn failure(&self, mut key: FailureKey, status: u16, target: Option<String>) {
        if !self.config.enabled {
            return;
        }
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if !map.contains_key(&key) && map.len() >= self.config.max_failure_keys {
            metrics::counter!(m::AUDIT_FAILURES_OVERFLOW).increment(1);
            key = FailureKey {
                event_type: key.event_type,
                source: Some("*".to_owned()),
                actor: "*".to_owned(),
                actor_token_id: None,
                reason: "overflow",
            };
        }
        let tally = map.entry(key).or_insert_with(|| Tally {
            first_ms: now_ms(),
            count: 0,
            status,
            target: None,
        });
        tally.count += 1;
        tally.target = target;
    }

    /// Writes the failures counted so far.
    pub async fn flush(&self) {
        let taken = match self.failures.lock() {
            Ok(mut map) => std::mem::take(&mut *map),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        let mut entries: Vec<NewAuditEntry> = taken
            .into_iter()
            .map(|(key, tally)| NewAuditEntry {
                at_ms: tally.first_ms,
                event_type: key.event_type.to_owned(),
                actor: key.actor,
                actor_token_id: key.actor_token_id,
                source: key.source,
                target: tally.target,
                database: None,
                outcome: if key.event_type == events::AUTH_DENIED {
                    "denied".to_owned()
                } else {
                    "failure".to_owned()
                },
                status: Some(tally.status),
                count: tally.count,
                detail: Some(serde_json::json!({ "reason": key.reason }).to_string()),
            })
            .collect();
        entries.sort_by_key(|e| e.at_ms);
        self.write(entries).await;
    }

    /// Deletes entries past `audit.retention`.
    async fn prune(&self) {
        if self.config.retention.is_zero() {
            return;
        }
        let keep_ms = i64::try_from(self.config.retention.as_millis()).unwrap_or(i64::MAX);
        match self
            .meta
            .prune_audit(now_ms().saturating_sub(keep_ms))
            .await
        {
            Ok(Some(n)) => tracing::info!(
                deleted = n,
                "audit log entries past audit.retention deleted"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
    }

    /// Flushes failures every `audit.failure_window` and prunes hourly,
    /// until `shutdown`; then flushes once more.
    pub fn spawn(&self, tracker: &TaskTracker, shutdown: CancellationToken) {
        let audit = self.clone();
        tracker.spawn(async move {
            let mut flush = tokio::time::interval(audit.config.failure_window);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = flush.tick() => audit.flush().await,
                    _ = prune.tick() => audit.prune().await,
                }
            }
            audit.flush().await;
        });
    }
}
