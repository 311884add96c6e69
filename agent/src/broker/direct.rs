//! One client connection served by Ferry's own engine (`mqtt.engine =
//! "ferry"`, decision 0023): no loopback hop, no second broker.
//!
//! ```text
//!  client ──▶ FrameReader ──▶ mqtt5-protocol ──▶ PUBLISH: sink, then engine, then ack
//!                                          └──▶ SUBSCRIBE, acks, PING, DISCONNECT: engine
//!  client ◀── write ◀── EngineState::ready ◀── Notify (something was queued for it)
//! ```
//!
//! One task per connection reads the client, settles commits in the order
//! the client sent its publishes, and writes what the engine has for it:
//!
//! - **Ack after commit.** A QoS 1/2 PUBLISH goes to the sink first; only
//!   when its commit resolves `Stored`/`Unrouted` is it published to the
//!   engine (local subscribers get it) and acknowledged. A refusal is
//!   answered PUBACK/PUBREC 0x97 (full) or 0x80 (disk) on MQTT 5, and the
//!   message reaches nobody; MQTT 3.1.1 has no negative ack, so the
//!   connection closes without one and the client sends it again. QoS 0
//!   goes to the sink and to the engine at once.
//! - **Order.** Commits run concurrently (at most `mqtt.max_inflight` per
//!   connection; then the client is not read), and settle in the order
//!   the client sent them, so acks and local deliveries keep its order.
//! - **QoS 2** is stored once: the packet ids whose PUBREC went out are
//!   session state, so a PUBLISH sent again, on this connection or on the
//!   next one of a kept session, is answered PUBREC without a second
//!   commit.
//! - **Deliveries** are written as the engine releases them (the client's
//!   Receive Maximum, the expiry left, subscription identifiers); one
//!   larger than the client's Maximum Packet Size is dropped and completed.
//! - **Keep alive**: a client silent for 1.5 × its keep alive is closed
//!   (MQTT 5: 0x8D) and its will published; 0 means none. A client that
//!   takes no bytes for as long (at least 30 s; 300 s without keep alive)
//!   is closed too.
//! - **Takeover**: a newer connection with the same client id closes this
//!   one (MQTT 5: 0x8E).
//! - **Shutdown**: stop reading, settle what is pending (acks go out), then
//!   DISCONNECT 0x8B (MQTT 5) and close.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::FutureExt;
use metrics::counter;
use mqtt5_protocol::packet::connack::ConnAckPacket;
use mqtt5_protocol::packet::disconnect::DisconnectPacket;
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::packet::suback::{SubAckPacket, SubAckReasonCode};
use mqtt5_protocol::packet::subscribe::SubscribePacket;
use mqtt5_protocol::packet::unsuback::{UnsubAckPacket, UnsubAckReasonCode};
use mqtt5_protocol::packet::unsubscribe::UnsubscribePacket;
use mqtt5_protocol::{Packet, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::codec::{self, CodecError, Frame, FrameReader, ReadError};
use super::engine::broker::Ack;
use super::engine::session::{Message, Send};
use super::engine::sessions::{ConnectionId, Ended, Expiry};
use super::engine::subscriptions::SubscribeError;
use super::engine::topic::{Filter, check_name};
use super::engine::wire;
use super::engine_state::EngineState;
use super::gate::{Shared, UpEnd, refuse_with};
use super::inflight::{Held, InFlight};
use super::metrics as m;
use crate::ingest::{self, Accepted, IngestSink, QoS, RejectReason, Source};

/// The Topic Alias Maximum clients are given (Mosquitto's default): at
/// most this many topics per connection are remembered.
const TOPIC_ALIAS_MAX: u16 = 10;

/// The shortest time a client may take no bytes before it is taken for gone
/// (with keep alive, 1.5 x its keep alive when longer).
const MIN_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The same for a client without keep alive.
const WRITE_TIMEOUT_NO_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed, or a read failed: its will goes out.
    Closed,
    /// The client sent DISCONNECT; the engine has been told.
    Disconnected,
    /// MQTT 5 DISCONNECT with this reason, then close; the will goes out.
    Refused(u8),
    /// A newer connection took the client id over: 0x8E, and the session
    /// is the newer connection's.
    TakenOver,
    /// Shutting down: 0x8B once what is pending has settled.
    Shutdown,
    /// A commit was refused on MQTT 3.1.1 (no negative ack): close without
    /// acknowledging, so the client sends it again.
    Block,
}

