//! Query management (role `read`): what runs, what ran, cancelling, and
//! plans. An admin sees and cancels every query; any other token only its
//! own ([`super::tracker::sees`]).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/queries/active` | `{"success", "queries": [...], "count"}`, oldest first, with the time so far |
//! | `GET /api/v1/queries/history?limit=100` | the newest finished queries (at most 1000 per request), newest first |
//! | `GET /api/v1/queries/{id}` | one query, running or finished; 404 if unknown or not the caller's |
//! | `DELETE /api/v1/queries/{id}` | cancels a running query (its client gets 503); 404 if none runs by that id |
//! | `POST /api/v1/query/explain` | `{"sql", "database"?, "analyze"?}` → [`Explained`]: the logical and physical plans and the files skipped by statistics; with `analyze`, the query runs to its end (rows discarded) and the plan carries each operator's metrics |
//!
//! Each query's fields: `id`, `sql`, `token_id`, `token_name`,
//! `remote_addr`, `database`, `status` (`running`, `completed`, `failed`,
//! `cancelled`, `timeout`), `start_time`, `end_time`, `duration_ms`,
//! `row_count`, `bytes_returned`, `files_total`, `files_scanned`, `error`,
//! `slow`, `plan` (slow queries).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::engine::{self, Explained};
use super::{QueryRequest, database, tracker};
use crate::auth::{Permission, Principal, Role};
use crate::meta::queries::QueryRecord;
use crate::server::{ApiError, ApiResult, AppState, JsonBody, Remote};

/// A list of queries.
#[derive(Debug, Serialize)]
pub struct Queries {
    pub success: bool,
    pub queries: Vec<QueryRecord>,
    pub count: usize,
}

impl Queries {
    fn of(queries: Vec<QueryRecord>) -> Json<Self> {
        Json(Queries {
            success: true,
            count: queries.len(),
            queries,
        })
    }
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct Limit {
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The explain body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub sql: String,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub analyze: bool,
}

/// The explain answer.
#[derive(Debug, Serialize)]
pub struct ExplainAnswer {
    pub success: bool,
    #[serde(flatten)]
    pub explained: Explained,
    pub execution_time_ms: f64,
}

pub async fn active(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<Queries>> {
    principal.require_anywhere(Permission::Read)?;
    Ok(Queries::of(state.queries.active(&principal)))
}

pub async fn history(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<Limit>,
) -> ApiResult<Json<Queries>> {
    principal.require_anywhere(Permission::Read)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let only = (principal.role != Role::Admin).then_some(principal.token_id.unwrap_or(-1));
    Ok(Queries::of(state.meta.query_history(limit, only).await?))
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueryRecord>> {
    principal.require_anywhere(Permission::Read)?;
    if let Some(running) = state.queries.running(&principal, &id) {
        return Ok(Json(running));
    }
    match state.meta.query_record(&id).await? {
        Some(r) if tracker::sees(&principal, &r) => Ok(Json(r)),
        _ => Err(ApiError::not_found(format!("no query {id:?}"))),
    }
}

pub async fn cancel(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Read)?;
    if state.queries.cancel(&principal, &id) {
        Ok(Json(
            json!({"success": true, "id": id, "status": "cancelling"}),
        ))
    } else {
        Err(ApiError::not_found(format!("no running query {id:?}")))
    }
}

pub async fn explain(
    principal: Principal,
    State(state): State<AppState>,
    remote: Remote,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ExplainRequest>,
) -> ApiResult<Json<ExplainAnswer>> {
    principal.require_anywhere(Permission::Read)?;
    let started = std::time::Instant::now();
    let as_query = QueryRequest {
        sql: request.sql.clone(),
        database: request.database.clone(),
    };
    let db = database(&as_query, &headers, &uri)?;
    let limits = super::limits(&state.config.query);
    let ticket = state.queries.start(
        &principal,
        remote.0,
        db.as_ref().map(ferry_protocols::DatabaseName::as_str),
        &request.sql,
        state.query.memory_pool(),
    );
    let tables = state.tables.clone();
    let base = state.query.session_base().for_principal(&principal);
    let (sql, analyze, probe) = (request.sql, request.analyze, ticket.probe.clone());
    let result = state
        .query
        .run(&principal.key(), &ticket.cancel, async move {
            engine::explain(&tables, &sql, db.as_ref(), base, limits, probe, analyze).await
        })
        .await;
    if analyze {
        let finished = tracker::Finished {
            error: result.as_ref().err(),
            rows: result
                .as_ref()
                .ok()
                .and_then(|e| e.rows)
                .unwrap_or_default(),
            bytes: 0,
            plan: None,
        };
        state.queries.finish(ticket, finished).await;
    }
    Ok(Json(ExplainAnswer {
        success: true,
        explained: result?,
        execution_time_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}
