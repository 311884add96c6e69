//! The client's MQTT 5 Receive Maximum on the way out.
//!
//! A client may say in its CONNECT how many QoS 1 and QoS 2 deliveries it
//! takes before it has answered them (PUBACK, PUBCOMP, or a PUBREC with an
//! error). rumqttd ignores that and sends up to its own `max_inflight`; the
//! broker must not send more (MQTT 5 §3.3.4, as Mosquitto does). So the
//! gate counts the deliveries it passes to the client, keeps the ones past
//! the client's window in a queue, and lets them go as the client answers.
//! Every other packet from rumqttd passes at once. The queue holds at most
//! what rumqttd sends without answers, which its `max_inflight` bounds.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::codec::{self, Frame};

/// One connection's delivery window.
#[derive(Debug)]
pub(crate) struct Flow {
    /// The client's Receive Maximum; `None`: not counted.
    max: Option<usize>,
    state: Mutex<State>,
    /// The client answered a delivery while others waited.
    room: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Packet ids of deliveries the client has not answered.
    unanswered: HashSet<u16>,
    /// Deliveries past the window, in rumqttd's order.
    waiting: VecDeque<Frame>,
}

impl Flow {
    pub(crate) fn new(receive_max: Option<u16>) -> Self {
        Flow {
            max: receive_max.map(usize::from),
            state: Mutex::default(),
            room: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the client gave a Receive Maximum.
    pub(crate) fn limited(&self) -> bool {
        self.max.is_some()
    }

    /// A packet from rumqttd: `Some` to write now, `None` when it waits for
    /// room in the client's window.
    pub(crate) fn outgoing(&self, frame: Frame) -> Option<Frame> {
        let Some(max) = self.max else {
            return Some(frame);
        };
        if frame.packet_type() != codec::PUBLISH {
            return Some(frame);
        }
        let Ok((1..=2, pkid)) = codec::publish_qos_pkid(&frame) else {
            return Some(frame);
        };
        let mut state = self.state();
        if state.unanswered.contains(&pkid) {
            // A retransmission of a delivery already counted.
            return Some(frame);
        }
        if state.waiting.is_empty() && state.unanswered.len() < max {
            state.unanswered.insert(pkid);
            return Some(frame);
        }
        state.waiting.push_back(frame);
        None
    }

    /// A packet from the client: a PUBACK, a PUBCOMP or a failed PUBREC
    /// ends a delivery and makes room.
    pub(crate) fn answered(&self, frame: &Frame) {
        if self.max.is_none() {
            return;
        }
        let ends = match frame.packet_type() {
            codec::PUBACK | codec::PUBCOMP => true,
            // MQTT 5: a reason code of 0x80 or more ends the exchange.
            codec::PUBREC => frame.body().get(2).is_some_and(|&reason| reason >= 0x80),
            _ => false,
        };
        if !ends {
            return;
        }
        let Ok(pkid) = frame.ack_pkid() else {
            return;
        };
        let mut state = self.state();
        if state.unanswered.remove(&pkid) && !state.waiting.is_empty() {
            self.room.notify_one();
        }
    }

    /// Waits until the client answered a delivery while others waited.
    pub(crate) async fn room(&self) {
        self.room.notified().await;
    }

    /// The waiting deliveries that fit in the window now, counted.
    pub(crate) fn released(&self) -> Vec<Frame> {
        let Some(max) = self.max else {
            return Vec::new();
        };
        let mut state = self.state();
        let mut out = Vec::new();
        while state.unanswered.len() < max {
            let Some(frame) = state.waiting.pop_front() else {
                break;
            };
            if let Ok((_, pkid)) = codec::publish_qos_pkid(&frame) {
                state.unanswered.insert(pkid);
            }
            out.push(frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(qos: u8, pkid: u16) -> Frame {
        let mut body = vec![0, 1, b't'];
        if qos > 0 {
            body.extend_from_slice(&pkid.to_be_bytes());
        }
        body.extend_from_slice(&[0, b'x']);
        codec::test_frame(&codec::encode_frame(0x30 | qos << 1, &body))
    }

    fn ack(ptype: u8, pkid: u16) -> Frame {
        codec::test_frame(&codec::ack(ptype, pkid))
    }

    #[test]
    fn unlimited_passes_everything() {
        let flow = Flow::new(None);
        for pkid in 1..500 {
            assert!(flow.outgoing(publish(1, pkid)).is_some());
        }
    }

    #[test]
    fn the_window_holds_deliveries_until_answers() {
        let flow = Flow::new(Some(2));
        assert!(flow.outgoing(publish(1, 1)).is_some());
        assert!(flow.outgoing(publish(2, 2)).is_some());
        assert!(
            flow.outgoing(publish(0, 0)).is_some(),
            "QoS 0 is not counted"
        );
        assert!(
            flow.outgoing(ack(codec::PUBREL, 9)).is_some(),
            "others pass"
        );
        assert!(flow.outgoing(publish(1, 3)).is_none());
        assert!(flow.outgoing(publish(1, 4)).is_none());
        assert!(flow.outgoing(publish(1, 1)).is_some(), "a retransmission");
        assert!(flow.released().is_empty());
        // A successful PUBREC does not end a QoS 2 delivery; PUBCOMP does.
        flow.answered(&ack(codec::PUBREC, 2));
        assert!(flow.released().is_empty());
        flow.answered(&ack(codec::PUBCOMP, 2));
        let out = flow.released();
        assert_eq!(out.len(), 1);
        assert_eq!(codec::publish_qos_pkid(&out[0]), Ok((1, 3)));
        flow.answered(&ack(codec::PUBACK, 1));
        flow.answered(&ack(codec::PUBACK, 3));
        let out = flow.released();
        assert_eq!(out.len(), 1, "only 4 was waiting");
        assert_eq!(codec::publish_qos_pkid(&out[0]), Ok((1, 4)));
        // A failed PUBREC (MQTT 5 reason code) ends the delivery.
        let failed = codec::test_frame(&codec::ack_with_reason(codec::PUBREC, 4, 0x80));
        flow.answered(&failed);
        assert!(flow.outgoing(publish(1, 5)).is_some());
    }
}
