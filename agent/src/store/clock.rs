//! The injected clock: the agent's receive time, in nanoseconds since the
//! Unix epoch. `qos0_max_delay`, `segment.max_age` and the oldest-unsent age
//! are measured with it, so tests control them without sleeping.
//!
//! It is the wall clock, so it can step back (an NTP correction, a gateway
//! whose RTC battery died). A reading received "in the future" of the
//! current clock is then treated as old enough ([`aged`]): a clock step
//! never holds data back.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// True when something stamped `then_ns` is at least `age_ns` old at
/// `now_ns` — or stamped after `now_ns`, which means the clock stepped back
/// since: waiting for the clock to catch up could take hours.
pub(crate) fn aged(now_ns: i64, then_ns: i64, age_ns: i64) -> bool {
    now_ns < then_ns || now_ns - then_ns >= age_ns
}

/// A source of "now".
pub trait Clock: Debug + Send + Sync + 'static {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `now_ns`.
    pub fn new(now_ns: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(now_ns)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.0.fetch_add(ns, Ordering::SeqCst);
    }

    /// Sets the time.
    pub fn set(&self, now_ns: i64) {
        self.0.store(now_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Converts a duration to nanoseconds, saturating.
pub(crate) fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::aged;

    #[test]
    fn aged_counts_a_clock_step_back_as_due() {
        assert!(!aged(1_000, 900, 200));
        assert!(aged(1_100, 900, 200));
        // Stamped after "now": the clock stepped back.
        assert!(aged(500, 900, 200));
    }
}
