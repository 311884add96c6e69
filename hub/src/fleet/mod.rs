//! The fleet: what the hub knows about its agents (role `read`).
//!
//! `GET /api/v1/agents` lists every agent that ever uploaded a segment:
//! first and last seen, the last committed sequence, segments and rows
//! received, the backlog it reported in its last upload's headers, and its
//! version. The numbers come from the metadata store and are advisory (see
//! [`crate::meta::agents`]); the tables are the truth.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::auth::{Permission, Principal};
use crate::meta::AgentRecord;
use crate::server::{ApiResult, AppState};

/// The answer of `GET /api/v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentList {
    pub agents: Vec<AgentRecord>,
}

/// `GET /api/v1/agents`.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<AgentList>> {
    principal.require(Permission::Read)?;
    Ok(Json(AgentList {
        agents: state.meta.list_agents().await?,
    }))
}
