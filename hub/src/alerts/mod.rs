//! Threshold alerts: rules over an SQL query or a hub metric, evaluated on
//! a schedule, with a state (`ok`, `firing`, `resolved`), a history of
//! state changes, and a webhook called on each change.
//!
//! * **Rules** live in the metadata store (they survive restarts, state
//!   included) and are managed by admins ([`routes`]). A rule is `sql`
//!   (the first column of the first row, as a number; the statement is
//!   checked read-only when the rule is created) or `metric` (a hub
//!   metric from `/metrics`, summed over its labels), compared with
//!   `threshold` by `op`, every `interval` (at least
//!   `alerts.min_interval`).
//! * **States.** A true condition makes a rule `firing`; a false one makes
//!   a firing rule `resolved` (it stays `resolved` until it fires again).
//!   An evaluation that yields no value (no rows, a null, a metric not
//!   reported yet, a failing query) changes nothing and is kept as the
//!   rule's `last_error`.
//! * **Evaluation** runs SQL the one way every query runs
//!   ([`crate::query::execute`]: admission, `query.timeout`, the query
//!   history, as the principal `alert <name>`), one rule at a time, so
//!   alerts take at most one query slot.
//! * **Webhooks.** Each state change is POSTed as JSON to the rule's
//!   `webhook_url` (at most `alerts.webhook_timeout`, not retried); what
//!   it answered is kept with the change. Webhooks are called after the
//!   change is recorded, so a slow receiver delays only later evaluations.

mod config;
pub mod routes;

pub use config::AlertsConfig;

use std::time::Duration;

use deltalake::arrow::array::{Array, Float64Array};
use deltalake::arrow::datatypes::DataType;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Principal;
use crate::meta::alerts::AlertRule;
use crate::metrics as m;
use crate::query::{self, Statement, engine::QueryOutput};
use crate::server::{ApiError, AppState};

/// The comparison operators a rule may use.
pub const OPS: [&str; 6] = [">", ">=", "<", "<=", "==", "!="];

/// `value op threshold`.
pub fn holds(value: f64, op: &str, threshold: f64) -> bool {
    match op {
        ">" => value > threshold,
        ">=" => value >= threshold,
        "<" => value < threshold,
        "<=" => value <= threshold,
        "==" => value == threshold,
        "!=" => value != threshold,
        _ => false,
    }
}

/// The state after an evaluation that gave `value`; `None` if unchanged.
pub fn next_state(current: &str, fires: bool) -> Option<&'static str> {
    match (current, fires) {
        ("firing", false) => Some("resolved"),
        ("firing", true) => None,
        (_, true) => Some("firing"),
        (_, false) => None,
    }
}

/// The number in the first column of the first row.
fn first_value(out: &QueryOutput) -> Result<f64, String> {
    let batch = out
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or("the query returned no rows")?;
    let column = batch.column(0);
    let cast = deltalake::arrow::compute::cast(column, &DataType::Float64)
        .map_err(|e| format!("the first column is not a number: {e}"))?;
    let floats = cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("the first column is not a number")?;
    if floats.is_null(0) {
        return Err("the first value is null".to_owned());
    }
    Ok(floats.value(0))
}

/// The rule's current value, or why there is none.
async fn evaluate(state: &AppState, rule: &AlertRule) -> Result<f64, String> {
    match rule.kind.as_str() {
        "metric" => {
            let text = state
                .metrics
                .as_ref()
                .map(|h| h.render())
                .unwrap_or_default();
            crate::instance::sums(&text)
                .get(rule.query.as_str())
                .copied()
                .ok_or_else(|| format!("the metric {} is not reported (yet)", rule.query))
        }
        _ => {
            let principal = Principal {
                name: format!("alert {}", rule.name),
                ..Principal::anonymous_admin(None)
            };
            let database = rule
                .database
                .as_deref()
                .map(ferry_protocols::DatabaseName::new)
                .transpose()
                .map_err(|e| e.to_string())?;
            let statement = Statement {
                sql: rule.query.clone(),
                database,
                remote: None,
            };
            let out = query::execute(state, &principal, statement, |out, _| Ok(out))
                .await
                .map_err(|e: ApiError| e.message().to_owned())?;
            first_value(&out)
        }
    }
}

