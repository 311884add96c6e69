//! Backlog drain: how fast a release `ferry-agent` empties a buffered
//! backlog into a release `ferry-hub` that comes back after an outage,
//! against the hub's own segment ingest rate for the same rows posted
//! directly, measured in the same run.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/var/tmp/ferry-bench-target
//! cargo build --release -p ferry-hub -p ferry-agent -p ferry-hil-tests
//! cargo run --release -p ferry-hil-tests --bin drain_bench -- [--readings 1000000] \
//!     [--lines-per-message 1000] [--publishers 4] [--segment-rows 10000] \
//!     [--commit-interval 1s] [--json out.json]
//! ```
//!
//! 1. The hub starts once (auth on) to mint a `write` token for the agent,
//!    and stops (SIGTERM).
//! 2. The agent starts with its uplink on the hub's address, nothing
//!    listening; `--publishers` MQTT clients publish `--readings` line
//!    protocol readings at QoS 1 (`--lines-per-message` lines per message,
//!    route `format = "line-protocol"`), each PUBACK after the agent's
//!    commit. The bench waits until `/api/v1/status` shows every reading
//!    cut into pending segments (`segment.max_rows = --segment-rows`).
//! 3. The hub restarts on the same address; the clock runs from the moment
//!    it accepts connections until the agent's buffer is empty
//!    (`pending_segments = 0`, `backlog_readings = 0`), then until the
//!    hub's `count(*)` equals the published count.
//! 4. Baseline, same hub, same rows, same segment size: the segments posted
//!    straight to `POST /api/v1/segments` by one writer, one at a time (the
//!    agent's own pattern: its uplink sends one segment, waits for the
//!    durable commit, then the next), and by four writers (an upper bound
//!    the agent's in-order uplink cannot reach by design).

#[path = "hub_bench/common.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Args, BENCH_TIMEOUT, Dataset, HubOptions, bearer, count, du, fresh_addr, human, local,
    post_segment, rss_kib, secs, segment, start_hub,
};
use ferry_hil_tests::{Peer, agent_status, free_port, request, wait_for_port, wait_until};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const DATABASE: &str = "drain";

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5); index 0 here is field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// SIGTERM to a process this bench started, then wait until it exits.
fn stop(peer: &mut Peer) {
    let _ = Command::new("kill")
        .args(["-TERM", &peer.id().to_string()])
        .status();
    wait_until("the hub to stop", Duration::from_secs(60), || {
        !peer.is_running()
    });
}

/// Publishes `messages` at QoS 1 over `publishers` connections (100 in
/// flight each) and waits for every PUBACK; returns the seconds.
fn publish(port: u16, messages: &[Vec<u8>], publishers: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..publishers {
            let mine: Vec<Vec<u8>> = messages
                .iter()
                .skip(p)
                .step_by(publishers)
                .cloned()
                .collect();
            s.spawn(move || {
                let mut opts = MqttOptions::new(format!("drain-{p}"), "127.0.0.1", port);
                opts.set_keep_alive(Duration::from_secs(60));
                opts.set_inflight(100);
                opts.set_max_packet_size(1 << 20, 1 << 20);
                let (client, mut conn) = Client::new(opts, 200);
                let total = mine.len();
                let sender = std::thread::spawn(move || {
                    for m in mine {
                        if client
                            .publish("drain/lp", QoS::AtLeastOnce, false, m)
                            .is_err()
                        {
                            break;
                        }
                    }
                    client
                });
                let mut acked = 0;
                for event in conn.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => panic!("publisher {p}: {e}"),
                    }
                    if acked >= total {
                        break;
                    }
                }
                let client = sender.join().expect("sender");
                let _ = client.disconnect();
            });
        }
    });
    secs(start)
}

fn mint_write_token(addr: SocketAddr, admin: &str) -> String {
    let auth = bearer(Some(admin)).unwrap_or_default();
    let a = request(
        "POST",
        addr,
        "/api/v1/auth/tokens",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        br#"{"name": "gw-drain", "role": "write"}"#,
        BENCH_TIMEOUT,
    );
    assert_eq!(a.status, 201, "create token: {}", a.text());
    a.json()["token"].as_str().expect("token").to_owned()
}

