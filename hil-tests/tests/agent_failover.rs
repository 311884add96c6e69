//! An agent with several hubs (`uplink.hub_urls`) over the same tables
//! (`storage.multi_writer`): it moves to the next hub when one dies or
//! answers 503, comes back to the first, and every reading lands once.
//!
//! Two real hubs share one table directory, each with its own metadata;
//! between them in the agent's list sits a server that answers every
//! request `503` with a `Retry-After` of 30 s (a hub behind a load
//! balancer with no healthy backend), which the agent must pass over
//! without waiting. Three phases:
//!
//! 1. Hub A runs with the failpoint `abort_after_commit`: it dies right
//!    after its first segment commit is durable, before it answers. The
//!    agent moves on (503, then hub B), and B answers the retry
//!    `duplicate`: the segment's `txn` is in the shared table.
//! 2. A restarts without the failpoint; after `failback_after` the agent
//!    uploads to A again.
//! 3. `kill -9` of A under a stream of publishes: the agent moves to B
//!    and the stream lands.
//!
//! After each phase the table holds `0..total` once each, seen from both
//! hubs.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_hil_tests::census::{backlog_empty, expect_census, readings, segments_metric};
use ferry_hil_tests::shared_hubs::{Lake, Role};
use ferry_hil_tests::{
    agent_status, free_port, publish_lines, require_tool, spawn_agent, wait_for_port, wait_until,
    workspace_bin,
};

const TABLE: &str = "plant.failover";

/// Answers every request `503` with `Retry-After: 30`, counting them.
fn unavailable_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream);
            // The request head; the body is not read (the answer closes).
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = r#"{"error":"unavailable","message":"no healthy backend"}"#;
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, count)
}

fn uplink_hub(status: SocketAddr) -> String {
    agent_status(status)["uplink"]["hub"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn agent_moves_between_hubs_and_every_reading_lands_once() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (down, down_requests) = unavailable_server();
    let (url_a, url_b) = (format!("http://{a}"), format!("http://{b}"));
    let lake = Lake::fs(dir);

    let mut hub_a = lake.launch("hub-a", a, Role::WriterAbortingAfterCommit, 0);
    let _hub_b = lake.launch("hub-b", b, Role::Writer, 0);
    let mqtt = free_port();
    let status = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-failover"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "failover/{{device}}"
database = "plant"
measurement = "failover"
[segment]
max_rows = 50
max_age = "100ms"
[uplink]
hub_urls = ["{url_a}", "http://{down}", "{url_b}"]
failback_after = "2s"
timeout = "5s"
backoff_initial = "50ms"
backoff_max = "300ms"
[http]
listen = "{status}"
"#,
            data = dir.join("agent").display(),
        ),
    )
    .expect("agent.toml");
    let _agent = spawn_agent(&config, mqtt, &dir.join("agent.log"));
    // Its status server, which the checks below read, is up.
    wait_for_port(status, Duration::from_secs(30));

    // 1. A dies between its first commit and its answer.
    const N: u64 = 400;
    publish_lines(
        &pubber,
        mqtt,
        "failover/dev1",
        &["-q", "1"],
        &readings(0..N),
    );
    wait_until(
        "hub A to abort after its commit",
        Duration::from_secs(60),
        || !hub_a.is_running(),
    );
    expect_census(b, None, TABLE, N);
    wait_until(
        "the backlog to drain into B",
        Duration::from_secs(60),
        || backlog_empty(status),
    );
    assert_eq!(uplink_hub(status), url_b, "the agent should be on hub B");
    assert!(
        segments_metric(b, "duplicate") >= 1,
        "B should answer the segment A committed without answering `duplicate`"
    );
    assert!(
        down_requests.load(Ordering::SeqCst) >= 1,
        "the agent should have tried the 503 server on its way to B"
    );
    let phase1 = started.elapsed();

    // 2. A is back. Uploads stay on B until failback_after (2 s) has
    // passed since the move; the first upload after that goes to A.
    let mut hub_a = lake.launch("hub-a", a, Role::Writer, 1);
    publish_lines(
        &pubber,
        mqtt,
        "failover/dev1",
        &["-q", "1"],
        &readings(N..2 * N),
    );
    wait_until("the backlog to drain", Duration::from_secs(60), || {
        backlog_empty(status)
    });
    std::thread::sleep(Duration::from_millis(2500));
    publish_lines(
        &pubber,
        mqtt,
        "failover/dev1",
        &["-q", "1"],
        &readings(2 * N..3 * N),
    );
    wait_until("the agent back on hub A", Duration::from_secs(30), || {
        uplink_hub(status) == url_a
    });
    wait_until("the backlog to drain", Duration::from_secs(60), || {
        backlog_empty(status)
    });
    assert_eq!(uplink_hub(status), url_a);
    assert!(
        segments_metric(a, "committed") >= 1,
        "hub A should commit again"
    );
    expect_census(a, None, TABLE, 3 * N);
    expect_census(b, None, TABLE, 3 * N);

    // 3. kill -9 of A under a stream of publishes.
    const BATCHES: u64 = 30;
    const BATCH: u64 = 40;
    let first = 3 * N;
    let publisher = {
        let pubber = pubber.clone();
        std::thread::spawn(move || {
            for i in 0..BATCHES {
                let from = first + i * BATCH;
                publish_lines(
                    &pubber,
                    mqtt,
                    "failover/dev1",
                    &["-q", "1"],
                    &readings(from..from + BATCH),
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(600));
    hub_a.kill();
    let killed = Instant::now();
    wait_until(
        "the agent to move to hub B",
        Duration::from_secs(30),
        || uplink_hub(status) == url_b,
    );
    let moved_after = killed.elapsed();
    publisher.join().expect("publisher");
    let total = first + BATCHES * BATCH;
    expect_census(b, None, TABLE, total);
    wait_until("the backlog to drain", Duration::from_secs(60), || {
        backlog_empty(status)
    });
    expect_census(b, None, TABLE, total);

    let uplink = &agent_status(status)["uplink"];
    assert!(
        uplink["failovers"].as_u64().unwrap_or(0) >= 4,
        "A → 503 → B, B → A (failback is not counted), A → 503 → B: {uplink}"
    );
    let buffer = &agent_status(status)["buffer"];
    assert_eq!(buffer["quarantined_segments"], 0, "{buffer}");
    let text = std::process::Command::new(workspace_bin("ferry-agent"))
        .args(["status", "--http"])
        .arg(status.to_string())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        text.contains(&url_b),
        "`ferry-agent status` should name the hub in use:\n{text}"
    );
    eprintln!(
        "failover: {total} readings once each across 2 hubs; phase 1 (A aborts after a commit) {phase1:.1?}; \
         on B {moved_after:.1?} after kill -9 of A; \
         503 server asked {} times; {:.1?} in all",
        down_requests.load(Ordering::SeqCst),
        started.elapsed()
    );
}
