//! [`Outbox`]: delivered QoS, the window, the bounds, expiry and resume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session::{Limits, Message, Outbox, Outgoing, Pushed, Send};

const ROOMY: Limits = Limits {
    max_queued: 1_000,
    max_queued_bytes: 1 << 20,
    max_inflight: 1_000,
};

fn message(topic: &str, qos: u8, payload: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        expires: None,
        publisher: None,
        properties: Default::default(),
    })
}

fn publishes(sends: &[Send]) -> Vec<&Outgoing> {
    sends
        .iter()
        .filter_map(|s| match s {
            Send::Publish(o) => Some(o),
            Send::Pubrel(_) => None,
        })
        .collect()
}

fn payloads(sends: &[Send]) -> Vec<String> {
    publishes(sends)
        .iter()
        .map(|o| String::from_utf8_lossy(&o.message.payload).into_owned())
        .collect()
}

#[test]
fn the_delivered_qos_is_the_lower_of_published_and_granted() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 10);
    for (published, granted) in [(0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)] {
        out.push(message("t", published, "x"), granted, false, vec![]);
    }
    let got: Vec<(u8, bool)> = publishes(&out.ready(now))
        .iter()
        .map(|o| (o.qos, o.packet_id.is_some()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, false),
            (1, true),
            (2, true),
            (1, true),
            (0, false),
            (0, false)
        ]
    );
}

#[test]
fn the_receive_maximum_window_holds_later_deliveries_in_order() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 2);
    for (i, q) in [1, 1, 1, 0, 2].into_iter().enumerate() {
        out.push(message("t", q, &i.to_string()), 2, false, vec![]);
    }
    let first = out.ready(now);
    // "2" waits for the window; the QoS 0 "3" needs none and goes at once,
    // as Mosquitto sends QoS 0.
    assert_eq!(payloads(&first), vec!["0", "1", "3"]);
    assert!(out.ready(now).is_empty());
    let ids: Vec<u16> = publishes(&first)
        .iter()
        .filter_map(|o| o.packet_id)
        .collect();
    assert!(out.puback(ids[0]));
    assert!(!out.puback(ids[0]), "a second PUBACK completes nothing");
    // "4" stays behind "2": QoS 1/2 keep their order.
    assert_eq!(payloads(&out.ready(now)), vec!["2"]);
    assert!(out.puback(ids[1]));
    let last = out.ready(now);
    assert_eq!(payloads(&last), vec!["4"]);
    let id4 = publishes(&last)[0].packet_id.expect("QoS 2");
    assert!(!out.puback(id4), "a PUBACK does not complete QoS 2");
    assert!(out.pubrec(id4));
    assert!(out.pubrec(id4), "a repeated PUBREC gets its PUBREL again");
    assert!(out.pubcomp(id4));
    assert!(!out.pubcomp(id4));
    assert_eq!(out.in_flight(), 1, "\"2\" is still unacknowledged");
}

#[test]
fn the_queue_is_bounded_by_messages_and_bytes() {
    let mut out = Outbox::new(
        Limits {
            max_queued: 3,
            max_queued_bytes: 20,
            max_inflight: 10,
        },
        1,
    );
    assert_eq!(
        out.push(message("t", 1, "12345"), 1, false, vec![]),
        Pushed::Queued
    );
    assert_eq!(
        out.push(message("t", 1, "12345"), 1, false, vec![]),
        Pushed::Queued
    );
    // 2 × 6 bytes queued; 10 more would pass 20.
    assert_eq!(
        out.push(message("t", 1, "123456789"), 1, false, vec![]),
        Pushed::DroppedFull
    );
    assert_eq!(
        out.push(message("t", 1, "1"), 1, false, vec![]),
        Pushed::Queued
    );
    assert_eq!(
        out.push(message("t", 1, "1"), 1, false, vec![]),
        Pushed::DroppedFull
    );
    assert_eq!((out.queued(), out.queued_bytes(), out.dropped), (3, 14, 2));
    out.ready(Instant::now());
    assert_eq!((out.queued(), out.queued_bytes()), (2, 8));
}

