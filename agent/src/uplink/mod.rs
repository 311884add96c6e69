//! The uplink: ships pending segments to the hub, in sequence order.
//!
//! Guarantees:
//! - A segment is deleted from the buffer only after the hub acknowledged it
//!   (`200` with a [`SegmentAck`](ferry_protocols::api::SegmentAck) naming this
//!   agent and sequence). The hub acknowledges only once the commit holding it
//!   is durable, and answers a replay with `duplicate`; so transfer is
//!   at-least-once and the lake is exactly-once.
//! - Segments go out lowest sequence first; a segment is never skipped
//!   except by quarantine. While a backlog waits, up to
//!   `uplink.batch_segments` go in one request ([`batch`]): the hub commits
//!   each table's segments of it together and answers each segment, and
//!   the agent acknowledges, quarantines or retries each as it would a
//!   single upload. One request is in flight at a time.
//! - A segment the hub rejects as malformed (a permanent 4xx, see
//!   [`ErrorCode::is_permanent`](ferry_protocols::api::ErrorCode::is_permanent))
//!   is quarantined: kept on disk, counted, shown in status, never retried;
//!   the queue behind it goes on. Authentication failures are *not*
//!   permanent: fix the token and the backlog drains.
//! - Everything else (network errors, timeouts, 5xx, 401/403, 429) is retried
//!   with exponential backoff and jitter (`backoff_initial` to `backoff_max`),
//!   or after the hub's `Retry-After` on a 429 or 503 when that is longer
//!   (a quota of the hub; at most an hour).
//! - With several hubs (`uplink.hub_urls`, hubs sharing the same tables), a
//!   failed round other than a 429 moves to the next hub at once; only when
//!   every hub failed in a row does the uplink back off. A 429 stays on its
//!   hub (another would apply the same quota). On another hub than the
//!   first for `failback_after`, the next upload tries the first again.
//!   Segments stay in sequence order across hubs, and a segment one hub
//!   committed but could not acknowledge is a `duplicate` on the next: the
//!   `txn` that makes it one is in the shared table, so exactly-once holds
//!   when the hubs write the same tables (`storage.multi_writer`).
//! - `max_bytes_per_second` caps the *average* upload rate: after each upload
//!   the uplink waits until the bytes sent fit the budget. A single segment
//!   still goes out at line rate; keep `segment.max_bytes` small on slow links.

mod backoff;
mod batch;
mod client;
mod config;
mod status;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use batch::BatchRefused;
pub use client::{Backlog, ClientError, HubClient, PendingSegment, UploadError};
pub use config::UplinkConfig;
pub use status::{UplinkState, UplinkStatus};

use crate::metrics as m;
use crate::supervise::{Beat, fault};

