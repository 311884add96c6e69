//! The order of a client's packets on their way to rumqttd.
//!
//! Each packet goes on at once, except a QoS 2 PUBLISH: it waits in the gate
//! until its commit resolves, and whatever the client sent after it waits
//! behind it, so rumqttd sees the client's packets in their order. Packets
//! of other flows pass it ([`Queued::Now`]): the client's acks of
//! deliveries, its PINGREQs, and the PUBREL of a message rumqttd already
//! holds (held back, each would hold the client's in-flight window for
//! the length of a later message's commit). rumqttd
//! holds a QoS 2 message until a PUBREL and delivers the oldest it holds on
//! the next one, so a message whose commit was refused must never reach it:
//! its local subscribers would get the refused message and be one message
//! out of step from then on. The refusal's PUBREC (MQTT 5) is the gate's
//! own, handed to the broker→client half to write.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use metrics::{counter, histogram};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, Frame};
use super::gate::{Conn, Shared, Slot, UpEnd};
use super::gate_down::{Verdict, refused};
use super::metrics as m;
use crate::ingest::Accepted;

/// What the client sent that rumqttd may not see yet.
pub(super) enum Queued {
    Frame(Frame),
    /// A packet outside the order of the client's publishes (an ack of a
    /// delivery, a PUBREL of a message rumqttd holds, a PINGREQ): it passes
    /// a withheld QoS 2 PUBLISH, unless it is a PUBREL whose PUBLISH (a
    /// resent copy) waits here too.
    Now(Frame),
    /// A QoS 2 PUBLISH whose commit is pending.
    Qos2(Withheld),
}

pub(super) struct Withheld {
    pub(super) pkid: u16,
    pub(super) frame: Frame,
    pub(super) commit: oneshot::Receiver<Accepted>,
    pub(super) since: Instant,
    /// Counted in `ACKS_HELD`.
    pub(super) held: bool,
}

/// The client's packets in their order on the way to rumqttd: each goes on
/// at once, except that a QoS 2 PUBLISH waits for its commit, and whatever
/// came after it waits behind it.
pub(super) struct Upstream<'a, W, S> {
    pub(super) broker: &'a mut W,
    conn: &'a Conn,
    ctx: &'a Shared<S>,
    to_client: &'a mpsc::Sender<Bytes>,
    /// The QoS 2 PUBLISH at the head, waiting for its commit.
    head: Option<Withheld>,
    /// What came after it.
    queue: VecDeque<Queued>,
}

impl<'a, W: AsyncWrite + Unpin, S> Upstream<'a, W, S> {
    pub(super) fn new(
        broker: &'a mut W,
        conn: &'a Conn,
        ctx: &'a Shared<S>,
        to_client: &'a mpsc::Sender<Bytes>,
    ) -> Self {
        Upstream {
            broker,
            conn,
            ctx,
            to_client,
            head: None,
            queue: VecDeque::new(),
        }
    }

    /// Whether the queue has room for another packet from the client
    /// (QoS 1/2 publishes are bounded by `max_inflight` already; this bounds
    /// everything else behind a pending commit).
    pub(super) fn has_room(&self) -> bool {
        self.queue.len() < self.ctx.max_inflight.saturating_mul(2).max(32)
    }

    pub(super) async fn push(&mut self, item: Queued) -> Result<(), UpEnd> {
        if let Queued::Now(frame) = &item
            && !self.holds_publish_of(frame)
        {
            return self.forward(frame).await;
        }
        if self.head.is_some() {
            self.queue.push_back(item);
            return Ok(());
        }
        match item {
            Queued::Qos2(w) => {
                self.head = Some(w);
                Ok(())
            }
            Queued::Frame(frame) | Queued::Now(frame) => self.forward(&frame).await,
        }
    }

