//! Ferry's broker engine under careless and hostile clients: every bound in
//! `[mqtt]` answers with the reason code the specification has for it, and
//! what it refuses reaches nobody (`mqtt.engine = "ferry"`).

mod broker_support;

use std::time::Duration;

use broker_support::{Mode, TestSink, start, test_config};
use bytesize::ByteSize;
use ferry_agent::broker::{BrokerEngine, MqttConfig};
use ferry_agent::ingest::Accepted;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Packet, PubAckReason, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

const T: Duration = Duration::from_secs(10);

fn engine_config() -> MqttConfig {
    MqttConfig {
        engine: BrokerEngine::Ferry,
        ..test_config()
    }
}

fn client(addr: std::net::SocketAddr, id: &str, clean: bool) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_clean_start(clean);
    if !clean {
        opts.set_session_expiry_interval(Some(600));
    }
    AsyncClient::new(opts, 100)
}

/// The next packet the client receives (`None`: the connection ended).
async fn next(eventloop: &mut EventLoop) -> Option<Packet> {
    loop {
        match tokio::time::timeout(T, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(p))) => return Some(p),
            Ok(Ok(Event::Outgoing(_))) => continue,
            Ok(Err(_)) => return None,
            Err(_) => panic!("nothing from the broker within {T:?}"),
        }
    }
}

/// Packets received within `window` (to show that something does not come).
async fn within(eventloop: &mut EventLoop, window: Duration) -> Vec<Packet> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
        if let Event::Incoming(p) = e {
            got.push(p);
        }
    }
    got
}

