//! `[continuous_queries]` of `hub.toml`.

use std::time::Duration;

use serde::Deserialize;

/// `[continuous_queries]`: the scheduler of continuous queries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CqConfig {
    /// The API answers 403 `forbidden` when off, and nothing is scheduled.
    pub enabled: bool,
    /// How often the scheduler looks for closed windows.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long after a window ends it is computed: time for the last
    /// rows of the window to be committed (`tables.commit_interval`, an
    /// agent's upload).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Windows before the watermark that every scheduled run computes again
    /// (late data), for queries created without `lookback_windows`.
    pub lookback_windows: u32,
    /// At most this much time is computed and committed at once; a backfill
    /// over months runs as a sequence of such chunks (at least one window).
    #[serde(with = "humantime_serde")]
    pub backfill_chunk: Duration,
    /// Rows one chunk may produce; more fails the execution (lower
    /// `backfill_chunk`).
    pub max_chunk_rows: usize,
    /// The shortest `interval` a query may have.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// At most this many continuous queries.
    pub max_queries: usize,
}

impl Default for CqConfig {
    fn default() -> Self {
        CqConfig {
            enabled: true,
            poll_interval: Duration::from_secs(5),
            delay: Duration::from_secs(10),
            lookback_windows: 1,
            backfill_chunk: Duration::from_secs(24 * 3600),
            max_chunk_rows: 1_000_000,
            min_interval: Duration::from_secs(1),
            max_queries: 1000,
        }
    }
}

impl CqConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.poll_interval.is_zero() {
            errors.push("continuous_queries.poll_interval: must be greater than 0".to_owned());
        }
        if self.min_interval.is_zero() {
            errors.push("continuous_queries.min_interval: must be greater than 0".to_owned());
        }
        if self.max_chunk_rows == 0 {
            errors.push("continuous_queries.max_chunk_rows: must be at least 1".to_owned());
        }
        if self.lookback_windows > 1000 {
            errors.push(format!(
                "continuous_queries.lookback_windows: {} is over 1000",
                self.lookback_windows
            ));
        }
    }
}