#[test]
fn an_expired_message_is_dropped_and_a_live_one_carries_what_is_left() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 10);
    let with_expiry = |secs| {
        Arc::new(Message {
            expires: Some(now + Duration::from_secs(secs)),
            ..(*message("t", 1, "x")).clone()
        })
    };
    out.push(with_expiry(5), 1, false, vec![]);
    out.push(with_expiry(60), 1, false, vec![]);
    let later = now + Duration::from_millis(5_500);
    let sent = out.ready(later);
    assert_eq!(publishes(&sent).len(), 1);
    assert_eq!(publishes(&sent)[0].expiry_left, Some(55));
    assert_eq!(out.expired, 1);
}

#[test]
fn a_kept_session_resends_what_was_in_flight_then_what_queued() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 2);
    out.push(message("t", 2, "a"), 2, false, vec![]);
    out.push(message("t", 1, "b"), 1, false, vec![]);
    out.push(message("t", 1, "c"), 1, false, vec![]);
    out.push(message("t", 0, "d"), 0, false, vec![]);
    let sent = out.ready(now);
    let (a, b) = (
        publishes(&sent)[0].packet_id.expect("QoS 2"),
        publishes(&sent)[1].packet_id.expect("QoS 1"),
    );
    assert!(out.pubrec(a));
    out.offline();
    // QoS 0 is not queued for an offline client; QoS 1 is.
    assert_eq!(
        out.push(message("t", 0, "e"), 1, false, vec![]),
        Pushed::DroppedOffline
    );
    assert_eq!(
        out.push(message("t", 1, "f"), 1, false, vec![]),
        Pushed::Queued
    );
    assert!(
        out.ready(now).is_empty(),
        "nothing goes to an offline client"
    );
    let again = out.resume(3, now);
    assert_eq!(again[0], Send::Pubrel(a));
    let Send::Publish(dup) = &again[1] else {
        panic!("a PUBLISH: {again:?}")
    };
    assert_eq!((dup.packet_id, dup.dup), (Some(b), true));
    assert_eq!(payloads(&again[2..]), vec!["c"]);
    assert!(out.pubcomp(a));
    assert!(out.puback(b));
    assert_eq!(payloads(&out.ready(now)), vec!["f"]);
}

#[test]
fn the_window_is_the_clients_receive_maximum_at_most_max_inflight() {
    let now = Instant::now();
    let mut out = Outbox::new(
        Limits {
            max_inflight: 3,
            ..ROOMY
        },
        u16::MAX,
    );
    for i in 0..10 {
        out.push(message("t", 1, &i.to_string()), 1, false, vec![]);
    }
    assert_eq!(payloads(&out.ready(now)), vec!["0", "1", "2"]);
    assert_eq!(out.in_flight(), 3);
    assert_eq!(out.in_flight_bytes(), 3 * 2);
    // A reconnect asking for more still gets at most 3.
    out.offline();
    assert_eq!(publishes(&out.resume(u16::MAX, now)).len(), 3);
}

#[test]
fn a_resend_carries_the_expiry_left_then_and_drops_what_expired() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 10);
    for (secs, p) in [(5, "short"), (60, "long")] {
        out.push(
            Arc::new(Message {
                expires: Some(now + Duration::from_secs(secs)),
                ..(*message("t", 1, p)).clone()
            }),
            1,
            false,
            vec![],
        );
    }
    let first = out.ready(now);
    assert_eq!(
        publishes(&first)
            .iter()
            .map(|o| o.expiry_left)
            .collect::<Vec<_>>(),
        vec![Some(5), Some(60)]
    );
    out.offline();
    let again = out.resume(10, now + Duration::from_secs(10));
    assert_eq!(payloads(&again), vec!["long"]);
    assert_eq!(publishes(&again)[0].expiry_left, Some(50));
    assert!(publishes(&again)[0].dup);
    assert_eq!((out.in_flight(), out.expired), (1, 1));
}

#[test]
fn packet_ids_wrap_and_skip_those_still_in_flight() {
    let now = Instant::now();
    let mut out = Outbox::new(ROOMY, 2);
    out.push(message("t", 1, "held"), 1, false, vec![]);
    let held = publishes(&out.ready(now))[0].packet_id.expect("QoS 1");
    assert_eq!(held, 1);
    for _ in 0..70_000u32 {
        out.push(message("t", 1, "x"), 1, false, vec![]);
        let sent = out.ready(now);
        let id = publishes(&sent)[0].packet_id.expect("QoS 1");
        assert_ne!(id, held);
        assert_ne!(id, 0);
        assert!(out.puback(id));
    }
}

