//! Arc's continuous query routes.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `POST /api/v1/continuous_queries` | admin | [`CqCreate`] → 201 `{"success": true, "query": {...}}` |
//! | `GET /api/v1/continuous_queries?database=&is_active=` | read | `{"queries": [...], "count"}` |
//! | `GET /api/v1/continuous_queries/{id}` | read | `{"success": true, "query": {...}}` |
//! | `PUT /api/v1/continuous_queries/{id}` | admin | [`CqUpdate`] (fields left out stay) → `{"success": true, "query": {...}}` |
//! | `DELETE /api/v1/continuous_queries/{id}` | admin | `{"success": true, "message", "query"}`; the destination's rows stay |
//! | `POST /api/v1/continuous_queries/{id}/execute` | admin | `{"start_time"?, "end_time"?, "dry_run"?}` → [`Execution`] |
//! | `GET /api/v1/continuous_queries/{id}/executions?limit=50` | read | `{"query_id", "executions": [...], "count"}`, newest first |
//!
//! One query is answered wrapped, `{"success": true, "query": {...}}`: Arc's
//! Python client reads `query` from the answer (a bare object's `query` is
//! its SQL).
//!
//! With `continuous_queries.enabled = false` every route is 403
//! `forbidden`. An unknown id is 404, an id that is not an integer 400.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_protocols::api::ErrorCode;
use ferry_protocols::{DatabaseName, Measurement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Execution;
use super::rows::floor;
use crate::auth::{Permission, Principal};
use crate::maintenance::routes::check_policy_name;
use crate::meta::continuous::{ContinuousQuery, CqChange, CqExecution, NewCq};
use crate::meta::now_ms;
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// `POST` body: Arc's fields, and Ferry's `tag_columns`, `lookback_windows`
/// and `start_time`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CqCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub database: String,
    pub source_measurement: String,
    pub destination_measurement: String,
    pub query: String,
    pub interval: String,
    #[serde(default)]
    pub tag_columns: Option<Vec<String>>,
    #[serde(default)]
    pub lookback_windows: Option<u32>,
    /// RFC 3339: the first window the scheduler computes (default: the
    /// window holding now). An earlier one makes it backfill from there.
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub delete_source_after_days: Option<u32>,
    #[serde(default = "yes")]
    pub is_active: bool,
}

fn yes() -> bool {
    true
}

/// `PUT` body: any of these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CqUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub tag_columns: Option<Vec<String>>,
    #[serde(default)]
    pub lookback_windows: Option<u32>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub delete_source_after_days: Option<u32>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// `POST .../execute` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `GET` list parameters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
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
    pub query_id: i64,
    pub executions: Vec<CqExecution>,
    pub count: usize,
}

/// One query as answered: `{"success": true, "query": {...}}`.
fn wrapped(cq: &ContinuousQuery) -> Json<Value> {
    Json(json!({ "success": true, "query": cq }))
}

fn enabled(state: &AppState) -> ApiResult<()> {
    if state.cqs.config().enabled {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "continuous queries are disabled (continuous_queries.enabled = false)",
        ))
    }
}

fn query_id(raw: &str) -> ApiResult<i64> {
    crate::server::integer_id("continuous query id", raw)
}

async fn existing(state: &AppState, id: i64) -> ApiResult<ContinuousQuery> {
    state
        .meta
        .cq(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("continuous query {id} not found")))
}

/// An RFC 3339 time (a time without offset, as Python's `isoformat()`
/// gives for a naive datetime, is UTC), in ms.
pub(crate) fn parse_time(what: &str, raw: &str) -> ApiResult<i64> {
    let raw = raw.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_millis())
        });
    parsed.map_err(|e| {
        ApiError::bad_request(format!(
            "{what} {raw:?} is not an RFC 3339 time (2026-01-01T00:00:00Z): {e}"
        ))
    })
}

