//! Hostile and careless clients against the engine's connection task
//! (`mqtt.engine = "ferry"`), as a property test over real TCP: random
//! sequences of PUBLISH (any QoS, DUP, RETAIN, topic aliases valid or not,
//! message expiry, `$` and wildcard topics, 300-level topics), SUBSCRIBE
//! (any options byte, Retain Handling 3 and reserved bits included, shared
//! and invalid filters, subscription identifiers), UNSUBSCRIBE, acks for
//! packet ids never used, PINGREQ, DISCONNECT with any reason and session
//! expiry, and random bytes, at MQTT 3.1.1 and 5.
//!
//! After each sequence: nothing panicked, the broker still serves a new
//! client end to end (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, delivery), and
//! no more readings were stored than publishes were sent.

mod broker_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker_support::{Mode, Running, TestSink, start, test_config};
use ferry_agent::broker::{BrokerEngine, MqttConfig};
use ferry_agent::ingest::Accepted;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static PANICS: AtomicUsize = AtomicUsize::new(0);

const TOPICS: [&str; 9] = [
    "a",
    "a/b",
    "$SYS/x",
    "+",
    "#",
    "a/+",
    "",
    "a/#/b",
    "$share/g/a",
];

#[derive(Debug, Clone)]
enum Step {
    Publish {
        topic: usize,
        qos: u8,
        id: u16,
        dup: bool,
        retain: bool,
        alias: Option<u16>,
        expiry: Option<u32>,
    },
    Subscribe {
        id: u16,
        filter: usize,
        options: u8,
        sub_id: Option<u32>,
    },
    Unsubscribe {
        id: u16,
        filter: usize,
    },
    Ack {
        kind: u8,
        id: u16,
    },
    Ping,
    Disconnect {
        reason: u8,
        expiry: Option<u32>,
    },
    Bytes(Vec<u8>),
}

