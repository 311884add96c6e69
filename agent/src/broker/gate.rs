//! One client connection through the acknowledgement gate.
//!
//! ```text
//!  client ──▶ FrameReader ──▶ (PUBLISH: sink.submit, slot = Committing) ──▶ rumqttd
//!  client ◀── hold PUBACK/PUBREC P until slot P resolves ◀── FrameReader ◀── rumqttd
//! ```
//!
//! The client→broker half registers a slot for every QoS 1/2 PUBLISH
//! *before* forwarding it, so the acknowledgement rumqttd produces always
//! finds its slot. A QoS 2 PUBLISH is not forwarded until its commit
//! resolves, and the client's later publishes wait behind it in order
//! ([`super::gate_order`]): rumqttd would deliver a message it holds on the
//! next PUBREL, so a refused one must never reach it. The refusal's PUBREC
//! is the gate's own. The broker→client half is strictly sequential: while it
//! waits for slot P, everything rumqttd sent after the ack for P waits too,
//! which keeps the order of the stream. Commits themselves run concurrently:
//! each PUBLISH is queued for the store in turn, and its outcome awaited on a
//! task of its own, at most `max_inflight` per connection; when that many are
//! in flight the gate stops reading from the client (backpressure). (The
//! engine, `direct.rs`, keeps its outcomes in the connection's task.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{AuthOutcome, Authenticator};
use super::client_ids::UpstreamIds;
use super::codec::{self, CodecError, Frame, FrameReader, ProtocolLevel, ReadError, TopicAliases};
use super::embedded::{Embedded, GATE_USER};
use super::engine_state::EngineState;
use super::flow::Flow;
use super::gate_down::{DownEnd, broker_to_client};
use super::gate_order::{Queued, Upstream, Withheld};
use super::inflight::{Held, InFlight};
use super::loopback::{self, OpenError};
use super::max_packet::MaxPacket;
use super::metrics as m;
use crate::ingest::{Accepted, IngestSink, Message, QoS, Source};

/// The keep alive the embedded rumqttd is given for a client that asked for
/// none (0, "no keep alive" in MQTT 3.1.1 and 5, §3.1.2.10): rumqttd 0.20
/// refuses 0, and closes a connection silent for 1.5 × its keep alive.
const UPSTREAM_KEEP_ALIVE: u16 = u16::MAX;

/// How long a client without keep alive may stay silent before the gate
/// pings rumqttd on its behalf (half the upstream keep alive), so that the
/// connection lasts as long as the client keeps it open. The PINGRESP is
/// not passed on.
const STAND_IN_PING: Duration = Duration::from_secs(UPSTREAM_KEEP_ALIVE as u64 / 2);

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub(crate) sink: S,
    /// The embedded rumqttd (`mqtt.engine = "rumqttd"`).
    pub(crate) embedded: Option<Embedded>,
    /// Ferry's own engine (`mqtt.engine = "ferry"`).
    pub(crate) engine: Option<Arc<EngineState>>,
    pub(crate) auth: Authenticator,
    pub(crate) max_packet: usize,
    pub(crate) max_inflight: usize,
    /// `mqtt.max_inflight_bytes`: one permit per byte of the publishes
    /// whose commit is pending, all connections together.
    inflight_bytes: Arc<Semaphore>,
    inflight_bytes_max: u32,
    pub(crate) connect_timeout: Duration,
    /// Stop reading from clients; drain.
    pub(crate) shutdown: CancellationToken,
    /// The grace period is over: close now.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) connections: Arc<AtomicUsize>,
    /// The client ids rumqttd sees.
    pub(crate) ids: UpstreamIds,
    last_warn: AtomicU64,
    started: Instant,
    /// The per-message metrics' handles.
    pub(crate) meters: super::metrics::PublishMeters,
}

