//! The embedded MQTT broker and its acknowledgement gate.
//!
//! # Two engines behind one gate
//!
//! The gate ([`listener`], [`gate`]) accepts every client connection: TLS,
//! the CONNECT check, `[mqtt.auth]`, `max_connections`. What serves the
//! connection after that is `mqtt.engine`:
//!
//! * `ferry` (the default, decision 0023): the connection task in
//!   [`direct`] decodes packets with `mqtt5-protocol`, commits each PUBLISH
//!   before it publishes it to Ferry's own [`engine`] and acknowledges it,
//!   and writes what the engine releases for the client. No loopback hop;
//!   memory bounded by the `[mqtt]` keys (see docs/agent.md).
//! * `rumqttd` (the fallback for one release, decision 0009): everything
//!   below, the embedded rumqttd behind a loopback hop.
//!
//! # Why a gate (the rumqttd fallback)
//!
//! Ferry promises that *accepted means durable*: a publisher must not see
//! the PUBACK (QoS 1) or PUBREC (QoS 2) for a reading before the reading is
//! committed to the SQLite buffer. rumqttd 0.20 queues those acks in its
//! router the moment a PUBLISH arrives (`router/routing.rs`,
//! `handle_device_payload`), before any `Broker::link` consumer sees the
//! message, so no rumqttd consumer can keep the promise.
//!
//! # Design
//!
//! ```text
//!            public listeners                 loopback, ephemeral ports
//! client ──▶ 0.0.0.0:1883 (tcp)  ──┐        ┌─▶ rumqttd v4 listener
//! client ──▶ 0.0.0.0:8883 (tls)  ──┴─ gate ─┴─▶ rumqttd v5 listener
//!                                    │
//!                                    └─▶ IngestSink (SQLite buffer)
//! ```
//!
//! rumqttd runs in-process on a dedicated thread ([`embedded`]) and listens
//! only on 127.0.0.1. Clients connect to the gate ([`listener`], [`gate`]),
//! which reads the CONNECT, picks the protocol level, checks the login if
//! `[mqtt.auth]` is configured, and opens one loopback connection to
//! rumqttd per client. It then forwards every packet unchanged in both
//! directions, with two exceptions:
//!
//! * **client → broker:** each PUBLISH is decoded (topic, MQTT 5 topic
//!   aliases, QoS, packet id, payload) and handed to the [`IngestSink`]
//!   before it is forwarded; for QoS 1/2 its packet id is registered as
//!   *pending commit*. A QoS 2 PUBLISH is forwarded only once its commit
//!   has resolved `Stored`/`Unrouted`, with what the client sent after it
//!   waiting behind it in order, but for packets of other flows (acks,
//!   PINGREQ, the PUBREL of a message rumqttd holds: [`gate_order`]); a refused one
//!   never reaches rumqttd. A QoS 1/2 PUBLISH that repeats a packet id still
//!   pending (a DUP) is dropped, and a QoS 2 DUP whose PUBREC was already
//!   sent is forwarded without being stored again.
//! * **broker → client:** a PUBACK or PUBREC for a pending packet id is held
//!   — and with it everything rumqttd sent after it on that connection — until
//!   the commit resolves:
//!   * `Stored` / `Unrouted`: the ack is forwarded unchanged;
//!   * `Rejected(Full)` / `Rejected(StorageError)`, MQTT 5: the ack is
//!     rewritten with reason code 0x97 (quota exceeded) or 0x80
//!     (unspecified error). For QoS 1 rumqttd has **already routed** the
//!     message to local subscribers; a refused QoS 2 message was never
//!     handed to rumqttd, and its PUBREC with the reason code is the
//!     gate's own (rumqttd hands out the oldest QoS 2 message it holds on
//!     the next PUBREL, so one it had been given would reach subscribers
//!     in place of the next);
//!   * `Rejected(..)`, MQTT 3.1.1 (which has no negative ack), and
//!     `Rejected(ShuttingDown)` for both versions: the client connection is
//!     closed without the ack ("block"): the client retransmits on its next
//!     connection. QoS 1 messages were already routed locally.
//!
//! # What is guaranteed
//!
//! * A client never receives a successful PUBACK/PUBREC for a PUBLISH it
//!   sent through the gate before the sink resolved that PUBLISH `Stored` or
//!   `Unrouted`. The window between commit and ack is zero by construction;
//!   the time an ack is held is the histogram
//!   [`metrics::ACK_HOLD_SECONDS`].
//! * Order on a connection is kept: the gate never reorders packets.
//! * Commits for one connection run concurrently, at most
//!   `mqtt.max_inflight` at a time; beyond that the gate stops reading from
//!   that client.
//! * Memory is bounded: one packet (at most `mqtt.max_payload_size`) plus
//!   `max_inflight` messages per connection in the gate; rumqttd is given
//!   `max_connections`, `max_outgoing_packet_count`, `max_segment_size` ×
//!   `max_segment_count` per topic log and `max_inflight`.
//!
//! # What is not guaranteed
//!
//! * rumqttd delivers every message at the subscription's QoS, not at the
//!   lower of that and the QoS it was published with (MQTT 3.1.1 and 5
//!   §3.8.4; Mosquitto does): a QoS 0 message reaches a QoS 2 subscriber at
//!   QoS 2. The gate cannot tell a forwarded message's original QoS, so
//!   this waits for the broker's replacement (docs/agent.md, "MQTT support").
//! * Local subscribers see QoS 0/1 messages as soon as rumqttd routes them,
//!   which may be before (or without) the commit; QoS 2 messages only
//!   after it.
//! * Duplicate suppression for QoS 2 is per connection: a client that
//!   reconnects and resends a QoS 2 PUBLISH (DUP) whose PUBREC it never
//!   received is stored again (at-least-once).
//! * While an ack is held, PINGRESP is held too: a commit slower than the
//!   client's keep-alive makes the client drop the connection.
//! * rumqttd keeps a log per distinct topic and never frees it; memory grows
//!   with the number of distinct topics (each log bounded as above).
//! * MQTT 3.1 (`MQIsdp`, level 3) is handed to rumqttd as 3.1.1 (rumqttd's
//!   codec only speaks 3.1.1 and 5; the packets after CONNECT are the
//!   same), and its CONNACK goes back without the session-present flag. An
//!   empty client id, which 3.1 does not allow, is refused with 0x02, as
//!   Mosquitto does. Other protocol levels get CONNACK 0x01.
//! * Keep alive 0 ("none") is accepted: rumqttd, which refuses it, gets the
//!   longest keep alive and a stand-in PINGREQ from the gate while the
//!   client is silent (see `gate`).
//! * rumqttd cannot be stopped (`start()` blocks forever): after shutdown
//!   its thread idles on loopback until the process exits.
//!
//! # Shutdown
//!
//! When `shutdown` is cancelled the listeners stop accepting and the gate
//! stops reading from clients. Each connection keeps forwarding from rumqttd
//! until every pending ack has been forwarded (MQTT 5 clients then get
//! DISCONNECT 0x8B), or until `mqtt.shutdown_grace` has passed, then closes.
//! Every task is spawned on the caller's [`TaskTracker`].
//!
//! Client input never panics the agent: a malformed or oversized packet
//! closes that connection (MQTT 5: DISCONNECT 0x95 for oversized) with a
//! debug log, a counter, and at most one warning every 10 s.

