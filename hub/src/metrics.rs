//! Every Prometheus metric the hub exports, named in one place.
//!
//! `/metrics` renders them in the Prometheus text format. The recorder is
//! process-global (the `metrics` crate has one global recorder), so several
//! hubs in one process (tests) share it; [`install`] is idempotent.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Counter: internal faults (panics) contained to one task, label `task`
/// (`batcher`, `compaction`, `retention`, `http`); see `supervise`.
pub const TASK_PANICS: &str = "ferry_hub_task_panics_total";
/// Counter: TLS certificate reloads, label `result` (`ok`, `failed`).
pub const TLS_RELOADS: &str = "ferry_hub_tls_reloads_total";
/// Counter: TLS handshakes that failed or timed out.
pub const TLS_HANDSHAKE_FAILURES: &str = "ferry_hub_tls_handshake_failures_total";
/// Counter: HTTP requests answered, labels `route` (the matched route
/// template, e.g. `/api/v1/query`) and `status` (the numeric status).
pub const HTTP_REQUESTS: &str = "ferry_hub_http_requests_total";
/// Counter: writes a read replica refused (`replica.role = "reader"`).
pub const REPLICA_REFUSED: &str = "ferry_hub_replica_refused_total";
/// Histogram: HTTP request duration in seconds, label `route`.
pub const HTTP_REQUEST_SECONDS: &str = "ferry_hub_http_request_duration_seconds";
/// Counter: rows committed to tables, label `source` (`segment`,
/// `line_protocol`, `msgpack`).
pub const ROWS_INGESTED: &str = "ferry_hub_rows_ingested_total";
/// Counter: request body bytes received by write endpoints (as sent, before
/// decompression), label `source`.
pub const BYTES_INGESTED: &str = "ferry_hub_bytes_ingested_total";
/// Counter: lines or records rejected by write endpoints, label `source`.
pub const ROWS_REJECTED: &str = "ferry_hub_rows_rejected_total";
/// Counter: segments answered, label `status` (`committed`, `duplicate`,
/// `rejected`, `failed`).
pub const SEGMENTS: &str = "ferry_hub_segments_total";
/// Counter: segment batch uploads, label `status` (`accepted`, `refused`:
/// bad framing, order or more than `ingest.max_batch_segments`).
pub const SEGMENT_BATCHES: &str = "ferry_hub_segment_batches_total";
/// Histogram: query latency in seconds (planning to last row), label
/// `outcome` (`ok`, `error`, `timeout`, `refused`: no query slot).
pub const QUERY_SECONDS: &str = "ferry_hub_query_duration_seconds";
/// Gauge: queries running on the query runtime.
pub const QUERIES_RUNNING: &str = "ferry_hub_queries_running";
/// Gauge: queries waiting for a slot.
pub const QUERIES_WAITING: &str = "ferry_hub_queries_waiting";
/// Counter: queries refused by admission, label `reason` (`queue_full`,
/// `queue_timeout`, `per_token`).
pub const QUERIES_REFUSED: &str = "ferry_hub_queries_refused_total";
/// Gauge: bytes of write bodies the hub holds now
/// (`ingest.max_inflight_bytes`).
pub const INGEST_INFLIGHT_BYTES: &str = "ferry_hub_ingest_inflight_bytes";
/// Counter: writes refused before they were read, label `reason`
/// (`inflight_bytes`).
pub const INGEST_REFUSED: &str = "ferry_hub_ingest_refused_total";
/// Counter: rows returned by queries.
pub const QUERY_ROWS: &str = "ferry_hub_query_rows_total";
/// Counter: queries slower than `query.slow_threshold` (logged with their plan).
pub const SLOW_QUERIES: &str = "ferry_hub_slow_queries_total";
/// Counter: queries cancelled through `DELETE /api/v1/queries/{id}`.
pub const QUERIES_CANCELLED: &str = "ferry_hub_queries_cancelled_total";
/// Counter: continuous query executions, labels `query`, `outcome`
/// (`completed`, `failed`).
pub const CQ_EXECUTIONS: &str = "ferry_hub_cq_executions_total";
/// Counter: windows computed by continuous queries, label `query`.
pub const CQ_WINDOWS: &str = "ferry_hub_cq_windows_total";
/// Counter: rows written by continuous queries, label `query`.
pub const CQ_ROWS: &str = "ferry_hub_cq_rows_written_total";
/// Gauge: how far a continuous query's watermark is behind the last closed
/// window, in seconds, label `query`.
pub const CQ_LAG: &str = "ferry_hub_cq_lag_seconds";
/// Counter: authentication failures, label `reason` (`missing`, `malformed`,
/// `invalid`, `expired`, `revoked`, `rotated`, `forbidden`, `agent_binding`).
pub const AUTH_FAILURES: &str = "ferry_hub_auth_failures_total";
/// Counter: Flight SQL calls answered, labels `call` (`handshake`,
/// `get_flight_info`, `do_get`, `do_action`, ...) and `code` (the gRPC
/// status: `ok`, `unauthenticated`, `invalid_argument`, ...).
pub const FLIGHT_CALLS: &str = "ferry_hub_flight_calls_total";
/// Counter: alert rule evaluations, label `outcome` (`value`, `no_value`).
pub const ALERT_EVALUATIONS: &str = "ferry_hub_alert_evaluations_total";
/// Gauge: alert rules firing now.
pub const ALERTS_FIRING: &str = "ferry_hub_alerts_firing";
/// Counter: alert webhook deliveries, label `result` (`ok`, `failed`).
pub const ALERT_WEBHOOKS: &str = "ferry_hub_alert_webhooks_total";
/// Gauge: Flight SQL connections open.
pub const FLIGHT_CONNECTIONS: &str = "ferry_hub_flight_connections";