impl<S> Shared<S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sink: S,
        embedded: Option<Embedded>,
        engine: Option<Arc<EngineState>>,
        auth: Authenticator,
        max_packet: usize,
        max_inflight: usize,
        max_inflight_bytes: u32,
        connect_timeout: Duration,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Shared {
            sink,
            embedded,
            engine,
            auth,
            max_packet,
            max_inflight,
            inflight_bytes: Arc::new(Semaphore::new(
                usize::try_from(max_inflight_bytes).unwrap_or(usize::MAX),
            )),
            inflight_bytes_max: max_inflight_bytes,
            connect_timeout,
            shutdown,
            hard_stop,
            tracker,
            connections: Arc::new(AtomicUsize::new(0)),
            ids: UpstreamIds::default(),
            last_warn: AtomicU64::new(0),
            started: Instant::now(),
            meters: super::metrics::PublishMeters::new(),
        }
    }

    /// Room for a PUBLISH of `packet_len` bytes: one of the connection's
    /// `permits` (at most `mqtt.max_inflight` commits per connection) and
    /// its bytes under `mqtt.max_inflight_bytes`, across connections. Until
    /// there is room the caller, and so the reading of its connection,
    /// waits (backpressure).
    pub(super) async fn reserve(
        &self,
        permits: &Arc<Semaphore>,
        packet_len: usize,
    ) -> Result<Held, UpEnd> {
        let permit = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(UpEnd::Shutdown),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Err(UpEnd::Closed),
            },
        };
        let bytes = u32::try_from(packet_len)
            .unwrap_or(u32::MAX)
            .min(self.inflight_bytes_max);
        let budget = match self.inflight_bytes.clone().try_acquire_many_owned(bytes) {
            Ok(p) => p,
            Err(_) => {
                counter!(m::INFLIGHT_BYTES_WAITS).increment(1);
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Err(UpEnd::Shutdown),
                    p = self.inflight_bytes.clone().acquire_many_owned(bytes) => match p {
                        Ok(p) => p,
                        Err(_) => return Err(UpEnd::Closed),
                    },
                }
            }
        };
        let gauge = self.meters.inflight_bytes.clone();
        gauge.increment(f64::from(bytes));
        Ok(Held {
            _permit: permit,
            _budget: budget,
            bytes,
            gauge,
        })
    }

    /// Hands `message` to the sink with the room [`reserve`](Self::reserve)
    /// gave it; waits while the sink's queue is full. The [`InFlight`]
    /// resolves with the commit's outcome and needs no task of its own,
    /// but gives the room back only when polled to the end (or dropped).
    pub(super) async fn submit(&self, held: Held, message: Message) -> InFlight<S::Outcome>
    where
        S: IngestSink,
    {
        InFlight {
            outcome: self.sink.submit(message).await,
            held: Some(held),
            result: None,
        }
    }

    /// [`reserve`](Self::reserve) and [`submit`](Self::submit), with the
    /// outcome awaited on a task of its own, so that the room comes back as
    /// soon as the commit settles, whoever waits for it (the rumqttd path,
    /// where the two halves of a connection share its outcomes).
    pub(super) async fn commit(
        &self,
        permits: &Arc<Semaphore>,
        packet_len: usize,
        message: Message,
    ) -> Result<oneshot::Receiver<Accepted>, UpEnd>
    where
        S: IngestSink,
    {
        let held = self.reserve(permits, packet_len).await?;
        let in_flight = self.submit(held, message).await;
        let (tx, rx) = oneshot::channel();
        self.tracker
            .spawn(crate::supervise::in_component("gate", async move {
                let _ = tx.send(in_flight.await);
            }));
        Ok(rx)
    }

    /// Logs a malformed packet at debug, and at warn at most every 10 s.
    pub(super) fn malformed(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        counter!(m::MALFORMED_PACKETS).increment(1);
        tracing::debug!(%peer, %error, "malformed packet, closing connection");
        let now = self.started.elapsed().as_secs() + 10;
        let last = self.last_warn.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%peer, %error, "malformed mqtt packet (further ones logged at debug for 10s)");
        }
    }
}

/// Where a QoS 1/2 packet id is in its life.
#[derive(Debug)]
pub(super) enum Slot {
    /// The sink has it; its acknowledgement may not pass yet.
    Committing {
        rx: oneshot::Receiver<Accepted>,
        qos: u8,
    },
    /// The broker→client half is waiting on it.
    Held,
    /// QoS 2: the PUBLISH waits in the gate for its commit; rumqttd has
    /// not seen it.
    Withheld,
    /// QoS 2: committed and handed to rumqttd; its PUBREC passes.
    Passed,
    /// QoS 2: PUBREC forwarded, PUBREL not yet seen.
    AwaitingRel,
}

#[derive(Debug, Default)]
pub(super) struct Slots(pub(super) HashMap<u16, Slot>);