mod auth;
mod client_ids;
mod codec;
pub mod config;
mod direct;
mod embedded;
pub mod engine;
mod engine_state;
mod flow;
mod gate;
mod gate_down;
mod gate_order;
mod inflight;
mod listener;
mod loopback;
mod max_packet;
pub mod metrics;
mod own_port;
pub mod probe;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::config::{
    BrokerEngine, MqttAuthConfig, MqttConfig, MqttTlsConfig, UpstreamConfig, UpstreamTlsConfig,
};
use crate::ingest::IngestSink;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid mqtt config:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tls: {}: {message}", path.display())]
    Tls { path: PathBuf, message: String },
    #[error("embedded broker: {0}")]
    Embedded(String),
}

/// A running broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    connections: Arc<AtomicUsize>,
    max_connections: usize,
    probes: Vec<probe::ProbeTarget>,
    embedded: Option<[SocketAddr; 2]>,
}

impl BrokerHandle {
    /// The bound plain listener (useful when `mqtt.listen` has port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound TLS listener, if `[mqtt.tls]` is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// The embedded rumqttd's loopback listeners (MQTT 3.1.1, then 5), with
    /// `mqtt.engine = "rumqttd"`. They take only the gate's per-process
    /// login: a client connecting to them directly is refused.
    pub fn embedded_listeners(&self) -> Option<[SocketAddr; 2]> {
        self.embedded
    }

