//! One session's outgoing messages: the queue, the packet ids and the
//! in-flight window of QoS 1 and 2 deliveries (MQTT 5 §4.3, §4.4, §4.9;
//! MQTT 3.1.1 §4.3, §4.4).
//!
//! - A delivery's QoS is the lower of the published QoS and the QoS the
//!   subscription granted (MQTT 5 §3.8.4; rumqttd used the subscription's).
//! - QoS 1 and 2 deliveries go out while fewer than the window are
//!   unacknowledged: the client's Receive Maximum (65,535 for 3.1.1), at
//!   most `max_inflight` (Mosquitto's `max_inflight_messages`); the rest
//!   wait in the queue in order. QoS 0 deliveries need no room in the
//!   window and go out at once, past QoS 1/2 ones that wait (as Mosquitto
//!   sends them).
//! - The queue is bounded by messages and bytes (`max_queued`,
//!   `max_queued_bytes`); a delivery past either bound is dropped and
//!   counted, as Mosquitto drops past `max_queued_messages`. While the
//!   client is offline, QoS 0 deliveries are not queued at all (Mosquitto's
//!   `queue_qos0_messages false`).
//! - A message with an MQTT 5 expiry that has passed is dropped instead of
//!   sent, also when it would be sent again after a reconnect; one still in
//!   time goes out with the interval that is left at that moment.
//! - On reconnect with the session kept, unacknowledged PUBLISHes go out
//!   again with DUP set, and PUBRELs for those whose PUBREC arrived, in
//!   their first order (MQTT 5 §4.4).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use mqtt5_protocol::Properties;

/// A published message as the engine keeps it, shared by every session it
/// goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: u8,
    pub retain: bool,
    /// When its MQTT 5 Message Expiry Interval runs out.
    pub expires: Option<Instant>,
    /// The client that published it (`None` for the broker's own, such as
    /// a will).
    pub publisher: Option<Arc<str>>,
    /// The MQTT 5 properties passed on to subscribers as published
    /// (payload format, content type, response topic, correlation data,
    /// user properties); never a topic alias, subscription identifier or
    /// expiry interval, which each delivery sets for itself.
    pub properties: Properties,
}

impl Message {
    /// What the message counts against a queue's byte bound.
    pub fn bytes(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// The outbox's bounds (each at least 1).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deliveries queued, not yet written.
    pub max_queued: usize,
    /// Bytes of those (topic and payload).
    pub max_queued_bytes: usize,
    /// QoS 1/2 deliveries written and unacknowledged, whatever Receive
    /// Maximum the client asks for.
    pub max_inflight: u16,
}

/// The bytes queued in every session's outbox together, against one bound
/// (`mqtt.max_queued_total_bytes`): per-session bounds times the number of
/// sessions is no bound for a gateway. Shared by the outboxes of one
/// engine; a delivery that would pass it is dropped like one past the
/// session's own bound.
#[derive(Debug, Clone)]
pub struct QueueBudget {
    used: Arc<AtomicUsize>,
    max: usize,
    /// Deliveries dropped at a bound and expired before they went out, in
    /// every outbox ever (for the broker's counters).
    dropped: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
}

impl QueueBudget {
    pub fn new(max: usize) -> Self {
        QueueBudget {
            used: Arc::new(AtomicUsize::new(0)),
            max,
            dropped: Arc::default(),
            expired: Arc::default(),
        }
    }

    /// Deliveries dropped at a bound (or QoS 0 for an offline client), all
    /// outboxes, ever.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Deliveries that expired before they went out, all outboxes, ever.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Bytes queued now, all sessions together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.max)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// One PUBLISH (or PUBREL) to write to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    Publish(Outgoing),
    /// A PUBREL for this packet id (after a reconnect).
    Pubrel(u16),
}

/// A PUBLISH to write: the message, the QoS and flags of this delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub message: Arc<Message>,
    pub qos: u8,
    /// `None` for QoS 0.
    pub packet_id: Option<u16>,
    pub retain: bool,
    pub dup: bool,
    /// Subscription identifiers to carry.
    pub ids: Vec<u32>,
    /// Seconds of the expiry interval left, rounded up (MQTT 5 §3.3.2.3.3).
    pub expiry_left: Option<u32>,
}