impl Slots {
    pub(super) fn outstanding(&self) -> usize {
        self.0
            .values()
            .filter(|s| !matches!(s, Slot::AwaitingRel))
            .count()
    }
}

/// Per-connection state shared by its two halves.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) peer: SocketAddr,
    pub(super) client_id: String,
    pub(super) v5: bool,
    /// The client asked for no keep alive: the gate pings rumqttd for it.
    pub(super) no_keep_alive: bool,
    /// PINGREQs the gate sent for the client whose PINGRESP has not come.
    pub(super) stand_in: StandIn,
    pub(super) slots: Mutex<Slots>,
    pub(super) permits: Arc<Semaphore>,
    /// The client's Maximum Packet Size (MQTT 5) on the way out.
    pub(super) max_packet: MaxPacket,
    /// The client's Receive Maximum (MQTT 5) on the way out.
    pub(super) flow: Flow,
}

/// The gate's own pings to rumqttd for a client without keep alive: a
/// PINGRESP is the gate's while it has pings unanswered, and is not passed
/// on. (PINGRESPs carry nothing to tell them apart; when the client pings
/// too, it still gets exactly one PINGRESP per PINGREQ of its own.)
#[derive(Debug, Default)]
pub(super) struct StandIn(AtomicUsize);

impl StandIn {
    /// A PINGREQ is about to go to rumqttd for the client.
    fn sent(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
        counter!(m::STAND_IN_PINGS).increment(1);
    }

    /// Whether a packet of type `ptype` from rumqttd answers one of the
    /// gate's pings (and is to be dropped).
    pub(super) fn answered(&self, ptype: u8) -> bool {
        ptype == codec::PINGRESP
            && self
                .0
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }
}

