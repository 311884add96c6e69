//! What the uplink reports to `status` and `/api/v1/status`.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A snapshot of the uplink's state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UplinkState {
    /// Unix ms of the last acknowledged upload.
    pub last_success_ms: Option<i64>,
    pub last_acked_seq: Option<u64>,
    /// The last failure, until the next success.
    pub last_error: Option<String>,
    pub consecutive_failures: u64,
    pub quarantined_total: u64,
    pub last_quarantine: Option<String>,
    /// The hub uploads go to (one of `uplink.hub_urls`).
    pub hub: Option<String>,
    /// Moves to another hub since the agent started.
    pub failovers: u64,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UplinkStatus(Arc<Mutex<UplinkState>>);

fn now_ms() -> i64 {
    crate::route::system_now_ns() / 1_000_000
}

impl UplinkStatus {
    pub fn snapshot(&self) -> UplinkState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UplinkState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record_success(&self, seq: u64) {
        let mut s = self.lock();
        if s.consecutive_failures > 0 {
            tracing::info!(after_failures = s.consecutive_failures, "uplink recovered");
        }
        s.last_success_ms = Some(now_ms());
        s.last_acked_seq = Some(seq);
        s.last_error = None;
        s.consecutive_failures = 0;
    }

    /// Returns true if this is the first failure after a success (log it loudly).
    pub(crate) fn record_failure(&self, error: String) -> bool {
        let mut s = self.lock();
        s.consecutive_failures += 1;
        let changed = s.last_error.as_deref() != Some(error.as_str());
        s.last_error = Some(error);
        s.consecutive_failures == 1 || changed
    }

    pub(crate) fn set_hub(&self, hub: &str) {
        self.lock().hub = Some(hub.to_owned());
    }

    pub(crate) fn record_failover(&self, to: &str) {
        let mut s = self.lock();
        s.failovers += 1;
        s.hub = Some(to.to_owned());
    }

    pub(crate) fn record_quarantine(&self, seq: u64, reason: String) {
        let mut s = self.lock();
        s.quarantined_total += 1;
        s.last_quarantine = Some(format!("segment {seq}: {reason}"));
    }
}
