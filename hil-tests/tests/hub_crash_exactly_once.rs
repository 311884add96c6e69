//! The hub dies between a segment's commit and its acknowledgement; the
//! agent retries into a restarted hub, and every reading is in the table
//! exactly once.
//!
//! * `abort_after_commit`: the hub runs with the test-only failpoint
//!   `FERRY_HUB_FAILPOINT=abort_after_commit` (see
//!   `hub/src/ingest/segments.rs`), so it aborts right after the first
//!   segment commit is durable and before it answers. The table's Delta log
//!   already holds the segment's `txn` and rows while the agent still holds
//!   the segment; the restarted hub answers the retry `duplicate`. Three
//!   crash cycles.
//! * `sigkill_during_uploads`: `kill -9` of the hub at random moments under
//!   a stream of uploads, restarts on the same port and data; at the end
//!   every published reading is in the table exactly once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_hil_tests::census::{backlog_empty, expect_census, readings, segments_metric};
use ferry_hil_tests::{
    Peer, agent_status, free_port, publish_lines, require_tool, spawn_agent, wait_for_port,
    wait_until, workspace_bin,
};
use serde_json::Value;

/// A hub on `addr` with tables and metadata under `dir`, without auth,
/// optionally with the failpoint armed.
fn launch_hub(dir: &Path, addr: SocketAddr, failpoint: bool, log: &str) -> Peer {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n[tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n[auth]\nenabled = false\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let mut cmd = Command::new(workspace_bin("ferry-hub"));
    cmd.args(["serve", "--config"]).arg(&config);
    if failpoint {
        cmd.env("FERRY_HUB_FAILPOINT", "abort_after_commit");
    } else {
        cmd.env_remove("FERRY_HUB_FAILPOINT");
    }
    let peer = Peer::spawn("ferry-hub", &mut cmd, &dir.join(log));
    wait_for_port(addr, Duration::from_secs(60));
    peer
}

/// Starts an agent routing `crash/{device}` to `plant.<measurement>`,
/// uploading to `hub`; returns it with its status address.
fn start_agent(
    dir: &Path,
    id: &str,
    measurement: &str,
    hub: SocketAddr,
    segment: &str,
) -> (Peer, u16, SocketAddr) {
    let mqtt = free_port();
    let http_port = free_port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "{id}"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "crash/{{device}}"
database = "plant"
measurement = "{measurement}"
[segment]
{segment}
[uplink]
hub_url = "http://{hub}"
timeout = "10s"
backoff_initial = "50ms"
backoff_max = "300ms"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            data = dir.join("agent").display(),
        ),
    )
    .expect("agent.toml");
    let peer = spawn_agent(&config, mqtt, &dir.join("agent.log"));
    (peer, mqtt, SocketAddr::from(([127, 0, 0, 1], http_port)))
}

/// Every Delta action in the table's log, with the version of its commit.
fn delta_log(table: &Path) -> Vec<(u64, Value)> {
    let mut actions = Vec::new();
    let Ok(entries) = std::fs::read_dir(table.join("_delta_log")) else {
        return actions;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(version) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read a Delta commit");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            actions.push((version, serde_json::from_str(line).expect("a Delta action")));
        }
    }
    actions.sort_by_key(|(v, _)| *v);
    actions
}

