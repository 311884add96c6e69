//! The acknowledgement gate with real rumqttc clients (MQTT 3.1.1 and 5) and
//! raw sockets: acks wait for the commit, rejections, draining shutdown,
//! malformed input, unknown protocol levels, MQTT 5 topic aliases, and the
//! in-flight byte budget across connections.

mod broker_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker_support::{Mode, TestSink, start, test_config, test_engine, wait_for};
use ferry_agent::broker::BrokerEngine;
use ferry_agent::ingest::{Accepted, QoS, RejectReason};
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason, PubRecReason};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

type Events = mpsc::UnboundedReceiver<(Instant, Result<Packet, String>)>;

/// A v3.1.1 rumqttc client whose incoming packets (and errors) are streamed.
fn v4_client(addr: SocketAddr, id: &str, clean: bool) -> (AsyncClient, Events) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(clean);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let item = match eventloop.poll().await {
                Ok(Event::Incoming(p)) => Ok(p),
                Ok(Event::Outgoing(_)) => continue,
                Err(e) => Err(e.to_string()),
            };
            let failed = item.is_err();
            if tx.send((Instant::now(), item)).is_err() {
                return;
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    (client, rx)
}

/// Waits for the first event matching `f`, failing after `T`.
async fn expect<F: FnMut(&Result<Packet, String>) -> bool>(
    events: &mut Events,
    what: &str,
    mut f: F,
) -> Instant {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let next = tokio::time::timeout_at(deadline, events.recv()).await;
        match next {
            Ok(Some((at, item))) if f(&item) => return at,
            Ok(Some(_)) => continue,
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

/// Asserts that no event matching `f` arrives within `window`.
async fn expect_none<F: FnMut(&Result<Packet, String>) -> bool>(
    events: &mut Events,
    window: Duration,
    what: &str,
    mut f: F,
) {
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some((_, item))) = tokio::time::timeout_at(deadline, events.recv()).await {
        assert!(!f(&item), "{what} arrived too early: {item:?}");
    }
}

/// The next packet a v5 client receives, failing after `T`.
async fn next_v5(eventloop: &mut rumqttc::v5::EventLoop) -> P5 {
    loop {
        match tokio::time::timeout(T, eventloop.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(p))) => return p,
            Ok(Ok(_)) => continue,
            other => panic!("v5 client failed: {other:?}"),
        }
    }
}

/// The payloads of the next `n` PUBLISH packets a subscriber receives.
async fn payloads(events: &mut Events, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        expect(events, "a delivery", |p| {
            if let Ok(Packet::Publish(p)) = p {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
                return true;
            }
            false
        })
        .await;
    }
    got
}

