//! [`wire`](super::wire): packets encoded and decoded by `mqtt5-protocol`,
//! through the engine and back, as a client would see them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::packet::subscribe::{SubscribePacket, TopicFilter};
use mqtt5_protocol::packet::subscribe_options::RetainHandling;
use mqtt5_protocol::{Packet, Properties, PropertyId, PropertyValue, QoS};

use super::session::{Limits, Outbox, Send};
use super::sessions::Expiry;
use super::subscriptions::SubOptions;
use super::wire;

/// An outbox with room for ten, window ten.
fn outbox() -> Outbox {
    Outbox::new(
        Limits {
            max_queued: 10,
            max_queued_bytes: 1 << 20,
            max_inflight: 10,
        },
        10,
    )
}

fn published_props() -> Properties {
    let mut p = Properties::default();
    p.add_user_property("a".into(), "2".into());
    p.add_user_property("c".into(), "3".into());
    p.set_content_type("text/plain".into());
    p.set_response_topic("reply/1".into());
    p.set_correlation_data(Bytes::from_static(b"334"));
    p.set_payload_format_indicator(true);
    p
}

fn decode_publish(bytes: &[u8], level: u8) -> PublishPacket {
    match wire::decode(bytes, level).expect("decodes") {
        Packet::Publish(p) => p,
        other => panic!("a PUBLISH: {other:?}"),
    }
}

#[test]
fn an_mqtt5_publish_keeps_its_properties_and_gets_its_delivery_ones() {
    let now = Instant::now();
    let mut sent = PublishPacket::new("t/1", Bytes::from_static(b"22.5"), QoS::ExactlyOnce);
    sent.packet_id = Some(7);
    sent.properties = published_props();
    sent.properties.set_message_expiry_interval(60);
    sent.properties.set_topic_alias(3);
    sent.properties.set_subscription_identifier(99);
    let bytes = wire::encode(&sent).expect("encodes");
    let got = decode_publish(&bytes, 5);
    let publisher: Arc<str> = "dev-1".into();
    let message = wire::message(&got, "t/1".into(), &publisher, now);
    assert_eq!(
        message.properties,
        published_props(),
        "alias, id, expiry left out"
    );
    assert_eq!(message.expires, Some(now + Duration::from_secs(60)));
    assert_eq!((message.qos, message.retain), (2, false));

    let mut out = outbox();
    out.push(Arc::new(message), 1, false, vec![2, 9]);
    let sends = out.ready(now + Duration::from_secs(15));
    let Some(Send::Publish(o)) = sends.first() else {
        panic!("one PUBLISH: {sends:?}")
    };
    let delivered = decode_publish(&wire::encode(&wire::publish(o, 5)).expect("encodes"), 5);
    let mut want = published_props();
    want.set_message_expiry_interval(45);
    want.set_subscription_identifier(2);
    want.set_subscription_identifier(9);
    assert_eq!(delivered.properties, want);
    assert_eq!(delivered.topic_name, "t/1");
    assert_eq!(delivered.qos, QoS::AtLeastOnce, "the lower of 2 and 1");
    assert_eq!(delivered.packet_id, o.packet_id);
    assert_eq!(&delivered.payload[..], b"22.5");
}

#[test]
fn an_mqtt311_delivery_carries_no_properties() {
    let now = Instant::now();
    let mut sent = PublishPacket::new("t/1", Bytes::from_static(b"x"), QoS::AtLeastOnce);
    sent.packet_id = Some(1);
    sent.properties = published_props();
    let got = decode_publish(&wire::encode(&sent).expect("encodes"), 5);
    let mut out = outbox();
    out.push(
        Arc::new(wire::message(&got, "t/1".into(), &"p".into(), now)),
        2,
        true,
        vec![4],
    );
    out.offline();
    let sends = out.resume(10, now);
    let Some(Send::Publish(o)) = sends.first() else {
        panic!("one PUBLISH: {sends:?}")
    };
    let bytes = wire::encode(&wire::publish(o, 4)).expect("encodes");
    let delivered = decode_publish(&bytes, 4);
    assert!(delivered.properties.is_empty());
    assert_eq!((delivered.qos, delivered.retain), (QoS::AtLeastOnce, true));
    // 3.1.1 PUBLISH: fixed header, topic, packet id, payload, nothing else.
    assert_eq!(bytes.len(), 2 + (2 + 3) + 2 + 1);
}

