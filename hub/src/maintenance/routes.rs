//! The maintenance API.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /api/v1/retention` | read | every policy and `default_days` |
//! | `POST /api/v1/retention` | admin | `{"database", "measurement"?, "days"}`: create or replace a policy |
//! | `DELETE /api/v1/retention?database=&measurement=` | admin | delete a policy (404 if none) |
//! | `POST /api/v1/retention/dry-run` | admin | what a run would delete now, per table |
//! | `POST /api/v1/retention/run` | admin | expire and vacuum now |
//! | `GET /api/v1/compaction` | read | config and the last run |
//! | `POST /api/v1/compaction/run` | admin | compact every table now |

use axum::Json;
use axum::extract::{Query, State};
use ferry_protocols::{DatabaseName, Measurement};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CompactionRun, MAX_RETENTION_DAYS, RetentionRun};
use crate::auth::{Permission, Principal};
use crate::meta::RetentionPolicy;
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

/// `POST /api/v1/retention` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    pub database: String,
    #[serde(default)]
    pub measurement: Option<String>,
    pub days: u32,
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
    principal.require(Permission::Read)?;
    Ok(Json(PolicyList {
        default_days: state.maintenance.retention_config().default_days,
        policies: state.meta.list_retention().await?,
        last_run: state.maintenance.last_retention(),
    }))
}

pub async fn set_policy(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetPolicy>,
) -> ApiResult<Json<PolicyAnswer>> {
    principal.require(Permission::Admin)?;
    check_names(&body.database, body.measurement.as_deref())?;
    if body.days == 0 || body.days > MAX_RETENTION_DAYS {
        return Err(ApiError::bad_request(format!(
            "days must be 1..={MAX_RETENTION_DAYS}; delete the policy to keep data forever"
        )));
    }
    let policy = state
        .meta
        .set_retention(&body.database, body.measurement.as_deref(), body.days)
        .await?;
    tracing::info!(
        by = %principal.name,
        database = %policy.database,
        measurement = ?policy.measurement,
        days = policy.days,
        "retention policy set"
    );
    Ok(Json(PolicyAnswer { policy }))
}

pub async fn delete_policy(
    principal: Principal,
    State(state): State<AppState>,
    Query(key): Query<PolicyKey>,
) -> ApiResult<Json<PolicyAnswer>> {
    principal.require(Permission::Admin)?;
    check_names(&key.database, key.measurement.as_deref())?;
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
