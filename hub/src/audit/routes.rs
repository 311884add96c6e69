//! `GET /api/v1/admin/audit-log` and `GET /api/v1/admin/audit-log/verify`.
//! Admin only.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use crate::auth::{Permission, Principal};
use crate::cq::routes::parse_time;
use crate::meta::audit::{AuditEntry, AuditFilter, ChainReport};
use crate::server::{ApiError, ApiResult, AppState};

/// Entries one page holds at most.
pub const MAX_LIMIT: u32 = 1000;
/// Entries of a page without `limit`.
const DEFAULT_LIMIT: u32 = 100;

/// Query parameters, all optional.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Exact, or a prefix ending in `*` (`token.*`).
    pub event_type: Option<String>,
    pub actor: Option<String>,
    pub database: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// A page of entries, newest first.
#[derive(Debug, Serialize)]
pub struct Page {
    pub entries: Vec<AuditEntry>,
    /// Entries matching the filter in all.
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

fn number(what: &str, raw: Option<&str>, default: u32, max: u32) -> ApiResult<u32> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{what} {raw:?} must be an integer from 0 to {max}"
        ))),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(p): Query<Params>,
) -> ApiResult<Json<Page>> {
    principal.require(Permission::Admin)?;
    let limit = number("limit", p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?.max(1);
    let offset = number("offset", p.offset.as_deref(), 0, u32::MAX)?;
    let since_ms = p
        .since
        .as_deref()
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until_ms = p
        .until
        .as_deref()
        .map(|s| parse_time("until", s))
        .transpose()?;
    let (entries, total) = state
        .meta
        .audit_entries(AuditFilter {
            event_type: non_empty(p.event_type),
            actor: non_empty(p.actor),
            database: non_empty(p.database),
            since_ms,
            until_ms,
            limit,
            offset,
        })
        .await?;
    Ok(Json(Page {
        entries,
        total,
        limit,
        offset,
    }))
}

pub async fn verify(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<ChainReport>> {
    principal.require(Permission::Admin)?;
    // Failures counted in the current window are written first, so the
    // report covers everything recorded until now.
    state.audit.flush().await;
    let report = state.meta.verify_audit_chain().await?;
    if !report.ok {
        tracing::error!(problem = ?report.problem, "the audit log's hash chain is broken");
    }
    Ok(Json(report))
}
