//! The maintenance API.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /api/v1/retention` | read | every policy and `default_days` |
//! | `POST /api/v1/retention` | admin | `{"database", "measurement"?, "days"}`: create or replace a policy; or Arc's `{"name", "database", "measurement"?, "retention_days", "buffer_days"?, "is_active"?}`: create (201) |
//! | `DELETE /api/v1/retention?database=&measurement=` | admin | delete a policy (404 if none) |
//! | `GET`, `PUT`, `DELETE /api/v1/retention/{id}`, `POST /api/v1/retention/{id}/execute`, `GET /api/v1/retention/{id}/executions` | read (GET) / admin | Arc's policy routes ([`super::policy_routes`]) |
//! | `POST /api/v1/retention/dry-run` | admin | what a run would delete now, per table |
//! | `POST /api/v1/retention/run` | admin | expire and vacuum now |
//! | `GET /api/v1/compaction` | read | config and the last run |
//! | `POST /api/v1/compaction/run` | admin | compact every table now |

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_protocols::api::ErrorCode;
use ferry_protocols::{DatabaseName, Measurement};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CompactionRun, MAX_RETENTION_DAYS, RetentionRun};
use crate::auth::{Permission, Principal};
use crate::meta::RetentionPolicy;
use crate::meta::retention::NewPolicy;
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// `GET /api/v1/retention`.
#[derive(Debug, Serialize)]
pub struct PolicyList {
    /// Days kept for databases without a policy (0 = forever).
    pub default_days: u32,
    pub policies: Vec<RetentionPolicy>,
    /// The last scheduled or manual (not dry) run.
    pub last_run: Option<RetentionRun>,
}

/// `POST /api/v1/retention` body: Ferry's (`database`, `measurement`,
/// `days`: create or replace the scope's policy) or Arc's (`name`,
/// `database`, `measurement`, `retention_days`, `buffer_days`, `is_active`:
/// create, 409 if the name or scope is taken).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    pub database: String,
    #[serde(default)]
    pub measurement: Option<String>,
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub buffer_days: Option<u32>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// `DELETE /api/v1/retention` parameters.
#[derive(Debug, Deserialize)]
pub struct PolicyKey {
    pub database: String,
    #[serde(default)]
    pub measurement: Option<String>,
}

/// `{"policy": ...}`.
#[derive(Debug, Serialize)]
pub struct PolicyAnswer {
    pub policy: RetentionPolicy,
}

/// `GET /api/v1/compaction`.
#[derive(Debug, Serialize)]
pub struct CompactionStatus {
    pub enabled: bool,
    pub interval: String,
    pub target_file_size: String,
    pub min_files: usize,
    pub settle: String,
    pub last_run: Option<CompactionRun>,
}

/// Checks the names the same way writes do, so a policy can only name a
/// table that could exist.
fn check_names(database: &str, measurement: Option<&str>) -> ApiResult<()> {
    DatabaseName::new(database)
        .map_err(|e| ApiError::bad_request(format!("database {database:?}: {e}")))?;
    if let Some(m) = measurement {
        Measurement::new(m)
            .map_err(|e| ApiError::bad_request(format!("measurement {m:?}: {e}")))?;
    }
    Ok(())
}