    /// Client connections currently open through the gate.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Whether the gate is at `mqtt.max_connections` (new clients are
    /// refused, the self-probe included).
    pub fn at_connection_limit(&self) -> bool {
        self.connections() >= self.max_connections
    }

    /// One self-probe per listener and protocol version (see [`probe`]).
    pub fn probe_targets(&self) -> &[probe::ProbeTarget] {
        &self.probes
    }
}

/// Starts the embedded broker, its gate and the upstream subscriptions.
/// Returns once every listener is bound and rumqttd accepts connections;
/// everything then runs on tasks spawned on `tracker` until `shutdown`.
pub async fn run<S: IngestSink>(
    config: MqttConfig,
    sink: S,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<BrokerHandle, BrokerError> {
    let mut errors = Vec::new();
    config.validate(&mut errors);
    if !errors.is_empty() {
        return Err(BrokerError::Config(errors));
    }
    let tls = config
        .tls
        .as_ref()
        .map(|t| listener::tls_acceptor(t).map(|(acceptor, leaf)| (acceptor, leaf, t.listen)))
        .transpose()?;
    let plain = listener::bind(config.listen).await?;
    let local_addr = plain.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let (tls, tls_leaf) = match tls {
        Some((acceptor, leaf, addr)) => {
            let l = listener::bind(addr).await?;
            let bound = l
                .local_addr()
                .map_err(|source| BrokerError::Bind { addr, source })?;
            (Some((acceptor, l, bound)), Some(leaf))
        }
        None => (None, None),
    };
    // The self-probe's login, when clients must log in: a fresh secret per
    // process, never written anywhere.
    let probe_secret = config
        .auth
        .as_ref()
        .map(|_| Arc::new(rand::random::<[u8; 32]>()));
    let probe_password = probe_secret.as_ref().map(|s| probe::hex(s.as_ref()));
    let (embedded, engine) = match config.engine {
        config::BrokerEngine::Rumqttd => (Some(embedded::start(&config).await?), None),
        config::BrokerEngine::Ferry => {
            let state = Arc::new(engine_state::EngineState::new(engine_state::limits(
                &config,
            )));
            tracker.spawn(state.clone().run_ticks(shutdown.clone()));
            (None, Some(state))
        }
    };
    let embedded_listeners = embedded.as_ref().map(|e| [e.v4, e.v5]);

    let hard_stop = CancellationToken::new();
    let ctx = Arc::new(gate::Shared::new(
        sink.clone(),
        embedded,
        engine,
        auth::Authenticator::new(config.auth.as_ref(), probe_password.as_deref()),
        usize::try_from(config.max_payload_size.as_u64()).unwrap_or(usize::MAX),
        config.max_inflight,
        u32::try_from(config.max_inflight_bytes.as_u64()).unwrap_or(u32::MAX),
        config.connect_timeout,
        shutdown.clone(),
        hard_stop.clone(),
        tracker.clone(),
    ));
    let connections = ctx.connections.clone();
    let limit = Arc::new(Semaphore::new(config.max_connections));

    for upstream in config.upstream.clone() {
        upstream::spawn(upstream, sink.clone(), shutdown.clone(), tracker)?;
    }
    let tls_local_addr = tls.as_ref().map(|(_, _, addr)| *addr);
    if let Some((acceptor, l, _)) = tls {
        tracker.spawn(crate::supervise::in_component(
            "broker",
            listener::accept_loop(l, Some(acceptor), ctx.clone(), limit.clone()),
        ));
    }
    tracker.spawn(crate::supervise::in_component(
        "broker",
        listener::accept_loop(plain, None, ctx.clone(), limit),
    ));

    // The grace period: once shutdown starts, close whatever is still open
    // after `shutdown_grace` (returns early when every connection is gone).
    let grace = config.shutdown_grace;
    let count = connections.clone();
    tracker.spawn(async move {
        shutdown.cancelled().await;
        let deadline = Instant::now() + grace;
        while count.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hard_stop.cancel();
    });

    tracing::info!(%local_addr, tls = ?tls_local_addr, "mqtt broker listening");
    let probes = probe::targets(local_addr, tls_local_addr.zip(tls_leaf), probe_secret);
    Ok(BrokerHandle {
        local_addr,
        tls_local_addr,
        connections,
        max_connections: config.max_connections,
        probes,
        embedded: embedded_listeners,
    })
}
