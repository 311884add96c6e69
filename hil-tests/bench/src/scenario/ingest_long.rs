//! `ingest-long`: does the hub's ingest rate hold over an hour? Four
//! writers post line-protocol bodies (the large `hub-ingest` size) into
//! one table of a hub on its defaults, background compaction on, for
//! `long_seconds`; the committed rows are counted per window. Baseline:
//! the same hub in the run's first twelfth (5 of 60 windows), when the
//! table was small. The last twelfth against the first says whether a
//! commit's cost grows with what the table holds (files, versions,
//! partitions). Not in `all` unless `--long` (an hour at default scale);
//! `--quick` runs it for 20 s.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::dataset::Dataset;
use crate::procs::{HubOptions, du, fresh_addr, rss_kib, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

const DATABASE: &str = "long";
const MEASUREMENT: &str = "ingest";
const WRITERS: usize = 4;

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new(
        "ingest-long",
        "Ingest over time: line protocol for an hour, first window against last",
    );
    let devices = scale.ingest_devices;
    let steps = (scale.ingest_lp_lines_large / devices).max(1);
    let lines = (devices * steps) as u64;
    let (total, window) = (scale.long_seconds, scale.long_window_seconds.max(1));
    let windows = (total / window).max(2) as usize;
    s.intro = format!(
        "A release hub on its defaults (group commit, background compaction on, fs tables, auth on); {WRITERS} writers \
         each keep one {lines}-line body in flight into one table ({devices} devices, timestamps advancing: new \
         partitions appear as the run goes on) for {} s; rows are counted when their commit is answered, per {window} s \
         window. Baseline: the same hub in the first twelfth of the run (median and range of its windows), on a \
         small table, against the last twelfth.",
        windows as u64 * window
    );
    let hub = start_hub(
        dir,
        fresh_addr(),
        &HubOptions {
            compaction: true,
            ..HubOptions::default()
        },
    );
    let data = Dataset {
        devices,
        steps: usize::MAX,
    };
    let committed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let refused = AtomicU64::new(0);
    let mut rates = Vec::with_capacity(windows);
    let mut rss_mib = Vec::with_capacity(windows);
    let started = Instant::now();
    std::thread::scope(|sc| {
        for w in 0..WRITERS {
            let (hub, committed, stop, refused) = (&hub, &committed, &stop, &refused);
            sc.spawn(move || {
                let mut body_index = w;
                while !stop.load(Ordering::Relaxed) {
                    let body = data.line_protocol(MEASUREMENT, body_index * steps, steps);
                    // A refused or failed write is not committed: count it
                    // and send the same body again, as a client would.
                    loop {
                        let a = hub.call(
                            "POST",
                            "/api/v1/write/line-protocol",
                            &[("x-ferry-database", DATABASE)],
                            &body,
                        );
                        if a.status == 204 {
                            break;
                        }
                        eprintln!("  write answered {}: {}", a.status, a.text());
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    committed.fetch_add(lines, Ordering::Relaxed);
                    body_index += WRITERS;
                }
            });
        }
        let mut last = 0;
        for i in 1..=windows {
            let due = started + Duration::from_secs(window * i as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let now = committed.load(Ordering::Relaxed);
            let rate = (now - last) as f64 / window as f64;
            last = now;
            rates.push(rate);
            rss_mib.push(rss_kib(hub.peer.id()) as f64 / 1024.0);
            eprintln!(
                "  window {i}/{windows}: {rate:.0} rows/s, hub RSS {:.0} MiB",
                rss_mib[i - 1]
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    let rows = committed.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    // What compaction cost beside ingest: rows it rewrote per row taken,
    // and its busy time (from the hub's own counters).
    let table = format!("{{table=\"{DATABASE}.{MEASUREMENT}\"}}");
    let compacted = hub.metric(&format!("ferry_table_compaction_rows_total{table}"));
    let compaction_seconds = hub.metric(&format!("ferry_table_compaction_seconds_sum{table}"));
    let compactions = hub.metric(&format!("ferry_table_compaction_seconds_count{table}"));
    assert_eq!(
        hub.count(&format!("{DATABASE}.{MEASUREMENT}")),
        rows,
        "rows in the table"
    );
    let unit = Unit::Rate("row");
    // One window is noisy (a compaction, a new partition): the first and
    // the last twelfth of the run (5 minutes of an hour), median and range.
    let k = (windows / 12).max(1);
    let (first, last) = (&rates[..k], &rates[windows - k..]);
    s.compare(Comparison::new(
        format!("LP, {WRITERS} writers, {lines}-line bodies: the last {k} window(s) of {window} s"),
        unit,
        last,
        format!("the first {k} window(s)"),
        first,
    ));
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let table_bytes = du(&dir.join("tables"));
    s.note(format!(
        "{rows} rows in {} windows; rate per window {lo:.0}–{hi:.0} rows/s (first {:.0}, last {:.0}); \
         {refused} write(s) refused or failed and sent again; table {:.1} MB at the end; hub RSS {:.0} MiB after the first window, {:.0} MiB after the last. \
         Compaction: {compactions:.0} runs, {compaction_seconds:.0} s in all, {compacted:.0} rows rewritten ({:.2} per row taken, {:.2} µs per row rewritten).",
        windows,
        rates[0],
        rates[windows - 1],
        table_bytes as f64 / 1e6,
        rss_mib[0],
        rss_mib[windows - 1],
        compacted / rows as f64,
        compaction_seconds * 1e6 / compacted
    ));
    s.details = json!({
        "window_seconds": window, "rates": rates, "hub_rss_mib": rss_mib,
        "rows": rows, "refused": refused, "table_bytes": table_bytes,
        "compaction_rows": compacted, "compaction_seconds": compaction_seconds, "compactions": compactions,
    });
    s
}
