//! `[[mqtt.upstream]]` against a real Mosquitto: messages reach the sink;
//! messages published while the subscription is stopped are queued in the
//! persistent session and arrive after a restart with the same client id;
//! a message whose commit never succeeded is not acknowledged upstream and
//! is redelivered.

mod broker_support;

use std::time::Duration;

use broker_support::tools::{Mosquitto, publish_ok};
use broker_support::{Mode, TestSink, wait_for};
use ferry_agent::broker::{UpstreamConfig, upstream};
use ferry_agent::ingest::{Accepted, QoS, RejectReason, Source};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const T: Duration = Duration::from_secs(15);

struct Consumer {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

fn start(mosquitto: &Mosquitto, sink: &TestSink) -> Consumer {
    let mut config = UpstreamConfig::new(
        "lab",
        "127.0.0.1",
        "ferry-upstream-test",
        vec!["up/#".into()],
    );
    config.port = mosquitto.addr.port();
    config.qos = 1;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_redelivers_after_restart() {
    let mosquitto = Mosquitto::start().await;
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));

    let consumer = start(&mosquitto, &sink);
    wait_connected(&mosquitto, &sink).await;
    publish_ok(mosquitto.addr, &["-q", "1", "-t", "up/a", "-m", "1"]).await;
    wait_for("up/a", T, || count(&sink, "up/a") == 1).await;
    let a = sink
        .messages()
        .into_iter()
        .find(|m| m.topic == "up/a")
        .expect("up/a");
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
