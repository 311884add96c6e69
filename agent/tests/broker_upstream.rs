//! `[[mqtt.upstream]]` against a real Mosquitto: messages reach the sink;
//! messages published while the subscription is stopped are queued in the
//! persistent session and arrive after a restart with the same client id;
//! a message whose commit never succeeded is not acknowledged upstream and
//! is redelivered; acknowledgements go upstream in the order of the
//! messages, whatever order their commits settle in.

mod broker_support;

use std::time::Duration;

use broker_support::tools::{Mosquitto, publish_ok};
use broker_support::{Mode, TestSink, wait_for};
use ferry_agent::broker::{UpstreamConfig, upstream};
use ferry_agent::ingest::{Accepted, Message, QoS, RejectReason, Source};
use rumqttc::QoS::AtLeastOnce as QoS1;
use rumqttc::mqttbytes::v4;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const T: Duration = Duration::from_secs(15);

struct Consumer {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

fn start(mosquitto: &Mosquitto, sink: &TestSink) -> Consumer {
    start_on(mosquitto.addr.port(), sink)
}

fn start_on(port: u16, sink: &TestSink) -> Consumer {
    start_with(port, sink, 1)
}

fn start_with(port: u16, sink: &TestSink, qos: u8) -> Consumer {
    let mut config = UpstreamConfig::new(
        "lab",
        "127.0.0.1",
        "ferry-upstream-test",
        vec!["up/#".into()],
    );
    config.port = port;
    config.qos = qos;
    config.clean_session = false;
    config.min_backoff = Duration::from_millis(100);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    upstream::spawn(config, sink.clone(), shutdown.clone(), &tracker).expect("spawn upstream");
    Consumer { shutdown, tracker }
}

impl Consumer {
    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(T, self.tracker.wait())
            .await
            .expect("upstream stops");
    }
}

fn count(sink: &TestSink, topic: &str) -> usize {
    sink.topics().iter().filter(|t| *t == topic).count()
}

