//! MQTT ingest: the same publisher load (rumqttc, `clients` connections,
//! 100 publishes in flight each) against `ferry-agent` on each broker engine
//! (`mqtt.engine = "rumqttd"` and `"ferry"`; durable either way: every QoS 1
//! PUBACK after the SQLite commit is fsynced), Mosquitto without persistence
//! and Mosquitto with persistence on, at QoS 0 and 1 with 100 B and 1 KB
//! payloads, and QoS 2 with 100 B. Messages/s, publish-to-ack latency
//! p50/p99 (PUBACK for QoS 1, PUBREC for QoS 2) and CPU time per message.

use std::path::Path;

use rumqttc::QoS;
use serde_json::json;

use super::{BENCH_ROUTE, NO_HUB};
use crate::load::{Outcome, burst};
use crate::procs::{cpu_secs, rss_kib, start_agent_with, start_mosquitto};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const TARGETS: [&str; 4] = [
    "ferry-agent",
    "ferry-agent-engine",
    "mosquitto",
    "mosquitto-persistence",
];
/// Indexes into [`TARGETS`].
const AGENT: usize = 0;
const ENGINE: usize = 1;
const MOSQ: usize = 2;
const MOSQ_P: usize = 3;

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new("mqtt", "MQTT ingest: ferry-agent vs Mosquitto");
    let (clients, per) = (scale.mqtt_clients, scale.mqtt_messages_per_client);
    s.intro = format!(
        "{clients} publisher connections (rumqttc, {} in flight each) × {per} messages per case, the same load against each broker, \
         the brokers interleaved case by case, {} run(s). `ferry-agent`: one JSON route, the hub unreachable (it only buffers); \
         every QoS 1 PUBACK waits for the fsynced SQLite commit; `ferry-agent` is the embedded rumqttd behind the gate \
         (`mqtt.engine = \"rumqttd\"`, the fallback), `ferry-agent-engine` Ferry's own engine (`mqtt.engine = \"ferry\"`, \
         the default since decision 0023). CPU per message is the broker process's user + system time over the case, divided by the \
         messages. Mosquitto {}: no persistence (baseline), and `persistence true` \
         with `autosave_interval 1` + `autosave_on_changes` (it snapshots; it never fsyncs before a PUBACK). \
         QoS 0 rates stop the clock when a closing QoS 1 publish on each connection is acknowledged (the broker has read \
         everything). QoS 2 rates count completed exchanges (PUBCOMP); the agent hands a QoS 2 message to its broker only \
         after the commit. Latency is from the client writing the PUBLISH to reading its PUBACK (QoS 1) or PUBREC (QoS 2).",
        crate::load::INFLIGHT,
        scale.runs,
        crate::report::machine()["peers"].as_str().unwrap_or("?")
    );
    let (mut mosq, mosq_port) = start_mosquitto(dir, false);
    let (mut mosq_p, mosq_p_port) = start_mosquitto(dir, true);
    let agent = start_agent_with(
        dir,
        NO_HUB.0,
        None,
        NO_HUB.1,
        BENCH_ROUTE,
        "engine = \"rumqttd\"",
    );
    let engine_dir = dir.join("engine");
    std::fs::create_dir_all(&engine_dir).expect("engine dir");
    let engine = start_agent_with(
        &engine_dir,
        NO_HUB.0,
        None,
        NO_HUB.1,
        BENCH_ROUTE,
        "engine = \"ferry\"",
    );
    let rss_idle = rss_kib(agent.peer.id());
    let engine_rss_idle = rss_kib(engine.peer.id());
    let ports = [agent.mqtt, engine.mqtt, mosq_port, mosq_p_port];
    let pids = [agent.peer.id(), engine.peer.id(), mosq.id(), mosq_p.id()];
    let cases = [
        (QoS::AtMostOnce, 100),
        (QoS::AtMostOnce, 1024),
        (QoS::AtLeastOnce, 100),
        (QoS::AtLeastOnce, 1024),
        (QoS::ExactlyOnce, 100),
    ];
    // results[case][target] = outcomes of each run
    let mut results: Vec<Vec<Vec<Outcome>>> = vec![vec![Vec::new(); TARGETS.len()]; cases.len()];
    // cpu[case][target] = CPU microseconds per message, each run
    let mut cpu: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); TARGETS.len()]; cases.len()];
    for run in 0..scale.runs {
        for (ci, (qos, size)) in cases.iter().enumerate() {
            for (ti, port) in ports.iter().enumerate() {
                let cpu_before = cpu_secs(pids[ti]);
                let o = burst(*port, clients, per, *size, *qos);
                let used = cpu_secs(pids[ti]) - cpu_before;
                cpu[ci][ti].push(used * 1e6 / o.messages.max(1) as f64);
                eprintln!(
                    "  run {} {:?} {size} B {}: {:.0} msg/s, p50 {:.2} ms",
                    run + 1,
                    qos,
                    TARGETS[ti],
                    o.rate(),
                    percentile(&o.latencies_ms, 0.5)
                );
                results[ci][ti].push(o);
            }
        }
    }
    let rss_after = rss_kib(agent.peer.id());
    let engine_rss_after = rss_kib(engine.peer.id());
    drop(agent);
    drop(engine);
    mosq.kill();
    mosq_p.kill();

    let mut details = Vec::new();
    for (ci, (qos, size)) in cases.iter().enumerate() {
        let q = match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        };
        let rates: Vec<Vec<f64>> = results[ci]
            .iter()
            .map(|os| os.iter().map(Outcome::rate).collect())
            .collect();
        let p = |ti: usize, pct: f64| -> Vec<f64> {
            results[ci][ti]
                .iter()
                .map(|o| percentile(&o.latencies_ms, pct))
                .collect()
        };
        let label = format!("QoS {q}, {size} B");
        for (ti, name) in [(ENGINE, "engine"), (AGENT, "rumqttd")] {
            s.compare(Comparison::new(
                format!("{label}: throughput ({name})"),
                Unit::Rate("msg"),
                &rates[ti],
                "Mosquitto, no persistence",
                &rates[MOSQ],
            ));
            s.compare(Comparison::new(
                format!("{label}: CPU per message ({name})"),
                Unit::Lower("µs"),
                &cpu[ci][ti],
                "Mosquitto, no persistence",
                &cpu[ci][MOSQ],
            ));
            if q > 0 {
                s.compare(Comparison::new(
                    format!("{label}: p50 publish→ack ({name})"),
                    Unit::Ms,
                    &p(ti, 0.5),
                    "Mosquitto, no persistence",
                    &p(MOSQ, 0.5),
                ));
                s.compare(Comparison::new(
                    format!("{label}: p99 publish→ack ({name})"),
                    Unit::Ms,
                    &p(ti, 0.99),
                    "Mosquitto, no persistence",
                    &p(MOSQ, 0.99),
                ));
            }
        }
        s.compare(Comparison::new(
            format!("{label}: throughput (engine)"),
            Unit::Rate("msg"),
            &rates[ENGINE],
            "Mosquitto, persistence",
            &rates[MOSQ_P],
        ));
        s.compare(Comparison::new(
            format!("{label}: throughput (engine)"),
            Unit::Rate("msg"),
            &rates[ENGINE],
            "ferry-agent on rumqttd",
            &rates[AGENT],
        ));
        for (ti, t) in TARGETS.iter().enumerate() {
            details.push(json!({
                "qos": q, "payload_bytes": size, "target": t,
                "msgs_per_s": rates[ti], "p50_ms": p(ti, 0.5), "p99_ms": p(ti, 0.99),
                "cpu_us_per_msg": cpu[ci][ti],
                "messages": results[ci][ti].iter().map(|o| o.messages).collect::<Vec<_>>(),
            }));
        }
    }
    s.note(format!(
        "Agent RSS: {:.1} MiB idle, {:.1} MiB after the runs on rumqttd; {:.1} MiB idle, {:.1} MiB after on the engine.",
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        engine_rss_idle as f64 / 1024.0,
        engine_rss_after as f64 / 1024.0
    ));
    s.details = json!({"clients": clients, "messages_per_client": per, "runs": scale.runs, "cases": details,
        "agent_rss_kib": {"idle": rss_idle, "after": rss_after},
        "engine_rss_kib": {"idle": engine_rss_idle, "after": engine_rss_after}});
    s
}
