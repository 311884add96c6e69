//! Metric names of the agent's routing and uplink (the broker and the store
//! name theirs in `broker::metrics` and `store::metrics`), the Prometheus
//! recorder with its histogram buckets, and the upkeep that drains the
//! recorded samples every second.

pub const ROUTE_READINGS_TOTAL: &str = "ferry_agent_route_readings_total";
pub const ROUTE_DECODE_ERRORS_TOTAL: &str = "ferry_agent_route_decode_errors_total";
pub const ROUTE_UNROUTED_TOTAL: &str = "ferry_agent_route_unrouted_total";

pub const UPLINK_SEGMENTS_TOTAL: &str = "ferry_agent_uplink_segments_total";
pub const UPLINK_BYTES_TOTAL: &str = "ferry_agent_uplink_bytes_total";
pub const UPLINK_ROWS_TOTAL: &str = "ferry_agent_uplink_rows_total";
pub const UPLINK_RETRIES_TOTAL: &str = "ferry_agent_uplink_retries_total";
pub const UPLINK_SECONDS: &str = "ferry_agent_uplink_seconds";
pub const UPLINK_FAILOVERS_TOTAL: &str = "ferry_agent_uplink_failovers_total";

/// Bucket bounds (seconds) of the agent's latency histograms: ack hold,
/// commit, segment cut, upload.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds of `ferry_agent_store_commit_rows` (rows per commit).
const ROWS_BUCKETS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// The agent's Prometheus recorder. Its histograms have fixed buckets, so
/// each costs the same few bytes however many samples and whatever their
/// range (the exporter's default, a summary, keeps a sketch that grows with
/// the range of the values: 2.5 MB for the agent's five after 400,000
/// messages, heaptrack).
pub fn recorder()
-> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                crate::store::metrics::COMMIT_ROWS.to_owned(),
            ),
            &ROWS_BUCKETS,
        )
}

/// How often recorded histogram samples are folded into their buckets.
/// Until then each costs 16 bytes: at 30,000 messages a second, the
/// exporter's own default (5 s) held 2.4 MB of samples at a time.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Folds recorded histogram samples into their buckets every `interval`
/// ([`UPKEEP_INTERVAL`]) until `stop` (`run`: the recorder's `run_upkeep`).
/// The recorder keeps every sample until then (a scrape of `/metrics` does
/// it too): without this, an agent that nobody scrapes grows by about
/// 16 bytes for every acknowledged message (heaptrack: 1.65 MB held after
/// 100,000 QoS 1 messages).
pub async fn upkeep(
    run: impl Fn(),
    interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn histograms_have_buckets() {
        let recorder = recorder().expect("recorder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(crate::broker::metrics::ACK_HOLD_SECONDS).record(0.004);
            metrics::histogram!(crate::store::metrics::COMMIT_ROWS).record(150.0);
        });
        handle.run_upkeep();
        let text = handle.render();
        assert!(
            text.contains("ferry_broker_ack_hold_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_agent_store_commit_rows_bucket{le=\"200\"} 1"),
            "{text}"
        );
        assert!(!text.contains("quantile"), "{text}");
    }

    #[tokio::test]
    async fn upkeep_runs_every_interval_until_stopped() {
        let interval = std::time::Duration::from_millis(20);
        let runs = Arc::new(AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let counted = runs.clone();
        let task = tokio::spawn(upkeep(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            interval,
            stop.clone(),
        ));
        // The first run is at once, then one per interval.
        tokio::time::sleep(interval * 10).await;
        let ran = runs.load(Ordering::SeqCst);
        assert!(ran >= 3, "upkeep ran {ran} times in 10 intervals");
        stop.cancel();
        task.await.expect("upkeep task");
        let stopped = runs.load(Ordering::SeqCst);
        tokio::time::sleep(interval * 5).await;
        assert_eq!(runs.load(Ordering::SeqCst), stopped, "no upkeep after stop");
    }
}