/// Histogram buckets for request and query latency, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global Prometheus recorder once and returns its handle, or
/// `None` if another recorder was installed first (then `/metrics` is empty).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set metric buckets");
                    PrometheusBuilder::new()
                }
            };
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the metrics recorder");
                    None
                }
            }
        })
        .clone()
}

/// How often recorded histogram samples are folded into their buckets
/// (the Prometheus exporter's own default).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every
/// [`UPKEEP_INTERVAL`] until `stop`. The recorder keeps every sample until
/// then (a scrape of `/metrics` does it too), so a hub that nobody scrapes
/// would otherwise grow with every request and commit it times.
pub async fn upkeep(handle: PrometheusHandle, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// Rows of import jobs, by `outcome` (`imported`, `rejected`).
pub const IMPORT_ROWS: &str = "ferry_hub_import_rows_total";
/// Bytes of files received for imports.
pub const IMPORT_BYTES: &str = "ferry_hub_import_bytes_received_total";
/// Import jobs that ended, by `state` (`completed`, `failed`, `cancelled`).
pub const IMPORT_JOBS: &str = "ferry_hub_import_jobs_total";
/// Import requests refused by a limit, by `reason` (`uploads`, `pending_jobs`, `partial_uploads`, `file_size`).
pub const IMPORT_REFUSED: &str = "ferry_hub_import_refused_total";

/// Audit log entries written, by `event_type`.
pub const AUDIT_ENTRIES: &str = "ferry_hub_audit_entries_total";
/// Audit log writes that failed (the entries are lost; the error is logged).
pub const AUDIT_WRITE_ERRORS: &str = "ferry_hub_audit_write_errors_total";
/// Authentication failures that found the failure window full
/// (`audit.max_failure_keys`) and were counted under `source = "*"`.
pub const AUDIT_FAILURES_OVERFLOW: &str = "ferry_hub_audit_failure_overflow_total";

/// Writes refused by a quota, by `scope` (`token`, `database`) and `limit`
/// (`rows_per_second`, `bytes_per_second`, `max_bytes`).
pub const QUOTA_REFUSED: &str = "ferry_hub_quota_refused_total";
/// Writes whose rate bucket could not be kept because `quotas.max_buckets`
/// buckets were all in use (the write went unmetered).
pub const QUOTA_BUCKETS_FULL: &str = "ferry_hub_quota_buckets_full_total";
/// Rows committed, by `database` (the usage report's source, live).
pub const USAGE_ROWS: &str = "ferry_hub_usage_rows_total";
/// Write body bytes whose rows were committed, by `database`.
pub const USAGE_BYTES: &str = "ferry_hub_usage_bytes_total";
/// Bytes of each database's active files at the last measurement
/// (`quotas.storage_interval`), by `database`.
pub const DATABASE_STORED_BYTES: &str = "ferry_hub_database_stored_bytes";

/// Counter: plaintext bytes sealed into the store (`[encryption]`).
pub const ENCRYPTION_SEALED_BYTES: &str = "ferry_hub_encryption_sealed_bytes_total";
/// Counter: plaintext bytes opened from the store.
pub const ENCRYPTION_OPENED_BYTES: &str = "ferry_hub_encryption_opened_bytes_total";
/// Counter: objects that could not be opened (unknown key, damaged or
/// changed object, not encrypted).
pub const ENCRYPTION_FAILURES: &str = "ferry_hub_encryption_failures_total";
/// Counter: objects the re-encryption job sealed again with the active key.
pub const ENCRYPTION_RESEALED: &str = "ferry_hub_encryption_resealed_objects_total";