/// Where an in-flight delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 sent, PUBACK awaited.
    Puback,
    /// QoS 2 sent, PUBREC awaited.
    Pubrec,
    /// PUBREL sent, PUBCOMP awaited.
    Pubcomp,
}

#[derive(Debug)]
struct Queued {
    message: Arc<Message>,
    qos: u8,
    retain: bool,
    ids: Vec<u32>,
}

/// What became of a delivery handed to [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was at a bound.
    DroppedFull,
    /// QoS 0 for an offline client.
    DroppedOffline,
}

/// Seconds of `message`'s expiry interval left at `now`, rounded up
/// (`Some(None)`: it has none); `None` once it has expired.
fn left(message: &Message, now: Instant) -> Option<Option<u32>> {
    match message.expires {
        None => Some(None),
        Some(at) if at <= now => None,
        Some(at) => Some(Some(
            u32::try_from((at - now).as_millis().div_ceil(1000)).unwrap_or(u32::MAX),
        )),
    }
}

/// One session's outgoing side; see the module docs.
#[derive(Debug)]
pub struct Outbox {
    limits: Limits,
    receive_maximum: u16,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    budget: QueueBudget,
    /// By packet id: the stage, the order the PUBLISH first went out in
    /// (a sequence number), and what was written.
    inflight: BTreeMap<u16, (Stage, u64, Outgoing)>,
    next_seq: u64,
    next_id: u16,
    online: bool,
    /// Deliveries dropped at a bound, and expired before they went out.
    pub dropped: u64,
    pub expired: u64,
}

impl Outbox {
    /// An empty outbox for a client online now with this Receive Maximum.
    pub fn new(limits: Limits, receive_maximum: u16) -> Self {
        Self::with_budget(limits, receive_maximum, QueueBudget::new(usize::MAX))
    }

    /// An empty outbox whose queue also counts against `budget`.
    pub fn with_budget(limits: Limits, receive_maximum: u16, budget: QueueBudget) -> Self {
        Outbox {
            budget,
            limits,
            receive_maximum: receive_maximum.clamp(1, limits.max_inflight.max(1)),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: BTreeMap::new(),
            next_seq: 0,
            next_id: 1,
            online: true,
            dropped: 0,
            expired: 0,
        }
    }

    /// Queues `message` for this session at `granted` QoS (the
    /// subscription's); `retain` is the RETAIN flag to send.
    pub fn push(
        &mut self,
        message: Arc<Message>,
        granted: u8,
        retain: bool,
        ids: Vec<u32>,
    ) -> Pushed {
        let qos = message.qos.min(granted);
        if qos == 0 && !self.online {
            self.note_dropped(1);
            return Pushed::DroppedOffline;
        }
        let bytes = message.bytes();
        if self.queue.len() >= self.limits.max_queued
            || self.queued_bytes + bytes > self.limits.max_queued_bytes
            || !self.budget.take(bytes)
        {
            self.note_dropped(1);
            return Pushed::DroppedFull;
        }
        self.queued_bytes += bytes;
        self.queue.push_back(Queued {
            message,
            qos,
            retain,
            ids,
        });
        Pushed::Queued
    }

    /// What may be written now: queued deliveries in order while the
    /// window has room, QoS 0 ones at once; expired ones dropped.
    pub fn ready(&mut self, now: Instant) -> Vec<Send> {
        let mut out = Vec::new();
        if !self.online {
            return out;
        }
        let mut waiting = VecDeque::new();
        while let Some(q) = self.queue.pop_front() {
            let full = self.inflight.len() >= usize::from(self.receive_maximum);
            if q.qos > 0 && (full || !waiting.is_empty()) {
                // Keeps QoS 1/2 in order behind the first that waits.
                waiting.push_back(q);
                continue;
            }
            self.queued_bytes -= q.message.bytes();
            self.budget.give(q.message.bytes());
            let Some(expiry_left) = left(&q.message, now) else {
                self.note_expired();
                continue;
            };
            let packet_id = (q.qos > 0).then(|| self.allocate());
            let outgoing = Outgoing {
                message: q.message,
                qos: q.qos,
                packet_id,
                retain: q.retain,
                dup: false,
                ids: q.ids,
                expiry_left,
            };
            if let Some(id) = packet_id {
                let stage = if q.qos == 1 {
                    Stage::Puback
                } else {
                    Stage::Pubrec
                };
                self.inflight
                    .insert(id, (stage, self.next_seq, outgoing.clone()));
                self.next_seq += 1;
            }
            out.push(Send::Publish(outgoing));
        }
        self.queue = waiting;
        out
    }

