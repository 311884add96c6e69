//! Wiring: starts every part of the agent in order and stops them in the
//! reverse order.
//!
//! Start: metrics → buffer (integrity check, migrations) → segmenter →
//! uplink → router + broker + upstream subscriptions → serial and Modbus
//! sources → local HTTP and the metrics upkeep.
//!
//! Stop (SIGTERM/SIGINT, or the `shutdown` token): the broker stops accepting
//! and lets open connections finish their pending commits and acknowledgements
//! (`mqtt.shutdown_grace`), and the serial sources commit what they have read; then the segmenter cuts what is buffered; then the
//! buffer writes the QoS 0 readings still in memory, commits, checkpoints and
//! closes; then the uplink and the HTTP server stop. Nothing accepted is lost:
//! what the hub has not acknowledged stays in the buffer for the next start.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AgentConfig;
use crate::ingest::{Durability, Incoming, RejectReason};
use crate::route::{Buffer, DeadLetter, Router};
use crate::segmenter::Segmenter;
use crate::store::{Committing, StoreHandle, SystemClock};
use crate::supervise::{Lifecycle, Liveness, in_component, probes};
use crate::uplink::{self, Backlog, HubClient, PendingSegment, SegmentQueue, UplinkStatus};
use crate::{broker, http};

/// The buffer, as the router and the uplink see it.
#[derive(Debug, Clone)]
pub struct Buffered(pub StoreHandle);

impl Buffer for Buffered {
    type Committing = Committing;

