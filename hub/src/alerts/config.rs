//! `[alerts]` of `hub.toml`.

use std::time::Duration;

use serde::Deserialize;

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules at all (the API answers 403 when off).
    pub enabled: bool,
    /// Rules that may exist at most.
    pub max_rules: usize,
    /// The shortest `interval` a rule may have.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// How often the scheduler looks for rules that are due.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a webhook may take to answer; then the delivery counts as
    /// failed (recorded in the rule's history), and is not retried.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// State changes kept per rule.
    pub history: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            max_rules: 100,
            min_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(5),
            history: 100,
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.max_rules == 0 {
            errors.push("alerts.max_rules: must be at least 1".to_owned());
        }
        if self.min_interval < Duration::from_secs(1) {
            errors.push("alerts.min_interval: must be at least 1s".to_owned());
        }
        if self.poll_interval.is_zero() || self.poll_interval > self.min_interval {
            errors.push(
                "alerts.poll_interval: must be more than 0 and at most alerts.min_interval"
                    .to_owned(),
            );
        }
        if self.webhook_timeout.is_zero() {
            errors.push("alerts.webhook_timeout: must be more than 0".to_owned());
        }
        if self.history == 0 {
            errors.push("alerts.history: must be at least 1".to_owned());
        }
    }
}
