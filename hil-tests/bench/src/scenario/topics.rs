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
use crate::procs::{rss_anon_kib, rss_kib, start_agent_with, start_mosquitto};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

/// Publisher connections.
const CLIENTS: usize = 4;
const PAYLOAD: usize = 100;

/// What one load did to a process's memory (KiB).
struct Growth {
    /// RSS 1 s before the load.
    before: f64,
    /// RSS growth 1 s after it.
    rss: f64,
    /// The anonymous part of that growth (see [`rss_anon_kib`]); the rest
    /// is file-backed code and data paged in.
    anon: f64,
    acked: u64,
}

fn growth(pid: u32, load: impl FnOnce() -> u64) -> Growth {
    std::thread::sleep(Duration::from_secs(1));
    let (before, anon_before) = (rss_kib(pid) as f64, rss_anon_kib(pid) as f64);
    let acked = load();
    std::thread::sleep(Duration::from_secs(1));
    Growth {
        before,
        rss: rss_kib(pid) as f64 - before,
        anon: rss_anon_kib(pid) as f64 - anon_before,
        acked,
    }
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
         zero). RSS counts file-backed pages too (the binary's code as it is first run); the anonymous part of the growth \
         (`RssAnon`) is reported beside it. Target (issue \"MQTT broker\"): growth within 5 MiB.",
        scale.runs
    );
    let (mut distinct, mut one, mut mosq) = (Vec::new(), Vec::new(), Vec::new());
    let (mut distinct_after, mut mosq_after) = (Vec::new(), Vec::new());
    let (mut engine, mut engine_after, mut engine_one) = (Vec::new(), Vec::new(), Vec::new());
    let mut engine_second = Vec::new();
    // The anonymous part of the growth (engine, first round; Mosquitto).
    let (mut engine_anon, mut mosq_anon) = (Vec::new(), Vec::new());
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
                let g = growth(agent.peer.id(), || {
                    topics(agent.mqtt, CLIENTS, n, PAYLOAD, spread, leaf).messages
                });
                assert_eq!(g.acked, n as u64, "the agent acknowledged every message");
                eprintln!(
                    "  run {}: agent ({label}), {what}: RSS {:.1} → {:.1} MiB (anonymous {:+.1} MiB)",
                    run + 1,
                    g.before / 1024.0,
                    (g.before + g.rss) / 1024.0,
                    g.anon / 1024.0
                );
                (g.before, g.rss, g.anon)
            };
            let (before, grew, anon) = round(
                "temp",
                &format!("{n} messages to {} topic(s)", if spread { n } else { 1 }),
            );
            if label == "engine_distinct" {
                engine.push(grew);
                engine_anon.push(anon);
                engine_after.push(before + grew);
                let (again, more, more_anon) = round("hum", &format!("{n} more distinct topics"));
                engine_second.push(more);
                row.insert(
                    "agent_engine_second_round".to_owned(),
                    json!({"rss_before_kib": again, "growth_kib": more, "anon_growth_kib": more_anon}),
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
                json!({"rss_before_kib": before, "growth_kib": grew, "anon_growth_kib": anon}),
            );
            drop(agent);
        }
        let (mut m, port) = start_mosquitto(&rdir, false);
        let g = growth(m.id(), || {
            topics(port, CLIENTS, n, PAYLOAD, true, "temp").messages
        });
        assert_eq!(g.acked, n as u64, "Mosquitto acknowledged every message");
        eprintln!(
            "  run {}: mosquitto, {n} distinct topics: RSS {:.1} → {:.1} MiB (anonymous {:+.1} MiB)",
            run + 1,
            g.before / 1024.0,
            (g.before + g.rss) / 1024.0,
            g.anon / 1024.0
        );
        mosq.push(g.rss);
        mosq_anon.push(g.anon);
        mosq_after.push(g.before + g.rss);
        row.insert(
            "mosquitto".to_owned(),
            json!({"rss_before_kib": g.before, "growth_kib": g.rss, "anon_growth_kib": g.anon}),
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
    // RSS counts the binary's code as it is paged in (the first segment cut
    // runs Arrow, Parquet and zstd code for the first time); the anonymous
    // part is the memory the process itself holds.
    s.compare(Comparison::new(
        format!("anonymous RSS growth after {n} distinct topics (engine)"),
        Unit::KiB,
        &engine_anon,
        "Mosquitto",
        &mosq_anon,
    ));
    s.compare(Comparison::new(
        format!("RSS growth from {n} more distinct topics, same process (engine)"),
        Unit::KiB,
        &engine_second,
        "the first round (from idle)",
        &engine,
    ));
    let median = |v: &[f64]| crate::stats::Stats::of(v).median / 1024.0;
    s.note(format!(
        "Growth: the agent on rumqttd {:.1} MiB (median), on Ferry's engine {:.1} MiB ({:.1} MiB of it anonymous, \
         the rest the binary's code paged in), Mosquitto {:.1} MiB ({:.1} MiB anonymous).",
        median(&distinct),
        median(&engine),
        median(&engine_anon),
        median(&mosq),
        median(&mosq_anon)
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
