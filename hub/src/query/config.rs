//! `[query]`: what one query may use, and how many run at once.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use deltalake::datafusion::config::ConfigOptions;
use serde::Deserialize;

/// `[query]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer is cancelled and answered 504 `timeout`
    /// (the time waiting for a slot counts too).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most rows in one answer; more are cut and the answer says `truncated`.
    pub max_rows: NonZeroUsize,
    /// Most bytes of result data (Arrow, before encoding) in one answer;
    /// more are cut and the answer says `truncated`.
    pub max_result_bytes: ByteSize,
    /// Memory all running queries may reserve together (hash tables, sorts,
    /// join buffers), shared fairly between them. Sorts and aggregations
    /// spill to `spill_dir` beyond their share; a query that cannot fit is
    /// answered 422 `resources_exhausted` (503 while others hold memory).
    pub memory_limit: ByteSize,
    /// Where queries spill; default: `query-spill` next to `metadata.path`.
    pub spill_dir: Option<PathBuf>,
    /// Most bytes all spill files may take together.
    pub spill_max: ByteSize,
    /// Threads of the query runtime (apart from ingest, health and
    /// metrics, which keep their own); default: one per core, at least 2.
    pub threads: Option<NonZeroUsize>,
    /// Queries running at once; later ones wait in a queue.
    pub max_concurrent: NonZeroUsize,
    /// Queries waiting for a slot; beyond, 429 with `Retry-After`.
    pub max_queued: usize,
    /// How long a query waits for a slot before 503 with `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Queries one token (with auth off: one client address) may run at
    /// once; its later ones wait in the queue.
    pub max_per_token: NonZeroUsize,
    /// Queries one token may have waiting; beyond, 429.
    pub max_queued_per_token: usize,
    /// Longest string one expression may build (`repeat`, `lpad`, `rpad`,
    /// `array_repeat`); a longer one fails the query (400).
    pub max_string_bytes: ByteSize,
    /// A query taking at least this long is logged at `warn` with its plan
    /// and metrics, and kept in the history with its plan.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// Finished queries kept in the history (`GET /api/v1/queries/history`).
    pub history_size: usize,
    /// Finished queries older than this leave the history.
    #[serde(with = "humantime_serde")]
    pub history_max_age: Duration,
    /// `[query.datafusion]`: DataFusion session options every query starts
    /// from, by their full name (`"datafusion.execution.batch_size" =
    /// "16384"`); checked at startup. The hub's own settings (the default
    /// catalog, the information schema) are applied after these.
    pub datafusion: BTreeMap<String, String>,
}

/// Where Ferry's session starts from other values than DataFusion's; a
/// `[query.datafusion]` entry overrides them.
///
/// - `pushdown_filters`: the Parquet scan evaluates the query's filters
///   while decoding, skipping pages and rows instead of materialising every
///   row for a `FilterExec`. On the `ferry-bench queries` lake (10 M rows,
///   compacted) it cut the last-point query from 69 to 25 ms, the
///   last-location one from 188 to 130 ms and high-load from 106 to 76 ms
///   (docs/benchmarks.md).
const FERRY_DATAFUSION_DEFAULTS: &[(&str, &str)] =
    &[("datafusion.execution.parquet.pushdown_filters", "true")];

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::from_secs(30),
            max_rows: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            max_result_bytes: ByteSize::mib(64),
            memory_limit: ByteSize::gib(1),
            spill_dir: None,
            spill_max: ByteSize::gib(10),
            threads: None,
            max_concurrent: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            max_queued: 32,
            queue_timeout: Duration::from_secs(10),
            max_per_token: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            max_queued_per_token: 8,
            max_string_bytes: ByteSize::mib(1),
            slow_threshold: Duration::from_secs(5),
            history_size: 1000,
            history_max_age: Duration::from_secs(7 * 86_400),
            datafusion: BTreeMap::new(),
        }
    }
}

impl QueryConfig {
    /// Every problem, each with its key path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.timeout.is_zero() {
            errors.push("query.timeout: must be greater than 0".to_owned());
        }
        if self.memory_limit.as_u64() < 16 * 1024 * 1024 {
            errors.push("query.memory_limit: must be at least 16 MiB".to_owned());
        }
        if self.max_result_bytes.as_u64() == 0 {
            errors.push("query.max_result_bytes: must be greater than 0".to_owned());
        }
        if self.max_string_bytes.as_u64() == 0 {
            errors.push("query.max_string_bytes: must be greater than 0".to_owned());
        }
        if self.max_per_token > self.max_concurrent {
            errors.push("query.max_per_token: must not exceed query.max_concurrent".to_owned());
        }
        if self.queue_timeout.is_zero() {
            errors.push("query.queue_timeout: must be greater than 0".to_owned());
        }
        if self.history_size > 1_000_000 {
            errors.push("query.history_size: must be at most 1000000".to_owned());
        }
        if let Err(e) = self.session_options() {
            errors.push(e);
        }
    }

    /// What the query history keeps, and which queries are slow.
    pub fn history_limits(&self) -> super::tracker::HistoryLimits {
        super::tracker::HistoryLimits {
            size: self.history_size,
            max_age: self.history_max_age,
            slow_threshold: self.slow_threshold,
        }
    }

    /// DataFusion's defaults, then Ferry's (`FERRY_DATAFUSION_DEFAULTS`), then
    /// `datafusion`; the first option DataFusion does not accept, as
    /// `query.datafusion."<key>": <reason>`.
    pub fn session_options(&self) -> Result<ConfigOptions, String> {
        let mut options = ConfigOptions::new();
        for (key, value) in FERRY_DATAFUSION_DEFAULTS {
            options
                .set(key, value)
                .map_err(|e| format!("built-in DataFusion default {key}: {e}"))?;
        }
        for (key, value) in &self.datafusion {
            let reason = if key.starts_with("datafusion.") {
                options
                    .set(key, value)
                    .err()
                    .map(|e| e.message().into_owned())
            } else {
                Some("not a DataFusion option (they start with \"datafusion.\")".to_owned())
            };
            if let Some(reason) = reason {
                return Err(format!("query.datafusion.\"{key}\": {reason}"));
            }
        }
        Ok(options)
    }

    /// `spill_dir`, or `query-spill` beside the metadata file.
    pub fn spill_dir_for(&self, metadata: &Path) -> PathBuf {
        self.spill_dir.clone().unwrap_or_else(|| {
            metadata
                .parent()
                .map_or_else(|| PathBuf::from("query-spill"), |d| d.join("query-spill"))
        })
    }

    /// Query runtime threads: `threads`, or one per core (at least 2, so
    /// that a long poll does not hold the only thread). Every operator
    /// yields between batches ([`YieldEverywhere`](super::coop)), so a
    /// runaway query does not hold a thread from another query's work for
    /// longer than one batch; more threads than cores only add the cost of
    /// waking idle workers to steal each yielded task (measured in
    /// docs/benchmarks.md).
    pub fn thread_count(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            NonZeroUsize::get,
        )
    }
}