fn topic(i: usize) -> String {
    match TOPICS.get(i) {
        Some(t) => (*t).to_owned(),
        None => "x/".repeat(300),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn encode(step: &Step, v5: bool) -> Vec<u8> {
    match step {
        Step::Publish {
            topic: t,
            qos,
            id,
            dup,
            retain,
            alias,
            expiry,
        } => {
            let mut body = Vec::new();
            string(&mut body, &topic(*t));
            if *qos > 0 {
                body.extend_from_slice(&id.to_be_bytes());
            }
            if v5 {
                let mut props = Vec::new();
                if let Some(a) = alias {
                    props.push(0x23);
                    props.extend_from_slice(&a.to_be_bytes());
                }
                if let Some(e) = expiry {
                    props.push(0x02);
                    props.extend_from_slice(&e.to_be_bytes());
                }
                varint(&mut body, props.len());
                body.extend_from_slice(&props);
            }
            body.extend_from_slice(b"{\"v\": 1}");
            let first = 0x30 | u8::from(*dup) << 3 | (qos & 3) << 1 | u8::from(*retain);
            packet(first, &body)
        }
        Step::Subscribe {
            id,
            filter,
            options,
            sub_id,
        } => {
            let mut body = id.to_be_bytes().to_vec();
            if v5 {
                let mut props = Vec::new();
                if let Some(s) = sub_id {
                    props.push(0x0B);
                    varint(&mut props, *s as usize);
                }
                varint(&mut body, props.len());
                body.extend_from_slice(&props);
            }
            string(&mut body, &topic(*filter));
            body.push(*options);
            packet(0x82, &body)
        }
        Step::Unsubscribe { id, filter } => {
            let mut body = id.to_be_bytes().to_vec();
            if v5 {
                body.push(0);
            }
            string(&mut body, &topic(*filter));
            packet(0xA2, &body)
        }
        Step::Ack { kind, id } => {
            let flags = if *kind == 6 { 0x02 } else { 0 };
            packet(kind << 4 | flags, &id.to_be_bytes())
        }
        Step::Ping => vec![0xC0, 0],
        Step::Disconnect { reason, expiry } => {
            if !v5 {
                return vec![0xE0, 0];
            }
            let mut body = vec![*reason];
            match expiry {
                Some(e) => {
                    body.push(5);
                    body.push(0x11);
                    body.extend_from_slice(&e.to_be_bytes());
                }
                None => body.push(0),
            }
            packet(0xE0, &body)
        }
        Step::Bytes(b) => b.clone(),
    }
}

fn step() -> impl Strategy<Value = Step> {
    let id = prop_oneof![Just(0u16), 1u16..4, Just(u16::MAX)];
    prop_oneof![
        4 => (0..=TOPICS.len(), 0u8..4, id.clone(), any::<bool>(), any::<bool>(),
              proptest::option::of(prop_oneof![Just(0u16), 1u16..12, Just(u16::MAX)]),
              proptest::option::of(0u32..3))
            .prop_map(|(topic, qos, id, dup, retain, alias, expiry)| Step::Publish {
                topic, qos, id, dup, retain, alias, expiry
            }),
        2 => (id.clone(), 0..=TOPICS.len(), any::<u8>(),
              proptest::option::of(prop_oneof![Just(0u32), 1u32..10, Just(268_435_455u32)]))
            .prop_map(|(id, filter, options, sub_id)| Step::Subscribe { id, filter, options, sub_id }),
        1 => (id.clone(), 0..=TOPICS.len()).prop_map(|(id, filter)| Step::Unsubscribe { id, filter }),
        2 => (4u8..8, id).prop_map(|(kind, id)| Step::Ack { kind, id }),
        1 => Just(Step::Ping),
        1 => (prop_oneof![Just(0u8), Just(4u8), any::<u8>()],
              proptest::option::of(prop_oneof![Just(0u32), Just(10u32), Just(u32::MAX)]))
            .prop_map(|(reason, expiry)| Step::Disconnect { reason, expiry }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Bytes),
    ]
}

fn connect(v5: bool, id: &str, clean: bool, expiry: u32) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(if clean { 0x02 } else { 0 });
    body.extend_from_slice(&30u16.to_be_bytes());
    if v5 {
        body.push(5);
        body.push(0x11);
        body.extend_from_slice(&expiry.to_be_bytes());
    }
    string(&mut body, id);
    packet(0x10, &body)
}

/// Sends `steps` on one connection and reads what comes back until the
/// broker closes it or goes quiet.
async fn hostile(broker: &Running, v5: bool, clean: bool, steps: &[Step]) {
    let mut s = tokio::net::TcpStream::connect(broker.addr())
        .await
        .expect("connect");
    let mut bytes = connect(v5, "hostile", clean, 60);
    for step in steps {
        bytes.extend(encode(step, v5));
    }
    // The broker may close mid-way; what it refuses is its business.
    let _ = s.write_all(&bytes).await;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// A well-behaved client afterwards: CONNECT, SUBSCRIBE, PUBLISH QoS 1,
/// PUBACK and its own delivery, within 5 s.
async fn still_serves(broker: &Running, v5: bool) {
    let mut s = tokio::net::TcpStream::connect(broker.addr())
        .await
        .expect("connect");
    let steps = [
        Step::Subscribe {
            id: 1,
            filter: 0,
            options: 1,
            sub_id: None,
        },
        Step::Publish {
            topic: 0,
            qos: 1,
            id: 7,
            dup: false,
            retain: false,
            alias: None,
            expiry: None,
        },
    ];
    let mut bytes = connect(v5, "after", true, 0);
    bytes.extend(encode(&steps[0], v5));
    s.write_all(&bytes).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut published = false;
    // SUBACK (type 9) first, then PUBACK 7 and the delivery.
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the broker answers a well-behaved client")
            .expect("read");
        assert!(n > 0, "closed a well-behaved client: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
        if !published && seen.iter().any(|b| b >> 4 == 9) {
            s.write_all(&encode(&steps[1], v5)).await.expect("write");
            published = true;
        }
        let puback = seen.windows(4).any(|w| w == [0x40, 2, 0, 7]);
        let delivery = seen.windows(2).any(|w| w[0] >> 4 == 3 && w[1] > 0);
        if puback && delivery {
            return;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn hostile_clients_leave_the_engine_serving(
        v5 in any::<bool>(),
        clean in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..30),
    ) {
        install_hook();
        let before = PANICS.load(Ordering::SeqCst);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sink = TestSink::new(Mode::Answer(Accepted::Stored));
            let broker = start(MqttConfig { engine: BrokerEngine::Ferry, ..test_config() }, sink.clone()).await;
            hostile(&broker, v5, clean, &steps).await;
            let sent = steps.iter().filter(|s| matches!(s, Step::Publish { .. })).count();
            still_serves(&broker, v5).await;
            prop_assert!(sink.count() <= sent + 1, "{} stored from {} publishes", sink.count(), sent + 1);
            broker.stop().await;
            Ok(())
        })?;
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), before, "a task panicked");
    }
}

/// Counts every panic in the process (a connection task's included), once.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}