/// One step a connection's life can take.
#[derive(Debug, Clone)]
enum Step {
    Push {
        qos: u8,
        granted: u8,
    },
    Ready,
    /// Acknowledge the n-th oldest delivery in flight, the way its QoS
    /// asks (PUBACK; PUBREC then, on a later step, PUBCOMP).
    Ack(usize),
    Offline,
    Resume(u16),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u8..3, 0u8..3).prop_map(|(qos, granted)| Step::Push { qos, granted }),
        3 => Just(Step::Ready),
        3 => (0usize..8).prop_map(Step::Ack),
        1 => Just(Step::Offline),
        1 => (1u16..6).prop_map(Step::Resume),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// Whatever a client does, QoS 1/2 messages reach it in the order they
    /// were queued, each first sent once and resent only as DUP after a
    /// resume; the window is never exceeded; no packet id is used twice
    /// at once; the queued bytes add up.
    #[test]
    fn the_outbox_keeps_order_window_and_ids(steps in proptest::collection::vec(step(), 1..120)) {
        let now = Instant::now();
        let limits = Limits { max_queued: 16, max_queued_bytes: 1 << 20, max_inflight: 4 };
        let mut out = Outbox::new(limits, 3);
        let mut online = true;
        let mut next = 0u32;
        // Payload numbers of QoS 1/2 messages queued and not dropped, in order.
        let mut expected: Vec<u32> = Vec::new();
        let mut first_sent: Vec<u32> = Vec::new();
        // In flight as the client sees it: (packet id, qos, payload, pubrec sent).
        let mut flight: Vec<(u16, u8, u32, bool)> = Vec::new();
        let record = |sends: Vec<Send>, flight: &mut Vec<(u16, u8, u32, bool)>, first: &mut Vec<u32>| -> Result<(), proptest::test_runner::TestCaseError> {
            for s in sends {
                if let Send::Publish(o) = s {
                    let n: u32 = String::from_utf8_lossy(&o.message.payload).parse().expect("a number");
                    if let Some(id) = o.packet_id {
                        if o.dup {
                            proptest::prop_assert!(flight.iter().any(|f| f.0 == id && f.2 == n), "a DUP resends what is in flight");
                        } else {
                            proptest::prop_assert!(!flight.iter().any(|f| f.0 == id), "packet id {} reused while in flight", id);
                            flight.push((id, o.qos, n, false));
                            first.push(n);
                        }
                    }
                }
            }
            Ok(())
        };
        for s in steps {
            match s {
                Step::Push { qos, granted } => {
                    let pushed = out.push(message("t", qos, &next.to_string()), granted, false, vec![]);
                    if pushed == Pushed::Queued && qos.min(granted) > 0 {
                        expected.push(next);
                    }
                    next += 1;
                }
                Step::Ready => record(out.ready(now), &mut flight, &mut first_sent)?,
                Step::Ack(i) if online && !flight.is_empty() => {
                    let i = i % flight.len();
                    let (id, qos, _, rec) = flight[i];
                    if qos == 1 {
                        proptest::prop_assert!(out.puback(id));
                        flight.remove(i);
                    } else if !rec {
                        proptest::prop_assert!(out.pubrec(id));
                        flight[i].3 = true;
                    } else {
                        proptest::prop_assert!(out.pubcomp(id));
                        flight.remove(i);
                    }
                }
                Step::Ack(_) => {}
                Step::Offline => {
                    out.offline();
                    online = false;
                }
                Step::Resume(rm) => {
                    online = true;
                    record(out.resume(rm, now), &mut flight, &mut first_sent)?;
                }
            }
            // The window may shrink on a resume below what is already in
            // flight; it never grows past `max_inflight`.
            proptest::prop_assert!(out.in_flight() <= usize::from(limits.max_inflight));
            proptest::prop_assert_eq!(out.in_flight(), flight.len());
            proptest::prop_assert!(out.queued() <= limits.max_queued);
        }
        // Everything first sent is a prefix of what was queued, in order.
        proptest::prop_assert_eq!(&expected[..first_sent.len()], &first_sent[..]);
    }
}