fn interval_ms(state: &AppState, raw: &str) -> ApiResult<i64> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "interval {raw:?} is not a duration (\"5m\", \"1h\"): {e}"
        ))
    })?;
    let min = state.cqs.config().min_interval;
    if d < min {
        return Err(ApiError::bad_request(format!(
            "interval {raw:?} is shorter than continuous_queries.min_interval ({})",
            humantime::format_duration(min)
        )));
    }
    i64::try_from(d.as_millis())
        .map_err(|_| ApiError::bad_request(format!("interval {raw:?} is too long")))
}

fn check_query(query: &str) -> ApiResult<()> {
    if !query.contains("{start_time}") || !query.contains("{end_time}") {
        return Err(ApiError::bad_request(
            "query must contain the {start_time} and {end_time} placeholders \
             (WHERE time >= {start_time} AND time < {end_time})",
        ));
    }
    Ok(())
}

fn unsupported(
    retention_days: Option<u32>,
    delete_source_after_days: Option<u32>,
) -> ApiResult<()> {
    if retention_days.is_some() || delete_source_after_days.is_some() {
        return Err(ApiError::bad_request(
            "retention_days and delete_source_after_days are not supported on a continuous \
             query; give the destination (or the source) a retention policy: \
             POST /api/v1/retention",
        ));
    }
    Ok(())
}

fn check_lookback(lookback: u32) -> ApiResult<u32> {
    if lookback > 1000 {
        return Err(ApiError::bad_request(format!(
            "lookback_windows {lookback} is over 1000"
        )));
    }
    Ok(lookback)
}

/// A continuous query is visible to tokens that may read its source table.
fn visible(principal: &Principal, cq: &ContinuousQuery) -> ApiResult<()> {
    principal.require_on(Permission::Read, &cq.database, &cq.source_measurement)
}

pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CqCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require_anywhere(Permission::Admin)?;
    enabled(&state)?;
    let name = check_policy_name(Some(&body.name))?;
    let database = DatabaseName::new(body.database.as_str())
        .map_err(|e| ApiError::bad_request(format!("database {:?}: {e}", body.database)))?;
    principal.require_database(Permission::Admin, database.as_str(), None)?;
    for (what, m) in [
        ("source_measurement", &body.source_measurement),
        ("destination_measurement", &body.destination_measurement),
    ] {
        Measurement::new(m.as_str())
            .map_err(|e| ApiError::bad_request(format!("{what} {m:?}: {e}")))?;
    }
    if body.source_measurement == body.destination_measurement {
        return Err(ApiError::bad_request(
            "destination_measurement must differ from source_measurement (the destination's \
             windows are replaced by every computation)",
        ));
    }
    unsupported(body.retention_days, body.delete_source_after_days)?;
    check_query(&body.query)?;
    let every = interval_ms(&state, &body.interval)?;
    let tags = body.tag_columns.unwrap_or_default();
    state
        .cqs
        .check(&principal, &database, &body.query, every, &tags)
        .await?;
    let start_ms = match body.start_time.as_deref() {
        Some(raw) => floor(parse_time("start_time", raw)?, every),
        None => floor(now_ms(), every),
    };
    let max = state.cqs.config().max_queries;
    if state.meta.list_cqs(None, None).await?.len() >= max {
        return Err(ApiError::bad_request(format!(
            "there are already continuous_queries.max_queries ({max}) continuous queries"
        )));
    }
    let new = NewCq {
        name,
        description: body.description,
        database: database.as_str().to_owned(),
        source_measurement: body.source_measurement,
        destination_measurement: body.destination_measurement,
        query: body.query,
        interval: body.interval.trim().to_owned(),
        interval_ms: every,
        tag_columns: tags,
        lookback_windows: check_lookback(
            body.lookback_windows
                .unwrap_or(state.cqs.config().lookback_windows),
        )?,
        start_ms,
        is_active: body.is_active,
    };
    match state.meta.create_cq(new).await? {
        Err(taken) => Err(ApiError::new(ErrorCode::Conflict, taken)),
        Ok(cq) => {
            tracing::info!(by = %principal.name, id = cq.id, name = %cq.name, "continuous query created");
            Ok((StatusCode::CREATED, wrapped(&cq)))
        }
    }
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Read)?;
    enabled(&state)?;
    let queries: Vec<_> = state
        .meta
        .list_cqs(q.database, q.is_active)
        .await?
        .into_iter()
        .filter(|cq| {
            principal.may_database(Permission::Read, &cq.database, Some(&cq.source_measurement))
        })
        .collect();
    Ok(Json(json!({ "count": queries.len(), "queries": queries })))
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Read)?;
    enabled(&state)?;
    let cq = existing(&state, query_id(&raw)?).await?;
    visible(&principal, &cq)?;
    Ok(wrapped(&cq))
}