    /// The client's PUBACK; whether it acknowledged a QoS 1 delivery.
    pub fn puback(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Puback)
    }

    /// The client's PUBREC; whether a PUBREL is to be sent for it.
    pub fn pubrec(&mut self, id: u16) -> bool {
        match self.inflight.get_mut(&id) {
            Some((stage @ Stage::Pubrec, _, _)) => {
                *stage = Stage::Pubcomp;
                true
            }
            // A repeated PUBREC for a PUBREL already sent: send it again.
            Some((Stage::Pubcomp, _, _)) => true,
            _ => false,
        }
    }

    /// The client's PUBCOMP; whether it completed a QoS 2 delivery.
    pub fn pubcomp(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Pubcomp)
    }

    /// A QoS 2 delivery whose PUBREC carried a failure reason (MQTT 5):
    /// the exchange ends there (MQTT 5 §4.3.3).
    pub fn pubrec_failed(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Pubrec)
    }

    fn finish(&mut self, id: u16, want: Stage) -> bool {
        match self.inflight.get(&id) {
            Some((stage, _, _)) if *stage == want => {
                self.inflight.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// The connection ended; the session is kept (QoS 0 deliveries still
    /// queued are dropped, as Mosquitto does).
    pub fn offline(&mut self) {
        self.online = false;
        let before = self.queue.len();
        self.queue.retain(|q| q.qos > 0);
        let gone = before - self.queue.len();
        self.note_dropped(gone as u64);
        let kept: usize = self.queue.iter().map(|q| q.message.bytes()).sum();
        self.budget.give(self.queued_bytes - kept);
        self.queued_bytes = kept;
    }

    /// The client reconnected to this session with `receive_maximum`:
    /// what was in flight goes out again first, in its first order
    /// (PUBLISH with DUP and the expiry left now, or PUBREL; an expired
    /// PUBLISH is dropped), then what [`Outbox::ready`] gives.
    pub fn resume(&mut self, receive_maximum: u16, now: Instant) -> Vec<Send> {
        self.online = true;
        self.receive_maximum = receive_maximum.clamp(1, self.limits.max_inflight.max(1));
        let mut order: Vec<(u64, u16)> = self
            .inflight
            .iter()
            .map(|(id, (_, seq, _))| (*seq, *id))
            .collect();
        order.sort_unstable();
        let mut out = Vec::new();
        for (_, id) in order {
            let Some((stage, _, outgoing)) = self.inflight.get(&id) else {
                continue;
            };
            match stage {
                Stage::Pubcomp => out.push(Send::Pubrel(id)),
                Stage::Puback | Stage::Pubrec => match left(&outgoing.message, now) {
                    Some(expiry_left) => out.push(Send::Publish(Outgoing {
                        dup: true,
                        expiry_left,
                        ..outgoing.clone()
                    })),
                    None => {
                        self.inflight.remove(&id);
                        self.note_expired();
                    }
                },
            }
        }
        out.extend(self.ready(now));
        out
    }

    /// Deliveries queued (not yet written).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes queued, as counted against `max_queued_bytes`.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// QoS 1 and 2 deliveries written and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes of the deliveries in flight (kept until acknowledged, also
    /// while the client is offline; at most `max_inflight` of them).
    pub fn in_flight_bytes(&self) -> usize {
        self.inflight
            .values()
            .map(|(_, _, o)| o.message.bytes())
            .sum()
    }

    fn note_dropped(&mut self, n: u64) {
        self.dropped += n;
        self.budget.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn note_expired(&mut self) {
        self.expired += 1;
        self.budget.expired.fetch_add(1, Ordering::Relaxed);
    }

    /// The shared budget this outbox's queue counts against.
    pub fn budget(&self) -> &QueueBudget {
        &self.budget
    }

    /// The next free packet id (1..=65,535, skipping those in flight; the
    /// window is at most 65,535, so one is always free when called).
    fn allocate(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) {
                return id;
            }
        }
    }
}

impl Drop for Outbox {
    /// A session that ends gives its queue's bytes back to the budget.
    fn drop(&mut self) {
        self.budget.give(self.queued_bytes);
    }
}
