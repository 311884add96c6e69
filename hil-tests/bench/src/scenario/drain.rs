//! Drain: how fast `ferry-agent` empties a buffered backlog into a hub that
//! comes back after an outage, against the hub taking the same segments
//! posted directly, one at a time (the uplink's own pattern: one segment in
//! flight, the next after the durable acknowledgement), in the same run.
//!
//! 1. The hub starts once to mint a `write` token for the agent, and stops.
//! 2. The agent starts with its uplink on the hub's address, where nothing
//!    listens; four MQTT clients publish the readings at QoS 1 as line
//!    protocol (one message = one 10-s step of every device), each PUBACK
//!    after the agent's commit. The bench waits until `/api/v1/status`
//!    shows every reading cut into pending segments.
//! 3. The hub starts again on the same address; the clock runs from the
//!    moment it listens until the agent's buffer is empty, then until the
//!    hub's `count(*)` equals the published count.
//!
//! Run three times: the defaults (group commit, batch uploads of 16
//! segments), one segment per request (`uplink.batch_segments = 1`), and
//! `commit_interval = 1s` with one segment per request (the old defaults).

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_hil_tests::{agent_status, wait_until};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::dataset::{Dataset, segment};
use crate::procs::{Hub, HubOptions, cpu_secs, du, fresh_addr, rss_kib, start_agent, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

const DATABASE: &str = "drain";
const PUBLISHERS: usize = 4;
const SEGMENT_ROWS: usize = 10_000;

/// Publishes steps `0..data.steps` (one message each) at QoS 1 from
/// `PUBLISHERS` connections and waits for every PUBACK; the seconds.
fn publish(port: u16, data: Dataset) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..PUBLISHERS {
            s.spawn(move || {
                let mut opts = MqttOptions::new(
                    format!("drain-{p}-{}", std::process::id()),
                    "127.0.0.1",
                    port,
                );
                opts.set_keep_alive(Duration::from_secs(60));
                opts.set_inflight(100);
                opts.set_max_packet_size(1 << 20, 1 << 20);
                let (client, mut conn) = Client::new(opts, 200);
                let mine: Vec<usize> = (p..data.steps).step_by(PUBLISHERS).collect();
                let total = mine.len();
                let sender = std::thread::spawn(move || {
                    for step in mine {
                        let m = data.line_protocol("readings", step, 1);
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
                while acked < total {
                    match conn.recv() {
                        Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => panic!("drain publisher {p}: {e}"),
                        Err(e) => panic!("drain publisher {p}: {e:?}"),
                    }
                }
                let client = sender.join().expect("sender");
                let _ = client.disconnect();
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// Posts `rows` readings as segments of `SEGMENT_ROWS` from `writers`
/// agents, each one segment at a time in sequence order, into table `m`
/// (which holds `before` rows already); readings/s.
fn direct(hub: &Hub, data: Dataset, m: &str, writers: usize, before: u64) -> f64 {
    let steps = SEGMENT_ROWS / data.devices;
    let queues: Vec<Vec<(String, u64, Vec<u8>)>> = (0..writers)
        .map(|w| {
            let agent = format!("direct-{}-{w}", m.replace('_', "-"));
            (0..data.steps)
                .step_by(steps)
                .skip(w)
                .step_by(writers)
                .enumerate()
                .map(|(i, st)| {
                    let seq = i as u64 + 1;
                    (
                        agent.clone(),
                        seq,
                        segment(&agent, seq, DATABASE, m, &data.batch(st, steps)),
                    )
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for q in &queues {
            s.spawn(move || {
                for (agent, seq, bytes) in q {
                    hub.post_segment(agent, *seq, bytes);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        hub.count(&format!("{DATABASE}.{m}")),
        before + data.rows(),
        "{m}: rows after the direct posts"
    );
    data.rows() as f64 / secs
}

/// One drain at `interval` with `uplink.batch_segments = batch`; its figures.
fn drain_once(
    dir: &Path,
    readings: u64,
    lines: usize,
    baseline_readings: u64,
    interval: &str,
    batch: usize,
) -> Value {
    let lines = lines.min(SEGMENT_ROWS);
    let data = Dataset {
        devices: lines,
        steps: (readings as usize).div_ceil(lines),
    };
    let n = data.rows();
    let options = HubOptions {
        commit_interval: interval.to_owned(),
        compaction: false,
        ..HubOptions::default()
    };
    let hub_addr = fresh_addr();
    let mut hub = start_hub(dir, hub_addr, &options);
    let admin = hub.token.clone().expect("the bootstrap admin token");
    let token = hub.write_token("gw-drain");
    hub.stop();
    drop(hub);

    let extra = format!(
        "[[routes]]\ntopic = \"drain/lp\"\ndatabase = \"{DATABASE}\"\nformat = \"line-protocol\"\n\
         [store]\nmax_bytes = \"16 GiB\"\nwhen_full = \"reject_new\"\n\
         [segment]\nmax_rows = {SEGMENT_ROWS}\nmax_bytes = \"64 MiB\"\nmax_age = \"1s\"\n"
    );
    let agent = start_agent(
        dir,
        &format!("http://{hub_addr}"),
        Some(&token),
        &format!(
            "timeout = \"120s\"\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n\
             batch_segments = {batch}\nbatch_max_bytes = \"256 MiB\"\n"
        ),
        &extra,
    );
    let rss_idle = rss_kib(agent.peer.id());
    let publish_s = publish(agent.mqtt, data);
    let rss_published = rss_kib(agent.peer.id());
    eprintln!(
        "  {interval}: published {n} readings in {publish_s:.1} s ({:.0} readings/s)",
        n as f64 / publish_s
    );
    let t = Instant::now();
    let mut status = Value::Null;
    wait_until(
        "the backlog cut into segments",
        Duration::from_secs(3600),
        || {
            status = agent_status(agent.http);
            let b = &status["buffer"];
            b["backlog_readings"] == 0 && b["pending_segment_rows"].as_u64() == Some(n)
        },
    );
    let cut_s = publish_s + t.elapsed().as_secs_f64();
    let b = &status["buffer"];
    assert!(
        b["drops"]
            .as_object()
            .is_none_or(|d| d.values().all(|v| v == 0)),
        "the agent dropped readings: {status}"
    );
    let pending_segments = b["pending_segments"].as_u64().unwrap_or(0);
    let agent_dir = du(&dir.join("agent"));

    let hub = start_hub(dir, hub_addr, &options);
    let ready = Instant::now();
    let (agent_cpu0, hub_cpu0) = (cpu_secs(agent.peer.id()), cpu_secs(hub.peer.id()));
    let hub = Hub {
        token: Some(admin),
        ..hub
    };
    let mut agent_rss_max = 0;
    wait_until(
        "the agent's buffer to drain",
        Duration::from_secs(3600),
        || {
            agent_rss_max = agent_rss_max.max(rss_kib(agent.peer.id()));
            let b = &agent_status(agent.http)["buffer"];
            b["pending_segments"] == 0 && b["backlog_readings"] == 0
        },
    );
    let drain_s = ready.elapsed().as_secs_f64();
    let (agent_cpu, hub_cpu) = (
        cpu_secs(agent.peer.id()) - agent_cpu0,
        cpu_secs(hub.peer.id()) - hub_cpu0,
    );
    let table = format!("{DATABASE}.readings");
    wait_until("the backlog in the lake", Duration::from_secs(600), || {
        hub.count(&table) == n
    });
    let visible_s = ready.elapsed().as_secs_f64();
    drop(agent);
    eprintln!(
        "  {interval}: drained {n} readings in {drain_s:.1} s ({:.0} readings/s)",
        n as f64 / drain_s
    );

    let base = Dataset {
        devices: lines,
        steps: (baseline_readings.min(n) as usize).div_ceil(lines),
    };
    // Into the drained table first: its commits cost what the drain's did
    // (a Delta commit's cost grows with the table's files).
    let same = direct(&hub, base, "readings", 1, n);
    let d1 = direct(&hub, base, "direct_w1", 1, 0);
    let d4 = direct(&hub, base, "direct_w4", 4, 0);
    json!({
        "commit_interval": interval, "batch_segments": batch, "readings": n, "lines_per_message": lines, "segment_rows": SEGMENT_ROWS,
        "publish_seconds": publish_s, "publish_readings_per_s": n as f64 / publish_s,
        "cut_seconds": cut_s, "pending_segments": pending_segments, "agent_dir_bytes": agent_dir,
        "drain_seconds": drain_s, "drain_readings_per_s": n as f64 / drain_s, "visible_seconds": visible_s,
        "agent_cpu_seconds": agent_cpu, "hub_cpu_seconds": hub_cpu,
        "agent_rss_kib": {"idle": rss_idle, "after_publish": rss_published, "peak_drain": agent_rss_max},
        "baseline_readings": base.rows(),
        "direct_same_table_readings_per_s": same,
        "direct_1_writer_readings_per_s": d1, "direct_4_writers_readings_per_s": d4,
    })
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new("drain", "Drain: the agent's backlog into the hub");
    s.intro = format!(
        "The agent buffers a backlog while the hub is down ({PUBLISHERS} MQTT clients publish line protocol at QoS 1, \
         {} lines per message, route `format = \"line-protocol\"`, `segment.max_rows = {SEGMENT_ROWS}`, uplink retry backoff \
         50–200 ms); once every reading is cut into pending segments the hub starts again on the same address and the clock \
         runs until the agent's buffer is empty. Baseline, same hub, same run: the same segments (same rows, same size) posted \
         directly by one writer, one at a time — exactly the agent's uplink pattern — into the table the drain filled, so \
         its commits cost what the drain's did and the ratio isolates the agent's own cost (reading and deleting segments \
         in SQLite, its HTTP client). The same posts into a fresh table, and by four writers (an upper bound that an \
         in-order uplink cannot reach by design), show what the hub does on a small table. Three settings: the defaults \
         (`commit_interval = 0s`, group commit, and `uplink.batch_segments = 16`) with the full backlog ({} readings), the \
         same backlog sent one segment per request (`batch_segments = 1`, the uplink before batch uploads), and \
         `commit_interval = 1s` with one segment per request (the defaults before both) with {} readings. One run each (a backlog \
         is expensive to build); the baselines post the first {} readings.",
        scale.drain_lines_per_message,
        scale.drain_readings,
        scale.drain_fast_commit_readings,
        scale.drain_baseline_readings
    );
    let mut details = Vec::new();
    let mut batched_rate = f64::NAN;
    for (interval, batch, readings) in [
        ("0s", 16, scale.drain_readings),
        ("0s", 1, scale.drain_readings),
        ("1s", 1, scale.drain_fast_commit_readings),
    ] {
        let rdir = dir.join(format!("drain-{interval}-{batch}"));
        std::fs::create_dir_all(&rdir).expect("drain dir");
        let d = drain_once(
            &rdir,
            readings,
            scale.drain_lines_per_message,
            scale.drain_baseline_readings,
            interval,
            batch,
        );
        let _ = std::fs::remove_dir_all(&rdir);
        let f = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
        let unit = Unit::Rate("reading");
        let what = format!(
            "`commit_interval = {interval}`, `batch_segments = {batch}`: drain of {} readings",
            d["readings"]
        );
        if batch > 1 {
            batched_rate = f("drain_readings_per_s");
        } else if interval == "0s" {
            s.compare(Comparison::new(
                "`commit_interval = 0s`: drain, batches of 16 segments (default)",
                unit,
                &[batched_rate],
                "one segment per request (`batch_segments = 1`, before batches)",
                &[f("drain_readings_per_s")],
            ));
        }
        s.compare(Comparison::new(
            &what,
            unit,
            &[f("drain_readings_per_s")],
            "direct, 1 writer, one at a time, into the drained table",
            &[f("direct_same_table_readings_per_s")],
        ));
        s.compare(Comparison::new(
            &what,
            unit,
            &[f("drain_readings_per_s")],
            "direct, 1 writer, fresh table",
            &[f("direct_1_writer_readings_per_s")],
        ));
        s.compare(Comparison::new(
            &what,
            unit,
            &[f("drain_readings_per_s")],
            "direct, 4 writers (upper bound)",
            &[f("direct_4_writers_readings_per_s")],
        ));
        s.note(format!(
            "`commit_interval = {interval}`, `batch_segments = {batch}`: published {} readings at {:.0} readings/s (QoS 1, every PUBACK after the commit), \
             all cut into {} segments {:.1} s after the first publish; agent data dir {:.1} MB ({:.0} B/reading). Drain {:.1} s, \
             `count(*)` complete after {:.1} s. CPU during the drain: agent {:.1} s, hub {:.1} s. Agent RSS: {:.1} MiB idle, \
             {:.1} MiB after the publish, {:.1} MiB peak during the drain.",
            d["readings"],
            f("publish_readings_per_s"),
            d["pending_segments"],
            f("cut_seconds"),
            f("agent_dir_bytes") / 1e6,
            f("agent_dir_bytes") / f("readings"),
            f("drain_seconds"),
            f("visible_seconds"),
            f("agent_cpu_seconds"),
            f("hub_cpu_seconds"),
            d["agent_rss_kib"]["idle"].as_f64().unwrap_or(0.0) / 1024.0,
            d["agent_rss_kib"]["after_publish"].as_f64().unwrap_or(0.0) / 1024.0,
            d["agent_rss_kib"]["peak_drain"].as_f64().unwrap_or(0.0) / 1024.0,
        ));
        details.push(d);
    }
    s.note(
        "\nThe uplink keeps one request in flight. With `batch_segments = 1` the drain rate is `segment.max_rows` / (upload + \
         hub commit time); with batches (the default, 16) one request and one commit per table carry up to 16 segments. A \
         full segment (10,000 rows, `tables.early_commit_rows`) commits without waiting for `commit_interval`. The hub's \
         CPU time above is mostly its Delta commits, whose cost grows with the active files of the partition (see \
         docs/benchmarks.md).",
    );
    s.details = json!({"drains": details});
    s
}
