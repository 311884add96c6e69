//! `[[mqtt.upstream]]`: subscriptions to other brokers, through rumqttc.
//!
//! # Guarantee
//!
//! Manual acknowledgements are on: a QoS 1/2 message is acknowledged to the
//! upstream broker (PUBACK / PUBREC) only after the [`IngestSink`] resolved
//! it `Stored` or `Unrouted`. With `clean_session = false` (the default) the
//! upstream broker keeps every unacknowledged message, and everything
//! published while the agent was away, in the session and redelivers it when
//! the same `client_id` reconnects. Delivery into the buffer is therefore
//! at-least-once: a message stored but not yet acknowledged when the
//! connection dropped arrives again.
//!
//! `qos = 2` subscribes at QoS 1 ([`subscribed_qos`] says why).
//!
//! When the sink rejects a message, it is left unacknowledged and the
//! subscription reconnects (after the backoff), so the upstream broker
//! redelivers it later. QoS 0 messages carry no such promise.
//!
//! Each subscription runs one tracked task, and each of its sessions one
//! more that acknowledges messages in the order they arrived (at most 256
//! waiting for their commit; 1,024 more received meanwhile make the session
//! reconnect, and the broker redelivers them). It reconnects with exponential
//! backoff (`min_backoff` doubling to `max_backoff`) and logs each state
//! change (connected / disconnected) once, repeated failures at debug.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, TlsConfiguration, Transport};
use tokio::sync::{Notify, mpsc};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BrokerError;
use super::config::{SYSTEM_CA_BUNDLE, UpstreamConfig};
use super::metrics as m;
use crate::ingest::{Accepted, IngestSink, Message, QoS, Source};

/// Messages of one subscription whose commit may be in flight at once.
const MAX_IN_FLIGHT: usize = 256;
/// Requests the client's queue holds on top of [`MAX_IN_FLIGHT`]. It is
/// emptied only while the session polls the event loop, which it always
/// does; the size only saves the acknowledger from waiting.
const REQUEST_SLACK: usize = 64;
/// Messages received and not yet handed to the buffer while the
/// acknowledger is full. Past it the session reconnects: a broker without
/// an in-flight limit cannot grow the agent's memory without bound.
const MAX_BACKLOG: usize = 1024;

fn rumqttc_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn tls_transport(config: &UpstreamConfig) -> Result<Option<Transport>, BrokerError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let path = tls
        .ca_file
        .clone()
        .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
    let err = |message: String| BrokerError::Tls {
        path: path.clone(),
        message,
    };
    let file = File::open(&path).map_err(|e| err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no CA certificate in PEM file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(client),
    ))))
}

fn options(config: &UpstreamConfig, transport: Option<&Transport>) -> MqttOptions {
    let mut opts = MqttOptions::new(&config.client_id, &config.host, config.port);
    opts.set_keep_alive(config.keep_alive)
        .set_clean_session(config.clean_session)
        .set_manual_acks(true);
    let max = usize::try_from(config.max_packet_size.as_u64()).unwrap_or(usize::MAX);
    opts.set_max_packet_size(max, max);
    if let Some(user) = &config.username {
        opts.set_credentials(user, config.password.clone().unwrap_or_default());
    }
    if let Some(t) = transport {
        opts.set_transport(t.clone());
    }
    opts
}

/// The QoS a subscription asks for: `qos = 2` is asked as 1. The buffer
/// takes upstream messages at least once either way (a message stored but
/// not yet acknowledged when the connection drops arrives again), and
/// rumqttc cannot resume a QoS 2 exchange: it forgets the packet ids it
/// answered with PUBREC when the connection drops, so the broker's resent
/// PUBREL on the next connection is "unsolicited", the connection fails,
/// and every later one fails the same way (bytebeamio/rumqtt#664, open;
/// the fix proposed in #1053 answers such a PUBREL with PUBCOMP).
fn subscribed_qos(configured: u8) -> u8 {
    configured.min(1)
}

/// Starts one `[[mqtt.upstream]]` subscription in a tracked task. Returns
/// once the TLS configuration is loaded; connecting happens in the task.
pub fn spawn<S: IngestSink>(
    config: UpstreamConfig,
    sink: S,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), BrokerError> {
    let transport = tls_transport(&config)?;
    if config.qos > subscribed_qos(config.qos) {
        tracing::warn!(upstream = %config.name,
            "qos = 2 subscribes at QoS 1: upstream messages reach the buffer at least once either way, and a QoS 2 exchange cannot be resumed after a reconnect");
    }
    let task_tracker = tracker.clone();
    tracker.spawn(crate::supervise::in_component(
        "upstream",
        run(config, transport, sink, shutdown, task_tracker),
    ));
    Ok(())
}

/// Why one session ended.
enum SessionEnd {
    Shutdown,
    /// Connection error; `true` if it had been connected.
    Failed(bool),
    /// The sink rejected a message: reconnect so it is redelivered.
    Redeliver,
}

