//! The seam between the sources (broker, upstream subscriptions, serial
//! pollers) and the durable buffer.
//!
//! A source hands each message to an [`IngestSink`] and may acknowledge the
//! message to its sender only once the returned future resolves with
//! [`Accepted::Stored`]. For durable messages (MQTT QoS 1/2, serial readings)
//! that means the readings are committed to SQLite; for best-effort messages
//! (QoS 0) it means they are queued in memory for at most `qos0_max_delay`.

use std::future::Future;

use bytes::Bytes;
use ferry_protocols::{DatabaseName, Reading};

/// How much a sender was promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// MQTT QoS 0: may wait in memory for up to `store.qos0_max_delay`, and
    /// is dropped first under disk pressure.
    BestEffort,
    /// MQTT QoS 1/2 and serial readings: committed before acknowledged.
    Durable,
}

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(q: u8) -> Option<QoS> {
        match q {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub fn durability(self) -> Durability {
        match self {
            QoS::AtMostOnce => Durability::BestEffort,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Durability::Durable,
        }
    }
}

/// Where a message came from, for metrics and dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A client of the embedded broker.
    Broker { client_id: String },
    /// An `[[mqtt.upstream]]` subscription, by name.
    Upstream { name: String },
}

/// An MQTT message as a source received it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub source: Source,
}

/// A decoded reading bound for a database.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub database: DatabaseName,
    pub reading: Reading,
}

/// What happened to a message handed to an [`IngestSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored as promised (or kept as a dead letter); acknowledge it.
    Stored,
    /// No route matched; nothing to store. Acknowledge it (the broker still
    /// delivers it to other subscribers).
    Unrouted,
    /// The buffer is full under `when_full = "reject_new"`, or the disk
    /// failed: do not acknowledge.
    Rejected(RejectReason),
}

/// Why a message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `store.max_bytes` is reached and `when_full = "reject_new"`.
    Full,
    /// The buffer could not be written (ENOSPC, read-only disk, I/O error).
    StorageError,
    /// The agent is shutting down.
    ShuttingDown,
}

/// Where sources hand messages. Implemented by the router in front of the
/// store; tests implement it with an in-memory recorder.
///
/// Taking a message has two steps, so that a connection can keep many in
/// flight without a task for each: [`submit`](IngestSink::submit) routes,
/// decodes and queues it (waiting while the buffer's queue is full), and
/// the [`Outcome`](IngestSink::Outcome) it hands back settles once the
/// message may be acknowledged (see the module docs). The write goes on
/// whether or not the outcome is still held.
pub trait IngestSink: Clone + Send + Sync + 'static {
    /// A submitted message until its write settles. It does no work of its
    /// own when polled, only waits.
    type Outcome: Future<Output = Accepted> + Send + Unpin + 'static;

    /// Takes one message; resolves once it is queued.
    fn submit(&self, message: Message) -> impl Future<Output = Self::Outcome> + Send;

    /// Takes one message; resolves once it may be acknowledged.
    fn ingest(&self, message: Message) -> impl Future<Output = Accepted> + Send {
        async move { self.submit(message).await.await }
    }
}
