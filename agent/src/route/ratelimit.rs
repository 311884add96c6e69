//! A log gate: the first event is logged, then at most one line per interval
//! that says how many were suppressed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Decides when a repeated event may be logged.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Returns `Some(suppressed)` if the caller should log now (with the
    /// number of events suppressed since the last line), else `None`.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_once_per_interval() {
        let log = RateLimitedLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.check(t0), Some(0));
        assert_eq!(log.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.check(t0 + Duration::from_secs(2)), None);
        assert_eq!(log.check(t0 + Duration::from_secs(61)), Some(2));
        assert_eq!(log.check(t0 + Duration::from_secs(62)), None);
    }
}
