//! `[audit]` of `hub.toml`.

use std::time::Duration;

use serde::Deserialize;

/// `[audit]`: the audit log of administrative actions and authentication
/// failures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// When false nothing is recorded (the API still answers what is kept).
    pub enabled: bool,
    /// Authentication failures from one source, for one reason, within this
    /// window are one entry with a `count`, so a client hammering the hub
    /// with bad tokens costs one write per window, not one per request.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Distinct (source, actor, reason) failure keys held per window; past
    /// it, further failures of that window are counted under one
    /// `source = "*"` entry.
    pub max_failure_keys: usize,
    /// Entries older than this are deleted (hourly); the deletion is itself
    /// an entry. `0s` keeps everything.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            failure_window: Duration::from_secs(1),
            max_failure_keys: 10_000,
            retention: Duration::from_secs(400 * 86_400),
        }
    }
}

impl AuditConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.failure_window < Duration::from_millis(100)
            || self.failure_window > Duration::from_secs(3600)
        {
            errors.push("audit.failure_window: must be between 100ms and 1h".to_owned());
        }
        if self.max_failure_keys == 0 {
            errors.push("audit.max_failure_keys: must be at least 1".to_owned());
        }
        if !self.retention.is_zero() && self.retention < Duration::from_secs(86_400) {
            errors.push("audit.retention: must be 0s (keep all) or at least 1d".to_owned());
        }
    }
}