    /// Whether a PUBREL's own PUBLISH still waits here: a QoS 2 DUP the
    /// client sent again before it had the PUBREC. The PUBREL stays behind
    /// it, so that rumqttd never gets a message's PUBREL before a copy of it.
    fn holds_publish_of(&self, frame: &Frame) -> bool {
        if frame.packet_type() != codec::PUBREL {
            return false;
        }
        let Ok(pkid) = frame.ack_pkid() else {
            return false;
        };
        self.head.as_ref().is_some_and(|w| w.pkid == pkid)
            || self.queue.iter().any(|q| match q {
                Queued::Qos2(w) => w.pkid == pkid,
                Queued::Frame(f) | Queued::Now(f) => {
                    f.packet_type() == codec::PUBLISH
                        && codec::publish_qos_pkid(f).is_ok_and(|(qos, p)| qos > 0 && p == pkid)
                }
            })
    }

    async fn forward(&mut self, frame: &Frame) -> Result<(), UpEnd> {
        if self.broker.write_all(&frame.bytes).await.is_err() {
            return Err(UpEnd::Closed);
        }
        if frame.packet_type() == codec::DISCONNECT {
            return Err(UpEnd::Disconnected);
        }
        Ok(())
    }

    /// Waits for the head's commit (if any).
    pub(super) async fn head_resolved(&mut self) -> Result<Accepted, ()> {
        match self.head.as_mut() {
            Some(w) => {
                if !w.held {
                    match w.commit.try_recv() {
                        Ok(accepted) => return Ok(accepted),
                        Err(oneshot::error::TryRecvError::Closed) => return Err(()),
                        // The PUBREC has to wait for this commit.
                        Err(oneshot::error::TryRecvError::Empty) => {
                            w.held = true;
                            counter!(m::ACKS_HELD).increment(1);
                        }
                    }
                }
                (&mut w.commit).await.map_err(|_| ())
            }
            None => std::future::pending().await,
        }
    }

    /// The head's commit resolved: hand it on or refuse it, then everything
    /// up to the next QoS 2 PUBLISH.
    pub(super) async fn settle(&mut self, result: Result<Accepted, ()>) -> Result<(), UpEnd> {
        let Some(w) = self.head.take() else {
            return Ok(());
        };
        histogram!(m::ACK_HOLD_SECONDS).record(w.since.elapsed().as_secs_f64());
        let verdict = {
            let mut slots = self.conn.slots();
            match result {
                Ok(Accepted::Stored | Accepted::Unrouted) => {
                    slots.0.insert(w.pkid, Slot::Passed);
                    Verdict::Forward
                }
                Ok(Accepted::Rejected(reason)) => {
                    slots.0.remove(&w.pkid);
                    refused(reason, w.pkid, self.conn)
                }
                Err(()) => Verdict::Close,
            }
        };
        match verdict {
            Verdict::Forward => self.forward(&w.frame).await?,
            Verdict::Rewrite(code) => {
                let ack = codec::ack_with_reason(codec::PUBREC, w.pkid, code);
                if self.to_client.send(ack).await.is_err() {
                    return Err(UpEnd::Closed);
                }
            }
            Verdict::Close => return Err(UpEnd::Closed),
        }
        while self.head.is_none() {
            match self.queue.pop_front() {
                None => break,
                Some(Queued::Qos2(next)) => self.head = Some(next),
                Some(Queued::Frame(frame) | Queued::Now(frame)) => self.forward(&frame).await?,
            }
        }
        Ok(())
    }

    /// Hands on everything still held back, waiting for its commits (cut
    /// short by the hard stop), then ends with `end`.
    pub(super) async fn drain(&mut self, end: UpEnd) -> UpEnd {
        let hard_stop = self.ctx.hard_stop.clone();
        while self.head.is_some() {
            let result = tokio::select! {
                r = self.head_resolved() => r,
                _ = hard_stop.cancelled() => return UpEnd::Closed,
            };
            if let Err(early) = self.settle(result).await {
                return early;
            }
        }
        end
    }
}