fn is_connack(p: &Result<Packet, String>) -> bool {
    matches!(p, Ok(Packet::ConnAck(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_puback_waits_for_commit() {
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;

    // rumqttd: a local subscriber proves rumqttd has routed the message (and
    // so had queued its own PUBACK) while the gate still holds the ack.
    // Ferry's engine: the subscriber gets it only once it is stored.
    let (sub, mut sub_events) = v4_client(broker.addr(), "sub-q1", true);
    expect(&mut sub_events, "sub connack", is_connack).await;
    sub.subscribe("gate/#", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    expect(&mut sub_events, "suback", |p| {
        matches!(p, Ok(Packet::SubAck(_)))
    })
    .await;

    let (client, mut events) = v4_client(broker.addr(), "pub-q1", true);
    expect(&mut events, "connack", is_connack).await;
    client
        .publish("gate/q1", rumqttc::QoS::AtLeastOnce, false, "21.5")
        .await
        .expect("publish");

    wait_for("commit pending", T, || sink.held() == 1).await;
    let routed =
        |p: &Result<Packet, String>| matches!(p, Ok(Packet::Publish(p)) if p.topic == "gate/q1");
    let engine = test_engine();
    if engine == BrokerEngine::Rumqttd {
        expect(&mut sub_events, "routed publish", routed).await;
    }
    expect_none(&mut events, Duration::from_millis(300), "PUBACK", |p| {
        matches!(p, Ok(Packet::PubAck(_)))
    })
    .await;
    if engine == BrokerEngine::Ferry {
        expect_none(
            &mut sub_events,
            Duration::from_millis(100),
            "the delivery",
            routed,
        )
        .await;
    }

    let released = Instant::now();
    assert_eq!(sink.release(Accepted::Stored), 1);
    if engine == BrokerEngine::Ferry {
        expect(&mut sub_events, "the delivery after the commit", routed).await;
    }
    let acked = expect(&mut events, "PUBACK", |p| {
        matches!(p, Ok(Packet::PubAck(_)))
    })
    .await;
    assert!(acked >= released);
    println!("ack-hold release→PUBACK latency: {:?}", acked - released);

    let msg = &sink.messages()[0];
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..], msg.qos),
        ("gate/q1", &b"21.5"[..], QoS::AtLeastOnce)
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_pubrec_waits_for_commit_and_many_commit_concurrently() {
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;
    let (client, mut events) = v4_client(broker.addr(), "pub-q2", true);
    expect(&mut events, "connack", is_connack).await;

    client
        .publish("gate/q2", rumqttc::QoS::ExactlyOnce, false, "1")
        .await
        .expect("publish");
    wait_for("commit pending", T, || sink.held() == 1).await;
    expect_none(&mut events, Duration::from_millis(300), "PUBREC", |p| {
        matches!(p, Ok(Packet::PubRec(_)))
    })
    .await;
    sink.release(Accepted::Stored);
    expect(&mut events, "PUBREC", |p| {
        matches!(p, Ok(Packet::PubRec(_)))
    })
    .await;
    expect(&mut events, "PUBCOMP", |p| {
        matches!(p, Ok(Packet::PubComp(_)))
    })
    .await;

    // 50 QoS 1 publishes: all reach the sink while the first ack is held,
    // so their commits are in flight together.
    for i in 0..50 {
        client
            .publish(
                format!("gate/many/{i}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                "x",
            )
            .await
            .expect("publish");
    }
    wait_for("50 commits in flight", T, || sink.held() == 50).await;
    sink.release(Accepted::Stored);
    let mut acks = 0;
    while acks < 50 {
        expect(&mut events, "PUBACK", |p| {
            matches!(p, Ok(Packet::PubAck(_)))
        })
        .await;
        acks += 1;
    }
    assert_eq!(sink.count(), 51, "each message stored once");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_rejection_becomes_reason_code() {
    let sink = TestSink::new(Mode::Answer(Accepted::Rejected(RejectReason::Full)));
    let broker = start(test_config(), sink.clone()).await;
    let addr = broker.addr();
    let opts = rumqttc::v5::MqttOptions::new("v5-reject", addr.ip().to_string(), addr.port());
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
    assert!(matches!(next_v5(&mut eventloop).await, P5::ConnAck(_)));
    use rumqttc::v5::mqttbytes::QoS as Q5;
    client
        .publish("gate/v5", Q5::AtLeastOnce, false, "1")
        .await
        .expect("publish");
    match next_v5(&mut eventloop).await {
        P5::PubAck(ack) => assert_eq!(ack.reason, PubAckReason::QuotaExceeded),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    sink.set_mode(Mode::Answer(Accepted::Rejected(RejectReason::StorageError)));
    client
        .publish("gate/v5", Q5::ExactlyOnce, false, "2")
        .await
        .expect("publish");
    match next_v5(&mut eventloop).await {
        P5::PubRec(rec) => assert_eq!(rec.reason, PubRecReason::UnspecifiedError),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    sink.set_mode(Mode::Answer(Accepted::Unrouted));
    client
        .publish("gate/v5", Q5::AtLeastOnce, false, "3")
        .await
        .expect("publish");
    match next_v5(&mut eventloop).await {
        P5::PubAck(ack) => assert_eq!(ack.reason, PubAckReason::Success),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    broker.stop().await;
}

/// A refused QoS 2 message never reaches a local subscriber, and those after
/// it arrive in step. (rumqttd holds a QoS 2 message until a PUBREL and
/// hands out the oldest it holds on the next one: a refused message it had
/// been given reached subscribers on the next PUBREL, one message out of
/// step from then on.) Mosquitto has no refusal to compare with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_refusal_keeps_local_subscribers_in_step() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(test_config(), sink.clone()).await;
    let addr = broker.addr();
    let (sub, mut sub_events) = v4_client(addr, "step-sub", true);
    expect(&mut sub_events, "connack", is_connack).await;
    sub.subscribe("step/#", rumqttc::QoS::ExactlyOnce)
        .await
        .expect("subscribe");
    expect(&mut sub_events, "suback", |p| {
        matches!(p, Ok(Packet::SubAck(_)))
    })
    .await;

    let opts = rumqttc::v5::MqttOptions::new("step-pub", addr.ip().to_string(), addr.port());
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 100);
    assert!(matches!(next_v5(&mut eventloop).await, P5::ConnAck(_)));
    use rumqttc::v5::mqttbytes::QoS as Q5;
    let full = Accepted::Rejected(RejectReason::Full);
    let broken = Accepted::Rejected(RejectReason::StorageError);
    let steps = [
        ("1", Accepted::Stored, PubRecReason::Success),
        ("2", full.clone(), PubRecReason::QuotaExceeded),
        ("3", Accepted::Stored, PubRecReason::Success),
        ("4", broken, PubRecReason::UnspecifiedError),
        ("5", full, PubRecReason::QuotaExceeded),
        ("6", Accepted::Stored, PubRecReason::Success),
    ];
    for (payload, answer, reason) in steps {
        sink.set_mode(Mode::Answer(answer));
        client
            .publish("step/x", Q5::ExactlyOnce, false, payload)
            .await
            .expect("publish");
        match next_v5(&mut eventloop).await {
            P5::PubRec(rec) => assert_eq!(rec.reason, reason, "PUBREC of {payload}"),
            other => panic!("expected PUBREC for {payload}, got {other:?}"),
        }
        if reason == PubRecReason::Success {
            assert!(
                matches!(next_v5(&mut eventloop).await, P5::PubComp(_)),
                "PUBCOMP of {payload}"
            );
        }
    }
    let got = payloads(&mut sub_events, 3).await;
    expect_none(
        &mut sub_events,
        Duration::from_millis(500),
        "another delivery",
        |p| matches!(p, Ok(Packet::Publish(_))),
    )
    .await;
    assert_eq!(
        got,
        ["1", "3", "6"],
        "exactly the stored messages, in order"
    );

    // Held commits: QoS 2 publishes still commit concurrently, and what the
    // client sends after them waits in order.
    sink.set_mode(Mode::Hold);
    let poller = tokio::spawn(async move {
        let mut comps = 0;
        while comps < 20 {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(P5::PubComp(_))) => comps += 1,
                Ok(_) => {}
                Err(e) => panic!("v5 client failed: {e}"),
            }
        }
    });
    for i in 0..20 {
        client
            .publish("step/many", Q5::ExactlyOnce, false, format!("m{i}"))
            .await
            .expect("publish");
    }
    wait_for("20 commits in flight", T, || sink.held() == 20).await;
    sink.release(Accepted::Stored);
    let many = payloads(&mut sub_events, 20).await;
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(many, want, "delivered once each, in publish order");
    tokio::time::timeout(T, poller)
        .await
        .expect("every PUBCOMP")
        .expect("poller");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_rejection_closes_connection_and_client_retransmits() {
    let sink = TestSink::new(Mode::Answer(Accepted::Rejected(RejectReason::Full)));
    let broker = start(test_config(), sink.clone()).await;
    let (client, mut events) = v4_client(broker.addr(), "v4-reject", false);
    expect(&mut events, "connack", is_connack).await;
    client
        .publish("gate/v4", rumqttc::QoS::AtLeastOnce, false, "1")
        .await
        .expect("publish");
    let mut saw_ack = false;
    expect(&mut events, "connection closed", |p| {
        saw_ack |= matches!(p, Ok(Packet::PubAck(_)));
        p.is_err()
    })
    .await;
    assert!(!saw_ack, "a rejected message must not be acknowledged");

    // The buffer has room again: the client's retransmission is stored and
    // acknowledged.
    sink.set_mode(Mode::Answer(Accepted::Stored));
    expect(&mut events, "PUBACK after reconnect", |p| {
        matches!(p, Ok(Packet::PubAck(_)))
    })
    .await;
    assert!(sink.count() >= 2, "stored on retransmission");
    broker.stop().await;
}

/// A raw socket rather than rumqttc: rumqttc drops an event that arrives
/// in the same read as the end of the stream, and here the PUBACK is
/// followed by the close at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_forwards_pending_acks_before_closing() {
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;
    let mut s = TcpStream::connect(broker.addr()).await.expect("connect");
    let connect = [
        0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 5, b'd', b'r', b'a', b'i', b'n',
    ];
    s.write_all(&packet(0x10, &connect)).await.expect("write");
    assert_eq!(read_some(&mut s).await, [0x20, 0x02, 0x00, 0x00]);
    let publish = [0, 7, b'g', b'/', b'd', b'r', b'a', b'i', b'n', 0, 9, b'1'];
    s.write_all(&packet(0x32, &publish)).await.expect("write");
    wait_for("commit pending", T, || sink.held() == 1).await;

    broker.shutdown.cancel();
    // New connections are refused once the listener stopped.
    wait_for("listener closed", T, || {
        std::net::TcpStream::connect(broker.addr()).is_err()
    })
    .await;
    assert_eq!(broker.handle.connections(), 1, "draining connection stays");
    sink.release(Accepted::Stored);
    let mut rest = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("closed after drain")
        .expect("read");
    assert_eq!(rest, [0x40, 0x02, 0x00, 0x09], "PUBACK, then end of stream");
    let handle = broker.handle.clone();
    broker.stop().await;
    assert_eq!(handle.connections(), 0);
}

/// Encodes a packet with its remaining length.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0; 256];
    let n = tokio::time::timeout(T, stream.read(&mut buf))
        .await
        .expect("reply in time")
        .unwrap_or(0);
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_edges() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let mut config = test_config();
    config.max_payload_size = bytesize::ByteSize::kib(1);
    let broker = start(config, sink.clone()).await;

    // An MQTT level the gate does not speak (3.1 is accepted: see
    // broker_mosquitto.rs) is refused with CONNACK 0x01.
    let mut s = TcpStream::connect(broker.addr()).await.expect("connect");
    let body = [0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'c'];
    s.write_all(&packet(0x10, &body)).await.expect("write");
    assert_eq!(read_some(&mut s).await, [0x20, 0x02, 0x00, 0x01]);

    // Garbage closes the connection.
    let mut s = TcpStream::connect(broker.addr()).await.expect("connect");
    s.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        .await
        .expect("write");
    assert!(read_some(&mut s).await.is_empty());

    // MQTT 5: topic alias set then used; oversized packet gets 0x95.
    let mut s = TcpStream::connect(broker.addr()).await.expect("connect");
    let connect = [
        0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 2, b'v', b'5',
    ];
    s.write_all(&packet(0x10, &connect)).await.expect("write");
    let connack = read_some(&mut s).await;
    assert_eq!(connack.first(), Some(&0x20), "{connack:?}");
    let first = [0, 3, b'a', b'/', b'b', 0, 1, 3, 0x23, 0, 7, b'x'];
    let second = [0, 0, 0, 2, 3, 0x23, 0, 7, b'y'];
    s.write_all(&packet(0x32, &first)).await.expect("write");
    s.write_all(&packet(0x32, &second)).await.expect("write");
    wait_for("aliased publishes", T, || sink.count() == 2).await;
    assert_eq!(sink.topics(), ["a/b", "a/b"]);
    assert_eq!(&sink.messages()[1].payload[..], b"y");
    let big = vec![0u8; 2048];
    s.write_all(&packet(0x30, &[&[0, 1, b'z'][..], &big].concat()))
        .await
        .expect("write");
    let mut tail = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut tail)).await;
    assert!(
        tail.windows(3).any(|w| w == [0xE0, 0x01, 0x95]),
        "DISCONNECT 0x95 expected in {tail:?}"
    );
    wait_for("connections closed", T, || broker.handle.connections() == 0).await;
    broker.stop().await;
}

/// `mqtt.max_inflight_bytes` bounds the publishes whose commit is pending
/// across all connections: with commits held, three clients publishing 1 KB
/// messages get no more than the budget into the sink, the rest wait (their
/// connections are not read), and every message lands and is acknowledged
/// once commits finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_bytes_are_bounded_across_connections() {
    let sink = TestSink::new(Mode::Hold);
    let mut config = test_config();
    config.max_payload_size = bytesize::ByteSize::kib(2);
    // Room for four packets of a 1,000-byte payload, not five.
    config.max_inflight_bytes = bytesize::ByteSize::b(4 * 1_030);
    let broker = start(config, sink.clone()).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let (client, mut events) = v4_client(broker.addr(), &format!("bytes-{i}"), true);
        expect(&mut events, "connack", is_connack).await;
        clients.push((client, events));
    }
    let payload = vec![b'x'; 1_000];
    for (i, (client, _)) in clients.iter().enumerate() {
        for j in 0..4 {
            client
                .publish(
                    format!("bytes/{i}/{j}"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .expect("publish");
        }
    }
    wait_for("the budget filled", T, || sink.held() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.held(), 4, "no more than the budget is in flight");

    let deadline = Instant::now() + T;
    let mut stored = 0;
    while stored < 12 {
        assert!(sink.held() <= 4, "{} in flight", sink.held());
        stored += sink.release(Accepted::Stored);
        assert!(Instant::now() < deadline, "only {stored} of 12 stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.count(), 12);
    for (_, events) in &mut clients {
        for _ in 0..4 {
            expect(events, "PUBACK", |p| matches!(p, Ok(Packet::PubAck(_)))).await;
        }
    }
    broker.stop().await;
}

/// The next 4 bytes from `s`.
async fn read4(s: &mut TcpStream, what: &str) -> [u8; 4] {
    let mut buf = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    buf
}

/// A QoS 2 PUBLISH of `x` to `a/b` with packet id `pkid`; `first` is the
/// fixed header's first byte (0x34, or 0x3C for a DUP).
fn qos2_publish(first: u8, pkid: u8) -> Vec<u8> {
    packet(first, &[0, 3, b'a', b'/', b'b', 0, pkid, b'x'])
}

/// A raw MQTT 3.1.1 client `id` whose QoS 2 message 1 is committed and
/// PUBREC'd (its PUBREL not sent), and whose message 2 waits in the gate for
/// its commit (the sink holds it).
async fn raw_client_with_message_2_withheld(
    broker: &broker_support::Running,
    sink: &TestSink,
    id: &[u8; 2],
) -> TcpStream {
    let mut s = TcpStream::connect(broker.addr()).await.expect("connect");
    let connect = [
        0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, id[0], id[1],
    ];
    s.write_all(&packet(0x10, &connect)).await.expect("write");
    assert_eq!(read4(&mut s, "CONNACK").await, [0x20, 2, 0, 0]);
    s.write_all(&qos2_publish(0x34, 1)).await.expect("write");
    wait_for("first commit pending", T, || sink.held() == 1).await;
    sink.release(Accepted::Stored);
    assert_eq!(read4(&mut s, "PUBREC 1").await, [0x50, 2, 0, 1]);
    s.write_all(&qos2_publish(0x34, 2)).await.expect("write");
    wait_for("second commit pending", T, || sink.held() == 1).await;
    s
}

/// A QoS 2 PUBLISH waits in the gate for its commit, and the client's later
/// publishes wait behind it; its other flows do not. The PUBREL of a message
/// rumqttd already holds, and a PINGREQ, pass a PUBLISH whose commit is
/// pending (held back, a PUBREL would keep the client's in-flight slot taken
/// for the length of a later message's commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrel_and_pingreq_pass_a_withheld_qos2_publish() {
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;
    // The second message's commit stays pending.
    let mut s = raw_client_with_message_2_withheld(&broker, &sink, b"rq").await;
    s.write_all(&packet(0x62, &[0, 1])).await.expect("write");
    assert_eq!(
        read4(&mut s, "PUBCOMP 1 while message 2 waits for its commit").await,
        [0x70, 2, 0, 1]
    );
    s.write_all(&[0xC0, 0]).await.expect("write");
    let mut pong = [0u8; 2];
    tokio::time::timeout(T, s.read_exact(&mut pong))
        .await
        .expect("PINGRESP while message 2 waits for its commit")
        .expect("PINGRESP");
    assert_eq!(pong, [0xD0, 0]);
    assert_eq!(sink.held(), 1, "message 2 still pending");

    sink.release(Accepted::Stored);
    assert_eq!(read4(&mut s, "PUBREC 2").await, [0x50, 2, 0, 2]);
    s.write_all(&packet(0x62, &[0, 2])).await.expect("write");
    assert_eq!(read4(&mut s, "PUBCOMP 2").await, [0x70, 2, 0, 2]);
    assert_eq!(sink.count(), 2, "each message stored once");
    broker.stop().await;
}

/// The exception to the above: a client that sent a QoS 2 PUBLISH again
/// (DUP) before it had the PUBREC has that copy wait behind a withheld
/// PUBLISH; the PUBREL that follows waits behind the copy, so rumqttd never
/// gets a message's PUBREL before a copy of it (it would hold the copy as a
/// new message and hand it out on a later PUBREL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubrel_stays_behind_its_own_resent_publish() {
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;
    // Message 2 waits for its commit; the copy of 1 (sent before the
    // client had its PUBREC) and then 1's PUBREL wait behind it.
    let mut s = raw_client_with_message_2_withheld(&broker, &sink, b"rd").await;
    s.write_all(&qos2_publish(0x3C, 1)).await.expect("write");
    s.write_all(&packet(0x62, &[0, 1])).await.expect("write");
    if test_engine() == BrokerEngine::Ferry {
        // No second broker to keep in step: the copy of 1 is answered
        // PUBREC 1 (stored already), its PUBREL PUBCOMP 1, while message 2
        // still waits for its commit.
        assert_eq!(read4(&mut s, "PUBREC 1 again").await, [0x50, 2, 0, 1]);
        assert_eq!(read4(&mut s, "PUBCOMP 1").await, [0x70, 2, 0, 1]);
        assert_eq!(sink.held(), 1, "message 2 still pending");
        sink.release(Accepted::Stored);
        assert_eq!(read4(&mut s, "PUBREC 2").await, [0x50, 2, 0, 2]);
        assert_eq!(sink.count(), 2, "the copy is not stored again");
        broker.stop().await;
        return;
    }
    let mut early = [0u8; 4];
    let got = tokio::time::timeout(Duration::from_millis(500), s.read(&mut early)).await;
    assert!(
        got.is_err(),
        "nothing may pass message 2 while its commit is pending: {early:?}"
    );

    sink.release(Accepted::Stored);
    // Now in order: PUBREC 2, then what rumqttd answers to the copy and the
    // PUBREL; PUBCOMP 1 among them.
    let mut seen = Vec::new();
    let deadline = Instant::now() + T;
    while !seen.windows(4).any(|w| w == [0x70, 2, 0, 1]) {
        assert!(Instant::now() < deadline, "no PUBCOMP 1 in {seen:?}");
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            assert!(n > 0, "connection closed after {seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(&seen[..4], [0x50, 2, 0, 2], "PUBREC 2 first: {seen:?}");
    assert_eq!(sink.count(), 2, "the copy is not stored again");
    broker.stop().await;
}
