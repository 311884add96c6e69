//! Alert rules and their history (see [`crate::alerts`]).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms, now_ms};

/// One rule, with its current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub id: i64,
    pub name: String,
    /// `sql` (the first column of the first row) or `metric` (a hub
    /// metric summed over its labels).
    pub kind: String,
    /// The SQL statement or the metric's name.
    pub query: String,
    pub database: Option<String>,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub op: String,
    pub threshold: f64,
    #[serde(skip)]
    pub interval_ms: i64,
    pub interval_seconds: f64,
    pub webhook_url: Option<String>,
    pub created_by: String,
    pub created_at: String,
    /// `ok`, `firing` or `resolved` (was firing, no longer).
    pub state: String,
    pub state_since: String,
    pub last_value: Option<f64>,
    #[serde(skip)]
    pub last_evaluated_ms: Option<i64>,
    pub last_evaluated: Option<String>,
    /// Why the last evaluation gave no value (bad SQL now, no rows, a
    /// metric not reported yet).
    pub last_error: Option<String>,
}

/// A new rule (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewAlertRule {
    pub name: String,
    pub kind: String,
    pub query: String,
    pub database: Option<String>,
    pub op: String,
    pub threshold: f64,
    pub interval_ms: i64,
    pub webhook_url: Option<String>,
    pub created_by: String,
}

/// One state change of a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub rule_id: i64,
    pub at: String,
    pub state: String,
    pub value: Option<f64>,
    /// `200`, `timeout`, an error, or `None` without a webhook.
    pub webhook_status: Option<String>,
}

const SELECT: &str = "SELECT id, name, kind, query, database, op, threshold, interval_ms,
    webhook_url, created_by, created_at_ms, state, state_since_ms, last_value,
    last_evaluated_ms, last_error FROM alert_rules";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRule> {
    let interval_ms: i64 = r.get(7)?;
    let last_evaluated_ms: Option<i64> = r.get(14)?;
    Ok(AlertRule {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        query: r.get(3)?,
        database: r.get(4)?,
        op: r.get(5)?,
        threshold: r.get(6)?,
        interval_ms,
        interval_seconds: interval_ms as f64 / 1000.0,
        webhook_url: r.get(8)?,
        created_by: r.get(9)?,
        created_at: format_ms(r.get(10)?),
        state: r.get(11)?,
        state_since: format_ms(r.get(12)?),
        last_value: r.get(13)?,
        last_evaluated_ms,
        last_evaluated: last_evaluated_ms.map(format_ms),
        last_error: r.get(15)?,
    })
}

impl Meta {
    /// Every rule, by id.
    pub async fn list_alert_rules(&self) -> Result<Vec<AlertRule>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("{SELECT} ORDER BY id"))?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn get_alert_rule(&self, id: i64) -> Result<Option<AlertRule>> {
        self.call(move |c| {
            Ok(c.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
                .optional()?)
        })
        .await
    }

    /// Creates a rule in state `ok`; `Ok(Err(reason))` when the name is
    /// taken or `max` rules exist.
    pub async fn create_alert_rule(
        &self,
        new: NewAlertRule,
        max: usize,
    ) -> Result<std::result::Result<AlertRule, String>> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let count: i64 = tx.query_row("SELECT count(*) FROM alert_rules", [], |r| r.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                return Ok(Err(format!(
                    "{count} alert rules exist, the most alerts.max_rules allows; delete one first"
                )));
            }
            let taken = tx
                .query_row(
                    "SELECT 1 FROM alert_rules WHERE name = ?1",
                    [&new.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if taken {
                return Ok(Err(format!("an alert rule named {:?} exists", new.name)));
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO alert_rules (name, kind, query, database, op, threshold, interval_ms,
                     webhook_url, created_by, created_at_ms, state, state_since_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'ok', ?10)",
                params![
                    new.name,
                    new.kind,
                    new.query,
                    new.database,
                    new.op,
                    new.threshold,
                    new.interval_ms,
                    new.webhook_url,
                    new.created_by,
                    now
                ],
            )?;
            let id = tx.last_insert_rowid();
            let rule = tx.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)?;
            tx.commit()?;
            Ok(Ok(rule))
        })
        .await
    }

    /// Deletes a rule and its history; the rule as it was.
    pub async fn delete_alert_rule(&self, id: i64) -> Result<Option<AlertRule>> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let rule = tx
                .query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
                .optional()?;
            if rule.is_some() {
                tx.execute("DELETE FROM alert_events WHERE rule_id = ?1", [id])?;
                tx.execute("DELETE FROM alert_rules WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(rule)
        })
        .await
    }

    /// Records an evaluation: the value (or why there is none), and, when
    /// the state changed, the new state and an event. The event's id.
    pub async fn record_alert_evaluation(
        &self,
        id: i64,
        value: Option<f64>,
        error: Option<String>,
        new_state: Option<String>,
        keep: usize,
    ) -> Result<Option<i64>> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            tx.execute(
                "UPDATE alert_rules SET last_value = ?2, last_error = ?3, last_evaluated_ms = ?4
                 WHERE id = ?1",
                params![id, value, error, now],
            )?;
            let mut event = None;
            if let Some(state) = new_state {
                tx.execute(
                    "UPDATE alert_rules SET state = ?2, state_since_ms = ?3 WHERE id = ?1",
                    params![id, state, now],
                )?;
                tx.execute(
                    "INSERT INTO alert_events (rule_id, at_ms, state, value) VALUES (?1, ?2, ?3, ?4)",
                    params![id, now, state, value],
                )?;
                event = Some(tx.last_insert_rowid());
                tx.execute(
                    "DELETE FROM alert_events WHERE rule_id = ?1 AND id NOT IN
                       (SELECT id FROM alert_events WHERE rule_id = ?1 ORDER BY id DESC LIMIT ?2)",
                    params![id, keep],
                )?;
            }
            tx.commit()?;
            Ok(event)
        })
        .await
    }

    /// What the webhook answered for event `event`.
    pub async fn record_alert_webhook(&self, event: i64, status: String) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE alert_events SET webhook_status = ?2 WHERE id = ?1",
                params![event, status],
            )?;
            Ok(())
        })
        .await
    }

    /// A rule's state changes, newest first.
    pub async fn alert_events(&self, rule: i64, limit: usize) -> Result<Vec<AlertEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, rule_id, at_ms, state, value, webhook_status FROM alert_events
                 WHERE rule_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![rule, limit], |r| {
                Ok(AlertEvent {
                    id: r.get(0)?,
                    rule_id: r.get(1)?,
                    at: format_ms(r.get(2)?),
                    state: r.get(3)?,
                    value: r.get(4)?,
                    webhook_status: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