/// Publishes pings until the subscription delivers one.
async fn wait_connected(mosquitto: &Mosquitto, sink: &TestSink) {
    let deadline = std::time::Instant::now() + T;
    while count(sink, "up/ping") == 0 {
        publish_ok(mosquitto.addr, &["-q", "0", "-t", "up/ping", "-m", "p"]).await;
        assert!(
            std::time::Instant::now() < deadline,
            "upstream never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes one message at `qos` to a new `topic` and returns it as the
/// sink received it.
async fn publish_one(mosquitto: &Mosquitto, sink: &TestSink, qos: &str, topic: &str) -> Message {
    publish_ok(mosquitto.addr, &["-q", qos, "-t", topic, "-m", "1"]).await;
    wait_for(topic, T, || count(sink, topic) == 1).await;
    sink.messages()
        .into_iter()
        .find(|m| m.topic == topic)
        .expect("received")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_redelivers_after_restart() {
    let mosquitto = Mosquitto::start().await;
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));

    let consumer = start(&mosquitto, &sink);
    wait_connected(&mosquitto, &sink).await;
    let a = publish_one(&mosquitto, &sink, "1", "up/a").await;
    assert_eq!(a.qos, QoS::AtLeastOnce);
    assert_eq!(a.source, Source::Upstream { name: "lab".into() });
    consumer.stop().await;

    // Published while the agent is away: queued in the session upstream.
    for topic in ["up/b", "up/c"] {
        publish_ok(mosquitto.addr, &["-q", "1", "-t", topic, "-m", "2"]).await;
    }
    assert_eq!(count(&sink, "up/b"), 0);
    let consumer = start(&mosquitto, &sink);
    wait_for("queued up/b and up/c", T, || {
        count(&sink, "up/b") == 1 && count(&sink, "up/c") == 1
    })
    .await;

    // A commit that never succeeds is not acknowledged upstream: after a
    // restart the broker delivers the message again.
    sink.set_mode(Mode::Hold);
    publish_ok(mosquitto.addr, &["-q", "1", "-t", "up/d", "-m", "3"]).await;
    wait_for("up/d pending", T, || sink.held() == 1).await;
    let stopping = tokio::spawn(consumer.stop());
    wait_for("up/d released", T, || {
        sink.release(Accepted::Rejected(RejectReason::ShuttingDown));
        stopping.is_finished()
    })
    .await;
    sink.set_mode(Mode::Answer(Accepted::Stored));
    let consumer = start(&mosquitto, &sink);
    wait_for("up/d redelivered", T, || count(&sink, "up/d") == 2).await;
    consumer.stop().await;
}

/// Reads MQTT 3.1.1 packets from `stream` until `want` returns one.
async fn next_packet<T>(
    stream: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    mut want: impl FnMut(v4::Packet) -> Option<T>,
) -> T {
    use tokio::io::AsyncReadExt;
    loop {
        match v4::Packet::read(buf, 1 << 20) {
            Ok(packet) => {
                if let Some(t) = want(packet) {
                    return t;
                }
            }
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                let n = tokio::time::timeout(T, stream.read_buf(buf))
                    .await
                    .expect("the subscriber answers")
                    .expect("reads");
                assert!(n > 0, "the subscriber closed the connection");
            }
            Err(e) => panic!("bad packet from the subscriber: {e}"),
        }
    }
}

/// Plays the upstream broker on a plain TCP socket, which records the order
/// of the acknowledgements (Mosquitto does not show it): accepts the
/// subscription, sends `n` QoS 1 messages at once, and returns the packet
/// ids of the PUBACKs in the order they came, and the payloads the sink got.
async fn acks_from_a_burst(n: u16, sink: &TestSink) -> (Vec<u16>, Vec<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = listener.local_addr().expect("addr").port();
    let consumer = start_on(port, sink);
    let (mut stream, _) = tokio::time::timeout(T, listener.accept())
        .await
        .expect("the subscriber connects")
        .expect("accepts");
    let mut buf = bytes::BytesMut::new();
    let mut out = bytes::BytesMut::new();
    next_packet(&mut stream, &mut buf, |p| {
        matches!(p, v4::Packet::Connect(_)).then_some(())
    })
    .await;
    v4::ConnAck::new(v4::ConnectReturnCode::Success, false)
        .write(&mut out)
        .expect("encodes");
    stream.write_all(&out.split()).await.expect("writes");
    let pkid = next_packet(&mut stream, &mut buf, |p| match p {
        v4::Packet::Subscribe(s) => Some(s.pkid),
        _ => None,
    })
    .await;
    v4::SubAck::new(pkid, vec![v4::SubscribeReasonCode::Success(QoS1)])
        .write(&mut out)
        .expect("encodes");
    for i in 1..=n {
        let mut publish = v4::Publish::new("up/order", QoS1, i.to_string());
        publish.pkid = i;
        publish.write(&mut out).expect("encodes");
    }
    stream.write_all(&out.split()).await.expect("writes");

    let mut acked = Vec::new();
    while acked.len() < usize::from(n) {
        let id = next_packet(&mut stream, &mut buf, |p| match p {
            v4::Packet::PubAck(a) => Some(a.pkid),
            _ => None,
        })
        .await;
        acked.push(id);
    }
    let payloads = sink
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    consumer.stop().await;
    (acked, payloads)
}

fn in_order(n: u16) -> (Vec<u16>, Vec<String>) {
    ((1..=n).collect(), (1..=n).map(|i| i.to_string()).collect())
}

/// MQTT 3.1.1 §4.6: a subscriber sends PUBACKs in the order of the PUBLISH
/// packets. Here the sink settles later messages first, as when an earlier
/// message's commit took longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_go_upstream_in_the_order_of_the_messages() {
    let sink = TestSink::new(Mode::Countdown {
        from: Duration::from_millis(300),
        step: Duration::from_millis(3),
    });
    assert_eq!(acks_from_a_burst(100, &sink).await, in_order(100));
}

/// A broker without an in-flight limit sends more at once than the
/// acknowledger holds (256) and than the client's request queue holds
/// (320): the acknowledgements keep leaving while the session waits to
/// hand over more, and every message is acknowledged, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_every_queue_is_acknowledged_in_full() {
    let sink = TestSink::new(Mode::Delay(Duration::from_millis(5)));
    assert_eq!(acks_from_a_burst(1000, &sink).await, in_order(1000));
}

/// `qos = 2` subscribes at QoS 1 (upstream.rs, `subscribed_qos`): a QoS 2
/// publish reaches the sink at QoS 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_subscribes_at_qos_1() {
    let mosquitto = Mosquitto::start().await;
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let consumer = start_with(mosquitto.addr.port(), &sink, 2);
    wait_connected(&mosquitto, &sink).await;
    let two = publish_one(&mosquitto, &sink, "2", "up/two").await;
    assert_eq!(two.qos, QoS::AtLeastOnce);
    consumer.stop().await;
}