impl Conn {
    pub(super) fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the connection gauge and count right however the task ends.
struct ConnGuard(Arc<AtomicUsize>);

impl ConnGuard {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        gauge!(m::CONNECTIONS).set(now as f64);
        ConnGuard(count.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        gauge!(m::CONNECTIONS).set(now as f64);
    }
}

pub(super) fn refuse(reason: &'static str) {
    counter!(m::CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// Refuses a connection under `reason` with a CONNACK carrying `code`, then
/// closes it.
pub(super) async fn refuse_with<W: AsyncWrite + Unpin>(
    client: &mut W,
    reason: &'static str,
    v5: bool,
    code: u8,
) {
    refuse(reason);
    let _ = client.write_all(&codec::connack_refusal(v5, code)).await;
    let _ = client.shutdown().await;
}

/// Serves one accepted client connection until it closes.
pub(crate) async fn serve<S, IO>(stream: IO, peer: SocketAddr, ctx: Arc<Shared<S>>)
where
    S: IngestSink,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _guard = ConnGuard::new(&ctx.connections);
    let (client_r, mut client_w) = tokio::io::split(stream);
    let mut client_r = FrameReader::new(client_r, ctx.max_packet);

    let first = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        r = tokio::time::timeout(ctx.connect_timeout, client_r.next()) => r,
    };
    let connect = match first {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return ctx.malformed(peer, &e),
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within the connect timeout");
            return refuse("timeout");
        }
    };
    let info = match codec::parse_connect(&connect) {
        Ok(info) => info,
        Err(e) => return ctx.malformed(peer, &e),
    };
    // MQTT 3.1 goes to rumqttd as 3.1.1 (the packets after CONNECT are
    // the same); its CONNACK comes back without the session-present flag.
    let v31 = info.level == ProtocolLevel::V3;
    let (connect, info) = if v31 {
        if info.client_id.is_empty() {
            // 3.1 has no server-assigned ids (1 to 23 characters), and
            // Mosquitto answers 0x02, identifier rejected.
            return refuse_with(&mut client_w, "client_id", false, 0x02).await;
        }
        match codec::v31_as_v311(&connect)
            .and_then(|frame| codec::parse_connect(&frame).map(|info| (frame, info)))
        {
            Ok(translated) => translated,
            Err(e) => return ctx.malformed(peer, &e),
        }
    } else {
        (connect, info)
    };
    let v5 = match info.level {
        ProtocolLevel::V4 => false,
        ProtocolLevel::V5 => true,
        ProtocolLevel::V3 | ProtocolLevel::Other(_) => {
            tracing::debug!(%peer, level = ?info.level, "unsupported protocol level");
            // 0x01: unacceptable protocol version (3.1 and 3.1.1).
            return refuse_with(&mut client_w, "protocol", false, 0x01).await;
        }
    };
    match ctx
        .auth
        .check(info.username.as_deref(), info.password.as_deref())
    {
        AuthOutcome::Allowed => {}
        outcome => {
            tracing::debug!(%peer, client_id = %info.client_id, ?outcome, "login refused");
            let code = match (outcome, v5) {
                (AuthOutcome::NotAuthorized, false) => 0x05,
                (AuthOutcome::NotAuthorized, true) => 0x87,
                (_, false) => 0x04,
                (_, true) => 0x86,
            };
            return refuse_with(&mut client_w, "auth", v5, code).await;
        }
    }
    let embedded = match (&ctx.engine, &ctx.embedded) {
        (Some(_), _) => {
            return super::direct::serve(client_r, &mut client_w, &connect, v5, v31, peer, &ctx)
                .await;
        }
        (None, Some(embedded)) => embedded.clone(),
        (None, None) => {
            return refuse_with(
                &mut client_w,
                "unavailable",
                v5,
                if v5 { 0x88 } else { 0x03 },
            )
            .await;
        }
    };
    let upstream = if v5 { embedded.v5 } else { embedded.v4 };
    // rumqttd refuses keep alive 0; it gets the longest instead, and the
    // gate pings it while the client is silent (`client_to_broker`).
    let connect = if info.keep_alive == 0 {
        match codec::with_keep_alive(&connect, info.keep_alive_at, UPSTREAM_KEEP_ALIVE) {
            Ok(frame) => frame,
            Err(e) => return ctx.malformed(peer, &e),
        }
    } else {
        connect
    };
    // rumqttd takes only the gate's login (see `embedded`).
    let upstream_connect = codec::with_login(&connect, &info, GATE_USER, &embedded.password)
        .and_then(|frame| codec::parse_connect(&frame).map(|info| (frame, info)));
    let (connect, upstream_info) = match upstream_connect {
        Ok(pair) => pair,
        Err(e) => return ctx.malformed(peer, &e),
    };
    let link = match loopback::open(
        upstream,
        &connect,
        &upstream_info,
        &ctx.ids,
        ctx.connect_timeout,
    )
    .await
    {
        Ok(link) => link,
        Err(e) => {
            let (reason, code) = match &e {
                // 0x02 / 0x85: client identifier not valid.
                OpenError::ClientId(_) => ("client_id", if v5 { 0x85 } else { 0x02 }),
                _ => ("unavailable", if v5 { 0x88 } else { 0x03 }),
            };
            tracing::warn!(%peer, client_id = %info.client_id, error = %e, "connection refused");
            refuse(reason);
            let _ = client_w.write_all(&codec::connack_refusal(v5, code)).await;
            return;
        }
    };
    let loopback::Loopback {
        reader: mut broker_r,
        writer: mut broker_w,
        connack,
    } = link;
    let connack = if v31 {
        codec::connack_as_v31(&connack)
    } else {
        connack.bytes
    };
    if client_w.write_all(&connack).await.is_err() || client_w.flush().await.is_err() {
        return;
    }
    let conn = Conn {
        peer,
        client_id: info.client_id,
        v5,
        no_keep_alive: info.keep_alive == 0,
        stand_in: StandIn::default(),
        slots: Mutex::default(),
        permits: Arc::new(Semaphore::new(ctx.max_inflight)),
        max_packet: MaxPacket::new(info.max_packet),
        flow: Flow::new(info.receive_max),
    };
    tracing::debug!(%peer, client_id = %conn.client_id, v5, "client connected");

