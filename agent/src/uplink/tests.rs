//! The uplink loop against a hub that is down.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::supervise::Liveness;

/// A segment file that holds a clone of `_live` for as long as any `Bytes`
/// of it exists, so the test can count the files still in memory.
struct Tracked {
    data: Vec<u8>,
    _live: Arc<()>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Hands out segment 1, and segment 2 after it, each time as a new file
/// (as the store does: it reads the file from the buffer). Holds only a
/// weak reference itself, so the count is the files'.
#[derive(Clone)]
struct TwoSegments(Weak<()>);

impl TwoSegments {
    fn segment(&self, seq: u64) -> PendingSegment {
        PendingSegment {
            seq,
            table: "db.m".into(),
            rows: 1,
            file: Bytes::from_owner(Tracked {
                data: vec![7u8; 1 << 20],
                _live: self.0.upgrade().expect("the test holds it"),
            }),
        }
    }
}

impl SegmentQueue for TwoSegments {
    type Error = std::convert::Infallible;

    async fn next_pending(&self) -> Result<Option<PendingSegment>, Self::Error> {
        Ok(Some(self.segment(1)))
    }
    async fn next_pending_after(&self, seq: u64) -> Result<Option<PendingSegment>, Self::Error> {
        Ok((seq == 1).then(|| self.segment(2)))
    }
    async fn ack(&self, _seq: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    async fn quarantine(&self, _seq: u64, _reason: String) -> Result<(), Self::Error> {
        Ok(())
    }
    async fn backlog(&self) -> Backlog {
        Backlog::default()
    }
}

/// While it backs off from a hub that is down, the uplink holds no segment
/// file in memory, whether it sent a batch or one segment: a batch of up to
/// `batch_max_bytes` would otherwise stay resident for the whole outage.
#[tokio::test]
async fn a_backoff_holds_no_segment_in_memory() {
    for batch_segments in [16, 1] {
        // A port nobody listens on: the upload fails at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let config = UplinkConfig {
            hub_url: Some(url),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            batch_segments,
            ..UplinkConfig::default()
        };
        let agent = ferry_protocols::AgentId::new("backoff-test").expect("agent id");
        let client = HubClient::new(&config, None, agent).expect("client");
        let live = Arc::new(());
        let status = UplinkStatus::default();
        let shutdown = CancellationToken::new();
        let liveness = Liveness::new(Duration::from_secs(60));
        let task = tokio::spawn(run(
            config,
            client,
            TwoSegments(Arc::downgrade(&live)),
            Arc::new(Notify::new()),
            status.clone(),
            liveness.register("uplink", Duration::from_secs(60), false),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while status.snapshot().consecutive_failures == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upload never failed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The failure is recorded just before the backoff starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            status.snapshot().consecutive_failures,
            1,
            "still backing off"
        );
        // Only the test's own reference is left.
        assert_eq!(
            Arc::strong_count(&live),
            1,
            "segment files still in memory while the uplink backs off (batch_segments = {batch_segments})"
        );
        shutdown.cancel();
        task.await.expect("uplink task");
    }
}