/// The rows the commit holding `txn(app, seq)` added, read from the log.
fn committed_rows_of(table: &Path, app: &str, seq: u64) -> Option<u64> {
    let log = delta_log(table);
    let version = log.iter().find_map(|(v, a)| {
        let txn = &a["txn"];
        (txn["appId"] == app && txn["version"] == seq).then_some(*v)
    })?;
    let rows = log
        .iter()
        .filter(|(v, a)| *v == version && a["add"].is_object())
        .map(|(_, a)| {
            let stats: Value = serde_json::from_str(a["add"]["stats"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
            stats["numRecords"].as_u64().unwrap_or(0)
        })
        .sum();
    Some(rows)
}

fn hub_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn abort_after_commit_then_retry_is_exactly_once() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    const N: u64 = 40;
    // One segment per cycle: cut at N rows, never by age.
    let (_agent, mqtt, status) = start_agent(
        dir.path(),
        "gw-crash",
        "crash",
        addr,
        &format!("max_rows = {N}\nmax_age = \"1h\""),
    );
    let table = dir.path().join("tables/plant/crash");

    let cycles = 3;
    for cycle in 0..cycles {
        let mut hub = launch_hub(dir.path(), addr, true, &format!("hub-fail-{cycle}.log"));
        let seq = agent_status(status)["buffer"]["next_sequence"]
            .as_u64()
            .expect("next_sequence");
        publish_lines(
            &pubber,
            mqtt,
            "crash/dev1",
            &["-q", "1"],
            &readings(cycle * N..(cycle + 1) * N),
        );
        wait_until(
            "the hub to abort after its commit",
            Duration::from_secs(60),
            || !hub.is_running(),
        );
        let log = hub_log(dir.path(), &format!("hub-fail-{cycle}.log"));
        assert!(
            log.contains("failpoint abort_after_commit"),
            "cycle {cycle}: the hub died without the failpoint:\n{log}"
        );
        // Committed, not acknowledged: the log holds the segment's txn and
        // rows while the agent still holds the segment.
        assert_eq!(
            committed_rows_of(&table, "gw-crash", seq),
            Some(N),
            "cycle {cycle}: the Delta log has no commit of segment {seq} with {N} rows"
        );
        let buffer = &agent_status(status)["buffer"];
        assert_eq!(
            buffer["pending_segments"], 1,
            "cycle {cycle}: the agent should still hold segment {seq}: {buffer}"
        );

        // Restarted without the failpoint, same data and port: the rows are
        // there, and the agent's retry is a duplicate.
        let mut hub = launch_hub(dir.path(), addr, false, &format!("hub-{cycle}.log"));
        let total = (cycle + 1) * N;
        expect_census(addr, None, "plant.crash", total);
        wait_until(
            "the agent's backlog to drain",
            Duration::from_secs(60),
            || backlog_empty(status),
        );
        assert_eq!(
            segments_metric(addr, "duplicate"),
            1,
            "cycle {cycle}: the retry of segment {seq} should be answered duplicate"
        );
        assert_eq!(
            segments_metric(addr, "committed"),
            0,
            "cycle {cycle}: nothing new to commit"
        );
        expect_census(addr, None, "plant.crash", total);
        hub.kill();
    }
    let quarantined = &agent_status(status)["buffer"]["quarantined_segments"];
    assert_eq!(*quarantined, 0, "quarantined segments");
    eprintln!(
        "abort_after_commit x{cycles}: {} readings once each, in {:.1?}",
        cycles * N,
        started.elapsed()
    );
}

/// xorshift64*, seeded from the clock (printed, so a failure can be rerun
/// with `FERRY_TEST_SEED`).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("FERRY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("FERRY_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn sigkill_during_uploads_is_exactly_once() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_path: PathBuf = dir.path().to_owned();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut rng = Rng::new();
    let mut hub = launch_hub(&dir_path, addr, false, "hub-0.log");
    let (_agent, mqtt, status) = start_agent(
        &dir_path,
        "gw-sigkill",
        "stream",
        addr,
        "max_rows = 15\nmax_age = \"50ms\"",
    );

    // A steady stream of small segments while the hub is killed.
    const BATCHES: u64 = 40;
    const BATCH: u64 = 20;
    let publisher = std::thread::spawn(move || {
        for b in 0..BATCHES {
            publish_lines(
                &pubber,
                mqtt,
                "crash/dev1",
                &["-q", "1"],
                &readings(b * BATCH..(b + 1) * BATCH),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    let mut kills = 0;
    let mut duplicates = 0;
    while kills < 6 || !publisher.is_finished() {
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        // Retries the previous kill caused that this hub found committed.
        duplicates += segments_metric(addr, "duplicate");
        hub.kill();
        kills += 1;
        hub = launch_hub(&dir_path, addr, false, &format!("hub-{kills}.log"));
    }
    publisher.join().expect("publisher");

    let total = BATCHES * BATCH;
    expect_census(addr, None, "plant.stream", total);
    wait_until(
        "the agent's backlog to drain",
        Duration::from_secs(60),
        || backlog_empty(status),
    );
    expect_census(addr, None, "plant.stream", total);
    duplicates += segments_metric(addr, "duplicate");
    let buffer = &agent_status(status)["buffer"];
    assert_eq!(buffer["quarantined_segments"], 0, "{buffer}");
    eprintln!(
        "kill -9 of the hub x{kills} during uploads: {total} readings once each; {duplicates} retries answered duplicate (a kill between commit and answer); {:.1?}",
        started.elapsed()
    );
}