/// A CONNECT written out byte by byte as MQTT 5 §3.1 lays it out.
fn connect_v5(props: &[u8], will_props: &[u8], flags: u8) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, flags, 0, 60];
    body.push(u8::try_from(props.len()).expect("short"));
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 3, b'd', b'e', b'v']);
    if flags & 0x04 != 0 {
        body.push(u8::try_from(will_props.len()).expect("short"));
        body.extend_from_slice(will_props);
        body.extend_from_slice(&[0, 4, b'w', b'/', b'd', b'v']);
        body.extend_from_slice(&[0, 3, b'b', b'y', b'e']);
    }
    let mut bytes = vec![0x10, u8::try_from(body.len()).expect("short")];
    bytes.extend(body);
    bytes
}

fn connect_of(bytes: &[u8], level: u8) -> super::sessions::Connect {
    match wire::decode(bytes, level).expect("decodes") {
        Packet::Connect(c) => wire::connect(&c, "dev".into()),
        other => panic!("a CONNECT: {other:?}"),
    }
}

#[test]
fn an_mqtt5_connect_gives_its_session_expiry_receive_maximum_and_will() {
    // Session Expiry Interval 30, Receive Maximum 5.
    let props = [0x11, 0, 0, 0, 30, 0x21, 0, 5];
    // Will Delay 5, Message Expiry 20, user property k=v.
    let will_props = [
        0x18, 0, 0, 0, 5, 0x02, 0, 0, 0, 20, 0x26, 0, 1, b'k', 0, 1, b'v',
    ];
    // Will flag, will QoS 1, will retain, clean start.
    let c = connect_of(
        &connect_v5(&props, &will_props, 0x04 | 0x08 | 0x20 | 0x02),
        5,
    );
    assert_eq!(c.expiry, Expiry::After(Duration::from_secs(30)));
    assert_eq!(c.receive_maximum, 5);
    assert!(c.clean_start);
    let will = c.will.expect("a will");
    assert_eq!(will.delay, Duration::from_secs(5));
    assert_eq!(will.expiry, Some(Duration::from_secs(20)));
    assert_eq!(&*will.message.topic, "w/dv");
    assert_eq!(&will.message.payload[..], b"bye");
    assert_eq!((will.message.qos, will.message.retain), (1, true));
    let mut want = Properties::default();
    want.add_user_property("k".into(), "v".into());
    assert_eq!(will.message.properties, want, "delay and expiry left out");

    // 0xFFFFFFFF never expires; no property is 0 and the default window.
    let never = connect_of(&connect_v5(&[0x11, 0xFF, 0xFF, 0xFF, 0xFF], &[], 0), 5);
    assert_eq!(never.expiry, Expiry::Never);
    let plain = connect_of(&connect_v5(&[], &[], 0x02), 5);
    assert_eq!(plain.expiry, Expiry::After(Duration::ZERO));
    assert_eq!(plain.receive_maximum, u16::MAX);
}

