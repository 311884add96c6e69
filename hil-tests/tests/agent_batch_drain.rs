//! An agent drains a backlog in batch uploads (`uplink.batch_segments`),
//! real `ferry-agent` and `ferry-hub` processes: the hub was down while
//! readings of two measurements piled up in small segments; once it is up,
//! every reading lands exactly once, in fewer commits than segments. Into a
//! hub that refuses batches (`ingest.max_batch_segments = 1`: each batch is
//! answered 413) the agent falls back to one segment per request, and again
//! every reading lands exactly once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferry_hil_tests::{
    Peer, agent_status, free_port, http, metric, publish_lines, query, require_tool, spawn_agent,
    spawn_hub, wait_until,
};

const READINGS: usize = 600;

/// The tests run one at a time: each picks the hub's port long before the
/// hub binds it, and a test running beside it could take that port for
/// its own agent meanwhile (the uplink would then talk to another agent).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A hub without auth on `addr`; `extra` is appended to its config.
fn launch_hub(dir: &Path, addr: SocketAddr, extra: &str) -> Peer {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [metadata]\npath = \"{}\"\n[auth]\nenabled = false\n{extra}",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    spawn_hub(&config, addr, &dir.join("hub.log"), false).0
}

/// The highest version in a table's Delta log (its commits, from 0).
fn last_version(table: &Path) -> u64 {
    std::fs::read_dir(table.join("_delta_log"))
        .expect("a Delta log")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .expect("a commit")
}

/// Publishes while the hub is down, starts it, and waits for every reading.
/// Returns the hub (still running) and the segments the agent uploaded.
fn drain(dir: &Path, hub_extra: &str) -> (Peer, SocketAddr) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pubber =
        require_tool("mosquitto_pub", "apt-get install mosquitto-clients").expect("mosquitto_pub");
    let hub_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (mqtt_port, http_port) = (free_port(), free_port());
    let agent_config = dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
id = "gw-batch"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt_port}"
[[routes]]
topic = "sensors/{{device}}/{{measurement}}"
database = "plant"
[segment]
max_rows = 25
max_age = "1h"
[uplink]
hub_url = "http://{hub_addr}"
backoff_initial = "100ms"
backoff_max = "500ms"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            data = dir.join("agent").display(),
        ),
    )
    .expect("write agent.toml");
    let agent = spawn_agent(&agent_config, mqtt_port, &dir.join("agent.log"));
    let status = SocketAddr::from(([127, 0, 0, 1], http_port));
    let lines: String = (0..READINGS).map(|i| format!("{{\"v\": {i}}}\n")).collect();
    for measurement in ["temperature", "pressure"] {
        let topic = format!("sensors/boiler-1/{measurement}");
        publish_lines(&pubber, mqtt_port, &topic, &["-q", "1"], &lines);
    }
    // Every reading is in a segment waiting for the hub: 48 full ones.
    // Only full segments are cut (`max_age` is an hour): a cut by age
    // while a slow machine is still publishing would leave a short tail
    // that waits for a full segment for as long as 8 segments are pending
    // (the segmenter's backlog rule), so it would never be cut here.
    let mut pending = 0;
    wait_until(
        "the backlog cut into segments",
        Duration::from_secs(60),
        || {
            let b = &agent_status(status)["buffer"];
            pending = b["pending_segments"].as_u64().unwrap_or(0);
            b["backlog_readings"] == 0 && pending >= (2 * READINGS / 25) as u64
        },
    );

    let hub = launch_hub(dir, hub_addr, hub_extra);
    for table in ["temperature", "pressure"] {
        let sql = format!("SELECT count(*), count(DISTINCT v), min(v), max(v) FROM plant.{table}");
        let mut got = serde_json::Value::Null;
        wait_until(
            &format!("{READINGS} rows in {table}"),
            Duration::from_secs(90),
            || {
                got = query(hub_addr, None, &sql).unwrap_or_default();
                got["data"][0][0].as_u64() >= Some(READINGS as u64)
            },
        );
        let want = serde_json::json!([READINGS, READINGS, 0.0, (READINGS - 1) as f64]);
        assert_eq!(got["data"][0], want, "{table}: every reading once");
    }
    wait_until(
        "the agent's backlog acknowledged",
        Duration::from_secs(30),
        || agent_status(status)["buffer"]["pending_segments"] == 0,
    );
    drop(agent);
    (hub, hub_addr)
}

#[test]
fn a_backlog_drains_in_batches_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_hub, hub) = drain(dir.path(), "");
    let batches = metric(hub, "ferry_hub_segment_batches_total{status=\"accepted\"}");
    let segments = metric(hub, "ferry_hub_segments_total{status=\"committed\"}");
    eprintln!("{segments} segments in {batches} batches");
    assert!(batches >= 1, "no batch upload");
    assert_eq!(
        metric(hub, "ferry_hub_segment_batches_total{status=\"refused\"}"),
        0
    );
    // 48 segments: a batch's segments of one table share a commit.
    let commits: u64 = ["temperature", "pressure"]
        .iter()
        .map(|t| last_version(&dir.path().join("tables/plant/").join(t)) + 1)
        .sum();
    assert!(
        commits < segments,
        "{commits} commits for {segments} segments in {batches} batches"
    );
}

#[test]
fn a_hub_that_refuses_batches_gets_one_segment_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_hub, hub) = drain(dir.path(), "[ingest]\nmax_batch_segments = 1\n");
    assert!(metric(hub, "ferry_hub_segment_batches_total{status=\"refused\"}") >= 1);
    assert_eq!(
        metric(hub, "ferry_hub_segment_batches_total{status=\"accepted\"}"),
        0
    );
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("hub refused a batch upload"),
        "the agent says why it sends single segments"
    );
}

#[test]
fn segments_a_batch_cannot_hold_are_sent_again() {
    // A table queue of 1 KiB: each batch commits its first segment and the
    // hub defers the rest (503 for those segments), which the agent sends
    // again at once as the head of its next batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_hub, hub) = drain(dir.path(), "[tables]\nmax_queued_bytes = \"1KiB\"\n");
    assert!(metric(hub, "ferry_hub_segment_batches_total{status=\"accepted\"}") >= 2);
    assert_eq!(
        metric(hub, "ferry_hub_segments_total{status=\"committed\"}"),
        (2 * READINGS / 25) as u64,
        "every segment committed once"
    );
}

/// The sum of every series of a counter in the hub's `/metrics`.
fn metric_sum(hub: SocketAddr, name: &str) -> u64 {
    let (_, text) = http("GET", hub, "/metrics", &[], b"");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn a_hub_quota_slows_the_drain_and_loses_nothing() {
    // 100 rows/s into the database: the 1,200 readings need about 12 s.
    // The hub answers 429 with Retry-After; the agent waits that long
    // (not its 100-500 ms backoff) and every reading still lands once.
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let (_hub, hub) = drain(
        dir.path(),
        "[quotas]\ndatabase_rows_per_second = 100\nburst = \"1s\"\n",
    );
    let secs = started.elapsed().as_secs();
    let refused = metric_sum(hub, "ferry_hub_quota_refused_total");
    eprintln!("{refused} refusals in {secs} s");
    assert!(refused >= 1, "the quota never refused a write");
    // Honouring Retry-After (1 s here), a round without progress waits a
    // second: at most about two refusals a second. The agent's own backoff
    // would retry every 50-500 ms.
    assert!(
        refused <= 2 * secs + 5,
        "{refused} refusals in {secs} s: the agent did not honour Retry-After"
    );
}
