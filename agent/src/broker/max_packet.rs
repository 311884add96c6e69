//! The client's MQTT 5 Maximum Packet Size on the way out.
//!
//! A client may say in its CONNECT how large a packet it takes. rumqttd
//! ignores that; the broker must not send a larger packet, and must discard
//! it "and then behave as if it had completed sending that Application
//! Message" (MQTT 5 §3.1.2.11.4, as Mosquitto does). So the gate drops a
//! PUBLISH from rumqttd that is too large for its client and, for QoS 1 and
//! 2, answers rumqttd in the client's place: PUBACK, or PUBREC and then
//! PUBCOMP for the PUBREL that follows (which the client never sees).
//! rumqttd frees the message's in-flight slot as if the client had taken it.

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use metrics::counter;

use super::codec::{self, Frame};
use super::metrics as m;

/// One connection's limit and the QoS 2 exchanges the gate completes for it.
#[derive(Debug, Default)]
pub(crate) struct MaxPacket {
    /// The client's Maximum Packet Size, if it gave one.
    limit: Option<usize>,
    /// Packet ids of dropped QoS 2 messages whose PUBREL is the gate's.
    releasing: Mutex<HashSet<u16>>,
}

/// What to do with a packet from rumqttd.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// Pass it to the client.
    Pass,
    /// Drop it; send rumqttd this in the client's place, if anything.
    Drop(Option<Bytes>),
}

impl MaxPacket {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        MaxPacket {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            releasing: Mutex::default(),
        }
    }

    fn releasing(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        self.releasing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `frame`, from rumqttd, reaches the client.
    pub(crate) fn outgoing(&self, frame: &Frame) -> Outgoing {
        let Some(limit) = self.limit else {
            return Outgoing::Pass;
        };
        let ptype = frame.packet_type();
        if ptype == codec::PUBREL
            && let Ok(pkid) = frame.ack_pkid()
            && self.releasing().remove(&pkid)
        {
            return Outgoing::Drop(Some(codec::ack(codec::PUBCOMP, pkid)));
        }
        if frame.bytes.len() <= limit {
            return Outgoing::Pass;
        }
        counter!(m::OVERSIZED_DROPPED).increment(1);
        if ptype != codec::PUBLISH {
            tracing::warn!(
                ptype,
                size = frame.bytes.len(),
                limit,
                "packet over the client's maximum packet size dropped"
            );
            return Outgoing::Drop(None);
        }
        match codec::publish_qos_pkid(frame) {
            Ok((1, pkid)) => Outgoing::Drop(Some(codec::ack(codec::PUBACK, pkid))),
            Ok((2, pkid)) => {
                self.releasing().insert(pkid);
                Outgoing::Drop(Some(codec::ack(codec::PUBREC, pkid)))
            }
            _ => Outgoing::Drop(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(qos: u8, pkid: u16, payload: usize) -> Frame {
        let mut body = vec![0, 3, b'a', b'/', b'b'];
        if qos > 0 {
            body.extend_from_slice(&pkid.to_be_bytes());
        }
        body.push(0); // no properties
        body.extend(std::iter::repeat_n(b'x', payload));
        codec::test_frame(&codec::encode_frame(0x30 | qos << 1, &body))
    }

    #[test]
    fn without_a_limit_everything_passes() {
        let max = MaxPacket::new(None);
        assert_eq!(max.outgoing(&publish(2, 7, 10_000)), Outgoing::Pass);
    }

    #[test]
    fn oversized_publishes_are_completed_in_the_clients_place() {
        let max = MaxPacket::new(Some(64));
        assert_eq!(max.outgoing(&publish(1, 1, 10)), Outgoing::Pass);
        assert_eq!(max.outgoing(&publish(0, 0, 100)), Outgoing::Drop(None));
        assert_eq!(
            max.outgoing(&publish(1, 2, 100)),
            Outgoing::Drop(Some(codec::ack(codec::PUBACK, 2)))
        );
        assert_eq!(
            max.outgoing(&publish(2, 3, 100)),
            Outgoing::Drop(Some(codec::ack(codec::PUBREC, 3)))
        );
        // rumqttd's PUBREL for 3 is the gate's; one for another id is the
        // client's.
        let pubrel = |pkid: u16| codec::test_frame(&codec::ack(codec::PUBREL, pkid));
        assert_eq!(max.outgoing(&pubrel(4)), Outgoing::Pass);
        assert_eq!(
            max.outgoing(&pubrel(3)),
            Outgoing::Drop(Some(codec::ack(codec::PUBCOMP, 3)))
        );
        assert_eq!(max.outgoing(&pubrel(3)), Outgoing::Pass, "answered once");
    }
}