async fn connack(eventloop: &mut EventLoop) -> ConnectReturnCode {
    loop {
        match tokio::time::timeout(T, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return ack.code,
            Ok(Ok(_)) => continue,
            // rumqttc reports a refusing CONNACK as an error.
            Ok(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code))) => return code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

/// At `max_sessions`, the kept session of a client that is away makes room
/// for a new client (clients cycling through ids cannot lock others out);
/// only when every session is connected is a CONNECT refused, with 0x97.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_bound_make_room_or_are_refused_with_quota_exceeded() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(
        MqttConfig {
            max_sessions: 2,
            ..engine_config()
        },
        sink,
    )
    .await;
    let (c, mut ev) = client(broker.addr(), "away", false);
    assert_eq!(connack(&mut ev).await, ConnectReturnCode::Success);
    c.disconnect().await.expect("disconnect");
    while next(&mut ev).await.is_some() {}
    let (_busy, mut busy_ev) = client(broker.addr(), "busy", true);
    assert_eq!(connack(&mut busy_ev).await, ConnectReturnCode::Success);
    let (_third, mut third_ev) = client(broker.addr(), "third", true);
    assert_eq!(
        connack(&mut third_ev).await,
        ConnectReturnCode::Success,
        "the session of the client that is away made room"
    );
    let (_fourth, mut fourth_ev) = client(broker.addr(), "fourth", true);
    assert_eq!(
        connack(&mut fourth_ev).await,
        ConnectReturnCode::QuotaExceeded,
        "every session is connected"
    );
    // Keep the connected ones alive until here.
    drop(busy_ev);
    drop(third_ev);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_the_quota_get_0x97_and_the_rest_work() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(
        MqttConfig {
            max_subscriptions_per_client: 2,
            ..engine_config()
        },
        sink,
    )
    .await;
    let (c, mut ev) = client(broker.addr(), "greedy", true);
    connack(&mut ev).await;
    let filters = ["a/1", "a/2", "a/3"]
        .map(|f| Filter::new(f, QoS::AtLeastOnce))
        .to_vec();
    c.subscribe_many(filters).await.expect("subscribe");
    match next(&mut ev).await {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.return_codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::QuotaExceeded,
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    c.publish("a/2", QoS::AtLeastOnce, false, "x")
        .await
        .expect("publish");
    let got = within(&mut ev, Duration::from_millis(500)).await;
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::Publish(p) if p.topic == "a/2")),
        "{got:?}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_past_the_bound_is_refused_and_reaches_nobody() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(
        MqttConfig {
            max_retained_messages: 1,
            ..engine_config()
        },
        sink.clone(),
    )
    .await;
    let (sub, mut sub_ev) = client(broker.addr(), "watcher", true);
    connack(&mut sub_ev).await;
    sub.subscribe("r/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    assert!(matches!(next(&mut sub_ev).await, Some(Packet::SubAck(_))));

    let (c, mut ev) = client(broker.addr(), "retainer", true);
    connack(&mut ev).await;
    for (topic, reason) in [
        ("r/1", PubAckReason::Success),
        ("r/2", PubAckReason::QuotaExceeded),
    ] {
        c.publish(topic, QoS::AtLeastOnce, true, "v")
            .await
            .expect("publish");
        match next(&mut ev).await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, reason, "{topic}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let got = within(&mut sub_ev, Duration::from_millis(500)).await;
    let topics: Vec<_> = got
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(String::from_utf8_lossy(&p.topic).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["r/1"], "the refused one reaches nobody");
    // The reading itself is in the buffer: the bound is the broker's.
    assert_eq!(sink.count(), 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_keep_within_their_bounds_for_a_client_that_is_away() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(
        MqttConfig {
            max_queued_messages: 5,
            // Room for about 8 messages of 1 KiB in all queues together.
            max_payload_size: ByteSize::kib(1),
            max_queued_bytes: ByteSize::kib(64),
            max_queued_total_bytes: ByteSize::b(8 * 1100),
            ..engine_config()
        },
        sink,
    )
    .await;
    for id in ["away-1", "away-2"] {
        let (c, mut ev) = client(broker.addr(), id, false);
        connack(&mut ev).await;
        c.subscribe("q/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        assert!(matches!(next(&mut ev).await, Some(Packet::SubAck(_))));
        c.disconnect().await.expect("disconnect");
        while next(&mut ev).await.is_some() {}
    }
    let (c, mut ev) = client(broker.addr(), "flood", true);
    connack(&mut ev).await;
    let payload = vec![b'x'; 1000];
    for i in 0..20 {
        c.publish(format!("q/{i}"), QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("publish");
        assert!(matches!(next(&mut ev).await, Some(Packet::PubAck(_))));
    }
    let mut delivered = 0;
    for id in ["away-1", "away-2"] {
        let (_c, mut ev) = client(broker.addr(), id, false);
        connack(&mut ev).await;
        let got = within(&mut ev, Duration::from_millis(700)).await;
        let n = got
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count();
        assert!(n <= 5, "{id}: {n} queued past max_queued_messages");
        delivered += n;
    }
    // 2 × 5 by the per-session bound, fewer by the shared one.
    assert!(
        (1..=8).contains(&delivered),
        "{delivered} delivered past max_queued_total_bytes"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_the_receive_maximum_it_was_given_is_disconnected() {
    // Each QoS 2 message counts until its PUBREL; this client never sends one.
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(
        MqttConfig {
            max_inflight: 2,
            ..engine_config()
        },
        sink.clone(),
    )
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(broker.addr())
        .await
        .expect("connect");
    // CONNECT v5, clean start, keep alive 60, client id "rm".
    s.write_all(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 2, b'r', b'm',
    ])
    .await
    .expect("write");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .expect("CONNACK")
        .expect("read");
    assert_eq!(buf[0], 0x20, "CONNACK: {:?}", &buf[..n]);
    for id in 1..=3u8 {
        // PUBLISH QoS 2, topic "t", packet id, no properties, payload "p".
        s.write_all(&[0x34, 7, 0, 1, b't', 0, id, 0, b'p'])
            .await
            .expect("write");
    }
    let mut seen = Vec::new();
    loop {
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    // PUBREC 1 (and PUBREC 2, unless its commit was still pending when the
    // third arrived), then DISCONNECT 0x93 (Receive Maximum exceeded).
    assert!(seen.starts_with(&[0x50, 2, 0, 1]), "{seen:?}");
    assert!(seen.ends_with(&[0xE0, 1, 0x93]), "{seen:?}");
    assert!(
        !seen.windows(4).any(|w| w == [0x50, 2, 0, 3]),
        "the third is never acknowledged: {seen:?}"
    );
    assert_eq!(sink.count(), 2, "the third is not stored");
    broker.stop().await;
}

async fn read(s: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; n];
    tokio::time::timeout(T, s.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    buf
}

/// QoS 2 is stored once across a reconnect: the packet ids whose PUBREC went
/// out are session state, so a PUBLISH sent again on the next connection
/// (its PUBREC was lost) is answered without a second commit, and its
/// PUBREL completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_is_stored_once_across_a_reconnect() {
    use tokio::io::AsyncWriteExt;
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(engine_config(), sink.clone()).await;
    // CONNECT v5, clean start 0, keep alive 60, session expiry 600, id "q2".
    let connect = [
        0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x00, 0, 60, 5, 0x11, 0, 0, 2, 0x58, 0, 2, b'q',
        b'2',
    ];
    let mut s = tokio::net::TcpStream::connect(broker.addr())
        .await
        .expect("connect");
    s.write_all(&connect).await.expect("write");
    let head = read(&mut s, 2).await;
    assert_eq!(head[0], 0x20);
    read(&mut s, usize::from(head[1])).await;
    // PUBLISH QoS 2, topic "t", id 1, no properties, payload "p".
    s.write_all(&[0x34, 7, 0, 1, b't', 0, 1, 0, b'p'])
        .await
        .expect("write");
    assert_eq!(read(&mut s, 4).await, [0x50, 2, 0, 1], "PUBREC 1");
    drop(s); // the client never saw it

    let mut s = tokio::net::TcpStream::connect(broker.addr())
        .await
        .expect("connect");
    s.write_all(&connect).await.expect("write");
    let head = read(&mut s, 2).await;
    let connack = read(&mut s, usize::from(head[1])).await;
    assert_eq!(connack[0], 1, "session present: {connack:?}");
    // The same PUBLISH again, DUP set.
    s.write_all(&[0x3C, 7, 0, 1, b't', 0, 1, 0, b'p'])
        .await
        .expect("write");
    assert_eq!(read(&mut s, 4).await, [0x50, 2, 0, 1], "PUBREC 1 again");
    s.write_all(&[0x62, 2, 0, 1]).await.expect("write");
    assert_eq!(read(&mut s, 4).await, [0x70, 2, 0, 1], "PUBCOMP 1, found");
    assert_eq!(sink.count(), 1, "stored once");
    broker.stop().await;
}