impl From<UpEnd> for End {
    fn from(e: UpEnd) -> Self {
        match e {
            UpEnd::Shutdown => End::Shutdown,
            _ => End::Closed,
        }
    }
}

/// A PUBLISH whose commit is pending.
struct Pending<O> {
    id: u16,
    qos: u8,
    message: Arc<Message>,
    commit: InFlight<O>,
    since: Instant,
}

/// One connection's state; see the module docs.
struct Conn<'a, S: IngestSink> {
    ctx: &'a Shared<S>,
    state: &'a EngineState,
    peer: SocketAddr,
    client: Arc<str>,
    connection: ConnectionId,
    level: u8,
    /// The client's Maximum Packet Size (MQTT 5).
    max_out: Option<usize>,
    aliases: HashMap<u16, Arc<str>>,
    pending: VecDeque<Pending<S::Outcome>>,
    permits: Arc<Semaphore>,
    /// The engine knows the connection ended (a DISCONNECT it judged).
    told: bool,
}

/// Serves a connection whose CONNECT (`connect`, at MQTT 3.1.1 or 5; a 3.1
/// one arrives translated, `v31`) passed the gate's checks and login.
pub(crate) async fn serve<S, R, W>(
    mut reader: FrameReader<R>,
    writer: &mut W,
    connect: &Frame,
    v5: bool,
    v31: bool,
    peer: SocketAddr,
    ctx: &Shared<S>,
) where
    S: IngestSink,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(state) = ctx.engine.as_deref() else {
        return;
    };
    let level = if v5 { 5 } else { 4 };
    let packet = match wire::decode(&connect.bytes, level) {
        Ok(Packet::Connect(c)) => c,
        Ok(_) => return ctx.malformed(peer, &CodecError::NotConnect(connect.packet_type())),
        Err(e) => return ctx.malformed(peer, &e),
    };
    if let Some(will) = &packet.will
        && check_name(&will.topic).is_err()
    {
        tracing::debug!(%peer, topic = %will.topic, "invalid will topic");
        // 0x90: topic name invalid; 3.1.1 has no code for it.
        return refuse_with(writer, "will", v5, if v5 { 0x90 } else { 0x02 }).await;
    }
    if v5 && packet.properties.get_authentication_method().is_some() {
        // No enhanced authentication methods (MQTT 5 §4.12): 0x8C.
        return refuse_with(writer, "auth", true, 0x8C).await;
    }
    let assigned = packet.client_id.is_empty();
    if assigned && !v5 && !packet.clean_start {
        // MQTT 3.1.1 §3.1.3.1: an empty id needs clean session 1.
        return refuse_with(writer, "client_id", false, 0x02).await;
    }
    let client: Arc<str> = if assigned {
        format!("ferry-{:016x}", rand::random::<u64>()).into()
    } else {
        packet.client_id.as_str().into()
    };
    let registration = match state.connect(wire::connect(&packet, client.clone()), Instant::now()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, client_id = %client, error = %e, "connection refused");
            // 0x97 quota exceeded; 3.1.1: 0x03 server unavailable.
            return refuse_with(writer, "sessions", v5, if v5 { 0x97 } else { 0x03 }).await;
        }
    };
    let session_present = registration.connected.session_present && !v31;
    let connack = if v5 {
        let mut ack = ConnAckPacket::new(session_present, ReasonCode::Success)
            .with_receive_maximum(u16::try_from(ctx.max_inflight).unwrap_or(u16::MAX))
            .with_topic_alias_maximum(TOPIC_ALIAS_MAX)
            .with_maximum_packet_size(u32::try_from(ctx.max_packet).unwrap_or(u32::MAX));
        if assigned {
            ack = ack.with_assigned_client_id(client.to_string());
        }
        ack
    } else {
        ConnAckPacket::new_v311(session_present, ReasonCode::Success)
    };
    let mut conn = Conn {
        ctx,
        state,
        peer,
        client,
        connection: registration.connected.connection,
        level,
        max_out: packet
            .properties
            .get_maximum_packet_size()
            .and_then(|n| usize::try_from(n).ok()),
        aliases: HashMap::new(),
        pending: VecDeque::new(),
        permits: Arc::new(Semaphore::new(ctx.max_inflight)),
        told: false,
    };
    let mut out = BytesMut::new();
    match wire::encode(&connack) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "CONNACK not encoded");
            conn.end(End::Closed);
            return;
        }
    }
    // What a resumed session had in flight goes out first, in order.
    conn.write_sends(&mut out, registration.connected.resend);
    conn.flush_ready(&mut out);
    let keep_alive =
        (packet.keep_alive > 0).then(|| Duration::from_millis(u64::from(packet.keep_alive) * 1500));
    // A client that takes no bytes for this long is gone, as one that
    // sends none for 1.5 x its keep alive is.
    let stuck = keep_alive.map_or(WRITE_TIMEOUT_NO_KEEP_ALIVE, |k| k.max(MIN_WRITE_TIMEOUT));
    if write(writer, &mut out, ctx, stuck).await.is_err() {
        conn.end(End::Closed);
        return;
    }
    tracing::debug!(%peer, client_id = %conn.client, v5, "client connected (engine)");

    let mut last_read = tokio::time::Instant::now();
    let mut shutting_down = false;
    let end = loop {
        let reading = !shutting_down && conn.pending.len() < ctx.max_inflight;
        if !reading {
            // While the connection is not read, its silence is not its own.
            last_read = tokio::time::Instant::now();
        }
        let idle = keep_alive.map_or_else(tokio::time::Instant::now, |k| last_read + k);
        let step = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => Err(End::Closed),
            _ = registration.kick.cancelled() => Err(End::TakenOver),
            _ = ctx.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                Ok(())
            }
            r = conn.head() => conn.settle_ready(r, &mut out),
            _ = registration.notify.notified() => {
                conn.flush_ready(&mut out);
                Ok(())
            }
            r = reader.next(), if reading => {
                last_read = tokio::time::Instant::now();
                match r {
                    Ok(Some(frame)) => conn.on_frame(&frame, &mut out).await,
                    Ok(None) => Err(End::Closed),
                    Err(ReadError::Io(e)) => {
                        tracing::debug!(%peer, error = %e, "client read failed");
                        Err(End::Closed)
                    }
                    Err(e) => {
                        ctx.malformed(peer, &e);
                        Err(match e {
                            ReadError::Codec(CodecError::TooLarge { .. }) => End::Refused(0x95),
                            _ => End::Refused(0x81),
                        })
                    }
                }
            }
            // After the reader: a packet already in the socket counts.
            _ = tokio::time::sleep_until(idle), if keep_alive.is_some() && reading => {
                tracing::debug!(%peer, client_id = %conn.client, "keep alive expired");
                Err(End::Refused(0x8D))
            }
        };
        let step = match step {
            Ok(()) if shutting_down && conn.pending.is_empty() => Err(End::Shutdown),
            other => other,
        };
        // What was answered goes out before the connection ends.
        if !out.is_empty() && write(writer, &mut out, ctx, stuck).await.is_err() {
            break End::Closed;
        }
        if let Err(end) = step {
            break end;
        }
    };
    tracing::debug!(%peer, client_id = %conn.client, ?end, "client disconnected (engine)");
    let reason = match end {
        End::Refused(code) => Some(code),
        End::TakenOver => Some(0x8E),
        End::Shutdown => Some(0x8B),
        End::Block if shutting_down || ctx.shutdown.is_cancelled() => Some(0x8B),
        _ => None,
    };
    if let (Some(code), true) = (reason, v5) {
        out.clear();
        out.extend_from_slice(&codec::disconnect_v5(code));
        let _ = write(writer, &mut out, ctx, stuck).await;
    }
    conn.end(end);
    if ctx.hard_stop.is_cancelled() {
        return;
    }
    // Half-close, then let the client read what was sent and close its side
    // (a close with unread input would reset the connection).
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = writer.shutdown().await;
        reader.discard_until_eof().await;
    })
    .await;
}

