//! Noisy neighbour: what four runaway queries cost everyone else.
//!
//! A second client loops over a small query (`count(*)` of a small table),
//! a line-protocol write and a segment upload, first alone for a while
//! (the baseline, same hub, same run), then again while two hostile read
//! tokens keep four runaway queries running (a 10^13-row cross join, a
//! distinct count and an `array_agg` over 3·10^8 rows, a sort of 3·10^8
//! rows; each resent as soon as the hub answers it). The figures are the
//! second client's latencies with the neighbours against without, and how
//! the runaway queries were answered.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use ferry_hil_tests::request;
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::{FieldKey, FieldValue, Measurement, Reading};

use crate::dataset::segment;
use crate::procs::{Hub, HubOptions, fresh_addr, rss_kib, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const RUNAWAY: [&str; 4] = [
    "SELECT count(*) FROM (SELECT a.value FROM generate_series(1, 100000000) a, generate_series(1, 100000) b)",
    "SELECT count(DISTINCT value) FROM generate_series(1, 300000000)",
    "SELECT array_length(array_agg(value)) FROM generate_series(1, 300000000)",
    "SELECT value FROM generate_series(1, 300000000) ORDER BY value DESC",
];

/// The second client's latencies (ms) over one phase.
#[derive(Debug, Default)]
struct Phase {
    query: Vec<f64>,
    lp: Vec<f64>,
    segment: Vec<f64>,
}

fn batch(rows: usize, base: i64) -> RecordBatch {
    let m = Measurement::new("uploads").expect("name");
    let field = FieldKey::new("v").expect("name");
    let readings: Vec<Reading> = (0..rows)
        .map(|i| {
            Reading::new(m.clone(), base + i as i64)
                .with_field(field.clone(), FieldValue::F64(i as f64))
        })
        .collect();
    ReadingBatch::from_readings(m, &readings)
        .expect("batch")
        .to_record_batch()
        .expect("record batch")
}

/// The second client for `seconds`, starting at sequence `*seq`.
fn second_client(hub: &Hub, seconds: f64, seq: &mut u64) -> Phase {
    let mut p = Phase::default();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        let t = Instant::now();
        hub.query("SELECT count(*) FROM noisy.small")
            .expect("small query");
        p.query.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let line = format!(
            "small,site=a v={seq} {}",
            1_700_000_000_000_000_000u64 + *seq
        );
        hub.post_lp("noisy", line.as_bytes());
        p.lp.push(t.elapsed().as_secs_f64() * 1000.0);
        let bytes = segment(
            "noisy-gw",
            *seq,
            "noisy",
            "uploads",
            &batch(1000, 1_700_000_000_000_000_000 + *seq as i64 * 1000),
        );
        let t = Instant::now();
        hub.post_segment("noisy-gw", *seq, &bytes);
        p.segment.push(t.elapsed().as_secs_f64() * 1000.0);
        *seq += 1;
    }
    p
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut section = Section::new(
        "noisy",
        "Noisy neighbour: a second client's latency, alone and while 4 runaway queries run",
    );
    let seconds = if scale.quick { 6.0 } else { 20.0 };
    // The runaway queries end by query.timeout a little after the phase.
    let timeout = seconds as u64 + 2;
    let addr = fresh_addr();
    let mut hub = start_hub(
        dir,
        addr,
        &HubOptions {
            commit_interval: "50ms".to_owned(),
            query_timeout: format!("{timeout}s"),
            ..HubOptions::default()
        },
    );
    hub.post_lp("noisy", b"small,site=a v=0 1700000000000000000");
    let mut seq = 1;
    let alone = second_client(&hub, seconds, &mut seq);

    let hostile: Vec<String> = (0..2)
        .map(|i| hub.new_token(&format!("hostile-{i}"), "read"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let rss_before = rss_kib(hub.peer.id());
    let (noisy, answers) = std::thread::scope(|s| {
        let runners: Vec<_> = RUNAWAY
            .iter()
            .enumerate()
            .map(|(i, sql)| {
                let token = format!("Bearer {}", hostile[i % 2]);
                let stop = stop.clone();
                s.spawn(move || {
                    let body = serde_json::json!({ "sql": sql, "database": "noisy" }).to_string();
                    let mut answered = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let t = Instant::now();
                        let a = request(
                            "POST",
                            addr,
                            "/api/v1/query",
                            &[
                                ("Authorization", token.as_str()),
                                ("Content-Type", "application/json"),
                            ],
                            body.as_bytes(),
                            Duration::from_secs(timeout + 30),
                        );
                        answered.push((a.status, t.elapsed().as_secs_f64()));
                    }
                    answered
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let noisy = second_client(&hub, seconds, &mut seq);
        stop.store(true, Ordering::SeqCst);
        let answers: Vec<(u16, f64)> = runners
            .into_iter()
            .flat_map(|r| r.join().expect("runaway client"))
            .collect();
        (noisy, answers)
    });
    let rss_peak = rss_kib(hub.peer.id());
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(hub.peer.id());

    for (what, a, n) in [
        ("small query", &alone.query, &noisy.query),
        (
            "line protocol write (50 ms commit window)",
            &alone.lp,
            &noisy.lp,
        ),
        ("segment upload, 1,000 rows", &alone.segment, &noisy.segment),
    ] {
        section.compare(Comparison::new(
            format!("{what}: latency with 4 runaway queries"),
            Unit::Ms,
            n,
            "the same client alone",
            a,
        ));
        section.note(format!(
            "{what}: p99 {:.1} ms with the runaway queries ({} requests), {:.1} ms alone ({}); ratio of p99 {:.2}",
            percentile(n, 0.99),
            n.len(),
            percentile(a, 0.99),
            a.len(),
            percentile(n, 0.99) / percentile(a, 0.99)
        ));
    }
    let mut codes: Vec<String> = answers
        .iter()
        .map(|(status, secs)| format!("{status} after {secs:.1} s"))
        .collect();
    codes.sort();
    section.note(format!(
        "runaway queries (query.timeout {timeout} s, query.max_per_token 2): {}",
        codes.join(", ")
    ));
    section.note(format!(
        "hub RSS: {:.0} MiB before the runaway queries, {:.0} MiB at the end of the phase, {:.0} MiB 2 s after",
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        rss_after as f64 / 1024.0
    ));
    hub.stop();
    section
}