/// One evaluation at a time (the scheduler's and `POST .../evaluate`), so
/// that two cannot both record the same change.
static EVALUATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Evaluates `rule` now: records the value and any state change, then
/// calls the webhook for a change. The rule's new state.
pub async fn run_rule(state: &AppState, rule: &AlertRule) -> Result<String, ApiError> {
    let _one = EVALUATING.lock().await;
    // The state as it is now, not as the caller read it.
    let Some(rule) = state
        .meta
        .get_alert_rule(rule.id)
        .await
        .map_err(|e| ApiError::internal("reading an alert rule", e))?
    else {
        return Err(ApiError::not_found(format!("no alert rule {}", rule.id)));
    };
    let rule = &rule;
    let result = evaluate(state, rule).await;
    let (value, error, change) = match &result {
        Ok(v) => {
            metrics::counter!(m::ALERT_EVALUATIONS, "outcome" => "value").increment(1);
            let fires = holds(*v, &rule.op, rule.threshold);
            (Some(*v), None, next_state(&rule.state, fires))
        }
        Err(e) => {
            metrics::counter!(m::ALERT_EVALUATIONS, "outcome" => "no_value").increment(1);
            (None, Some(e.clone()), None)
        }
    };
    let event = state
        .meta
        .record_alert_evaluation(
            rule.id,
            value,
            error,
            change.map(str::to_owned),
            state.config.alerts.history,
        )
        .await
        .map_err(|e| ApiError::internal("recording an alert evaluation", e))?;
    let new_state = change.unwrap_or(rule.state.as_str()).to_owned();
    if let (Some(event), Some(to), Some(url)) = (event, change, rule.webhook_url.as_deref()) {
        tracing::info!(rule = %rule.name, state = to, value = ?value, "alert state changed");
        let status = deliver(state, rule, url, to, value).await;
        if let Err(e) = state.meta.record_alert_webhook(event, status).await {
            tracing::warn!(error = %e, "recording a webhook delivery failed");
        }
    } else if let Some(to) = change {
        tracing::info!(rule = %rule.name, state = to, value = ?value, "alert state changed");
    }
    Ok(new_state)
}

/// POSTs the change to `url`; what happened, for the history.
async fn deliver(
    state: &AppState,
    rule: &AlertRule,
    url: &str,
    to: &str,
    value: Option<f64>,
) -> String {
    let body = json!({
        "rule": rule.name,
        "rule_id": rule.id,
        "state": to,
        "value": value,
        "op": rule.op,
        "threshold": rule.threshold,
        "kind": rule.kind,
        "query": rule.query,
        "database": rule.database,
        "at": crate::meta::format_ms(crate::meta::now_ms()),
    });
    let client = reqwest::Client::builder()
        .timeout(state.config.alerts.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let answer = match client {
        Ok(c) => c.post(url).json(&body).send().await,
        Err(e) => {
            metrics::counter!(m::ALERT_WEBHOOKS, "result" => "failed").increment(1);
            return format!("error: {e}");
        }
    };
    match answer {
        Ok(r) if r.status().is_success() => {
            metrics::counter!(m::ALERT_WEBHOOKS, "result" => "ok").increment(1);
            r.status().as_u16().to_string()
        }
        Ok(r) => {
            metrics::counter!(m::ALERT_WEBHOOKS, "result" => "failed").increment(1);
            r.status().as_u16().to_string()
        }
        Err(e) if e.is_timeout() => {
            metrics::counter!(m::ALERT_WEBHOOKS, "result" => "failed").increment(1);
            "timeout".to_owned()
        }
        Err(e) => {
            metrics::counter!(m::ALERT_WEBHOOKS, "result" => "failed").increment(1);
            format!("error: {e}")
        }
    }
}

/// Evaluates the rules that are due every `alerts.poll_interval` until
/// `shutdown` (between rules).
pub fn spawn(state: AppState, tracker: &TaskTracker, shutdown: CancellationToken) {
    if !state.config.alerts.enabled {
        return;
    }
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(state.config.alerts.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !state.tables.lease().held() {
                continue;
            }
            let rules = match state.meta.list_alert_rules().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "listing alert rules failed");
                    continue;
                }
            };
            let now = crate::meta::now_ms();
            let mut firing = 0usize;
            for rule in rules {
                if shutdown.is_cancelled() {
                    return;
                }
                let due = rule
                    .last_evaluated_ms
                    .is_none_or(|at| now.saturating_sub(at) >= rule.interval_ms);
                let state_now = if due {
                    match run_rule(&state, &rule).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(rule = %rule.name, error = %e.message(), "alert evaluation failed");
                            rule.state.clone()
                        }
                    }
                } else {
                    rule.state.clone()
                };
                if state_now == "firing" {
                    firing += 1;
                }
            }
            metrics::gauge!(m::ALERTS_FIRING).set(firing as f64);
        }
    });
}

/// The default interval of a rule created without one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_states() {
        assert!(holds(5.0, ">", 4.0));
        assert!(!holds(4.0, ">", 4.0));
        assert!(holds(4.0, ">=", 4.0));
        assert!(holds(1.0, "!=", 2.0));
        assert!(!holds(1.0, "nope", 2.0));
        assert_eq!(next_state("ok", true), Some("firing"));
        assert_eq!(next_state("ok", false), None);
        assert_eq!(next_state("firing", true), None);
        assert_eq!(next_state("firing", false), Some("resolved"));
        assert_eq!(next_state("resolved", false), None);
        assert_eq!(next_state("resolved", true), Some("firing"));
    }
}
