//! The fleet: what the hub knows about its agents (role `read`).
//!
//! `GET /api/v1/agents` lists every agent that ever uploaded a segment:
//! first and last seen, the last committed sequence, segments and rows
//! received, the backlog it reported in its last upload's headers, and its
//! version. The numbers come from the metadata store and are advisory (see
//! [`crate::meta::agents`]); the tables are the truth.
//!
//! Each agent also has a `health`, worst first in the list: `stale` (no
//! upload for more than [`STALE_AFTER`]), `backlog` (it reported readings
//! still buffered), `ok`; and its `lag_seconds` since the last upload.

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
    /// `stale`, `backlog` or `ok`.
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
        "backlog" => 1,
        _ => 2,
    }
}

/// `GET /api/v1/agents`: worst first, then the longest silent.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<AgentList>> {
    principal.require(Permission::Read)?;
    let now = chrono::Utc::now();
    let mut agents: Vec<AgentHealth> = state
        .meta
        .list_agents()
        .await?
        .into_iter()
        .map(|record| {
            let lag_seconds = chrono::DateTime::parse_from_rfc3339(&record.last_seen)
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(1e12)
                .max(0.0);
            let health = if lag_seconds > STALE_AFTER.as_secs_f64() {
                "stale"
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