/// Writes and clears `out`; gives up when the grace period is over, or
/// when the client has taken nothing for `stuck`.
async fn write<W: AsyncWrite + Unpin, S>(
    writer: &mut W,
    out: &mut BytesMut,
    ctx: &Shared<S>,
    stuck: Duration,
) -> std::io::Result<()> {
    let r = tokio::select! {
        r = async {
            writer.write_all(out).await?;
            writer.flush().await
        } => r,
        _ = ctx.hard_stop.cancelled() => Err(std::io::ErrorKind::TimedOut.into()),
        _ = tokio::time::sleep(stuck) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    out.clear();
    r
}

impl<S: IngestSink> Conn<'_, S> {
    /// Tells the engine how the connection ended, once.
    fn end(&mut self, end: End) {
        if std::mem::replace(&mut self.told, true) {
            return;
        }
        let how = match end {
            // Told already (with the DISCONNECT's expiry), or the session
            // is the newer connection's.
            End::Disconnected | End::TakenOver => return,
            _ => Ended::WithWill,
        };
        self.state
            .disconnect(&self.client, self.connection, how, None);
    }

    /// Runs `f` on the session's QoS 2 ids awaiting PUBREL.
    fn qos2<T>(&self, f: impl FnOnce(&mut HashSet<u16>) -> T) -> Option<T> {
        self.state.incoming_qos2(&self.client, self.connection, f)
    }
}

