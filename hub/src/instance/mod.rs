//! `GET /api/v1/instance` and `GET /api/v1/instance/history`: how this hub
//! is doing, for the Control Center and for operators with curl.
//!
//! A sampler ([`Instance::spawn`]) reads the process and host (`/proc`,
//! `statvfs`) and the hub's own Prometheus counters every
//! `instance.sample_interval`, turns the counters into rates over the
//! interval (rows and bytes ingested per second, commits per second and
//! their mean latency, queries per second and their mean latency), and
//! keeps the last `instance.history` samples in memory (nothing is
//! written: a restart starts the history again). The instance answer is
//! the latest sample plus readings taken at the request (memory, disk,
//! queries running and waiting) and each database's stored bytes as last
//! measured (`quotas.storage_interval`).
//!
//! Both routes need `read` somewhere; the databases listed are those the
//! token may read in.
//!
//! The counters are the process's metrics recorder, which several hubs in
//! one process (tests) share.

mod host;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Permission, Principal};
use crate::server::{ApiResult, AppState};

/// `[instance]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// How often the sampler reads the process, the host and the counters.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Samples kept for `/api/v1/instance/history` (360 × 10 s = 1 h).
    pub history: usize,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            sample_interval: Duration::from_secs(10),
            history: 360,
        }
    }
}

impl InstanceConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.sample_interval < Duration::from_secs(1) {
            errors.push("instance.sample_interval: must be at least 1s".to_owned());
        }
        if self.history == 0 || self.history > 100_000 {
            errors.push("instance.history: must be between 1 and 100000".to_owned());
        }
    }
}

/// One sample: rates over the interval before `at_ms`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Percent of one core this process used (200 = two cores busy).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub rows_per_second: f64,
    pub ingest_bytes_per_second: f64,
    pub commits_per_second: f64,
    /// Mean commit latency over the interval; `None` without commits.
    pub commit_latency_ms: Option<f64>,
    pub queries_per_second: f64,
    /// Mean query latency over the interval; `None` without queries.
    pub query_latency_ms: Option<f64>,
}

/// Cumulative readings a sample is the difference of.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    taken: Option<Instant>,
    cpu_seconds: Option<f64>,
    rows: f64,
    ingest_bytes: f64,
    commits: f64,
    commit_seconds: f64,
    queries: f64,
    query_seconds: f64,
}

/// Sums of the counters in a Prometheus text rendering, by metric name
/// (labels summed over).
pub(crate) fn sums(text: &str) -> HashMap<&str, f64> {
    let mut out: HashMap<&str, f64> = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>()
            && v.is_finite()
        {
            *out.entry(name).or_default() += v;
        }
    }
    out
}

impl Totals {
    fn read(state: &AppState) -> Totals {
        let text = state
            .metrics
            .as_ref()
            .map(|h| h.render())
            .unwrap_or_default();
        let s = sums(&text);
        let get = |n: &str| s.get(n).copied().unwrap_or(0.0);
        let query = crate::metrics::QUERY_SECONDS;
        let commit = crate::table::metrics::COMMIT_SECONDS;
        Totals {
            taken: Some(Instant::now()),
            cpu_seconds: host::process_cpu_seconds(),
            rows: get(crate::metrics::ROWS_INGESTED),
            ingest_bytes: get(crate::metrics::BYTES_INGESTED),
            commits: get(&format!("{commit}_count")),
            commit_seconds: get(&format!("{commit}_sum")),
            queries: get(&format!("{query}_count")),
            query_seconds: get(&format!("{query}_sum")),
        }
    }

    /// The rates from `before` to `self`.
    fn since(&self, before: &Totals) -> Sample {
        let secs = match (self.taken, before.taken) {
            (Some(now), Some(then)) => now.duration_since(then).as_secs_f64(),
            _ => 0.0,
        };
        let rate = |now: f64, then: f64| {
            if secs > 0.0 {
                (now - then).max(0.0) / secs
            } else {
                0.0
            }
        };
        let mean_ms = |sum_now: f64, sum_then: f64, n_now: f64, n_then: f64| {
            let n = n_now - n_then;
            (n > 0.0).then(|| (sum_now - sum_then).max(0.0) / n * 1000.0)
        };
        Sample {
            at_ms: crate::meta::now_ms(),
            cpu_percent: match (self.cpu_seconds, before.cpu_seconds) {
                (Some(now), Some(then)) if secs > 0.0 => Some((now - then).max(0.0) / secs * 100.0),
                _ => None,
            },
            rss_bytes: host::process_rss_bytes(),
            rows_per_second: rate(self.rows, before.rows),
            ingest_bytes_per_second: rate(self.ingest_bytes, before.ingest_bytes),
            commits_per_second: rate(self.commits, before.commits),
            commit_latency_ms: mean_ms(
                self.commit_seconds,
                before.commit_seconds,
                self.commits,
                before.commits,
            ),
            queries_per_second: rate(self.queries, before.queries),
            query_latency_ms: mean_ms(
                self.query_seconds,
                before.query_seconds,
                self.queries,
                before.queries,
            ),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    last: Totals,
    samples: VecDeque<Sample>,
}

/// The sampler's state; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    inner: Arc<Mutex<Inner>>,
}

impl Instance {
    fn take_sample(&self, state: &AppState) {
        let now = Totals::read(state);
        let keep = state.config.instance.history;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.last.taken.is_some() {
            let sample = now.since(&inner.last);
            inner.samples.push_back(sample);
            while inner.samples.len() > keep {
                inner.samples.pop_front();
            }
        }
        inner.last = now;
    }

