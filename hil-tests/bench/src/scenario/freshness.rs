//! Freshness: how long after a reading is published at the agent it is
//! visible in a hub query, p50/p99. Baseline, same hub, same run: the same
//! readings written as line protocol straight to the hub (no agent, no
//! segment), visible in the same query.
//!
//! A reading `seq = i` is published (QoS 1) every 100 ms; a poller asks the
//! hub `SELECT max(seq)` every 50 ms, and every reading at or below a newly
//! seen maximum is visible from that moment. Three settings: the defaults
//! (agent `segment.max_age = 500ms`, hub `commit_interval = 0s`: group
//! commit), the defaults before group commit (`5s`, `1s`) and a
//! low-latency one (`max_age = 100ms`, `commit_interval = 0s`).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, Event, MqttOptions, Outgoing, QoS};
use serde_json::json;

use ferry_hil_tests::request;

use crate::procs::{Hub, HubOptions, TIMEOUT, fresh_addr, start_agent, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const PERIOD: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(50);

/// Publishes with `send(i)` every `PERIOD` for `seconds` while polling
/// `table`; the publish→visible latency of every reading, ms.
fn measure(hub: &Hub, table: &str, seconds: f64, send: &(dyn Fn(u64) + Sync)) -> Vec<f64> {
    let count = (seconds / PERIOD.as_secs_f64()).round() as u64;
    let sent: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let mut latencies = Vec::new();
    std::thread::scope(|s| {
        let (sent, done) = (&sent, &done);
        s.spawn(move || {
            let t0 = Instant::now();
            for i in 0..count {
                if let Some(wait) = (PERIOD * i as u32).checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                sent.lock().expect("sent").push(Instant::now());
                send(i);
            }
            done.store(true, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs_f64(seconds + 60.0);
        let mut seen: i64 = -1;
        while Instant::now() < deadline && (seen + 1) < count as i64 {
            let t = Instant::now();
            let max = hub
                .query(&format!("SELECT max(seq) FROM {table}"))
                .ok()
                .and_then(|v| v["data"][0][0].as_f64())
                .map(|x| x as i64);
            if let Some(max) = max.filter(|&m| m > seen) {
                let now = Instant::now();
                let sent = sent.lock().expect("sent");
                for i in (seen + 1)..=max {
                    if let Some(at) = sent.get(i as usize) {
                        latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
                seen = max;
            }
            if let Some(wait) = POLL.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        assert!(
            done.load(Ordering::SeqCst) || Instant::now() >= deadline,
            "publisher still running"
        );
        assert_eq!(
            seen + 1,
            count as i64,
            "{table}: not every reading became visible"
        );
    });
    latencies
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new(
        "freshness",
        "Freshness: publish at the agent → visible in a hub query",
    );
    let secs = scale.freshness_seconds;
    s.intro = format!(
        "One reading every {} ms for {secs:.0} s per path; a poller asks the hub `SELECT max(seq)` every {} ms, and a reading \
         is visible when a poll first sees it (resolution: the poll period plus the query time). Ferry: publish at QoS 1 \
         to the agent (JSON route), which cuts a segment and uploads it to the hub. Baseline, same hub, same run: the same \
         reading posted as line protocol straight to the hub (its answer comes after the commit). Everything on loopback.",
        PERIOD.as_millis(),
        POLL.as_millis()
    );
    let mut details = Vec::new();
    for (label, max_age, interval) in [
        ("defaults", "500ms", "0s"),
        ("previous defaults", "5s", "1s"),
        ("low latency", "100ms", "0s"),
    ] {
        let rdir = dir.join(label.replace(' ', "-"));
        std::fs::create_dir_all(&rdir).expect("freshness dir");
        let hub = start_hub(
            &rdir,
            fresh_addr(),
            &HubOptions {
                commit_interval: interval.to_owned(),
                compaction: false,
                ..HubOptions::default()
            },
        );
        let token = hub.write_token("gw-fresh");
        let agent = start_agent(
            &rdir,
            &format!("http://{}", hub.addr),
            Some(&token),
            "backoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n",
            &format!("{}[segment]\nmax_age = \"{max_age}\"\n", super::BENCH_ROUTE),
        );
        let mut opts = MqttOptions::new(
            format!("fresh-{}", std::process::id()),
            "127.0.0.1",
            agent.mqtt,
        );
        opts.set_keep_alive(Duration::from_secs(60));
        let (client, mut conn) = Client::new(opts, 100);
        // rumqttc's iterator reconnects forever: the disconnect below (or
        // an error) ends the pump.
        let pump = std::thread::spawn(move || {
            for ev in conn.iter() {
                if matches!(ev, Err(_) | Ok(Event::Outgoing(Outgoing::Disconnect))) {
                    break;
                }
            }
        });
        let via_agent = measure(&hub, "bench.fresh", secs, &|i| {
            client
                .publish(
                    "bench/dev1/fresh",
                    QoS::AtLeastOnce,
                    false,
                    format!("{{\"seq\": {i}}}"),
                )
                .expect("publish");
        });
        let _ = client.disconnect();
        let _ = pump.join();
        let (addr, auth) = (
            hub.addr,
            format!("Bearer {}", hub.token.clone().unwrap_or_default()),
        );
        let direct = measure(&hub, "bench.fresh_lp", secs, &|i| {
            // Each write blocks until its commit; keep the cadence with a thread per write.
            let auth = auth.clone();
            std::thread::spawn(move || {
                let body = format!("fresh_lp,device=dev1 seq={i} {}\n", now_ns());
                let a = request(
                    "POST",
                    addr,
                    "/api/v1/write/line-protocol",
                    &[
                        ("x-ferry-database", "bench"),
                        ("Authorization", auth.as_str()),
                    ],
                    body.as_bytes(),
                    TIMEOUT,
                );
                assert_eq!(a.status, 204, "line protocol write: {}", a.text());
            });
        });
        drop(agent);
        drop(hub);
        let _ = std::fs::remove_dir_all(&rdir);
        let what = format!(
            "{label} (agent `segment.max_age = {max_age}`, hub `commit_interval = {interval}`)"
        );
        for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
            s.compare(Comparison::new(
                format!("{what}: {name}"),
                Unit::Ms,
                &[percentile(&via_agent, p)],
                "LP straight to the hub",
                &[percentile(&direct, p)],
            ));
        }
        details.push(json!({
            "setting": label, "segment_max_age": max_age, "commit_interval": interval,
            "agent_ms": {"p50": percentile(&via_agent, 0.5), "p99": percentile(&via_agent, 0.99), "n": via_agent.len()},
            "direct_lp_ms": {"p50": percentile(&direct, 0.5), "p99": percentile(&direct, 0.99), "n": direct.len()},
        }));
    }
    s.note(
        "The agent path is bounded by `segment.max_age` (a segment is cut when its oldest reading is that old) plus one \
         hub commit window; the direct path by the commit window alone. That difference is the price of the gateway's \
         buffer, and it is configurable.",
    );
    s.details = json!({"settings": details, "seconds_per_path": secs});
    s
}