impl<S: IngestSink> Drop for Conn<'_, S> {
    /// However the task ends (a panic, or dropped at shutdown), the engine
    /// hears of it: the session goes offline and the will goes out.
    fn drop(&mut self) {
        self.end(End::Closed);
    }
}

impl<S: IngestSink> Conn<'_, S> {
    fn v5(&self) -> bool {
        self.level == 5
    }

    /// The oldest pending commit's outcome (never, with none pending).
    async fn head(&mut self) -> Accepted {
        match self.pending.front_mut() {
            Some(p) => (&mut p.commit).await,
            None => std::future::pending().await,
        }
    }

    /// The oldest pending commit resolved: settles it and every commit
    /// behind it that has resolved too (a group commit resolves many at
    /// once), so their acks leave in one write.
    fn settle_ready(&mut self, outcome: Accepted, out: &mut BytesMut) -> Result<(), End> {
        self.settle(outcome, out)?;
        while let Some(p) = self.pending.front_mut() {
            match (&mut p.commit).now_or_never() {
                Some(accepted) => self.settle(accepted, out)?,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// The oldest pending commit resolved: publish and acknowledge, or
    /// refuse.
    fn settle(&mut self, outcome: Accepted, out: &mut BytesMut) -> Result<(), End> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        self.ctx
            .meters
            .ack_hold
            .record(p.since.elapsed().as_secs_f64());
        let ack_type = if p.qos == 1 {
            codec::PUBACK
        } else {
            codec::PUBREC
        };
        let reason = match outcome {
            Accepted::Stored | Accepted::Unrouted => self.publish(p.message),
            Accepted::Rejected(why) => {
                let code = match why {
                    RejectReason::Full => 0x97,
                    RejectReason::StorageError => 0x80,
                    RejectReason::ShuttingDown => {
                        counter!(m::ACKS_REJECTED, "action" => "disconnect").increment(1);
                        return Err(End::Block);
                    }
                };
                if !self.v5() {
                    counter!(m::ACKS_REJECTED, "action" => "disconnect").increment(1);
                    return Err(End::Block);
                }
                counter!(m::ACKS_REJECTED, "action" => "reason_code").increment(1);
                out.extend_from_slice(&codec::ack_with_reason(ack_type, p.id, code));
                return Ok(());
            }
        };
        match reason {
            None => {
                out.extend_from_slice(&codec::ack(ack_type, p.id));
                if p.qos == 2 {
                    self.qos2(|ids| ids.insert(p.id));
                }
            }
            Some(code) => out.extend_from_slice(&codec::ack_with_reason(ack_type, p.id, code)),
        }
        Ok(())
    }

    /// Publishes a stored message to the engine; the reason code for its
    /// acknowledgement when its retained part was refused (MQTT 5: 0x97,
    /// and nobody gets it, so that 0x97 means nothing happened). MQTT 3.1.1
    /// has no code for it: its subscribers get it, it is not retained.
    fn publish(&self, message: Arc<Message>) -> Option<u8> {
        let e = match self.state.publish(message.clone()) {
            Ok(()) => return None,
            Err(e) => e,
        };
        counter!(m::RETAINED_REFUSED).increment(1);
        tracing::debug!(peer = %self.peer, error = %e, "retained message refused");
        if self.v5() {
            return Some(0x97);
        }
        let plain = Arc::new(Message {
            retain: false,
            ..(*message).clone()
        });
        if let Err(e) = self.state.publish(plain) {
            tracing::debug!(peer = %self.peer, error = %e, "not delivered");
        }
        None
    }

    /// Writes what the engine has for this connection, completing the
    /// deliveries the client cannot take until none is left over.
    fn flush_ready(&mut self, out: &mut BytesMut) {
        loop {
            let sends = self.state.ready(&self.client, self.connection);
            if sends.is_empty() || !self.write_sends(out, sends) {
                return;
            }
        }
    }

    /// Encodes `sends` into `out`. A PUBLISH larger than the client's
    /// Maximum Packet Size is dropped and its delivery completed (MQTT 5
    /// §3.1.2.11.4); whether any was (the window then has room again).
    fn write_sends(&mut self, out: &mut BytesMut, sends: Vec<Send>) -> bool {
        let mut completed = Vec::new();
        for send in sends {
            match send {
                Send::Publish(o) => {
                    let encoded = wire::encode(&wire::publish(&o, self.level));
                    match encoded {
                        Ok(bytes) if self.max_out.is_none_or(|max| bytes.len() <= max) => {
                            out.extend_from_slice(&bytes);
                            continue;
                        }
                        Ok(_) => counter!(m::OVERSIZED_DROPPED).increment(1),
                        Err(e) => {
                            tracing::warn!(topic = %o.message.topic, error = %e, "delivery not encoded; dropped")
                        }
                    }
                    match (o.qos, o.packet_id) {
                        (1, Some(id)) => completed.push((Ack::Puback, id)),
                        (2, Some(id)) => completed.push((Ack::PubrecFailed, id)),
                        _ => {}
                    }
                }
                Send::Pubrel(id) => out.extend_from_slice(&codec::ack(codec::PUBREL, id)),
            }
        }
        if completed.is_empty() {
            return false;
        }
        self.state.ack(&self.client, self.connection, &completed);
        true
    }

    async fn on_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), End> {
        let packet = match wire::decode(&frame.bytes, self.level) {
            Ok(p) => p,
            Err(e) => {
                self.ctx.malformed(self.peer, &e);
                return Err(End::Refused(0x81));
            }
        };
        tracing::trace!(peer = %self.peer, client_id = %self.client, packet = packet.packet_type_name(), "received");
        match packet {
            Packet::Publish(p) => self.on_publish(p, frame.bytes.len(), out).await,
            Packet::PubAck(a) => self.on_ack(Ack::Puback, a.packet_id, out),
            Packet::PubRec(a) if u8::from(a.reason_code) >= 0x80 => {
                self.on_ack(Ack::PubrecFailed, a.packet_id, out)
            }
            Packet::PubRec(a) => {
                if self
                    .state
                    .ack(&self.client, self.connection, &[(Ack::Pubrec, a.packet_id)])
                    == [true]
                {
                    out.extend_from_slice(&codec::ack(codec::PUBREL, a.packet_id));
                } else if self.v5() {
                    // 0x92: packet identifier not found.
                    out.extend_from_slice(&pubrel_with_reason(a.packet_id, 0x92));
                }
                Ok(())
            }
            Packet::PubComp(a) => self.on_ack(Ack::Pubcomp, a.packet_id, out),
            Packet::PubRel(r) => {
                let id = r.packet_id;
                if self.qos2(|ids| ids.remove(&id)).unwrap_or(false) || !self.v5() {
                    out.extend_from_slice(&codec::ack(codec::PUBCOMP, id));
                } else {
                    out.extend_from_slice(&codec::ack_with_reason(codec::PUBCOMP, id, 0x92));
                }
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(&s, out),
            Packet::Unsubscribe(u) => self.on_unsubscribe(&u, out),
            Packet::PingReq => {
                out.extend_from_slice(&[codec::PINGRESP << 4, 0]);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(&d)),
            // A second CONNECT, AUTH (no method was agreed), or a packet
            // only a server sends: a protocol error.
            _ => Err(End::Refused(0x82)),
        }
    }

    fn on_ack(&mut self, ack: Ack, id: u16, out: &mut BytesMut) -> Result<(), End> {
        self.state.ack(&self.client, self.connection, &[(ack, id)]);
        // The window may have room now.
        self.flush_ready(out);
        Ok(())
    }

    /// The topic a PUBLISH is for, with its MQTT 5 topic alias resolved
    /// or recorded; a DISCONNECT reason when it has none.
    fn topic(&mut self, p: &PublishPacket) -> Result<Arc<str>, u8> {
        let alias = p.properties.get_topic_alias().filter(|_| self.v5());
        let topic = match alias {
            None if p.topic_name.is_empty() => return Err(0x82),
            None => p.topic_name.as_str().into(),
            // 0x94: topic alias invalid.
            Some(a) if a == 0 || a > TOPIC_ALIAS_MAX => return Err(0x94),
            Some(a) if p.topic_name.is_empty() => {
                return self.aliases.get(&a).cloned().ok_or(0x82);
            }
            Some(a) => {
                let topic: Arc<str> = p.topic_name.as_str().into();
                self.aliases.insert(a, topic.clone());
                topic
            }
        };
        // 0x90: topic name invalid.
        check_name(&topic).map_err(|_| 0x90)?;
        Ok(topic)
    }

    async fn on_publish(
        &mut self,
        p: PublishPacket,
        len: usize,
        out: &mut BytesMut,
    ) -> Result<(), End> {
        crate::supervise::fault::point("gate").await;
        let topic = self.topic(&p).map_err(|code| {
            self.ctx
                .malformed(self.peer, &format!("PUBLISH refused with {code:#x}"));
            End::Refused(code)
        })?;
        let qos = u8::from(p.qos);
        self.ctx.meters.received(qos).increment(1);
        let id = p.packet_id.unwrap_or(0);
        if qos == 2 && self.qos2(|ids| ids.contains(&id)).unwrap_or(false) {
            // Stored already; its PUBREC was lost.
            counter!(m::DUPLICATES_IGNORED).increment(1);
            out.extend_from_slice(&codec::ack(codec::PUBREC, id));
            return Ok(());
        }
        if qos > 0 && self.pending.iter().any(|q| q.id == id) {
            counter!(m::DUPLICATES_IGNORED).increment(1);
            return Ok(());
        }
        let unreleased = self.qos2(|ids| ids.len()).unwrap_or(0);
        if qos > 0 && self.pending.len() + unreleased >= self.ctx.max_inflight {
            // More unacknowledged QoS 1/2 than the Receive Maximum we gave
            // (MQTT 3.1.1 has no code for it: the connection just closes).
            return Err(End::Refused(0x93));
        }
        let message = Arc::new(wire::message(
            &p,
            topic.clone(),
            &self.client,
            Instant::now(),
        ));
        let sink_message = ingest::Message {
            topic: topic.to_string(),
            payload: p.payload,
            qos: QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce),
            source: Source::Broker {
                client_id: self.client.to_string(),
            },
        };
        let held = match self.reserve(len).await {
            Ok(held) => held,
            // Shutting down while it waited for room: it is not taken (nor
            // acknowledged, so the client sends it again); the loop settles
            // what is pending.
            Err(UpEnd::Shutdown) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let commit = self.ctx.submit(held, sink_message).await;
        if qos == 0 {
            self.publish(message);
            return Ok(());
        }
        self.pending.push_back(Pending {
            id,
            qos,
            message,
            commit,
            since: Instant::now(),
        });
        Ok(())
    }

    /// Room for a PUBLISH of `len` bytes (see [`Shared::reserve`]). While
    /// it waits, this connection's pending commits are polled: each gives
    /// its room back as it settles, which nobody else would do while the
    /// connection waits here.
    async fn reserve(&mut self, len: usize) -> Result<Held, UpEnd> {
        let ctx = self.ctx;
        let permits = self.permits.clone();
        let pending = &mut self.pending;
        let settle = std::future::poll_fn(|cx| {
            for p in pending.iter_mut() {
                let _ = Pin::new(&mut p.commit).poll(cx);
            }
            Poll::<std::convert::Infallible>::Pending
        });
        tokio::select! {
            biased;
            held = ctx.reserve(&permits, len) => held,
            never = settle => match never {},
        }
    }

    fn on_subscribe(&mut self, s: &SubscribePacket, out: &mut BytesMut) -> Result<(), End> {
        let id = s.properties.get_subscription_identifier();
        let mut ack = if self.v5() {
            SubAckPacket::new(s.packet_id)
        } else {
            SubAckPacket::new_v311(s.packet_id)
        };
        for f in &s.filters {
            let code = match Filter::parse(&f.filter) {
                Err(_) => SubAckReasonCode::TopicFilterInvalid,
                Ok(filter) => match self.state.subscribe(
                    &self.client,
                    self.connection,
                    &filter,
                    wire::sub_options(f, id),
                ) {
                    Ok(()) => SubAckReasonCode::from_qos(f.options.qos),
                    Err(SubscribeError::Quota { .. }) => SubAckReasonCode::QuotaExceeded,
                    Err(SubscribeError::SharedNoLocal) => return Err(End::Refused(0x82)),
                    Err(SubscribeError::NoSession) => return Err(End::TakenOver),
                    Err(SubscribeError::Qos(_) | SubscribeError::RetainHandling(_)) => {
                        return Err(End::Refused(0x82));
                    }
                },
            };
            ack = ack.add_reason_code(code);
        }
        // The SUBACK goes out before the retained messages (queued for the
        // next flush).
        encode_into(out, &ack);
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: &UnsubscribePacket, out: &mut BytesMut) -> Result<(), End> {
        let mut ack = if self.v5() {
            UnsubAckPacket::new(u.packet_id)
        } else {
            UnsubAckPacket::new_v311(u.packet_id)
        };
        for f in &u.filters {
            let code = match Filter::parse(f) {
                Err(_) => UnsubAckReasonCode::TopicFilterInvalid,
                Ok(filter)
                    if self
                        .state
                        .unsubscribe(&self.client, self.connection, &filter) =>
                {
                    UnsubAckReasonCode::Success
                }
                Ok(_) => UnsubAckReasonCode::NoSubscriptionExisted,
            };
            ack = ack.add_reason_code(code);
        }
        encode_into(out, &ack);
        Ok(())
    }

    fn on_disconnect(&mut self, d: &DisconnectPacket) -> End {
        // Only a normal disconnection (0x00) drops the will (MQTT 5
        // §3.1.2.5); 0x04 and every error code publish it.
        let how = if d.reason_code == ReasonCode::Success {
            Ended::Normal
        } else {
            Ended::WithWill
        };
        let expiry = d.properties.get_session_expiry_interval().map(|s| match s {
            u32::MAX => Expiry::Never,
            s => Expiry::After(Duration::from_secs(u64::from(s))),
        });
        let protocol_error = self
            .state
            .disconnect(&self.client, self.connection, how, expiry);
        self.told = true;
        if protocol_error {
            End::Refused(0x82)
        } else {
            End::Disconnected
        }
    }
}

fn encode_into(out: &mut BytesMut, packet: &impl mqtt5_protocol::packet::MqttPacket) {
    match wire::encode(packet) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(e) => tracing::warn!(error = %e, "packet not encoded"),
    }
}

/// An MQTT 5 PUBREL with a reason code.
fn pubrel_with_reason(id: u16, reason: u8) -> bytes::Bytes {
    let [hi, lo] = id.to_be_bytes();
    bytes::Bytes::from(vec![codec::PUBREL << 4 | 0x02, 0x03, hi, lo, reason])
}
