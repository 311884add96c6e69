//! kill -9 of the agent in the middle of a QoS 1 stream, several times, with
//! restarts: every reading whose PUBACK the publisher received reaches the
//! hub's table exactly once.
//!
//! The publisher is a real MQTT client (rumqttc) that sends one QoS 1
//! message at a time and logs a value as acknowledged only when its PUBACK
//! arrives. A message in flight when the agent dies is not acknowledged and
//! is never re-sent, so the oracle is strict: acknowledged values appear
//! exactly once, unacknowledged ones at most once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_hil_tests::{free_port, query, spawn_agent, start_hub, wait_until};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

fn write_agent_config(
    dir: &Path,
    mqtt: u16,
    http_port: u16,
    hub: SocketAddr,
) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-kill"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "kill/{{device}}"
database = "plant"
measurement = "stream"
[segment]
max_age = "100ms"
[uplink]
hub_url = "http://{hub}"
backoff_initial = "50ms"
backoff_max = "500ms"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            dir.join("agent").display()
        ),
    )
    .expect("agent.toml");
    config
}

/// Publishes values one at a time from `next` until the connection breaks or
/// `deadline`; returns the values whose PUBACK arrived and the one in flight.
fn publish_until_broken(port: u16, next: &mut u64, deadline: Instant) -> (Vec<u64>, Option<u64>) {
    let mut opts = MqttOptions::new(format!("pub-{next}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 10);
    let mut acked = Vec::new();
    let mut in_flight: Option<u64> = None;
    let mut connected = false;
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                if let Some(v) = in_flight.take() {
                    acked.push(v);
                }
            }
            Ok(_) => {}
            Err(_) => return (acked, in_flight),
        }
        if connected && in_flight.is_none() {
            if Instant::now() >= deadline {
                return (acked, None);
            }
            let value = *next;
            *next += 1;
            let payload = format!("{{\"seq\": {value}}}");
            if client
                .try_publish("kill/dev1", QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                return (acked, None);
            }
            in_flight = Some(value);
        }
    }
    (acked, in_flight)
}

#[test]
fn acknowledged_readings_survive_repeated_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), false);
    let hub_addr = hub.addr;

    let mqtt = free_port();
    let http_port = free_port();
    let agent_config = write_agent_config(dir.path(), mqtt, http_port, hub_addr);
    let start_agent = |round: usize| {
        spawn_agent(
            &agent_config,
            mqtt,
            &dir.path().join(format!("agent-{round}.log")),
        )
    };

    let mut acked: Vec<u64> = Vec::new();
    let mut unacked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let rounds = 4;
    for round in 0..rounds {
        let mut agent = start_agent(round);
        let pid = agent.id();
        // Kill the agent at a varying moment while the publisher runs.
        let kill_after = Duration::from_millis(300 + 170 * round as u64);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let (ok, lost) =
            publish_until_broken(mqtt, &mut next, Instant::now() + Duration::from_secs(20));
        killer.join().expect("killer");
        agent.kill();
        assert!(!ok.is_empty(), "round {round}: nothing was acknowledged");
        acked.extend(ok);
        unacked.extend(lost);
    }
    // A last, clean run drains the buffer.
    let _agent = start_agent(rounds);

    let count_sql = "SELECT seq, count(*) FROM plant.stream GROUP BY seq";
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    wait_until(
        "every acknowledged reading in the lake",
        Duration::from_secs(60),
        || {
            let Some(v) = query(hub_addr, None, count_sql) else {
                return false;
            };
            seen = v["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| {
                    (
                        row[0].as_f64().unwrap_or(-1.0) as u64,
                        row[1].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            acked.iter().all(|a| seen.contains_key(a))
        },
    );
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicated readings: {duplicates:?}");
    let unknown: Vec<_> = seen
        .keys()
        .filter(|v| !acked.contains(v) && !unacked.contains(v))
        .collect();
    assert!(unknown.is_empty(), "readings nobody published: {unknown:?}");
    eprintln!(
        "kill -9 x{rounds}: {} acknowledged, all delivered once; {} in flight at a kill, {} of them stored",
        acked.len(),
        unacked.len(),
        unacked.iter().filter(|v| seen.contains_key(v)).count()
    );
}
