//! Between the wire and the engine: MQTT 3.1.1 and 5 packets as
//! `mqtt5-protocol` decodes and encodes them, and the engine's types.
//!
//! - [`decode`]: one whole packet (fixed header included, as the gate's
//!   `FrameReader` hands it over) for the connection's protocol level;
//! - [`connect`]: a CONNECT's session settings and will (MQTT 3.1.1 clean
//!   session 1 is a session expiry of 0, clean session 0 one that never
//!   expires; MQTT 5's 0xFFFFFFFF never expires either, §3.1.2.11.2);
//! - [`message`]: a PUBLISH (its topic alias already resolved by the gate)
//!   as the engine keeps it: the expiry interval becomes an instant, and
//!   only properties a subscriber is to get are kept (MQTT 5 §3.3.2.3);
//! - [`publish`]: a delivery as the PUBLISH to write: for MQTT 5 the
//!   message's properties, the expiry interval left and every matching
//!   subscription identifier; for MQTT 3.1.1 no properties at all;
//! - [`sub_options`]: a SUBSCRIBE's topic filter options.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_protocol::packet::MqttPacket;
use mqtt5_protocol::packet::connect::ConnectPacket;
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::packet::subscribe::TopicFilter;
use mqtt5_protocol::packet::subscribe_options::RetainHandling;
use mqtt5_protocol::{FixedHeader, MqttError, Packet, Properties, PropertyId, QoS};

use super::session::{Message, Outgoing};
use super::sessions::{Connect, Expiry, Will};
use super::subscriptions::SubOptions;

/// MQTT 5 Session Expiry Interval that means "never" (§3.1.2.11.2).
const NEVER: u32 = u32::MAX;

/// Decodes one whole packet of a connection at protocol `level` (4 or 5).
pub fn decode(bytes: &[u8], level: u8) -> Result<Packet, MqttError> {
    let mut buf = bytes;
    let header = FixedHeader::decode(&mut buf)?;
    if buf.len() != usize::try_from(header.remaining_length).unwrap_or(usize::MAX) {
        return Err(MqttError::MalformedPacket(format!(
            "remaining length {} but {} bytes follow",
            header.remaining_length,
            buf.len()
        )));
    }
    Packet::decode_from_body_with_version(header.packet_type, &header, &mut buf, level)
}

/// Encodes any packet `mqtt5-protocol` can write.
pub fn encode(packet: &impl MqttPacket) -> Result<Bytes, MqttError> {
    let mut buf = BytesMut::new();
    packet.encode(&mut buf)?;
    Ok(buf.freeze())
}

/// `props` without the properties of `drop`.
fn without(props: &Properties, drop: &[PropertyId]) -> Properties {
    let mut kept = Properties::default();
    for (id, value) in props.iter() {
        if !drop.contains(&id) {
            // Re-adding what was decoded cannot fail its type check.
            let _ = kept.add(id, value.clone());
        }
    }
    kept
}

/// What a PUBLISH's properties carry on to subscribers.
fn forwarded(props: &Properties) -> Properties {
    without(
        props,
        &[
            PropertyId::TopicAlias,
            PropertyId::SubscriptionIdentifier,
            PropertyId::MessageExpiryInterval,
        ],
    )
}

/// The session settings and will of a CONNECT from `client` (the client id
/// to use: the one it sent, or the one the gate assigned).
pub fn connect(c: &ConnectPacket, client: Arc<str>) -> Connect {
    let v5 = c.protocol_version == 5;
    let expiry = if v5 {
        match c.properties.get_session_expiry_interval().unwrap_or(0) {
            NEVER => Expiry::Never,
            secs => Expiry::After(Duration::from_secs(u64::from(secs))),
        }
    } else if c.clean_start {
        Expiry::After(Duration::ZERO)
    } else {
        Expiry::Never
    };
    let will = c.will.as_ref().map(|w| Will {
        message: Arc::new(Message {
            topic: w.topic.as_str().into(),
            payload: Bytes::copy_from_slice(&w.payload),
            qos: u8::from(w.qos),
            retain: w.retain,
            expires: None,
            publisher: Some(client.clone()),
            properties: without(
                &c.will_properties,
                &[
                    PropertyId::WillDelayInterval,
                    PropertyId::MessageExpiryInterval,
                ],
            ),
        }),
        delay: Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0))),
        expiry: w
            .properties
            .message_expiry_interval
            .map(|s| Duration::from_secs(u64::from(s))),
    });
    Connect {
        client,
        clean_start: c.clean_start,
        expiry,
        receive_maximum: c.properties.get_receive_maximum().unwrap_or(u16::MAX),
        will,
    }
}

/// A PUBLISH from `publisher` as the engine keeps it; `topic` is its topic
/// with any alias resolved.
pub fn message(p: &PublishPacket, topic: Arc<str>, publisher: &Arc<str>, now: Instant) -> Message {
    let expires = p
        .properties
        .get_message_expiry_interval()
        .and_then(|s| now.checked_add(Duration::from_secs(u64::from(s))));
    Message {
        topic,
        payload: p.payload.clone(),
        qos: u8::from(p.qos),
        retain: p.retain,
        expires,
        publisher: Some(publisher.clone()),
        properties: forwarded(&p.properties),
    }
}

/// The PUBLISH that writes `o` to a client at protocol `level`.
pub fn publish(o: &Outgoing, level: u8) -> PublishPacket {
    let qos = QoS::from(o.qos);
    let mut p = if level == 5 {
        PublishPacket::new(o.message.topic.to_string(), o.message.payload.clone(), qos)
    } else {
        PublishPacket::new_v311(o.message.topic.to_string(), o.message.payload.clone(), qos)
    };
    p.packet_id = o.packet_id;
    p.retain = o.retain;
    p.dup = o.dup;
    if level == 5 {
        p.properties = o.message.properties.clone();
        if let Some(left) = o.expiry_left {
            p.properties.set_message_expiry_interval(left);
        }
        for id in &o.ids {
            p.properties.set_subscription_identifier(*id);
        }
    }
    p
}

/// A SUBSCRIBE's options for one filter; `id` is the SUBSCRIBE's
/// subscription identifier.
pub fn sub_options(f: &TopicFilter, id: Option<u32>) -> SubOptions {
    SubOptions {
        qos: u8::from(f.options.qos),
        no_local: f.options.no_local,
        retain_as_published: f.options.retain_as_published,
        retain_handling: match f.options.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendAtSubscribeIfNew => 1,
            RetainHandling::DoNotSend => 2,
        },
        id,
    }
}