    async fn append(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> Result<Committing, RejectReason> {
        self.0.queue_append(readings, durability).await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<Committing, RejectReason> {
        self.0.queue_dead_letter(letter).await
    }
}

impl SegmentQueue for Buffered {
    type Error = crate::store::StoreError;

    async fn next_pending(&self) -> Result<Option<PendingSegment>, Self::Error> {
        Ok(self.0.next_pending_segment().await?.map(pending))
    }

    async fn next_pending_after(&self, seq: u64) -> Result<Option<PendingSegment>, Self::Error> {
        Ok(self
            .0
            .next_pending_segment_after(ferry_protocols::segment::SegmentSeq(seq))
            .await?
            .map(pending))
    }

    async fn ack(&self, seq: u64) -> Result<(), Self::Error> {
        self.0
            .ack_segment(ferry_protocols::segment::SegmentSeq(seq))
            .await
            .map(|_| ())
    }

    async fn quarantine(&self, seq: u64, reason: String) -> Result<(), Self::Error> {
        self.0
            .quarantine_segment(ferry_protocols::segment::SegmentSeq(seq), &reason)
            .await
            .map(|_| ())
    }

    async fn backlog(&self) -> Backlog {
        match self.0.status().await {
            Ok(s) => Backlog {
                readings: s.backlog_readings + s.pending_segment_rows,
                bytes: s.backlog_bytes + s.pending_segment_bytes,
            },
            Err(_) => Backlog::default(),
        }
    }
}

fn pending(s: crate::store::PendingSegment) -> PendingSegment {
    PendingSegment {
        seq: s.seq.0,
        table: format!("{}.{}", s.database, s.measurement),
        rows: s.rows,
        file: s.file,
    }
}

/// What a running agent exposes (for tests and the binary).
#[derive(Debug)]
pub struct Running {
    pub broker: broker::BrokerHandle,
    pub http_addr: std::net::SocketAddr,
    pub store: StoreHandle,
    /// Every component's liveness (the supervisor's monitor reads it).
    pub liveness: Liveness,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the agent has shut down (after `shutdown` was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.done.await?
    }
}

/// Starts the agent; returns once every listener is bound. Cancel `shutdown`
/// to stop it, then [`Running::wait`]. `lifecycle`: how earlier runs ended,
/// shown in `/health` and the status (the binary passes it; see
/// [`crate::supervise::crash`]).
pub async fn start(
    config: AgentConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
    lifecycle: Option<Arc<Lifecycle>>,
) -> anyhow::Result<Running> {
    crate::tls::install_crypto_provider();
    let path = config.buffer_path();
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let store = StoreHandle::open(
        &path,
        config.store.clone(),
        Some(config.agent.id.clone()),
        Arc::new(SystemClock),
    )
    .await?;
    tracing::info!(path = %path.display(), agent_id = %store.agent_id(), "buffer open");

    let tracker = TaskTracker::new();
    let liveness = Liveness::new(config.supervisor.work_timeout);
    // Each stage has its own token so that shutdown is ordered.
    let probe_stop = CancellationToken::new();
    let broker_stop = CancellationToken::new();
    let segmenter_stop = CancellationToken::new();
    let uplink_stop = CancellationToken::new();
    let http_stop = CancellationToken::new();

    // The segmenter wakes the uplink when it cuts a segment.
    let wake = Arc::new(Notify::new());
    let segmenter = Segmenter::new(store.clone(), config.segment.clone())
        .notify_cuts(wake.clone())
        .with_beat(liveness.register("segmenter", config.supervisor.work_timeout, false));
    let segmenter_task = tokio::spawn(in_component(
        "segmenter",
        segmenter.run(segmenter_stop.clone()),
    ));

    let buffered = Buffered(store.clone());
    let token = config.uplink.resolve_token()?;
    if token.is_none() {
        tracing::warn!(
            "no uplink token configured; the hub will refuse uploads if it requires one"
        );
    }
    let client = HubClient::new(&config.uplink, token, store.agent_id().clone())?;
    let uplink_status = UplinkStatus::default();
    tracker.spawn(in_component(
        "uplink",
        uplink::run(
            config.uplink.clone(),
            client,
            buffered.clone(),
            wake,
            uplink_status.clone(),
            liveness.register("uplink", config.supervisor.work_timeout, false),
            uplink_stop.clone(),
        ),
    ));

    if config.routes.is_empty() {
        tracing::warn!(
            "no [[routes]] configured: messages are delivered to subscribers but not stored"
        );
    }
    let router = Router::new(config.routes.clone(), buffered.clone());
    let broker = broker::run(config.mqtt.clone(), router, broker_stop.clone(), &tracker).await?;
    tracing::info!(mqtt = %broker.local_addr(), "broker listening");
    // Serial and Modbus sources stop with the broker: first in the order.
    let serial = crate::serial::start(
        &config.serial,
        &config.modbus_tcp,
        buffered.clone(),
        broker_stop.clone(),
        &tracker,
        &liveness,
    );
    probes::spawn(
        &liveness,
        &config.supervisor,
        &broker,
        &store,
        &tracker,
        &probe_stop,
    );

    let health = http::Health {
        liveness: liveness.clone(),
        lifecycle: lifecycle.clone(),
        started: std::time::Instant::now(),
    };
    let status_health = health.clone();
    let status_store = store.clone();
    let status_broker = broker.clone();
    let status: http::StatusFn = Arc::new(move || {
        let store = status_store.clone();
        let broker = status_broker.clone();
        let uplink = uplink_status.snapshot();
        let serial = serial.snapshot();
        let health = status_health.document();
        Box::pin(async move {
            let buffer = match store.status().await {
                Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            serde_json::json!({
                "agent_id": store.agent_id(),
                "version": env!("CARGO_PKG_VERSION"),
                "buffer": buffer,
                "uplink": uplink,
                "broker": { "connections": broker.connections() },
                "serial": serial,
                "health": health,
            })
        })
    });
    tracker.spawn(in_component(
        "metrics",
        crate::metrics::upkeep(
            {
                let metrics = metrics.clone();
                move || metrics.run_upkeep()
            },
            crate::metrics::UPKEEP_INTERVAL,
            http_stop.clone(),
        ),
    ));
    let (http_addr, server) =
        http::bind(&config.http, metrics, status, health, http_stop.clone()).await?;
    tracing::info!(http = %http_addr, "local http listening");
    tracker.spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "local http server failed");
        }
    });
    tracker.close();

    let done_store = store.clone();
    let done_liveness = liveness.clone();
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        // From here on, parts that end are stopping, not failing.
        done_liveness.set_stopping();
        probe_stop.cancel();
        tracing::info!("shutting down: broker");
        broker_stop.cancel();
        tracing::info!("shutting down: segmenter");
        segmenter_stop.cancel();
        match segmenter_task.await {
            Ok(Ok(report)) => tracing::info!(
                segments = report.segments,
                rows = report.rows,
                "final segments cut"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "final segment cut failed; readings stay buffered")
            }
            Err(e) => tracing::warn!(error = %e, "segmenter task failed"),
        }
        uplink_stop.cancel();
        http_stop.cancel();
        tracker.wait().await;
        tracing::info!("shutting down: buffer");
        done_store.shutdown().await?;
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        broker,
        http_addr,
        store,
        liveness,
        done,
    })
}
