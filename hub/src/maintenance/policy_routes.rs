//! Arc's retention policy routes, by policy id.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/v1/retention/{id}` | read | the policy |
//! | `PUT /api/v1/retention/{id}` | admin | `{"name"?, "measurement"?, "retention_days"?, "buffer_days"?, "is_active"?}` → the policy (`"measurement": ""` covers the whole database; 409 if the name or scope is taken) |
//! | `DELETE /api/v1/retention/{id}` | admin | `{"success": true, "message", "policy"}` |
//! | `POST /api/v1/retention/{id}/execute` | admin | `{"dry_run"?, "confirm"?}` → [`PolicyExecution`]; a real run needs `"confirm": true` (400 `confirm_required`), an inactive policy is 400 |
//! | `GET /api/v1/retention/{id}/executions?limit=50` | read | `{"policy_id", "executions": [...], "count"}`, newest first, `limit` at most 1000 |
//!
//! An unknown id is 404 `not_found`; an id that is not an integer is 400.

use axum::Json;
use axum::extract::{Path, Query, State};
use ferry_protocols::Measurement;
use ferry_protocols::api::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::policy::PolicyExecution;
use super::routes::{check_days, check_policy_name};
use crate::auth::{Permission, Principal};
use crate::meta::RetentionPolicy;
use crate::meta::retention::{PolicyChange, RetentionExecution};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// `PUT` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub measurement: Option<String>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub buffer_days: Option<u32>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// `POST .../execute` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub confirm: bool,
}

/// `GET .../executions` parameters.
#[derive(Debug, Deserialize)]
pub struct ExecutionsQuery {
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `GET .../executions` answer.
#[derive(Debug, Serialize)]
pub struct Executions {
    pub policy_id: i64,
    pub executions: Vec<RetentionExecution>,
    pub count: usize,
}

fn policy_id(raw: &str) -> ApiResult<i64> {
    crate::server::integer_id("policy id", raw)
}

async fn existing(state: &AppState, id: i64) -> ApiResult<RetentionPolicy> {
    state
        .meta
        .retention_policy(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("retention policy {id} not found")))
}

/// `permission` on what `policy` reaches (its measurement, or its whole
/// database).
fn scoped(
    principal: &Principal,
    permission: Permission,
    policy: &RetentionPolicy,
) -> ApiResult<()> {
    principal.require_database(permission, &policy.database, policy.measurement.as_deref())
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<RetentionPolicy>> {
    principal.require_anywhere(Permission::Read)?;
    let policy = existing(&state, policy_id(&raw)?).await?;
    scoped(&principal, Permission::Read, &policy)?;
    Ok(Json(policy))
}

pub async fn update(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<PolicyUpdate>,
) -> ApiResult<Json<RetentionPolicy>> {
    principal.require_anywhere(Permission::Admin)?;
    let id = policy_id(&raw)?;
    let old = existing(&state, id).await?;
    scoped(&principal, Permission::Admin, &old)?;
    let name = match body.name.as_deref() {
        Some(n) => Some(check_policy_name(Some(n))?),
        None => None,
    };
    let measurement = match body.measurement {
        None => None,
        Some(m) if m.is_empty() => Some(None),
        Some(m) => {
            Measurement::new(m.as_str())
                .map_err(|e| ApiError::bad_request(format!("measurement {m:?}: {e}")))?;
            Some(Some(m))
        }
    };
    if let Some(m) = &measurement {
        principal.require_database(Permission::Admin, &old.database, m.as_deref())?;
    }
    check_days(
        body.retention_days.unwrap_or(old.retention_days),
        body.buffer_days.unwrap_or(old.buffer_days),
    )?;
    let change = PolicyChange {
        name,
        measurement,
        retention_days: body.retention_days,
        buffer_days: body.buffer_days,
        is_active: body.is_active,
    };
    match state.meta.update_retention(id, change).await? {
        None => Err(ApiError::not_found(format!(
            "retention policy {id} not found"
        ))),
        Some(Err(taken)) => Err(ApiError::new(ErrorCode::Conflict, taken)),
        Some(Ok(policy)) => {
            tracing::info!(by = %principal.name, id, name = %policy.name, "retention policy updated");
            Ok(Json(policy))
        }
    }
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Admin)?;
    let id = policy_id(&raw)?;
    scoped(&principal, Permission::Admin, &existing(&state, id).await?)?;
    match state.meta.delete_retention_by_id(id).await? {
        Some(policy) => {
            tracing::info!(by = %principal.name, id, name = %policy.name, "retention policy deleted");
            Ok(Json(json!({
                "success": true,
                "message": "Retention policy deleted successfully",
                "policy": policy,
            })))
        }
        None => Err(ApiError::not_found(format!(
            "retention policy {id} not found"
        ))),
    }
}

pub async fn execute(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<PolicyExecution>> {
    principal.require_anywhere(Permission::Admin)?;
    let id = policy_id(&raw)?;
    // An empty body is a real run without confirmation (refused below).
    let request: ExecuteRequest = crate::server::json_or_default(&body)?;
    let policy = existing(&state, id).await?;
    scoped(&principal, Permission::Admin, &policy)?;
    if !request.dry_run && !request.confirm {
        return Err(ApiError::new(
            ErrorCode::ConfirmRequired,
            "executing a retention policy deletes data; send \"confirm\": true (or \"dry_run\": true to see what would go)",
        ));
    }
    if !policy.is_active {
        return Err(ApiError::bad_request(format!(
            "retention policy {id} is not active"
        )));
    }
    let done = state
        .maintenance
        .execute_policy(&policy, request.dry_run)
        .await?;
    tracing::info!(
        by = %principal.name,
        id,
        dry_run = request.dry_run,
        rows = done.deleted_count,
        files = done.files_deleted,
        "retention policy executed"
    );
    Ok(Json(done))
}

pub async fn executions(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<ExecutionsQuery>,
) -> ApiResult<Json<Executions>> {
    principal.require_anywhere(Permission::Read)?;
    let id = policy_id(&raw)?;
    scoped(&principal, Permission::Read, &existing(&state, id).await?)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let executions = state.meta.retention_executions(id, limit).await?;
    Ok(Json(Executions {
        policy_id: id,
        count: executions.len(),
        executions,
    }))
}