async fn run<S: IngestSink>(
    config: UpstreamConfig,
    transport: Option<Transport>,
    sink: S,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let name = config.name.clone();
    let mut backoff = config.min_backoff;
    let mut failing = false;
    loop {
        let (client, eventloop) = AsyncClient::new(
            options(&config, transport.as_ref()),
            MAX_IN_FLIGHT + REQUEST_SLACK,
        );
        let redeliver = Arc::new(Notify::new());
        let end = session(
            &config, client, eventloop, &sink, &shutdown, &tracker, &redeliver,
        )
        .await;
        gauge!(m::UPSTREAM_CONNECTED, "upstream" => name.clone()).set(0.0);
        match end {
            SessionEnd::Shutdown => break,
            SessionEnd::Failed(true) | SessionEnd::Redeliver => {
                backoff = config.min_backoff;
                failing = false;
            }
            SessionEnd::Failed(false) => {
                if failing {
                    backoff = (backoff * 2).min(config.max_backoff);
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
    tracing::debug!(upstream = %name, "upstream subscription stopped");
}

/// A message handed to the buffer, waiting for its outcome and then its
/// acknowledgement upstream.
type InFlight<S> = (<S as IngestSink>::Outcome, rumqttc::Publish);

/// Acknowledges a session's messages upstream in the order they arrived
/// (MQTT 3.1.1 §4.6: PUBACKs in the order of the PUBLISH packets), each once
/// the buffer resolved it. A rejected message is left unacknowledged and
/// ends the session, so the broker redelivers it.
async fn acknowledge<S: IngestSink>(
    name: String,
    client: AsyncClient,
    mut queue: mpsc::Receiver<InFlight<S>>,
    redeliver: Arc<Notify>,
) {
    while let Some((outcome, publish)) = queue.recv().await {
        match outcome.await {
            Accepted::Stored | Accepted::Unrouted => {
                // Fails only if the session is gone; the broker then
                // redelivers the message.
                let _ = client.ack(&publish).await;
            }
            Accepted::Rejected(reason) => {
                tracing::debug!(upstream = %name, ?reason, topic = %publish.topic, "upstream message rejected");
                counter!(m::UPSTREAM_REJECTED, "upstream" => name.clone()).increment(1);
                if publish.qos != rumqttc::QoS::AtMostOnce {
                    redeliver.notify_one();
                }
            }
        }
    }
}

async fn session<S: IngestSink>(
    config: &UpstreamConfig,
    client: AsyncClient,
    mut eventloop: EventLoop,
    sink: &S,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    redeliver: &Arc<Notify>,
) -> SessionEnd {
    let name = &config.name;
    let mut connected = false;
    let (queue, pending) = mpsc::channel::<InFlight<S>>(MAX_IN_FLIGHT);
    tracker.spawn(acknowledge::<S>(
        name.clone(),
        client.clone(),
        pending,
        redeliver.clone(),
    ));
    // Received, not yet handed to the buffer: the acknowledger is full.
    let mut backlog: VecDeque<(Message, rumqttc::Publish)> = VecDeque::new();
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                return SessionEnd::Shutdown;
            }
            _ = redeliver.notified() => {
                tracing::info!(upstream = %name, "message rejected by the buffer, reconnecting for redelivery");
                return SessionEnd::Redeliver;
            }
            // Handed over one at a time, in order, so the buffer keeps the
            // broker's order. The wait for the buffer's queue depends on
            // the writer only; the wait for room in the acknowledger is
            // this branch, while the event loop below keeps running: it is
            // what sends the acknowledgements that make that room.
            room = queue.reserve(), if !backlog.is_empty() => {
                let Ok(room) = room else { return SessionEnd::Shutdown };
                if let Some((message, publish)) = backlog.pop_front() {
                    let outcome = tokio::select! {
                        _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                        outcome = sink.submit(message) => outcome,
                    };
                    room.send((outcome, publish));
                }
                continue;
            }
            e = eventloop.poll() => e,
        };
        crate::supervise::fault::point("upstream").await;
        let packet = match event {
            Ok(Event::Incoming(packet)) => packet,
            Ok(Event::Outgoing(_)) => continue,
            Err(e) => {
                if connected {
                    tracing::warn!(upstream = %name, error = %e, "upstream disconnected");
                } else {
                    tracing::debug!(upstream = %name, error = %e, "upstream connection failed");
                }
                return SessionEnd::Failed(connected);
            }
        };
        match packet {
            Packet::ConnAck(ack) => {
                connected = true;
                gauge!(m::UPSTREAM_CONNECTED, "upstream" => name.clone()).set(1.0);
                tracing::info!(upstream = %name, host = %config.host, port = config.port,
                    session_present = ack.session_present, "upstream connected");
                let filters = config.topics.iter().map(|t| rumqttc::SubscribeFilter {
                    path: t.clone(),
                    qos: rumqttc_qos(subscribed_qos(config.qos)),
                });
                if let Err(e) = client.subscribe_many(filters).await {
                    tracing::warn!(upstream = %name, error = %e, "subscribe failed");
                    return SessionEnd::Failed(true);
                }
            }
            Packet::Publish(publish) => {
                counter!(m::UPSTREAM_MESSAGES, "upstream" => name.clone()).increment(1);
                let message = Message {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: QoS::from_u8(publish.qos as u8).unwrap_or(QoS::AtMostOnce),
                    source: Source::Upstream { name: name.clone() },
                };
                if backlog.len() >= MAX_BACKLOG {
                    // The broker sends faster than the buffer settles and
                    // its acknowledgements leave. Nothing received since
                    // the last acknowledgement is lost: the broker
                    // redelivers it on the next connection.
                    tracing::warn!(upstream = %name, held = backlog.len(),
                        "upstream sends faster than the buffer takes its messages; reconnecting");
                    counter!(m::UPSTREAM_OVERFLOWS, "upstream" => name.clone()).increment(1);
                    return SessionEnd::Redeliver;
                }
                backlog.push_back((message, publish));
            }
            _ => {}
        }
    }
}
