//! Topics: what the broker's memory does when every device publishes under
//! a topic of its own (`bench/dev-<id>/temp`, the default route), as a fleet
//! of short-lived device ids does. One QoS 1 message to each of
//! `distinct_topics` topics, against `ferry-agent` and Mosquitto (no
//! persistence); RSS from `/proc/<pid>/status` before and one second after.
//! A second baseline, the agent given the same number of messages to one
//! topic, separates the cost of the topics from the cost of the messages
//! (the agent buffers every reading; Mosquitto keeps none).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{BENCH_ROUTE, NO_HUB};
use crate::load::topics;
use crate::procs::{rss_kib, start_agent_with, start_mosquitto};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

/// Publisher connections.
const CLIENTS: usize = 4;
const PAYLOAD: usize = 100;

/// RSS (KiB) of `pid` 1 s before `load`, and its growth 1 s after.
fn growth(pid: u32, load: impl FnOnce() -> u64) -> (f64, f64, u64) {
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid) as f64;
    let acked = load();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid) as f64;
    (before, after - before, acked)
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let n = scale.distinct_topics;
    let mut s = Section::new(
        "topics",
        &format!("Topics: broker memory after {n} distinct topics"),
    );
    s.intro = format!(
        "{CLIENTS} rumqttc connections publish one QoS 1 message of {PAYLOAD} bytes to each of {n} distinct topics \
         (`bench/dev-<i>/temp`), every PUBACK awaited; RSS from `/proc/<pid>/status` 1 s before and 1 s after, \
         {} run(s), a fresh process each. Baselines: Mosquitto (no persistence) under the same load, and the agent \
         (on each engine) given {n} messages to one topic (the readings it buffers cost memory too; the difference is what the topics \
         cost). On the engine, a second round of {n} more distinct topics (`bench/dev-<i>/hum`) follows in the same \
         process: what it adds is what the topics and messages cost once the pipeline is warm (bounded memory: about \
         zero). Target (issue \"MQTT broker\"): growth within 5 MiB.",
        scale.runs
    );
    let (mut distinct, mut one, mut mosq) = (Vec::new(), Vec::new(), Vec::new());
    let (mut distinct_after, mut mosq_after) = (Vec::new(), Vec::new());
    let (mut engine, mut engine_after, mut engine_one) = (Vec::new(), Vec::new(), Vec::new());
    let mut engine_second = Vec::new();
    let mut details = Vec::new();
    for run in 0..scale.runs {
        let rdir = dir.join(format!("run{run}"));
        std::fs::create_dir_all(&rdir).expect("run dir");
        let mut row = serde_json::Map::new();
        for (label, spread, mqtt) in [
            ("distinct", true, "engine = \"rumqttd\""),
            ("engine_distinct", true, "engine = \"ferry\""),
            ("one_topic", false, "engine = \"rumqttd\""),
            ("engine_one_topic", false, "engine = \"ferry\""),
        ] {
            let sub = rdir.join(label);
            std::fs::create_dir_all(&sub).expect("dir");
            let agent = start_agent_with(&sub, NO_HUB.0, None, NO_HUB.1, BENCH_ROUTE, mqtt);
            // One round: a QoS 1 message to each of n topics ending in `leaf`.
            let round = |leaf: &str, what: &str| {
                let (before, grew, acked) = growth(agent.peer.id(), || {
                    topics(agent.mqtt, CLIENTS, n, PAYLOAD, spread, leaf).messages
                });
                assert_eq!(acked, n as u64, "the agent acknowledged every message");
                eprintln!(
                    "  run {}: agent ({label}), {what}: RSS {:.1} → {:.1} MiB",
                    run + 1,
                    before / 1024.0,
                    (before + grew) / 1024.0
                );
                (before, grew)
            };
            let (before, grew) = round(
                "temp",
                &format!("{n} messages to {} topic(s)", if spread { n } else { 1 }),
            );
            if label == "engine_distinct" {
                engine.push(grew);
                engine_after.push(before + grew);
                let (again, more) = round("hum", &format!("{n} more distinct topics"));
                engine_second.push(more);
                row.insert(
                    "agent_engine_second_round".to_owned(),
                    json!({"rss_before_kib": again, "growth_kib": more}),
                );
            } else if label == "engine_one_topic" {
                engine_one.push(grew);
            } else if spread {
                distinct.push(grew);
                distinct_after.push(before + grew);
            } else {
                one.push(grew);
            }
            row.insert(
                format!("agent_{label}"),
                json!({"rss_before_kib": before, "growth_kib": grew}),
            );
            drop(agent);
        }
        let (mut m, port) = start_mosquitto(&rdir, false);
        let (before, grew, acked) = growth(m.id(), || {
            topics(port, CLIENTS, n, PAYLOAD, true, "temp").messages
        });
        assert_eq!(acked, n as u64, "Mosquitto acknowledged every message");
        eprintln!(
            "  run {}: mosquitto, {n} distinct topics: RSS {:.1} → {:.1} MiB",
            run + 1,
            before / 1024.0,
            (before + grew) / 1024.0
        );
        mosq.push(grew);
        mosq_after.push(before + grew);
        row.insert(
            "mosquitto".to_owned(),
            json!({"rss_before_kib": before, "growth_kib": grew}),
        );
        m.kill();
        details.push(serde_json::Value::Object(row));
    }
    // Mosquitto keeps nothing for a topic without subscribers or a retained
    // message, so its growth is about zero: compare the resident sizes.
    s.compare(Comparison::new(
        format!("RSS after {n} distinct topics (rumqttd)"),
        Unit::KiB,
        &distinct_after,
        "Mosquitto",
        &mosq_after,
    ));
    s.compare(Comparison::new(
        format!("RSS after {n} distinct topics (engine)"),
        Unit::KiB,
        &engine_after,
        "Mosquitto",
        &mosq_after,
    ));
    s.compare(Comparison::new(
        format!("RSS growth after {n} messages to {n} distinct topics (engine)"),
        Unit::KiB,
        &engine,
        "the agent on rumqttd, the same load",
        &distinct,
    ));
    s.compare(Comparison::new(
        format!("RSS growth after {n} messages to {n} distinct topics (engine, against one topic)"),
        Unit::KiB,
        &engine,
        "the engine, the same messages to one topic",
        &engine_one,
    ));
    s.compare(Comparison::new(
        format!("RSS growth from {n} more distinct topics, same process (engine)"),
        Unit::KiB,
        &engine_second,
        "the first round (from idle)",
        &engine,
    ));
    s.note(format!(
        "Growth: the agent on rumqttd {:.1} MiB (median), on Ferry's engine {:.1} MiB, Mosquitto {:.1} MiB.",
        crate::stats::Stats::of(&distinct).median / 1024.0,
        crate::stats::Stats::of(&engine).median / 1024.0,
        crate::stats::Stats::of(&mosq).median / 1024.0
    ));
    s.compare(Comparison::new(
        format!(
            "RSS growth after {n} messages to {n} distinct topics (rumqttd, against one topic)"
        ),
        Unit::KiB,
        &distinct,
        "the agent, the same messages to one topic",
        &one,
    ));
    s.details = json!({"topics": n, "runs": details});
    s
}
