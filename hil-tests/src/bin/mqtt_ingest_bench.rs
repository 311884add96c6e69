//! MQTT ingest benchmark: the same publisher load against `ferry-agent`
//! (durable: every QoS 1 PUBACK waits for the SQLite commit), Mosquitto
//! without persistence, and Mosquitto with persistence, in one run.
//!
//! ```sh
//! cargo build --release -p ferry-agent
//! cargo run --release -p ferry-hil-tests --bin mqtt_ingest_bench -- [CLIENTS] [MESSAGES_PER_CLIENT] [QOS]
//! ```
//!
//! Prints messages/s and publish→ack latency p50/p99 per target, and the
//! agent's RSS after the run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_hil_tests::{Peer, find_tool, free_port, wait_for_port};
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

struct Outcome {
    messages: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

fn run_load(port: u16, clients: usize, per_client: usize, qos: QoS) -> Outcome {
    let payload = format!("{{\"celsius\": 21.5, \"pad\": \"{}\"}}", "x".repeat(70));
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let payload = payload.clone();
            std::thread::spawn(move || {
                let mut opts = MqttOptions::new(format!("bench-{c}-{port}"), "127.0.0.1", port);
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_inflight(100);
                let (client, mut conn) = Client::new(opts, 200);
                let topic = format!("bench/dev{c}/temperature");
                let sender = std::thread::spawn(move || {
                    for _ in 0..per_client {
                        if client.publish(&topic, qos, false, payload.clone()).is_err() {
                            break;
                        }
                    }
                    client
                });
                let mut sent: HashMap<u16, Instant> = HashMap::new();
                let mut latencies = Vec::with_capacity(per_client);
                let mut done = 0usize;
                let mut outgoing = 0usize;
                for event in conn.iter() {
                    match event {
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            outgoing += 1;
                            if qos == QoS::AtMostOnce {
                                done += 1;
                            } else {
                                sent.insert(pkid, Instant::now());
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(t) = sent.remove(&ack.pkid) {
                                latencies.push(t.elapsed());
                            }
                            done += 1;
                        }
                        Ok(Event::Incoming(Packet::PubComp(c))) => {
                            if let Some(t) = sent.remove(&c.pkid) {
                                latencies.push(t.elapsed());
                            }
                            done += 1;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("client {c}: {e}");
                            break;
                        }
                    }
                    if done >= per_client && outgoing >= per_client {
                        break;
                    }
                }
                let client = sender.join().expect("sender");
                let _ = client.disconnect();
                (done as u64, latencies)
            })
        })
        .collect();
    let mut messages = 0;
    let mut latencies = Vec::new();
    for h in handles {
        let (n, l) = h.join().expect("client thread");
        messages += n;
        latencies.extend(l);
    }
    Outcome {
        messages,
        seconds: start.elapsed().as_secs_f64(),
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut o: Outcome) -> f64 {
    o.latencies.sort();
    let rate = o.messages as f64 / o.seconds;
    println!(
        "{name:<32} {:>9.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} msgs in {:.2} s)",
        rate,
        percentile(&o.latencies, 0.5),
        percentile(&o.latencies, 0.99),
        o.messages,
        o.seconds
    );
    rate
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn start_mosquitto(dir: &std::path::Path, persistent: bool) -> (Peer, u16) {
    let mosquitto = find_tool("mosquitto").expect("mosquitto (apt-get install mosquitto)");
    let port = free_port();
    let conf = dir.join(format!("mosquitto-{persistent}.conf"));
    let mut text =
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n");
    if persistent {
        text.push_str(&format!(
            "persistence true\npersistence_location {}/\nautosave_on_changes true\nautosave_interval 1\n",
            dir.display()
        ));
    } else {
        text.push_str("persistence false\n");
    }
    std::fs::write(&conf, text).expect("mosquitto.conf");
    let peer = Peer::spawn(
        "mosquitto",
        Command::new(mosquitto).arg("-c").arg(&conf),
        &dir.join(format!("mosquitto-{persistent}.log")),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    (peer, port)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let per_client: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let qos = match args.get(3).map(String::as_str) {
        Some("0") => QoS::AtMostOnce,
        Some("2") => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let release = ferry_hil_tests::bin_dir()
        .parent()
        .map(|t| t.join("release/ferry-agent"))
        .filter(|p| p.is_file());
    if release.is_none() {
        eprintln!("warning: no release build of ferry-agent; measuring the debug build");
    }
    let agent_bin = release.unwrap_or_else(|| ferry_hil_tests::workspace_bin("ferry-agent"));
    println!(
        "{clients} clients x {per_client} messages, {qos:?}, ~100-byte JSON payloads; agent binary {}",
        agent_bin.display()
    );

    let (mut m0, p0) = start_mosquitto(dir.path(), false);
    let base = report(
        "mosquitto (no persistence)",
        run_load(p0, clients, per_client, qos),
    );
    m0.kill();
    let (mut m1, p1) = start_mosquitto(dir.path(), true);
    report(
        "mosquitto (persistence on)",
        run_load(p1, clients, per_client, qos),
    );
    m1.kill();

    let mqtt = free_port();
    let http = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"bench\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n[[routes]]\ntopic = \"bench/{{device}}/{{measurement}}\"\ndatabase = \"bench\"\n[uplink]\nhub_url = \"http://127.0.0.1:9\"\nbackoff_initial = \"10s\"\nbackoff_max = \"60s\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[log]\nlevel = \"error\"\n",
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let agent = Peer::spawn(
        "ferry-agent",
        Command::new(&agent_bin)
            .args(["run", "--config"])
            .arg(&config),
        &dir.path().join("agent.log"),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], mqtt)),
        Duration::from_secs(30),
    );
    let idle = rss_kib(agent.id());
    let rate = report(
        "ferry-agent (durable)",
        run_load(mqtt, clients, per_client, qos),
    );
    let loaded = rss_kib(agent.id());
    println!(
        "ferry-agent / mosquitto (no persistence): {:.2}x;  agent RSS idle {} KiB, after load {} KiB",
        rate / base,
        idle.unwrap_or(0),
        loaded.unwrap_or(0)
    );
}