    // The gate's own packets for the client (a refused QoS 2 PUBLISH's
    // PUBREC), written by the broker→client half between rumqttd's.
    let (to_client, mut from_up) = mpsc::channel(ctx.max_inflight.max(1));
    // The gate's own packets for rumqttd in the client's place (acks of
    // messages too large for the client), written by the client→broker half.
    let (to_broker, mut from_down) = mpsc::channel(ctx.max_inflight.max(1));
    let farewell = {
        let up = client_to_broker(
            &mut client_r,
            &mut broker_w,
            &mut from_down,
            &conn,
            &ctx,
            &to_client,
        );
        let down = broker_to_client(
            &mut broker_r,
            &mut from_up,
            &to_broker,
            &mut client_w,
            &conn,
            &ctx,
        );
        tokio::pin!(up, down);
        tokio::select! {
            end = &mut up => match end {
                // Keep the broker connection open so the acks still in
                // rumqttd's queue arrive; `down` ends once drained.
                UpEnd::Shutdown => match down.await {
                    DownEnd::Drained => Some(0x8B),
                    _ => None,
                },
                UpEnd::TooLarge => Some(0x95),
                UpEnd::Refused(code) => Some(code),
                UpEnd::Closed => None,
                // rumqttd closes the loopback connection once it has handled
                // the DISCONNECT; closing it first would race that handling
                // (see `loopback`): a late "disconnected" event from this
                // connection can then end another client's connection.
                UpEnd::Disconnected => {
                    let _ = tokio::time::timeout(ctx.connect_timeout, &mut down).await;
                    None
                }
            },
            end = &mut down => match end {
                DownEnd::Drained => Some(0x8B),
                _ => None,
            },
        }
    };
    tracing::trace!(peer = %conn.peer, ?farewell, "connection ending");
    if let (Some(reason), true) = (farewell, v5) {
        let _ = client_w.write_all(&codec::disconnect_v5(reason)).await;
    }
    // Half-close, then let the client read what was sent and close its side
    // (a close with unread input would reset the connection).
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = client_w.shutdown().await;
        client_r.discard_until_eof().await;
    })
    .await;
    tracing::debug!(%peer, client_id = %conn.client_id, "client disconnected");
}

pub(super) enum UpEnd {
    /// Client closed, or a packet could not be decoded.
    Closed,
    /// The client sent DISCONNECT (forwarded to rumqttd).
    Disconnected,
    /// A packet exceeded `max_payload_size`.
    TooLarge,
    /// A packet broke the protocol: DISCONNECT with this reason (MQTT 5).
    Refused(u8),
    /// The gate is shutting down: stop reading, let `down` drain.
    Shutdown,
}

async fn client_to_broker<R, W, S>(
    reader: &mut FrameReader<R>,
    broker: &mut W,
    from_down: &mut mpsc::Receiver<Bytes>,
    conn: &Conn,
    ctx: &Shared<S>,
    to_client: &mpsc::Sender<Bytes>,
) -> UpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: IngestSink,
{
    let mut aliases = TopicAliases::default();
    let mut up = Upstream::new(broker, conn, ctx, to_client);
    loop {
        let frame = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return up.drain(UpEnd::Shutdown).await,
            r = up.head_resolved() => {
                if let Err(end) = up.settle(r).await {
                    return up.drain(end).await;
                }
                continue;
            }
            Some(own) = from_down.recv() => {
                if up.broker.write_all(&own).await.is_err() {
                    return UpEnd::Closed;
                }
                continue;
            }
            r = reader.next(), if up.has_room() => r,
            () = tokio::time::sleep(STAND_IN_PING), if conn.no_keep_alive => {
                // Counted first: the PINGRESP may come before the write returns.
                conn.stand_in.sent();
                if up.broker.write_all(&codec::pingreq()).await.is_err() {
                    return UpEnd::Closed;
                }
                continue;
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return up.drain(UpEnd::Closed).await,
            Err(ReadError::Io(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "client read failed");
                return up.drain(UpEnd::Closed).await;
            }
            Err(e) => {
                ctx.malformed(conn.peer, &e);
                return match e {
                    ReadError::Codec(CodecError::TooLarge { .. }) => UpEnd::TooLarge,
                    _ => UpEnd::Closed,
                };
            }
        };
        let item = match frame.packet_type() {
            codec::PUBLISH => match on_publish(&frame, &mut aliases, conn, ctx).await {
                Ok(Publish::Forward) => Queued::Frame(frame),
                Ok(Publish::Skip) => continue,
                Ok(Publish::Withhold(pkid, commit)) => Queued::Qos2(Withheld {
                    pkid,
                    frame,
                    commit,
                    since: Instant::now(),
                    held: false,
                }),
                Err(end) => return end,
            },
            codec::PUBREL => {
                let released = frame.ack_pkid().is_ok_and(|pkid| {
                    let mut slots = conn.slots();
                    let awaiting = matches!(slots.0.get(&pkid), Some(Slot::AwaitingRel));
                    if awaiting {
                        slots.0.remove(&pkid);
                    }
                    awaiting
                });
                // rumqttd has this message (its PUBREC came from there): the
                // PUBREL need not wait behind a later QoS 2 PUBLISH's commit.
                // Held back, it would hold the client's window for as long.
                if released {
                    Queued::Now(frame)
                } else {
                    Queued::Frame(frame)
                }
            }
            codec::PUBACK | codec::PUBREC | codec::PUBCOMP => {
                conn.flow.answered(&frame);
                // Acks of deliveries to the client: a flow of their own.
                Queued::Now(frame)
            }
            codec::PINGREQ => Queued::Now(frame),
            _ => Queued::Frame(frame),
        };
        if let Err(end) = up.push(item).await {
            return match end {
                UpEnd::Disconnected => end,
                other => up.drain(other).await,
            };
        }
    }
}

