//! `GET /api/v1/quotas`, `PUT, DELETE /api/v1/quotas/{tokens,databases}/{key}`
//! (admin) and `GET /api/v1/usage` (admin: everyone's; other tokens: their
//! own).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::NaiveDate;
use ferry_protocols::DatabaseName;
use serde::{Deserialize, Serialize};

use crate::audit::AuditNote;
use crate::auth::{Permission, Principal};
use crate::meta::quotas::{QuotaLimits, QuotaOverride, QuotaScope, StorageRow, UsageRow};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// `GET /api/v1/quotas`.
#[derive(Debug, Serialize)]
pub struct QuotaView {
    pub defaults: Defaults,
    pub overrides: Vec<QuotaOverride>,
}

/// The config's defaults (0: unlimited).
#[derive(Debug, Serialize)]
pub struct Defaults {
    pub token_rows_per_second: u64,
    pub token_bytes_per_second: u64,
    pub database_rows_per_second: u64,
    pub database_bytes_per_second: u64,
    pub database_max_bytes: u64,
    pub burst_seconds: u64,
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<QuotaView>> {
    principal.require(Permission::Admin)?;
    let c = state.quotas.config();
    Ok(Json(QuotaView {
        defaults: Defaults {
            token_rows_per_second: c.token_rows_per_second,
            token_bytes_per_second: c.token_bytes_per_second.as_u64(),
            database_rows_per_second: c.database_rows_per_second,
            database_bytes_per_second: c.database_bytes_per_second.as_u64(),
            database_max_bytes: c.database_max_bytes.as_u64(),
            burst_seconds: c.burst.as_secs(),
        },
        overrides: state.meta.quota_overrides().await?,
    }))
}

/// The scope and key of a path: `tokens/{id}` or `databases/{name}`.
async fn target(state: &AppState, kind: &str, key: &str) -> ApiResult<(QuotaScope, String)> {
    match kind {
        "tokens" => {
            let id = crate::server::integer_id("token id", key)?;
            if state.meta.get_token(id).await?.is_none() {
                return Err(ApiError::not_found(format!("no token with id {id}")));
            }
            Ok((QuotaScope::Token, id.to_string()))
        }
        "databases" => {
            let db = DatabaseName::new(key)
                .map_err(|e| ApiError::bad_request(format!("database {key:?}: {e}")))?;
            Ok((QuotaScope::Database, db.as_str().to_owned()))
        }
        other => Err(ApiError::not_found(format!(
            "no quotas of {other:?} (tokens, databases)"
        ))),
    }
}

fn note(scope: QuotaScope, key: &str, limits: Option<&QuotaLimits>) -> Extension<AuditNote> {
    Extension(AuditNote {
        target: Some(format!(
            "{} {key}",
            serde_json::json!(scope).as_str().unwrap_or("")
        )),
        database: (scope == QuotaScope::Database).then(|| key.to_owned()),
        detail: limits.and_then(|l| serde_json::to_value(l).ok()),
    })
}

pub async fn set(
    principal: Principal,
    State(state): State<AppState>,
    Path((kind, key)): Path<(String, String)>,
    JsonBody(limits): JsonBody<QuotaLimits>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let (scope, key) = target(&state, &kind, &key).await?;
    if scope == QuotaScope::Token && limits.max_bytes.is_some() {
        return Err(ApiError::bad_request(
            "max_bytes is a quota of databases, not of tokens",
        ));
    }
    state
        .meta
        .set_quota(scope, key.clone(), Some(limits))
        .await?;
    state.quotas.load().await?;
    let body = QuotaOverride {
        scope,
        key: key.clone(),
        limits,
    };
    Ok((note(scope, &key, Some(&limits)), Json(body)).into_response())
}

pub async fn remove(
    principal: Principal,
    State(state): State<AppState>,
    Path((kind, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let (scope, key) = target(&state, &kind, &key).await?;
    if !state.meta.set_quota(scope, key.clone(), None).await? {
        return Err(ApiError::not_found(format!(
            "no quota override for {kind}/{key}"
        )));
    }
    state.quotas.load().await?;
    Ok((StatusCode::NO_CONTENT, note(scope, &key, None)).into_response())
}

/// `GET /api/v1/usage` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    /// `YYYY-MM-DD` (UTC), inclusive; default 30 days ago.
    pub since: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive; default today.
    pub until: Option<String>,
    pub token_id: Option<String>,
    pub database: Option<String>,
}

/// `GET /api/v1/usage` answer.
#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub since: String,
    pub until: String,
    /// Per day, token and database: rows and bytes ingested, queries and
    /// their time (`database` is `""` for queries that named none).
    pub usage: Vec<UsageRow>,
    /// Per day and database: bytes stored at the day's last measurement.
    pub storage: Vec<StorageRow>,
}

fn day(what: &str, raw: Option<&str>, default: NaiveDate) -> ApiResult<String> {
    let d = match raw {
        None => default,
        Some(r) => NaiveDate::parse_from_str(r.trim(), "%Y-%m-%d").map_err(|e| {
            ApiError::bad_request(format!("{what} {r:?} is not a day (2026-12-01): {e}"))
        })?,
    };
    Ok(d.format("%Y-%m-%d").to_string())
}

pub async fn usage(
    principal: Principal,
    State(state): State<AppState>,
    Query(p): Query<UsageParams>,
) -> ApiResult<Json<UsageReport>> {
    let today = chrono::Utc::now().date_naive();
    let since = day("since", p.since.as_deref(), today - chrono::Days::new(30))?;
    let until = day("until", p.until.as_deref(), today)?;
    let mut token_id = p
        .token_id
        .as_deref()
        .map(|t| crate::server::integer_id("token_id", t))
        .transpose()?;
    if !principal.can(Permission::Admin) {
        // Anyone may see their own usage, nobody else's.
        let own = principal.token_id.unwrap_or(-1);
        if token_id.is_some_and(|t| t != own) {
            return Err(ApiError::forbidden(
                "only an admin token sees the usage of other tokens",
            ));
        }
        token_id = Some(own);
    }
    // What is counted in memory is included.
    state.quotas.flush().await;
    let database = p.database.filter(|d| !d.is_empty());
    let (usage, mut storage) = state
        .meta
        .usage(since.clone(), until.clone(), token_id, database)
        .await?;
    if !principal.can(Permission::Admin) {
        storage.clear();
    }
    Ok(Json(UsageReport {
        since,
        until,
        usage,
        storage,
    }))
}