#[test]
fn an_mqtt311_clean_session_is_the_session_expiry() {
    let connect = |flags: u8| {
        let mut bytes = vec![0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        bytes.extend_from_slice(&[0, 3, b'd', b'e', b'v']);
        connect_of(&bytes, 4)
    };
    assert_eq!(connect(0x02).expiry, Expiry::After(Duration::ZERO));
    assert_eq!(connect(0x00).expiry, Expiry::Never);
    assert!(connect(0x00).will.is_none());
}

#[test]
fn subscribe_options_come_through() {
    let mut f = TopicFilter::new("s/#", QoS::AtLeastOnce);
    f.options.no_local = true;
    f.options.retain_as_published = true;
    f.options.retain_handling = RetainHandling::SendAtSubscribeIfNew;
    let mut properties = Properties::default();
    properties
        .add(
            PropertyId::SubscriptionIdentifier,
            PropertyValue::VariableByteInteger(12),
        )
        .expect("an id");
    let sub = SubscribePacket {
        packet_id: 3,
        filters: vec![f],
        properties,
        protocol_version: 5,
    };
    let Packet::Subscribe(got) =
        wire::decode(&wire::encode(&sub).expect("encodes"), 5).expect("decodes")
    else {
        panic!("a SUBSCRIBE")
    };
    let id = got.properties.get_subscription_identifier();
    assert_eq!(
        wire::sub_options(&got.filters[0], id),
        SubOptions {
            qos: 1,
            no_local: true,
            retain_as_published: true,
            retain_handling: 1,
            id: Some(12),
        }
    );
}

#[test]
fn a_packet_whose_length_disagrees_is_refused() {
    let mut sent = PublishPacket::new("t", Bytes::from_static(b"x"), QoS::AtMostOnce);
    sent.properties = Properties::default();
    let bytes = wire::encode(&sent).expect("encodes");
    assert!(wire::decode(&bytes[..bytes.len() - 1], 5).is_err());
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(wire::decode(&longer, 5).is_err());
    assert!(wire::decode(&[], 5).is_err());
    assert!(wire::decode(&[0x30], 5).is_err());
}

/// Valid packets of each kind the engine reads, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut publish = PublishPacket::new("t/1", Bytes::from_static(b"22.5"), QoS::ExactlyOnce);
    publish.packet_id = Some(7);
    publish.properties = published_props();
    publish.properties.set_message_expiry_interval(60);
    let mut f = TopicFilter::new("s/#", QoS::AtLeastOnce);
    f.options.no_local = true;
    let subscribe = SubscribePacket {
        packet_id: 3,
        filters: vec![f],
        properties: Properties::default(),
        protocol_version: 5,
    };
    vec![
        wire::encode(&publish).expect("encodes").to_vec(),
        wire::encode(&subscribe).expect("encodes").to_vec(),
        connect_v5(
            &[0x11, 0, 0, 0, 30],
            &[0x18, 0, 0, 0, 5, 0x26, 0, 1, b'k', 0, 1, b'v'],
            0x04 | 0x08 | 0x02,
        ),
        vec![0x62, 2, 0, 7],
        vec![0xC0, 0],
        vec![0xE0, 0],
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

    /// Bytes from a client never panic the decoder or the conversions that
    /// follow it, at either level: random bytes, and valid packets with
    /// bytes changed, cut or added.
    #[test]
    fn hostile_bytes_never_panic(
        random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        seed in 0usize..6,
        edits in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u8>()), 0..6),
        cut in proptest::prelude::any::<u16>(),
    ) {
        let now = Instant::now();
        let mut mutated = seeds()[seed].clone();
        for (at, byte) in edits {
            let i = usize::from(at) % mutated.len().max(1);
            if let Some(b) = mutated.get_mut(i) {
                *b = byte;
            }
        }
        mutated.truncate(usize::from(cut) % (mutated.len() + 8));
        for bytes in [random, mutated] {
            for level in [4, 5] {
                match wire::decode(&bytes, level) {
                    Ok(Packet::Publish(p)) => {
                        let m = wire::message(&p, p.topic_name.as_str().into(), &"x".into(), now);
                        let mut out = Outbox::new(
                            Limits { max_queued: 4, max_queued_bytes: 1 << 20, max_inflight: 4 },
                            4,
                        );
                        out.push(Arc::new(m), 2, true, vec![1]);
                        for s in out.ready(now) {
                            if let Send::Publish(o) = s {
                                let _ = wire::encode(&wire::publish(&o, level));
                            }
                        }
                    }
                    Ok(Packet::Connect(c)) => {
                        let _ = wire::connect(&c, "x".into());
                    }
                    Ok(Packet::Subscribe(s)) => {
                        for f in &s.filters {
                            let _ = wire::sub_options(f, None);
                            let _ = super::topic::Filter::parse(&f.filter);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
