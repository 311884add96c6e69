//! The alert API (admin).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/alerts` | `{"alerts": [...], "count"}` |
//! | `POST /api/v1/alerts` | [`AlertCreate`] → 201 the rule (state `ok`) |
//! | `GET /api/v1/alerts/{id}` | `{"alert", "events"}` (newest first) |
//! | `POST /api/v1/alerts/{id}/evaluate` | evaluates now → the rule after it |
//! | `DELETE /api/v1/alerts/{id}` | `{"success": true, "alert"}` |

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_protocols::DatabaseName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_INTERVAL, OPS};
use crate::auth::{Permission, Principal};
use crate::meta::alerts::{AlertRule, NewAlertRule};
use crate::query::engine::{self, Probe};
use crate::server::{ApiError, ApiResult, AppState, JsonBody, integer_id};

/// `POST /api/v1/alerts`: exactly one of `sql` and `metric`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCreate {
    pub name: String,
    #[serde(default)]
    pub sql: Option<String>,
    /// The default database of `sql`.
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub op: String,
    pub threshold: f64,
    /// A duration (`"30s"`); default 1 minute.
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
}

fn admin(state: &AppState, principal: &Principal) -> ApiResult<()> {
    if !state.config.alerts.enabled {
        return Err(ApiError::forbidden(
            "alerts are disabled (alerts.enabled = false)",
        ));
    }
    principal.require(Permission::Admin)
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "alert name {name:?}: 1-64 characters of letters, digits, '_', '-' and '.'"
        )))
    }
}

fn check_metric(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if first
        && name.len() <= 200
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "metric {name:?} is not a metric name (as /metrics shows it, e.g. ferry_hub_rows_ingested_total)"
        )))
    }
}

fn check_webhook(url: &str) -> ApiResult<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("webhook_url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() || url.len() > 2048 {
        return Err(ApiError::bad_request(format!(
            "webhook_url {url:?}: must be an http or https URL of at most 2048 characters"
        )));
    }
    Ok(())
}

pub async fn list(principal: Principal, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    admin(&state, &principal)?;
    let alerts = state
        .meta
        .list_alert_rules()
        .await
        .map_err(|e| ApiError::internal("listing alert rules", e))?;
    Ok(Json(json!({"count": alerts.len(), "alerts": alerts})))
}

pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AlertCreate>,
) -> ApiResult<(StatusCode, Json<AlertRule>)> {
    admin(&state, &principal)?;
    check_name(&body.name)?;
    if !OPS.contains(&body.op.as_str()) {
        return Err(ApiError::bad_request(format!(
            "op {:?}: one of {}",
            body.op,
            OPS.join(" ")
        )));
    }
    if !body.threshold.is_finite() {
        return Err(ApiError::bad_request("threshold must be a finite number"));
    }
    let interval = match &body.interval {
        None => DEFAULT_INTERVAL,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::bad_request(format!("interval {s:?}: {e}")))?,
    };
    let min = state.config.alerts.min_interval;
    if interval < min || interval > std::time::Duration::from_secs(86_400) {
        return Err(ApiError::bad_request(format!(
            "interval {}: must be between alerts.min_interval ({}) and 1 day",
            humantime::format_duration(interval),
            humantime::format_duration(min)
        )));
    }
    if let Some(url) = &body.webhook_url {
        check_webhook(url)?;
    }
    let database = body
        .database
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(DatabaseName::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (kind, query) = match (&body.sql, &body.metric) {
        (Some(sql), None) => {
            // Planned now: a statement that cannot run (DDL, a typo) is
            // refused here, not discovered at each evaluation.
            let schema = engine::output_schema(
                &state.tables,
                sql,
                database.as_ref(),
                state.query.session_base(),
                crate::query::limits(&state.config.query),
                Probe::new(state.query.memory_pool()),
            )
            .await?;
            if schema.fields().is_empty() {
                return Err(ApiError::bad_request("the statement returns no column"));
            }
            ("sql", sql.clone())
        }
        (None, Some(metric)) => {
            check_metric(metric)?;
            ("metric", metric.clone())
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of sql (a query whose first column is the value) and metric",
            ));
        }
    };
    let new = NewAlertRule {
        name: body.name,
        kind: kind.to_owned(),
        query,
        database: database.map(|d| d.as_str().to_owned()),
        op: body.op,
        threshold: body.threshold,
        interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
        webhook_url: body.webhook_url,
        created_by: principal.name.clone(),
    };
    match state
        .meta
        .create_alert_rule(new, state.config.alerts.max_rules)
        .await
        .map_err(|e| ApiError::internal("creating an alert rule", e))?
    {
        Ok(rule) => Ok((StatusCode::CREATED, Json(rule))),
        Err(why) => Err(ApiError::new(
            ferry_protocols::api::ErrorCode::Conflict,
            why,
        )),
    }
}

async fn rule(state: &AppState, raw: &str) -> ApiResult<AlertRule> {
    let id = integer_id("alert id", raw)?;
    state
        .meta
        .get_alert_rule(id)
        .await
        .map_err(|e| ApiError::internal("reading an alert rule", e))?
        .ok_or_else(|| ApiError::not_found(format!("no alert rule {id}")))
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&state, &principal)?;
    let alert = rule(&state, &id).await?;
    let events = state
        .meta
        .alert_events(alert.id, state.config.alerts.history)
        .await
        .map_err(|e| ApiError::internal("reading alert history", e))?;
    Ok(Json(json!({"alert": alert, "events": events})))
}

pub async fn evaluate(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertRule>> {
    admin(&state, &principal)?;
    let alert = rule(&state, &id).await?;
    super::run_rule(&state, &alert).await?;
    Ok(Json(rule(&state, &id).await?))
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&state, &principal)?;
    let id = integer_id("alert id", &id)?;
    let gone = state
        .meta
        .delete_alert_rule(id)
        .await
        .map_err(|e| ApiError::internal("deleting an alert rule", e))?
        .ok_or_else(|| ApiError::not_found(format!("no alert rule {id}")))?;
    Ok(Json(json!({"success": true, "alert": gone})))
}