    fn latest(&self) -> Option<Sample> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.samples.back().cloned()
    }

    fn history(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.samples.iter().cloned().collect()
    }

    /// Samples every `instance.sample_interval` until `shutdown`.
    pub fn spawn(&self, state: AppState, tracker: &TaskTracker, shutdown: CancellationToken) {
        let me = self.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(state.config.instance.sample_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => me.take_sample(&state),
                }
            }
        });
    }
}

/// One database's stored bytes.
#[derive(Debug, Serialize)]
pub struct DatabaseStorage {
    pub database: String,
    pub stored_bytes: u64,
}

/// `GET /api/v1/instance`.
#[derive(Debug, Serialize)]
pub struct InstanceAnswer {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub cores: usize,
    pub load_average_1m: Option<f64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    /// The file system of the metadata store (and, by default, the spill
    /// and import directories).
    pub disk_total_bytes: Option<u64>,
    pub disk_available_bytes: Option<u64>,
    /// `fs`, `s3` or `azure`.
    pub store: &'static str,
    /// Sum of `databases` (as last measured).
    pub stored_bytes: u64,
    pub databases: Vec<DatabaseStorage>,
    /// Queries running or waiting for a slot (HTTP and Flight SQL).
    pub queries_active: usize,
    /// The latest sample (rates over the last `instance.sample_interval`);
    /// `None` until the first interval has passed.
    pub latest: Option<Sample>,
    pub sample_interval_seconds: f64,
    /// `writer` or `reader` (`replica.role`).
    pub role: &'static str,
    /// On a reader: how long before the latest query the table snapshot it
    /// used was known to be the latest (at most `replica.max_staleness`).
    pub replica_lag_seconds: Option<f64>,
    /// On a reader: `replica.max_staleness`.
    pub replica_max_staleness_seconds: Option<f64>,
}

/// `GET /api/v1/instance/history`.
#[derive(Debug, Serialize)]
pub struct HistoryAnswer {
    pub sample_interval_seconds: f64,
    pub samples: Vec<Sample>,
}

pub async fn instance(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<InstanceAnswer>> {
    principal.require_anywhere(Permission::Read)?;
    let (memory_total_bytes, memory_available_bytes) = host::host_memory();
    let disk = host::disk(
        state
            .config
            .metadata
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new(".")),
    );
    let mut databases: Vec<DatabaseStorage> = state
        .quotas
        .stored()
        .into_iter()
        .filter(|(db, _)| principal.grants.touches(Permission::Read, db))
        .map(|(database, stored_bytes)| DatabaseStorage {
            database,
            stored_bytes,
        })
        .collect();
    databases.sort_by(|a, b| a.database.cmp(&b.database));
    Ok(Json(InstanceAnswer {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_1m: host::load_average(),
        memory_total_bytes,
        memory_available_bytes,
        disk_total_bytes: disk.map(|d| d.0),
        disk_available_bytes: disk.map(|d| d.1),
        store: match state.config.storage {
            crate::table::StorageConfig::Fs(_) => "fs",
            crate::table::StorageConfig::S3(_) => "s3",
            crate::table::StorageConfig::Azure(_) => "azure",
        },
        stored_bytes: databases.iter().map(|d| d.stored_bytes).sum(),
        databases,
        queries_active: state.query.busy(),
        latest: state.instance.latest(),
        sample_interval_seconds: state.config.instance.sample_interval.as_secs_f64(),
        role: if state.config.replica.is_reader() {
            "reader"
        } else {
            "writer"
        },
        replica_lag_seconds: state.tables.replica_lag().map(|d| d.as_secs_f64()),
        replica_max_staleness_seconds: state
            .config
            .replica
            .is_reader()
            .then(|| state.config.replica.max_staleness.as_secs_f64()),
    }))
}

pub async fn history(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<HistoryAnswer>> {
    principal.require_anywhere(Permission::Read)?;
    Ok(Json(HistoryAnswer {
        sample_interval_seconds: state.config.instance.sample_interval.as_secs_f64(),
        samples: state.instance.history(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_rates() {
        let text = "# HELP x\nferry_hub_rows_ingested_total{source=\"a\"} 10\n\
                    ferry_hub_rows_ingested_total{source=\"b\"} 5\n\
                    ferry_table_commit_seconds_sum{table=\"t\"} 0.5\n\
                    ferry_table_commit_seconds_count{table=\"t\"} 5\nbad line\n";
        let s = sums(text);
        assert_eq!(s["ferry_hub_rows_ingested_total"], 15.0);
        assert_eq!(s["ferry_table_commit_seconds_count"], 5.0);
        let then = Instant::now();
        let before = Totals {
            taken: Some(then),
            rows: 10.0,
            commits: 1.0,
            commit_seconds: 0.1,
            ..Totals::default()
        };
        let after = Totals {
            taken: Some(then + Duration::from_secs(2)),
            rows: 30.0,
            commits: 3.0,
            commit_seconds: 0.3,
            ..Totals::default()
        };
        let sample = after.since(&before);
        assert_eq!(sample.rows_per_second, 10.0);
        assert_eq!(sample.commits_per_second, 1.0);
        assert!((sample.commit_latency_ms.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(sample.query_latency_ms, None);
    }
}
