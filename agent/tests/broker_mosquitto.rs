//! Real external clients through the gate: `mosquitto_pub` at QoS 0/1/2 with
//! MQTT 3.1.1 and 5, TLS with username/password, and `mosquitto_sub` as a
//! local subscriber, for retained messages and for a last will.
//! Missing tools fail these tests (see `require_tool`); they never skip.

mod broker_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use broker_support::tools::{Sub, mosquitto_pub, publish_ok, self_signed};
use broker_support::{Mode, TestSink, require_tool, start, test_config, wait_for};
use ferry_agent::broker::{MqttAuthConfig, MqttTlsConfig};
use ferry_agent::ingest::{Accepted, QoS, Source};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_all_qos_both_versions() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(test_config(), sink.clone()).await;
    let addr = broker.addr();

    let sub = Sub::spawn(addr, &["-V", "mqttv311", "-q", "2", "-t", "m/#"]);
    sub.wait_subscribed(addr, "m/ping").await;

    for version in ["mqttv311", "mqttv5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("m/{version}/{qos}");
            publish_ok(
                addr,
                &[
                    "-V", version, "-q", qos, "-i", "pub", "-t", &topic, "-m", "42",
                ],
            )
            .await;
            sub.expect(&format!("{topic} 42")).await;
        }
    }
    let ours = || {
        sink.topics()
            .iter()
            .filter(|t| t.starts_with("m/mqtt"))
            .count()
    };
    wait_for("six stored", T, || ours() == 6).await;
    let stored: BTreeMap<String, QoS> = sink
        .messages()
        .into_iter()
        .filter(|m| m.topic.starts_with("m/mqtt"))
        .map(|m| {
            assert_eq!(
                m.source,
                Source::Broker {
                    client_id: "pub".into()
                }
            );
            (m.topic, m.qos)
        })
        .collect();
    assert_eq!(stored["m/mqttv311/1"], QoS::AtLeastOnce);
    assert_eq!(stored["m/mqttv5/2"], QoS::ExactlyOnce);
    assert_eq!(stored["m/mqttv5/0"], QoS::AtMostOnce);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_waits_for_commit() {
    require_tool("mosquitto_pub", "mosquitto-clients");
    let sink = TestSink::new(Mode::Hold);
    let broker = start(test_config(), sink.clone()).await;
    let addr = broker.addr();
    for (version, qos) in [("mqttv311", "1"), ("mqttv5", "2")] {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(["-V", version, "-q", qos, "-t", "hold/x", "-m", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_pub");
        wait_for("commit pending", T, || sink.held() == 1).await;
        // The publisher cannot finish without its acknowledgement.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            child.try_wait().expect("poll").is_none(),
            "{version} q{qos}: mosquitto_pub finished before the commit"
        );
        sink.release(Accepted::Stored);
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "{version}: {status}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let mut config = test_config();
    config.tls = Some(MqttTlsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        cert: cert.clone(),
        key,
    });
    config.auth = Some(MqttAuthConfig {
        users: [("alice".to_owned(), "s3cret".to_owned())].into(),
    });
    let broker = start(config, sink.clone()).await;
    let tls_addr = broker.handle.tls_local_addr().expect("tls listener");
    let cafile = cert.to_string_lossy().into_owned();

    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("tls/{version}");
        let args = [
            "--cafile", &cafile, "-u", "alice", "-P", "s3cret", "-V", version,
        ];
        publish_ok(
            tls_addr,
            &[&args[..], &["-q", "1", "-t", &topic, "-m", "t"]].concat(),
        )
        .await;
        wait_for("tls message stored", T, || sink.topics().contains(&topic)).await;

        let bad = [
            "--cafile", &cafile, "-u", "alice", "-P", "wrong", "-V", version,
        ];
        let out = mosquitto_pub(
            tls_addr,
            &[&bad[..], &["-q", "1", "-t", "tls/bad", "-m", "x"]].concat(),
        )
        .await;
        assert!(!out.status.success(), "{version}: wrong password accepted");
    }
    // Plain listener: no credentials → refused; with them → accepted.
    let plain = broker.addr();
    let out = mosquitto_pub(plain, &["-q", "1", "-t", "tls/anon", "-m", "x"]).await;
    assert!(!out.status.success(), "anonymous client accepted");
    publish_ok(
        plain,
        &["-u", "alice", "-P", "s3cret", "-t", "tls/plain", "-m", "p"],
    )
    .await;
    wait_for("plain stored", T, || {
        sink.topics().contains(&"tls/plain".to_owned())
    })
    .await;
    assert!(
        !sink
            .topics()
            .iter()
            .any(|t| t == "tls/bad" || t == "tls/anon")
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_and_last_will() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(test_config(), sink.clone()).await;
    let addr = broker.addr();

    // Retained: a subscriber arriving later gets it.
    publish_ok(addr, &["-r", "-q", "1", "-t", "ret/x", "-m", "kept"]).await;
    let late = Sub::spawn(addr, &["-q", "1", "-t", "ret/x"]);
    late.expect("ret/x kept").await;

    // Last will: a client killed without DISCONNECT has its will published.
    let watcher = Sub::spawn(addr, &["-q", "1", "-t", "will/#"]);
    watcher.wait_subscribed(addr, "will/ping").await;
    let mut doomed = Sub::spawn(
        addr,
        &[
            "-i",
            "doomed",
            "-t",
            "doomed/ready",
            "--will-topic",
            "will/doomed",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ],
    );
    doomed.wait_subscribed(addr, "doomed/ready").await;
    assert!(!watcher.has("will/doomed gone"));
    doomed.kill();
    watcher.expect("will/doomed gone").await;
    broker.stop().await;
}
