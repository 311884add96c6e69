//! The oracle: compares what publishers saw acknowledged (their logs, see
//! [`super::load`]) with what a hub query returns.
//!
//! Every acknowledged reading must be in the table exactly once with its
//! exact value; a reading in flight at a break may be there at most once;
//! nothing else may be there. Documented drops (the agent's own counters)
//! are the only acknowledged readings allowed to be missing, and the
//! count must match exactly.
//!
//! It scales to millions of readings: the hub computes the islands of
//! consecutive sequence numbers, the duplicates and the wrong values, so
//! only the boundaries travel.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::load::VALUE_SQL;

/// What the lake should hold.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Acknowledged sequence numbers, sorted.
    pub acked: Vec<u64>,
    /// In flight at a break (never acknowledged), sorted.
    pub maybe: Vec<u64>,
    /// Acknowledged readings the agent documented as dropped.
    pub documented_drops: u64,
}

/// What the lake held.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub acked: u64,
    /// Acknowledged readings found in the table.
    pub delivered: u64,
    /// Extra copies of readings (all kinds).
    pub duplicates: u64,
    /// Acknowledged readings missing, beyond the documented drops.
    pub lost: u64,
    /// Readings nobody published or that were acknowledged elsewhere.
    pub unknown: u64,
    /// Stored readings whose value differs from what was published.
    pub wrong_values: u64,
    /// Unacknowledged readings that were stored anyway (allowed).
    pub maybe_stored: u64,
    pub documented_drops: u64,
}

impl Verdict {
    /// Nothing lost beyond the documented drops, nothing doubled or wrong.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.unknown == 0 && self.wrong_values == 0
    }
}

/// Waits (up to `timeout`) until the table holds every acknowledged
/// reading minus the documented drops, then checks it in full.
pub fn check(hub: SocketAddr, table: &str, expect: &Expect, timeout: Duration) -> Verdict {
    let want = (expect.acked.len() as u64).saturating_sub(expect.documented_drops);
    let deadline = Instant::now() + timeout;
    let mut last = (0u64, Instant::now());
    while Instant::now() < deadline {
        let distinct = scalar(hub, &format!("SELECT count(DISTINCT seq) FROM {table}"));
        match distinct {
            Some(d) if d >= want && d >= last.0 && last.1.elapsed() > Duration::from_secs(1) => {
                break;
            }
            Some(d) if d != last.0 => last = (d, Instant::now()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    verdict(hub, table, expect)
}

fn verdict(hub: SocketAddr, table: &str, expect: &Expect) -> Verdict {
    let islands = islands(hub, table);
    let contains = |seq: u64| {
        let i = islands.partition_point(|&(_, hi)| hi < seq);
        islands
            .get(i)
            .is_some_and(|&(lo, hi)| lo <= seq && seq <= hi)
    };
    let delivered = expect.acked.iter().filter(|&&s| contains(s)).count() as u64;
    let maybe_stored = expect.maybe.iter().filter(|&&s| contains(s)).count() as u64;
    let stored_distinct: u64 = islands.iter().map(|(lo, hi)| hi - lo + 1).sum();
    let duplicates = scalar(
        hub,
        &format!("SELECT coalesce(sum(n - 1), 0) FROM (SELECT seq, count(*) AS n FROM {table} GROUP BY seq HAVING count(*) > 1)"),
    )
    .unwrap_or(u64::MAX);
    let wrong_values = scalar(
        hub,
        &format!("SELECT count(*) FROM {table} WHERE v <> {VALUE_SQL}"),
    )
    .unwrap_or(u64::MAX);
    let acked = expect.acked.len() as u64;
    Verdict {
        acked,
        delivered,
        duplicates,
        lost: (acked - delivered).saturating_sub(expect.documented_drops),
        unknown: stored_distinct.saturating_sub(delivered + maybe_stored),
        wrong_values,
        maybe_stored,
        documented_drops: expect.documented_drops,
    }
}

/// The table's distinct sequence numbers as sorted, inclusive ranges.
fn islands(hub: SocketAddr, table: &str) -> Vec<(u64, u64)> {
    // A row starts an island when its predecessor is not seq - 1, and ends
    // one when its successor is not seq + 1.
    let sql = format!(
        "SELECT seq, kind FROM (\
           SELECT seq, 's' AS kind FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS p FROM (SELECT DISTINCT seq FROM {table})) WHERE p IS NULL OR p <> seq - 1 \
           UNION ALL \
           SELECT seq, 'e' AS kind FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS n FROM (SELECT DISTINCT seq FROM {table})) WHERE n IS NULL OR n <> seq + 1\
         ) ORDER BY seq, kind DESC"
    );
    let answer =
        crate::query(hub, None, &sql).unwrap_or_else(|| panic!("islands query on {table} failed"));
    assert!(
        answer["truncated"].as_bool() != Some(true),
        "the islands of {table} passed query.max_rows"
    );
    let mut out = Vec::new();
    let mut start = None;
    for row in answer["data"].as_array().into_iter().flatten() {
        let seq = row[0].as_f64().unwrap_or(-1.0) as u64;
        match row[1].as_str() {
            Some("s") => start = Some(seq),
            Some("e") => {
                if let Some(lo) = start.take() {
                    out.push((lo, seq));
                }
            }
            _ => {}
        }
    }
    out
}

/// A one-number query (`None` when the table does not exist yet).
pub fn scalar(hub: SocketAddr, sql: &str) -> Option<u64> {
    let answer = crate::query(hub, None, sql)?;
    let cell = &answer["data"][0][0];
    cell.as_u64()
        .or_else(|| cell.as_f64().map(|f| f as u64))
        .or_else(|| cell.as_str().and_then(|s| s.parse().ok()))
}