/// What to do with a PUBLISH the sink has.
enum Publish {
    /// Hand it to rumqttd now.
    Forward,
    /// A duplicate of a publish still pending: drop it.
    Skip,
    /// QoS 2: hand it on once this commit resolves.
    Withhold(u16, oneshot::Receiver<Accepted>),
}

/// Hands a PUBLISH to the sink.
async fn on_publish<S: IngestSink>(
    frame: &Frame,
    aliases: &mut TopicAliases,
    conn: &Conn,
    ctx: &Shared<S>,
) -> Result<Publish, UpEnd> {
    crate::supervise::fault::point("gate").await;
    let publish = match codec::parse_publish(frame, conn.v5, aliases) {
        Ok(p) => p,
        Err(e) => {
            ctx.malformed(conn.peer, &e);
            // An alias the client never set is a protocol error, one of 0
            // or above the maximum "topic alias invalid" (MQTT 5
            // §3.3.2.3.4): DISCONNECT 0x82 and 0x94, as Mosquitto answers.
            // The message is not stored.
            return Err(match e {
                CodecError::UnknownAlias(_) => UpEnd::Refused(0x82),
                CodecError::InvalidAlias(_) => UpEnd::Refused(0x94),
                _ => UpEnd::Closed,
            });
        }
    };
    ctx.meters.received(publish.qos).increment(1);
    if publish.qos > 0 {
        match conn.slots().0.get(&publish.pkid) {
            Some(Slot::Committing { .. } | Slot::Held | Slot::Withheld | Slot::Passed) => {
                tracing::debug!(peer = %conn.peer, pkid = publish.pkid, dup = publish.dup, "duplicate of a pending publish ignored");
                counter!(m::DUPLICATES_IGNORED).increment(1);
                return Ok(Publish::Skip);
            }
            Some(Slot::AwaitingRel) if publish.qos == 2 => {
                counter!(m::DUPLICATES_IGNORED).increment(1);
                return Ok(Publish::Forward);
            }
            _ => {}
        }
    }
    let qos = QoS::from_u8(publish.qos).unwrap_or(QoS::AtMostOnce);
    let message = Message {
        topic: publish.topic,
        payload: publish.payload,
        qos,
        source: Source::Broker {
            client_id: conn.client_id.clone(),
        },
    };
    let rx = ctx
        .commit(&conn.permits, frame.bytes.len(), message)
        .await?;
    match publish.qos {
        0 => Ok(Publish::Forward),
        2 => {
            conn.slots().0.insert(publish.pkid, Slot::Withheld);
            Ok(Publish::Withhold(publish.pkid, rx))
        }
        qos => {
            conn.slots()
                .0
                .insert(publish.pkid, Slot::Committing { rx, qos });
            Ok(Publish::Forward)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gates_own_pings_are_answered_to_the_gate() {
        let stand_in = StandIn::default();
        assert!(!stand_in.answered(codec::PINGRESP), "the client's own ping");
        stand_in.sent();
        stand_in.sent();
        assert!(!stand_in.answered(codec::PUBACK));
        assert!(stand_in.answered(codec::PINGRESP));
        assert!(stand_in.answered(codec::PINGRESP));
        assert!(!stand_in.answered(codec::PINGRESP), "two sent, two taken");
    }

    #[test]
    fn the_stand_in_ping_comes_well_within_the_upstream_keep_alive() {
        // rumqttd closes a connection silent for 1.5 x its keep alive.
        assert!(STAND_IN_PING < Duration::from_secs(u64::from(UPSTREAM_KEEP_ALIVE)));
        assert_eq!(codec::pingreq().as_ref(), &[0xC0, 0x00]);
    }
}