pub async fn update(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<CqUpdate>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Admin)?;
    enabled(&state)?;
    let id = query_id(&raw)?;
    let old = existing(&state, id).await?;
    principal.require_database(Permission::Admin, &old.database, None)?;
    unsupported(body.retention_days, body.delete_source_after_days)?;
    let name = match body.name.as_deref() {
        Some(n) => Some(check_policy_name(Some(n))?),
        None => None,
    };
    let interval = match body.interval.as_deref() {
        Some(raw) => Some((raw.trim().to_owned(), interval_ms(&state, raw)?)),
        None => None,
    };
    if let Some(q) = &body.query {
        check_query(q)?;
    }
    let database = DatabaseName::new(old.database.as_str())
        .map_err(|e| ApiError::internal("stored continuous query", e))?;
    state
        .cqs
        .check(
            &principal,
            &database,
            body.query.as_deref().unwrap_or(&old.query),
            interval.as_ref().map_or(old.interval_ms, |(_, ms)| *ms),
            body.tag_columns.as_deref().unwrap_or(&old.tag_columns),
        )
        .await?;
    let change = CqChange {
        name,
        description: body.description,
        query: body.query,
        interval,
        tag_columns: body.tag_columns,
        lookback_windows: body.lookback_windows.map(check_lookback).transpose()?,
        is_active: body.is_active,
    };
    match state.meta.update_cq(id, change).await? {
        None => Err(ApiError::not_found(format!(
            "continuous query {id} not found"
        ))),
        Some(Err(taken)) => Err(ApiError::new(ErrorCode::Conflict, taken)),
        Some(Ok(cq)) => {
            tracing::info!(by = %principal.name, id, name = %cq.name, "continuous query updated");
            Ok(wrapped(&cq))
        }
    }
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_anywhere(Permission::Admin)?;
    enabled(&state)?;
    let id = query_id(&raw)?;
    let cq = existing(&state, id).await?;
    principal.require_database(Permission::Admin, &cq.database, None)?;
    match state.meta.delete_cq(id).await? {
        Some(cq) => {
            tracing::info!(by = %principal.name, id, name = %cq.name, "continuous query deleted");
            Ok(Json(json!({
                "success": true,
                "message": "Continuous query deleted successfully",
                "query": cq,
            })))
        }
        None => Err(ApiError::not_found(format!(
            "continuous query {id} not found"
        ))),
    }
}

pub async fn execute(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Execution>> {
    principal.require_anywhere(Permission::Admin)?;
    enabled(&state)?;
    let id = query_id(&raw)?;
    let request: ExecuteRequest = crate::server::json_or_default(&body)?;
    let cq = existing(&state, id).await?;
    principal.require_database(Permission::Admin, &cq.database, None)?;
    if !cq.is_active {
        return Err(ApiError::bad_request(format!(
            "continuous query {id} is not active"
        )));
    }
    let start = request
        .start_time
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("start_time", s))
        .transpose()?;
    let end = request
        .end_time
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("end_time", s))
        .transpose()?;
    let done = state.cqs.execute(&cq, start, end, request.dry_run).await?;
    tracing::info!(
        by = %principal.name,
        id,
        status = %done.status,
        windows = done.windows_done,
        rows = done.records_written,
        "continuous query executed on request"
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
    enabled(&state)?;
    let id = query_id(&raw)?;
    visible(&principal, &existing(&state, id).await?)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let executions = state.meta.cq_executions(id, limit).await?;
    Ok(Json(Executions {
        query_id: id,
        count: executions.len(),
        executions,
    }))
}