pub async fn list_policies(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<PolicyList>> {
    principal.require_anywhere(Permission::Read)?;
    // A token scoped to some databases sees their policies only.
    let policies = state
        .meta
        .list_retention()
        .await?
        .into_iter()
        .filter(|p| principal.may_database(Permission::Read, &p.database, p.measurement.as_deref()))
        .collect();
    Ok(Json(PolicyList {
        default_days: state.maintenance.retention_config().default_days,
        policies,
        last_run: state.maintenance.last_retention(),
    }))
}

pub async fn set_policy(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetPolicy>,
) -> ApiResult<Response> {
    principal.require_anywhere(Permission::Admin)?;
    check_names(&body.database, body.measurement.as_deref())?;
    principal.require_database(
        Permission::Admin,
        &body.database,
        body.measurement.as_deref(),
    )?;
    let arc = body.name.is_some()
        || body.retention_days.is_some()
        || body.buffer_days.is_some()
        || body.is_active.is_some();
    match (body.days, arc) {
        (Some(_), true) => Err(ApiError::bad_request(
            "give either days (Ferry's form) or name and retention_days (Arc's), not both",
        )),
        (None, false) => Err(ApiError::bad_request(
            "missing days (or Arc's name and retention_days)",
        )),
        (Some(days), false) => {
            check_days(days, 0)?;
            let policy = state
                .meta
                .set_retention(&body.database, body.measurement.as_deref(), days)
                .await?;
            tracing::info!(
                by = %principal.name,
                database = %policy.database,
                measurement = ?policy.measurement,
                days = policy.days,
                "retention policy set"
            );
            Ok(Json(PolicyAnswer { policy }).into_response())
        }
        (None, true) => {
            let new = NewPolicy {
                name: check_policy_name(body.name.as_deref())?,
                database: body.database,
                measurement: body.measurement.filter(|m| !m.is_empty()),
                retention_days: body
                    .retention_days
                    .ok_or_else(|| ApiError::bad_request("missing retention_days"))?,
                buffer_days: body.buffer_days.unwrap_or(0),
                is_active: body.is_active.unwrap_or(true),
            };
            check_days(new.retention_days, new.buffer_days)?;
            match state.meta.create_retention(new).await? {
                Ok(policy) => {
                    tracing::info!(by = %principal.name, id = policy.id, name = %policy.name, "retention policy created");
                    Ok((StatusCode::CREATED, Json(policy)).into_response())
                }
                Err(taken) => Err(ApiError::new(ErrorCode::Conflict, taken)),
            }
        }
    }
}

/// Arc's rules: `retention_days` in 1..=[`MAX_RETENTION_DAYS`], more than
/// `buffer_days`, and the two together within the maximum.
pub(super) fn check_days(retention_days: u32, buffer_days: u32) -> ApiResult<()> {
    if retention_days == 0 || retention_days > MAX_RETENTION_DAYS {
        return Err(ApiError::bad_request(format!(
            "days must be 1..={MAX_RETENTION_DAYS}; delete the policy to keep data forever"
        )));
    }
    if buffer_days > 0 && retention_days <= buffer_days {
        return Err(ApiError::bad_request(
            "retention_days must be greater than buffer_days",
        ));
    }
    if retention_days.saturating_add(buffer_days) > MAX_RETENTION_DAYS {
        return Err(ApiError::bad_request(format!(
            "retention_days + buffer_days must be at most {MAX_RETENTION_DAYS}"
        )));
    }
    Ok(())
}

/// A policy name: 1 to 128 characters, no control characters.
pub(crate) fn check_policy_name(name: Option<&str>) -> ApiResult<String> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 128 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

pub async fn delete_policy(
    principal: Principal,
    State(state): State<AppState>,
    Query(key): Query<PolicyKey>,
) -> ApiResult<Json<PolicyAnswer>> {
    principal.require_anywhere(Permission::Admin)?;
    check_names(&key.database, key.measurement.as_deref())?;
    principal.require_database(Permission::Admin, &key.database, key.measurement.as_deref())?;
    match state
        .meta
        .delete_retention(&key.database, key.measurement.as_deref())
        .await?
    {
        Some(policy) => {
            tracing::info!(by = %principal.name, database = %policy.database, measurement = ?policy.measurement, "retention policy deleted");
            Ok(Json(PolicyAnswer { policy }))
        }
        None => Err(ApiError::not_found(format!(
            "no retention policy for database {:?}{}",
            key.database,
            key.measurement
                .map(|m| format!(", measurement {m:?}"))
                .unwrap_or_default()
        ))),
    }
}

async fn retention(
    state: &AppState,
    principal: &Principal,
    dry_run: bool,
) -> ApiResult<Json<RetentionRun>> {
    principal.require(Permission::Admin)?;
    let run = state
        .maintenance
        .enforce_retention(dry_run, &CancellationToken::new())
        .await?;
    Ok(Json(run))
}

pub async fn dry_run(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<RetentionRun>> {
    retention(&state, &principal, true).await
}

pub async fn run_retention(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<RetentionRun>> {
    retention(&state, &principal, false).await
}

pub async fn compaction_status(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<CompactionStatus>> {
    principal.require(Permission::Read)?;
    let c = state.maintenance.compaction_config();
    Ok(Json(CompactionStatus {
        enabled: c.enabled,
        interval: humantime::format_duration(c.interval).to_string(),
        target_file_size: c.target_file_size.to_string(),
        min_files: c.min_files,
        settle: humantime::format_duration(c.settle).to_string(),
        last_run: state.maintenance.last_compaction(),
    }))
}

pub async fn run_compaction(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<CompactionRun>> {
    principal.require(Permission::Admin)?;
    Ok(Json(
        state
            .maintenance
            .compact_all(&CancellationToken::new())
            .await,
    ))
}
