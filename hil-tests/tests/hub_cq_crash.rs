//! A continuous query's scheduled backfill, with the hub killed (SIGKILL)
//! twice in the middle of it: after the restarts the scheduler resumes
//! from the watermark committed in the destination table, and every
//! source row is counted in exactly one window, none twice.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_hil_tests::{Peer, free_port, http, query, spawn_hub, wait_until};
use serde_json::{Value, json};

const MIN_MS: i64 = 60_000;
const WINDOW_MS: i64 = 10 * MIN_MS;

fn launch(dir: &Path, addr: SocketAddr, log: &str) -> Peer {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n[auth]\nenabled = false\n\
             [continuous_queries]\npoll_interval = \"200ms\"\ndelay = \"1s\"\nbackfill_chunk = \"10m\"\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    spawn_hub(&config, addr, &dir.join(log), false).0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn scalar(hub: SocketAddr, sql: &str) -> Option<i64> {
    query(hub, None, sql)?["data"][0][0].as_i64()
}

fn watermark(hub: SocketAddr) -> Option<String> {
    let (status, body) = http("GET", hub, "/api/v1/continuous_queries/1", &[], b"");
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["query"]["last_processed_time"]
        .as_str()
        .map(str::to_owned)
}

/// Waits until the backfill has written `windows` more windows, then
/// kills the hub; the destination's rows just before.
fn kill_mid_backfill(hub: &mut Peer, addr: SocketAddr, windows: i64) -> i64 {
    let count = || scalar(addr, "SELECT count(*) FROM plant.cpu_10m").unwrap_or(0);
    let before = count();
    let mut seen = before;
    wait_until("the backfill to advance", Duration::from_secs(120), || {
        seen = count();
        seen >= before + 2 * windows
    });
    hub.kill();
    seen
}

#[test]
fn a_backfill_killed_twice_counts_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut hub = launch(dir.path(), addr, "hub-0.log");

    // One reading per host per minute over the last 12 hours.
    let start = (now_ms() - 12 * 60 * MIN_MS) / WINDOW_MS * WINDOW_MS;
    let lines: String = (0..12 * 60)
        .flat_map(|i| {
            ["a", "b"]
                .map(|h| format!("cpu,host={h} v={i}i {}\n", (start + i * MIN_MS) * 1_000_000))
        })
        .collect();
    let (status, body) = http(
        "POST",
        addr,
        "/api/v1/write/line-protocol?db=plant",
        &[],
        lines.as_bytes(),
    );
    assert_eq!(status, 204, "{body}");
    let started =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(start as u64));
    let cq = json!({
        "name": "cpu-10m", "database": "plant", "source_measurement": "cpu",
        "destination_measurement": "cpu_10m", "interval": "10m",
        "start_time": started.to_string(),
        "query": "SELECT date_bin(INTERVAL '10 minutes', time) AS time, host, count(*) AS n, \
                  max(v) AS v FROM cpu WHERE time >= {start_time} AND time < {end_time} \
                  GROUP BY 1, host",
    })
    .to_string();
    let (status, body) = http(
        "POST",
        addr,
        "/api/v1/continuous_queries",
        &[("Content-Type", "application/json")],
        cq.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");

    // Two kills in the middle of the scheduled backfill (72 windows).
    kill_mid_backfill(&mut hub, addr, 10);
    let mut hub = launch(dir.path(), addr, "hub-1.log");
    let written = kill_mid_backfill(&mut hub, addr, 10);
    let hub = launch(dir.path(), addr, "hub-2.log");
    assert!(
        written < 2 * 70,
        "the backfill ended before the second kill ({written} rows): the test proves nothing"
    );

    // The restarted scheduler catches up.
    let mut mark = String::new();
    wait_until(
        "the scheduler to catch up",
        Duration::from_secs(180),
        || {
            mark = watermark(addr).unwrap_or_default();
            humantime::parse_rfc3339(&mark).is_ok_and(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
                    >= (now_ms() - 1_000) / WINDOW_MS * WINDOW_MS - WINDOW_MS
            })
        },
    );
    let source = scalar(
        addr,
        &format!("SELECT count(*) FROM plant.cpu WHERE time < '{mark}'"),
    )
    .expect("source count");
    let counted = scalar(
        addr,
        &format!("SELECT sum(n) FROM plant.cpu_10m WHERE time < '{mark}'"),
    )
    .expect("destination sum");
    assert_eq!(counted, source, "rows before {mark} counted once");
    let doubled = scalar(
        addr,
        "SELECT count(*) FROM (SELECT time, host FROM plant.cpu_10m GROUP BY 1, 2 HAVING count(*) > 1)",
    );
    assert_eq!(doubled, Some(0), "a window was written twice");

    // The executions the kills cut short are marked interrupted.
    let (_, body) = http(
        "GET",
        addr,
        "/api/v1/continuous_queries/1/executions?limit=1000",
        &[],
        b"",
    );
    let v: Value = serde_json::from_str(&body).expect("executions JSON");
    let interrupted = v["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .filter(|e| e["status"] == "interrupted")
        .count();
    assert_eq!(interrupted, 2, "{v}");
    drop(hub);
}
