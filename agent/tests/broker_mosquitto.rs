//! Real external clients through the gate: `mosquitto_pub` at QoS 0/1/2 with
//! MQTT 3.1.1 and 5, TLS with username/password, and `mosquitto_sub` as a
//! local subscriber, for retained messages and for a last will; MQTT 3.1
//! clients side by side with a real Mosquitto.
//! Missing tools fail these tests (see `require_tool`); they never skip.

mod broker_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use broker_support::tools::{Mosquitto, Sub, mosquitto_pub, publish_ok, self_signed};
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

/// The bytes a broker answers to `connect`, up to 4 (a CONNACK), read until
/// it closes or 5 s pass.
async fn connack_for(addr: std::net::SocketAddr, connect: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(connect).await.expect("write CONNECT");
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 4 {
            match s.read(&mut buf[..4 - got.len()]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// MQTT 3.1 (`MQIsdp`, level 3), which older devices and libraries still
/// speak: `mosquitto_pub`/`mosquitto_sub -V mqttv31` at QoS 0, 1 and 2
/// against the agent and against Mosquitto, with the same result; a 3.1
/// CONNECT gets the same CONNACK from both, and an empty client id (not
/// allowed in 3.1) the same refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_clients_like_mosquitto() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let broker = start(test_config(), sink.clone()).await;
    let mosquitto = Mosquitto::start().await;
    for (name, addr) in [
        ("ferry-agent", broker.addr()),
        ("mosquitto", mosquitto.addr),
    ] {
        let sub = Sub::spawn(addr, &["-V", "mqttv31", "-q", "2", "-t", "v31/#"]);
        sub.wait_subscribed(addr, "v31/ping").await;
        for qos in ["0", "1", "2"] {
            let topic = format!("v31/q{qos}");
            let out = mosquitto_pub(
                addr,
                &[
                    "-V", "mqttv31", "-q", qos, "-i", "pub31", "-t", &topic, "-m", "7",
                ],
            )
            .await;
            assert!(
                out.status.success(),
                "{name}: mosquitto_pub -V mqttv31 -q {qos}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            sub.expect(&format!("{topic} 7")).await;
        }

        // MQIsdp, level 3, clean session, keep alive 60, client id "c31".
        let ok = [
            0x10, 17, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 3, b'c', b'3',
            b'1',
        ];
        assert_eq!(
            connack_for(addr, &ok).await,
            [0x20, 2, 0, 0],
            "{name}: accepted"
        );
        // The same with an empty client id: 0x02, identifier rejected.
        let empty = [
            0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 0,
        ];
        assert_eq!(
            connack_for(addr, &empty).await,
            [0x20, 2, 0, 2],
            "{name}: empty client id"
        );
    }
    let stored: Vec<(String, QoS)> = sink
        .messages()
        .into_iter()
        .filter(|m| m.topic.starts_with("v31/q"))
        .map(|m| (m.topic, m.qos))
        .collect();
    assert_eq!(
        stored,
        [
            ("v31/q0".to_owned(), QoS::AtMostOnce),
            ("v31/q1".to_owned(), QoS::AtLeastOnce),
            ("v31/q2".to_owned(), QoS::ExactlyOnce),
        ]
    );
    broker.stop().await;
}

/// The embedded rumqttd listens on loopback for the gate alone: a local
/// client connecting to it directly, with the broker's own users or none,
/// is refused, so nothing bypasses `mqtt.auth` or the acknowledgement
/// after commit. Through the gate the same client works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_takes_no_direct_clients() {
    let sink = TestSink::new(Mode::Answer(Accepted::Stored));
    let mut config = test_config();
    config.auth = Some(MqttAuthConfig {
        users: [("alice".to_owned(), "secret".to_owned())].into(),
    });
    let broker = start(config, sink.clone()).await;
    let [v4, v5] = broker.handle.embedded_listeners();
    for (addr, version) in [(v4, "mqttv311"), (v5, "mqttv5")] {
        for login in [
            &[][..],
            &["-u", "alice", "-P", "secret"][..],
            &["-u", "ferry-gate", "-P", "guess"][..],
        ] {
            let mut args = vec!["-V", version, "-q", "1", "-t", "direct/x", "-m", "1"];
            args.extend_from_slice(login);
            let out = mosquitto_pub(addr, &args).await;
            assert!(
                !out.status.success(),
                "a client connected to rumqttd at {addr} directly ({version}, login {login:?})"
            );
        }
    }
    publish_ok(
        broker.addr(),
        &[
            "-q", "1", "-t", "gate/x", "-m", "1", "-u", "alice", "-P", "secret",
        ],
    )
    .await;
    assert_eq!(sink.topics(), ["gate/x"], "only what came through the gate");
    broker.stop().await;
}