/// The buffer's side of the uplink.
pub trait SegmentQueue: Clone + Send + Sync + 'static {
    type Error: std::fmt::Display + Send;

    /// The pending segment with the lowest sequence, if any.
    fn next_pending(
        &self,
    ) -> impl Future<Output = Result<Option<PendingSegment>, Self::Error>> + Send;
    /// The pending segment with the lowest sequence above `seq`, if any.
    fn next_pending_after(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<Option<PendingSegment>, Self::Error>> + Send;
    /// The hub acknowledged `seq`: delete it.
    fn ack(&self, seq: u64) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The hub rejected `seq` for good: keep it aside.
    fn quarantine(
        &self,
        seq: u64,
        reason: String,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// What is still buffered, reported to the hub.
    fn backlog(&self) -> impl Future<Output = Backlog> + Send;
}

/// How long to wait for new segments when the queue is empty, if nobody
/// calls the wake-up `Notify`.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown`. An upload in flight at shutdown is abandoned; the
/// segment stays pending and is sent again (and deduplicated) next time.
pub async fn run<Q: SegmentQueue>(
    config: UplinkConfig,
    client: HubClient,
    queue: Q,
    wake: Arc<Notify>,
    status: UplinkStatus,
    beat: Beat,
    shutdown: CancellationToken,
) {
    let mut client = client;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    // Hubs that failed one after the other since the last success.
    let mut failed_hubs = 0usize;
    status.set_hub(client.hub());
    let rate = config.max_bytes_per_second.as_u64();
    // Until then, one segment per request (the hub refused a batch).
    let mut single_until: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        fault::point("uplink").await;
        beat.working();
        let segment = match queue.next_pending().await {
            Ok(Some(segment)) => segment,
            Ok(None) => {
                beat.waiting(IDLE_POLL);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "uplink cannot read the buffer");
                let delay = backoff.next_delay();
                beat.waiting(delay);
                if sleep_or_cancel(delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if client.fail_back_if_due() {
            tracing::info!(hub = client.hub(), "uplink trying the first hub again");
            status.set_hub(client.hub());
            failed_hubs = 0;
        }
        let batching =
            config.batch_segments > 1 && single_until.is_none_or(|t| Instant::now() >= t);
        let segments = if batching {
            batch::gather(&queue, segment, &config).await
        } else {
            vec![segment]
        };
        let started = Instant::now();
        // The request is bounded by `uplink.timeout`.
        beat.waiting(config.timeout);
        let backlog = queue.backlog().await;
        let results = if let [one] = segments.as_slice() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = client.upload(one, backlog) => vec![r],
            }
        } else {
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = client.upload_batch(&segments, backlog) => r,
            };
            match answer {
                Ok(results) => results,
                Err(BatchRefused::Unsupported { status, message }) => {
                    tracing::warn!(status, %message, single_for = ?batch::SINGLE_FOR, "hub refused a batch upload; sending one segment per request");
                    single_until = Some(Instant::now() + batch::SINGLE_FOR);
                    continue;
                }
                Err(BatchRefused::Failed(e)) => vec![Err(e); segments.len()],
            }
        };
        let bytes: u64 = segments.iter().map(|s| s.file.len() as u64).sum();
        let mut retry: Option<String> = None;
        let mut throttled = false;
        let mut progress = false;
        for (segment, result) in segments.iter().zip(results) {
            match result {
                Ok(ack) => {
                    progress = true;
                    if let Err(e) = queue.ack(segment.seq).await {
                        // The hub has it; a replay after restart is deduplicated.
                        tracing::error!(seq = segment.seq, error = %e, "cannot delete an acknowledged segment");
                    }
                    metrics::counter!(m::UPLINK_SEGMENTS_TOTAL, "result" => ack_label(&ack))
                        .increment(1);
                    metrics::counter!(m::UPLINK_BYTES_TOTAL).increment(segment.file.len() as u64);
                    metrics::counter!(m::UPLINK_ROWS_TOTAL).increment(segment.rows);
                    status.record_success(segment.seq);
                    tracing::debug!(seq = segment.seq, table = %segment.table, rows = segment.rows, status = ?ack.status, "segment acknowledged");
                }
                Err(UploadError::Permanent {
                    status: code,
                    message,
                }) => {
                    tracing::error!(seq = segment.seq, table = %segment.table, status = code, %message, "hub rejected a segment; quarantined");
                    metrics::counter!(m::UPLINK_SEGMENTS_TOTAL, "result" => "quarantined")
                        .increment(1);
                    if let Err(e) = queue.quarantine(segment.seq, message.clone()).await {
                        tracing::error!(seq = segment.seq, error = %e, "cannot quarantine a segment");
                    }
                    status.record_quarantine(segment.seq, message);
                }
                Err(UploadError::Transient(message)) => {
                    retry.get_or_insert(message);
                }
                Err(UploadError::Throttled(message)) => {
                    throttled = true;
                    retry.get_or_insert(message);
                }
            }
        }
        metrics::histogram!(m::UPLINK_SECONDS).record(started.elapsed().as_secs_f64());
        let first = segments.first().map_or(0, |s| s.seq);
        // The files stay in the buffer: holding them through a backoff of up
        // to `backoff_max` would keep a whole batch (up to
        // `batch_max_bytes`) resident for as long as the hub is down.
        drop(segments);
        match retry {
            // Part of a batch went through (the hub deferred the rest, or one
            // table failed): the hub is up, so the rest goes again at once.
            // A round without progress backs off.
            Some(message) if progress => {
                failed_hubs = 0;
                metrics::counter!(m::UPLINK_RETRIES_TOTAL).increment(1);
                tracing::debug!(error = %message, "part of a batch to send again");
                // Unless a quota of the hub refused the rest: then after
                // its Retry-After.
                if let Some(after) = client.take_retry_after() {
                    beat.waiting(after);
                    if sleep_or_cancel(after, &shutdown).await {
                        return;
                    }
                }
            }
            Some(message) => {
                metrics::counter!(m::UPLINK_RETRIES_TOTAL).increment(1);
                // Another hub, at once, until each has failed in turn.
                if !throttled && client.hub_count() > 1 {
                    failed_hubs += 1;
                    let from = client.hub().to_owned();
                    client.fail_over();
                    metrics::counter!(m::UPLINK_FAILOVERS_TOTAL).increment(1);
                    status.record_failover(client.hub());
                    tracing::warn!(seq = first, %from, to = client.hub(), error = %message, "upload failed; moving to the next hub");
                    if failed_hubs < client.hub_count() {
                        status.record_failure(message);
                        client.take_retry_after();
                        continue;
                    }
                    failed_hubs = 0;
                }
                // The hub's Retry-After (a quota, a full queue) when it gave
                // one and it is longer than the backoff.
                let delay = match client.take_retry_after() {
                    Some(after) => backoff.next_delay().max(after),
                    None => backoff.next_delay(),
                };
                if status.record_failure(message.clone()) {
                    tracing::warn!(seq = first, error = %message, retry_in = ?delay, "upload failed; retrying");
                } else {
                    tracing::debug!(seq = first, error = %message, retry_in = ?delay, "upload failed again");
                }
                beat.waiting(delay);
                if sleep_or_cancel(delay, &shutdown).await {
                    return;
                }
                continue;
            }
            None => {
                backoff.reset();
                failed_hubs = 0;
                client.take_retry_after();
            }
        }
        if rate > 0 {
            let budget = Duration::from_secs_f64(bytes as f64 / rate as f64);
            if let Some(wait) = budget.checked_sub(started.elapsed()) {
                beat.waiting(wait);
                if sleep_or_cancel(wait, &shutdown).await {
                    return;
                }
            }
        }
    }
}

fn ack_label(ack: &ferry_protocols::api::SegmentAck) -> &'static str {
    match ack.status {
        ferry_protocols::api::AckStatus::Committed => "committed",
        ferry_protocols::api::AckStatus::Duplicate => "duplicate",
    }
}

/// Sleeps; returns true if cancelled first.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
