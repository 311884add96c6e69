//! Metric names of the broker and the upstream subscriptions, in one place.

/// Gauge: client connections open through the gate.
pub const CONNECTIONS: &str = "ferry_broker_connections";
/// Counter: connections refused (auth, protocol, limit); label `reason`.
pub const CONNECTIONS_REFUSED: &str = "ferry_broker_connections_refused_total";
/// Counter: PUBLISH packets received from clients; label `qos`.
pub const PUBLISHES_RECEIVED: &str = "ferry_broker_publishes_received_total";
/// Counter: duplicate QoS 1/2 PUBLISH not stored again (packet id still
/// pending or awaiting PUBREL).
pub const DUPLICATES_IGNORED: &str = "ferry_broker_duplicate_publishes_total";
/// Counter: PUBACK/PUBREC held back until their commit resolved.
pub const ACKS_HELD: &str = "ferry_broker_acks_held_total";
/// Histogram (seconds): how long an acknowledgement was held.
pub const ACK_HOLD_SECONDS: &str = "ferry_broker_ack_hold_seconds";
/// Counter: commits that resolved `Rejected`; label `action`
/// (`reason_code` for MQTT 5, `disconnect` otherwise).
pub const ACKS_REJECTED: &str = "ferry_broker_acks_rejected_total";
/// Counter: connections closed because of a malformed or oversized packet.
pub const MALFORMED_PACKETS: &str = "ferry_broker_malformed_packets_total";
/// Counter: loopback connections rumqttd closed before its CONNACK; the
/// client id was retired and the connection retried (see `client_ids`).
pub const CLIENT_IDS_RETIRED: &str = "ferry_broker_client_ids_retired_total";
/// Gauge: upstream subscriptions currently connected; label `upstream`.
pub const UPSTREAM_CONNECTED: &str = "ferry_upstream_connected";
/// Counter: messages received from upstream brokers; label `upstream`.
pub const UPSTREAM_MESSAGES: &str = "ferry_upstream_messages_total";
/// Counter: upstream messages the sink rejected (left unacknowledged for
/// redelivery); label `upstream`.
pub const UPSTREAM_REJECTED: &str = "ferry_upstream_rejected_total";
/// Counter: sessions an upstream broker ended by sending faster than the
/// buffer took its messages (reconnected; the broker redelivers what was
/// not acknowledged); label `upstream`.
pub const UPSTREAM_OVERFLOWS: &str = "ferry_upstream_overflows_total";
/// Counter: PINGREQs the gate sent to the embedded broker for a client
/// connected without keep alive (0) and silent for 9 hours.
pub const STAND_IN_PINGS: &str = "ferry_broker_stand_in_pings_total";
/// Gauge: bytes of publishes whose commit is pending, all connections
/// (bounded by `mqtt.max_inflight_bytes`).
pub const INFLIGHT_BYTES: &str = "ferry_broker_inflight_bytes";
/// Counter: publishes that waited for room under `mqtt.max_inflight_bytes`
/// (the gate stopped reading from their connection meanwhile).
pub const INFLIGHT_BYTES_WAITS: &str = "ferry_broker_inflight_bytes_waits_total";
/// Counter: packets from the broker dropped because they exceed the
/// client's MQTT 5 Maximum Packet Size (QoS 1/2 completed in its place).
pub const OVERSIZED_DROPPED: &str = "ferry_broker_oversized_dropped_total";
/// Gauge (`mqtt.engine = "ferry"`): sessions held, connected or kept for a
/// client that is away (bounded by `mqtt.max_sessions`).
pub const SESSIONS: &str = "ferry_broker_sessions";
/// Gauge: subscriptions held, all sessions.
pub const SUBSCRIPTIONS: &str = "ferry_broker_subscriptions";
/// Gauge: retained messages held (`mqtt.max_retained_messages`).
pub const RETAINED_MESSAGES: &str = "ferry_broker_retained_messages";
/// Gauge: bytes of the retained messages held (`mqtt.max_retained_bytes`).
pub const RETAINED_BYTES: &str = "ferry_broker_retained_bytes";
/// Gauge: bytes of deliveries queued for subscribers, all sessions
/// (`mqtt.max_queued_total_bytes`).
pub const QUEUED_BYTES: &str = "ferry_broker_queued_bytes";
/// Counter: deliveries to subscribers dropped at a queue bound
/// (`mqtt.max_queued_messages`, `max_queued_bytes`, `max_queued_total_bytes`)
/// or, QoS 0, for a client that is away.
pub const DELIVERIES_DROPPED: &str = "ferry_broker_deliveries_dropped_total";
/// Counter: deliveries whose MQTT 5 message expiry passed before they went out.
pub const DELIVERIES_EXPIRED: &str = "ferry_broker_deliveries_expired_total";
/// Counter: retained publishes refused by `mqtt.max_retained_messages` or
/// `mqtt.max_retained_bytes` (MQTT 5: PUBACK/PUBREC 0x97).
pub const RETAINED_REFUSED: &str = "ferry_broker_retained_refused_total";
/// Counter: kept sessions of clients that were away, ended to make room for
/// a new client at `mqtt.max_sessions`.
pub const SESSIONS_EVICTED: &str = "ferry_broker_sessions_evicted_total";

/// Handles of the metrics each PUBLISH updates, registered once. The
/// `counter!` and `histogram!` macros look the name and labels up in the
/// registry at every call (hashing them), once or twice per message.
#[derive(Debug, Clone)]
pub(crate) struct PublishMeters {
    /// [`PUBLISHES_RECEIVED`] by QoS 0, 1 and 2.
    pub(crate) received: [metrics::Counter; 3],
    /// [`ACK_HOLD_SECONDS`].
    pub(crate) ack_hold: metrics::Histogram,
    /// [`INFLIGHT_BYTES`]: up when a PUBLISH takes its room, down when it
    /// gives it back.
    pub(crate) inflight_bytes: metrics::Gauge,
}

impl PublishMeters {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn new() -> Self {
        PublishMeters {
            received: ["0", "1", "2"].map(|q| metrics::counter!(PUBLISHES_RECEIVED, "qos" => q)),
            ack_hold: metrics::histogram!(ACK_HOLD_SECONDS),
            inflight_bytes: metrics::gauge!(INFLIGHT_BYTES),
        }
    }

    /// The received counter for a PUBLISH of `qos`.
    pub(crate) fn received(&self, qos: u8) -> &metrics::Counter {
        &self.received[usize::from(qos.min(2))]
    }
}