/// Posts `segments` (already encoded) from `writers` agents, each writer
/// one segment at a time in sequence order; returns the seconds.
fn post_direct(
    hub: &common::Hub,
    m: &str,
    batches: &[arrow_array::RecordBatch],
    writers: usize,
) -> f64 {
    let queues: Vec<Vec<(String, u64, Vec<u8>)>> = (0..writers)
        .map(|w| {
            let agent = format!("direct-{m}-{w}").replace('_', "-");
            batches
                .iter()
                .skip(w)
                .step_by(writers)
                .enumerate()
                .map(|(i, b)| {
                    let seq = i as u64 + 1;
                    (agent.clone(), seq, segment(&agent, seq, DATABASE, m, b))
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for q in &queues {
            s.spawn(move || {
                for (agent, seq, bytes) in q {
                    post_segment(hub, agent, *seq, bytes);
                }
            });
        }
    });
    secs(start)
}

fn main() {
    let args = Args::parse(std::env::args().skip(1));
    let readings = args.num("readings", 1_000_000);
    let lines = args.num("lines-per-message", 1000) as usize;
    let publishers = args.num("publishers", 4) as usize;
    let seg_rows = args.num("segment-rows", 10_000) as usize;
    let options = HubOptions {
        commit_interval: args.text("commit-interval", "1s"),
        ..HubOptions::default()
    };
    assert!(
        seg_rows.is_multiple_of(lines),
        "--segment-rows must be a multiple of --lines-per-message"
    );
    // One message = one 10-s step of `lines` devices.
    let data = Dataset {
        devices: lines,
        steps: (readings as usize).div_ceil(lines),
    };
    let n = data.rows();
    let agent_bin = common::agent_binary();
    eprintln!(
        "drain: {n} readings in {} messages of {lines} lines, {publishers} publishers; \
         agent segments of {seg_rows} rows; hub commit_interval {}; agent {}",
        data.steps,
        options.commit_interval,
        agent_bin.display()
    );
    let messages: Vec<Vec<u8>> = (0..data.steps)
        .map(|s| data.line_protocol("readings", s, 1))
        .collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let hub_addr = fresh_addr();
    let mut hub = start_hub(dir.path(), hub_addr, &options);
    let admin = hub.token.clone().expect("bootstrap admin token");
    let token = mint_write_token(hub_addr, &admin);
    stop(&mut hub.peer);
    drop(hub);

    let mqtt = free_port();
    let http = free_port();
    let status_addr = local(http);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
id = "gw-drain"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
max_payload_size = "1 MiB"
[[routes]]
topic = "drain/lp"
database = "{DATABASE}"
format = "line-protocol"
[store]
max_bytes = "16 GiB"
when_full = "reject_new"
[segment]
max_rows = {seg_rows}
max_bytes = "64 MiB"
max_age = "1s"
[uplink]
hub_url = "http://{hub_addr}"
token = "{token}"
timeout = "120s"
backoff_initial = "50ms"
backoff_max = "200ms"
[http]
listen = "127.0.0.1:{http}"
[log]
level = "warn"
"#,
            data = dir.path().join("agent").display()
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
    wait_for_port(local(mqtt), Duration::from_secs(30));

    let rss_idle = rss_kib(agent.id()).unwrap_or(0);
    let publish_s = publish(mqtt, &messages, publishers);
    let rss_published = rss_kib(agent.id()).unwrap_or(0);
    eprintln!(
        "  published {n} readings in {publish_s:.1} s ({} readings/s, every PUBACK after the commit)",
        human(n as f64 / publish_s)
    );
    let t = Instant::now();
    let mut status = Value::Null;
    wait_until(
        "the backlog cut into segments",
        Duration::from_secs(1800),
        || {
            status = agent_status(status_addr);
            let b = &status["buffer"];
            b["backlog_readings"] == 0 && b["pending_segment_rows"].as_u64() == Some(n)
        },
    );
    let cut_s = publish_s + secs(t);
    let b = &status["buffer"];
    assert!(
        b["drops"]
            .as_object()
            .is_none_or(|d| d.values().all(|v| v == 0)),
        "the agent dropped readings: {status}"
    );
    let pending_segments = b["pending_segments"].as_u64().unwrap_or(0);
    let pending_bytes = b["pending_segment_bytes"].as_u64().unwrap_or(0);
    let agent_db = du(&dir.path().join("agent"));
    eprintln!(
        "  buffered: {pending_segments} segments, {:.1} MB of segments, agent dir {:.1} MB, {cut_s:.1} s after the first publish",
        pending_bytes as f64 / 1e6,
        agent_db as f64 / 1e6
    );

    // The hub comes back on the address the agent keeps trying.
    let hub = start_hub(dir.path(), hub_addr, &options);
    let hub_ready = Instant::now();
    let (agent_cpu0, hub_cpu0) = (cpu_secs(agent.id()), cpu_secs(hub.peer.id()));
    let hub = common::Hub {
        token: Some(admin.clone()),
        ..hub
    };
    let rss_cut = rss_kib(agent.id()).unwrap_or(0);
    let mut agent_rss_max = 0;
    let mut first_ack_s = None;
    wait_until(
        "the agent's buffer to drain",
        Duration::from_secs(3600),
        || {
            agent_rss_max = agent_rss_max.max(rss_kib(agent.id()).unwrap_or(0));
            let s = agent_status(status_addr);
            if first_ack_s.is_none() && !s["uplink"]["last_acked_seq"].is_null() {
                first_ack_s = Some(secs(hub_ready));
            }
            let b = &s["buffer"];
            b["pending_segments"] == 0 && b["backlog_readings"] == 0
        },
    );
    let drain_s = secs(hub_ready);
    let first_ack_s = first_ack_s.unwrap_or(f64::NAN);
    let (agent_cpu, hub_cpu) = (
        cpu_secs(agent.id()) - agent_cpu0,
        cpu_secs(hub.peer.id()) - hub_cpu0,
    );
    let table = format!("{DATABASE}.readings");
    wait_until("the backlog in the lake", Duration::from_secs(600), || {
        count(&hub, &table) == n
    });
    let visible_s = secs(hub_ready);
    let drain_rate = n as f64 / drain_s;
    eprintln!(
        "  drained {n} readings in {drain_s:.2} s ({} readings/s); count(*) = {n} after {visible_s:.2} s",
        human(drain_rate)
    );
    let rss_drained = rss_kib(agent.id()).unwrap_or(0);
    drop(agent);

    // Baselines on the same hub: the same rows, same segment size, posted directly.
    let steps = seg_rows / lines;
    let batches: Vec<_> = (0..data.steps)
        .step_by(steps)
        .map(|s| data.batch(s, steps))
        .collect();
    let direct1_s = post_direct(&hub, "direct_w1", &batches, 1);
    assert_eq!(count(&hub, &format!("{DATABASE}.direct_w1")), n);
    let direct4_s = post_direct(&hub, "direct_w4", &batches, 4);
    assert_eq!(count(&hub, &format!("{DATABASE}.direct_w4")), n);
    let (d1, d4) = (n as f64 / direct1_s, n as f64 / direct4_s);

    println!(
        "\n### Backlog drain ({n} readings, agent segments of {seg_rows} rows, hub commit_interval {})\n",
        options.commit_interval
    );
    println!("| path | readings/s | seconds | vs direct, 1 writer | vs direct, 4 writers |");
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: segments posted directly, 1 writer, one at a time | {} | {direct1_s:.1} | 1× | {:.2}× |",
        human(d1),
        d1 / d4
    );
    println!(
        "| upper bound: segments posted directly, 4 writers | {} | {direct4_s:.1} | {:.2}× | 1× |",
        human(d4),
        d4 / d1
    );
    println!(
        "| **agent drain** (hub up → buffer empty) | {} | {drain_s:.1} | {:.2}× | {:.2}× |",
        human(drain_rate),
        drain_rate / d1,
        drain_rate / d4
    );
    println!(
        "| agent drain until `count(*)` matches | {} | {visible_s:.1} | {:.2}× | {:.2}× |",
        human(n as f64 / visible_s),
        n as f64 / visible_s / d1,
        n as f64 / visible_s / d4
    );
    println!(
        "\nBefore the drain: publish at QoS 1 {} readings/s; all cut into {pending_segments} segments ({:.1} MB) {cut_s:.1} s after the first publish. \
         During the drain: first segment acknowledged {first_ack_s:.2} s after the hub listened (retry backoff 50–200 ms); \
         agent CPU {agent_cpu:.1} s (with the bench's status polls every 25 ms), hub CPU {hub_cpu:.1} s. \
         Agent RSS: {rss_idle} KiB idle, {rss_published} KiB after the publish, {rss_cut} KiB once all was cut, \
         {agent_rss_max} KiB peak during the drain, {rss_drained} KiB after it.",
        human(n as f64 / publish_s),
        pending_bytes as f64 / 1e6
    );
    let report = json!({
        "bench": "drain_bench", "commit": common::git_commit(),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
        "readings": n, "lines_per_message": lines, "publishers": publishers,
        "segment_rows": seg_rows, "commit_interval": options.commit_interval,
        "publish_seconds": publish_s, "cut_seconds": cut_s,
        "pending_segments": pending_segments, "pending_segment_bytes": pending_bytes,
        "agent_dir_bytes": agent_db,
        "drain_seconds": drain_s, "drain_readings_per_s": drain_rate,
        "visible_seconds": visible_s, "first_ack_seconds": first_ack_s,
        "agent_cpu_seconds": agent_cpu, "hub_cpu_seconds": hub_cpu, "agent_peak_rss_kib": agent_rss_max,
        "agent_rss_kib": {"idle": rss_idle, "after_publish": rss_published, "after_cut": rss_cut,
            "peak_drain": agent_rss_max, "after_drain": rss_drained},
        "direct_1_writer": {"seconds": direct1_s, "readings_per_s": d1},
        "direct_4_writers": {"seconds": direct4_s, "readings_per_s": d4},
        "ratio_drain_vs_direct_1": drain_rate / d1,
        "ratio_drain_vs_direct_4": drain_rate / d4,
    });
    if let Some(path) = args.opts.get("json") {
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("json"))
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
        eprintln!("wrote {path}");
    }
}
