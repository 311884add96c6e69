//! The fleet: what the hub knows about its agents (role `read`).
//!
//! `GET /api/v1/agents` lists every agent that ever uploaded a segment:
//! first and last seen, the last committed sequence, segments and rows
//! received, the backlog it reported in its last upload's headers, and its
//! version. The numbers come from the metadata store and are advisory (see
//! [`crate::meta::agents`]); the tables are the truth.
//!
//! Each agent also has a `health`, worst first in the list: `stale` (no
//! upload for more than [`STALE_AFTER`]), `failing` (its last upload had a
//! segment the hub could not accept), `backlog` (it reported readings
//! still buffered), `ok`; its `lag_seconds` since the last upload; and
//! `uploads_failed` with the `last_error`. `GET /api/v1/agents/{id}/history`
//! gives its samples over the last day.
//!
//! With several hubs on one lake, the list merges every hub's agents
//! ([`shared`]); the history is this hub's.

pub mod shared;

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::auth::{Permission, Principal};
use crate::meta::AgentRecord;
use crate::server::{ApiResult, AppState};

/// An agent silent for longer is `stale`.
pub const STALE_AFTER: Duration = Duration::from_secs(300);

/// One agent and how it is doing.
#[derive(Debug, Serialize)]
pub struct AgentHealth {
    #[serde(flatten)]
    pub record: AgentRecord,
    /// `stale`, `failing`, `backlog` or `ok`.
    pub health: &'static str,
    /// Seconds since its last upload.
    pub lag_seconds: f64,
    pub stale_after_seconds: u64,
}

/// The answer of `GET /api/v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentList {
    pub agents: Vec<AgentHealth>,
}

fn rank(health: &str) -> u8 {
    match health {
        "stale" => 0,
        "failing" => 1,
        "backlog" => 2,
        _ => 3,
    }
}

/// `GET /api/v1/agents`: worst first, then the longest silent.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<AgentList>> {
    principal.require(Permission::Read)?;
    let now = chrono::Utc::now();
    let mut lists = vec![state.meta.list_agents().await?];
    if let Some(share) = state.fleet_share.get() {
        lists.push(share.others().await);
    }
    let mut agents: Vec<AgentHealth> = shared::merge(lists)
        .into_iter()
        .map(|record| {
            let lag_seconds = chrono::DateTime::parse_from_rfc3339(&record.last_seen)
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(1e12)
                .max(0.0);
            let failing = record
                .last_error_at
                .as_deref()
                .is_some_and(|at| at >= record.last_seen.as_str());
            let health = if lag_seconds > STALE_AFTER.as_secs_f64() {
                "stale"
            } else if failing {
                "failing"
            } else if record.backlog_readings.is_some_and(|b| b > 0) {
                "backlog"
            } else {
                "ok"
            };
            AgentHealth {
                record,
                health,
                lag_seconds,
                stale_after_seconds: STALE_AFTER.as_secs(),
            }
        })
        .collect();
    agents.sort_by(|a, b| {
        rank(a.health)
            .cmp(&rank(b.health))
            .then(b.lag_seconds.total_cmp(&a.lag_seconds))
    });
    Ok(Json(AgentList { agents }))
}

/// `GET /api/v1/agents/{id}/history`: the gateway's samples (one a minute
/// at most while it uploads, the last day), oldest first.
pub async fn history(
    principal: Principal,
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require(Permission::Read)?;
    let samples = state.meta.agent_samples(id.clone()).await?;
    Ok(Json(serde_json::json!({
        "agent": id,
        "sample_every_seconds": crate::meta::agents::SAMPLE_EVERY_MS / 1000,
        "samples": samples,
    })))
}
