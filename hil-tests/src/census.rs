//! Counting what reached the lake: the readings `{"n": i}` a test
//! publishes, checked in a hub table as (count, distinct, min, max) of `n`,
//! and the hub's and agent's own counters of what they did with segments.
//! Used by the exactly-once tests (a hub killed between commit and answer,
//! an agent moving between hubs).

use std::net::SocketAddr;
use std::time::Duration;

use crate::{agent_status, metric, query, wait_until};

/// `{"n": i}` for each i in `range`, one per line.
pub fn readings(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("{{\"n\": {i}}}\n")).collect()
}

/// (count, distinct, min, max) of `n` in `table` (`database.measurement`),
/// if the hub answers (to `token`, when auth is on).
pub fn census(hub: SocketAddr, token: Option<&str>, table: &str) -> Option<(u64, u64, f64, f64)> {
    let sql = format!("SELECT count(*), count(DISTINCT n), min(n), max(n) FROM {table}");
    let v = query(hub, token, &sql)?;
    let row = &v["data"][0];
    Some((
        row[0].as_u64()?,
        row[1].as_u64()?,
        row[2].as_f64()?,
        row[3].as_f64()?,
    ))
}

/// Waits until `table` holds `total` readings, then asserts they are
/// `0..total`, each once.
pub fn expect_census(hub: SocketAddr, token: Option<&str>, table: &str, total: u64) {
    let want = (total, total, 0.0, total as f64 - 1.0);
    let mut got = None;
    wait_until(
        &format!("{total} distinct readings in {table}"),
        Duration::from_secs(60),
        || {
            got = census(hub, token, table);
            got.is_some_and(|c| c.0 >= total)
        },
    );
    assert_eq!(
        got,
        Some(want),
        "(count, distinct, min, max) of n in {table}"
    );
}

/// The hub's `ferry_hub_segments_total` for one status (`committed`,
/// `duplicate`, ...).
pub fn segments_metric(hub: SocketAddr, status: &str) -> u64 {
    metric(
        hub,
        &format!("ferry_hub_segments_total{{status=\"{status}\"}}"),
    )
}

/// Whether the agent whose status server is `status_addr` has nothing left
/// to upload.
pub fn backlog_empty(status_addr: SocketAddr) -> bool {
    let b = &agent_status(status_addr)["buffer"];
    b["pending_segments"] == 0 && b["backlog_readings"] == 0
}
