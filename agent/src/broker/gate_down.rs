//! The broker→client half of a gate connection: rumqttd's packets go to
//! the client in their order, except that a PUBACK/PUBREC waits for the
//! commit of its PUBLISH (and everything after it waits too), a refused
//! commit's acknowledgement is rewritten or the connection closed, packets
//! too large for the client are dropped ([`super::max_packet`]), deliveries
//! past the client's Receive Maximum wait ([`super::flow`]), and the gate's
//! own packets from the other half are written in between.

use std::time::Instant;

use bytes::Bytes;
use metrics::{counter, histogram};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, FrameReader};
use super::gate::{Conn, Shared, Slot};
use super::max_packet::Outgoing;
use super::metrics as m;
use crate::ingest::{Accepted, RejectReason};

pub(super) enum DownEnd {
    /// Shutting down and every pending acknowledgement was forwarded.
    Drained,
    /// Broker or client closed, or the connection was closed on purpose.
    Closed,
}

/// What to do with a held acknowledgement.
pub(super) enum Verdict {
    Forward,
    Rewrite(u8),
    Close,
}

pub(super) async fn broker_to_client<R, W, S>(
    reader: &mut FrameReader<R>,
    from_up: &mut mpsc::Receiver<Bytes>,
    to_broker: &mpsc::Sender<Bytes>,
    client: &mut W,
    conn: &Conn,
    ctx: &Shared<S>,
) -> DownEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut draining = false;
    loop {
        if draining && conn.slots().outstanding() == 0 && from_up.is_empty() {
            return DownEnd::Drained;
        }
        let frame = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => return DownEnd::Closed,
            _ = ctx.shutdown.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            () = conn.flow.room(), if conn.flow.limited() => {
                for frame in conn.flow.released() {
                    if client.write_all(&frame.bytes).await.is_err() {
                        return DownEnd::Closed;
                    }
                }
                if client.flush().await.is_err() {
                    return DownEnd::Closed;
                }
                continue;
            }
            Some(own) = from_up.recv() => {
                if client.write_all(&own).await.is_err() || client.flush().await.is_err() {
                    return DownEnd::Closed;
                }
                continue;
            }
            r = reader.next() => r,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return DownEnd::Closed,
        };
        let ptype = frame.packet_type();
        if conn.stand_in.answered(ptype) {
            continue;
        }
        if let Outgoing::Drop(answer) = conn.max_packet.outgoing(&frame) {
            if let Some(answer) = answer {
                // The client→broker half is gone only when the connection
                // is ending.
                let _ = to_broker.send(answer).await;
            }
            continue;
        }
        // Past the client's Receive Maximum, a delivery waits.
        let Some(frame) = conn.flow.outgoing(frame) else {
            continue;
        };
        let mut out: Bytes = frame.bytes.clone();
        if ptype == codec::PUBACK || ptype == codec::PUBREC {
            let Ok(pkid) = frame.ack_pkid() else {
                return DownEnd::Closed;
            };
            match hold(pkid, conn, ctx).await {
                Verdict::Forward => {}
                Verdict::Rewrite(reason) => out = codec::ack_with_reason(ptype, pkid, reason),
                Verdict::Close => return DownEnd::Closed,
            }
        }
        if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
            return DownEnd::Closed;
        }
    }
}

/// Waits until the commit behind packet id `pkid` resolves.
async fn hold<S>(pkid: u16, conn: &Conn, ctx: &Shared<S>) -> Verdict {
    let (mut rx, qos) = {
        let mut slots = conn.slots();
        match slots.0.remove(&pkid) {
            Some(Slot::Committing { rx, qos }) => {
                slots.0.insert(pkid, Slot::Held);
                (rx, qos)
            }
            Some(Slot::Passed) => {
                slots.0.insert(pkid, Slot::AwaitingRel);
                return Verdict::Forward;
            }
            Some(other) => {
                slots.0.insert(pkid, other);
                return Verdict::Forward;
            }
            None => return Verdict::Forward,
        }
    };
    let started = Instant::now();
    let result = match rx.try_recv() {
        Ok(result) => Ok(result),
        Err(oneshot::error::TryRecvError::Closed) => Err(()),
        Err(oneshot::error::TryRecvError::Empty) => {
            counter!(m::ACKS_HELD).increment(1);
            tokio::select! {
                r = rx => r.map_err(|_| ()),
                _ = ctx.hard_stop.cancelled() => Err(()),
            }
        }
    };
    histogram!(m::ACK_HOLD_SECONDS).record(started.elapsed().as_secs_f64());
    tracing::trace!(peer = %conn.peer, pkid, ?result, held = ?started.elapsed(), "commit resolved");
    let mut slots = conn.slots();
    match result {
        Ok(Accepted::Stored | Accepted::Unrouted) => {
            if qos == 2 {
                slots.0.insert(pkid, Slot::AwaitingRel);
            } else {
                slots.0.remove(&pkid);
            }
            Verdict::Forward
        }
        Ok(Accepted::Rejected(reason)) => {
            slots.0.remove(&pkid);
            refused(reason, pkid, conn)
        }
        Err(()) => Verdict::Close,
    }
}

/// What a refused commit becomes: a reason code on MQTT 5 (0x97 quota
/// exceeded for a full buffer, 0x80 for a storage error), the connection
/// closed without an acknowledgement on 3.1.1 (the client retransmits), and
/// closed on both when the agent is going away (the client retries against
/// the next instance instead of giving up on the message).
pub(super) fn refused(reason: RejectReason, pkid: u16, conn: &Conn) -> Verdict {
    let code = match reason {
        RejectReason::Full => 0x97,
        RejectReason::StorageError => 0x80,
        RejectReason::ShuttingDown => {
            counter!(m::ACKS_REJECTED, "action" => "disconnect").increment(1);
            return Verdict::Close;
        }
    };
    tracing::debug!(peer = %conn.peer, pkid, ?reason, v5 = conn.v5, "commit rejected");
    if conn.v5 {
        counter!(m::ACKS_REJECTED, "action" => "reason_code").increment(1);
        Verdict::Rewrite(code)
    } else {
        counter!(m::ACKS_REJECTED, "action" => "disconnect").increment(1);
        Verdict::Close
    }
}
