//! Catalog: what the number of tables in the lake costs a query that names
//! one. Baseline, same hub, same run: the same query when the lake holds
//! only that table.
//!
//! A table `cat.t0` gets 1,000 rows and `SELECT count(*) FROM cat.t0` is
//! timed; then 999 more tables are created (100 measurements per
//! line-protocol body; `--quick`: 99) and the same query is timed again.
//! `SHOW MEASUREMENTS` with every table is reported beside it.

use std::path::Path;
use std::time::Instant;

use crate::procs::{Hub, HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const T0: u64 = 1_700_000_000_000_000_000;

/// `n` timings of `sql`, ms.
fn time_query(hub: &Hub, sql: &str, n: usize) -> Vec<f64> {
    // One untimed run loads the table into the reader cache.
    hub.query(sql).expect("query");
    (0..n)
        .map(|_| {
            let t = Instant::now();
            hub.query(sql).expect("query");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let tables: usize = if scale.quick { 100 } else { 1_000 };
    let samples = if scale.quick { 10 } else { 50 };
    let mut section = Section::new(
        "catalog",
        &format!("Catalog: a one-table query with {tables} tables in the lake"),
    );
    let mut hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let rows: String = (0..1_000)
        .map(|i| format!("t0,site=s{} v={i} {}\n", i % 10, T0 + i))
        .collect();
    hub.post_lp("cat", rows.as_bytes());
    let sql = "SELECT count(*) FROM cat.t0";
    let one = time_query(&hub, sql, samples);

    let started = Instant::now();
    for chunk in (1..tables).collect::<Vec<_>>().chunks(100) {
        let body: String = chunk
            .iter()
            .map(|i| format!("t{i},site=a v=1 {T0}\n"))
            .collect();
        hub.post_lp("cat", body.as_bytes());
    }
    let created = started.elapsed().as_secs_f64();
    let listed = hub.query("SHOW MEASUREMENTS FROM cat").expect("show");
    assert_eq!(
        listed["row_count"].as_u64(),
        Some(tables as u64),
        "every table is listed"
    );
    let many = time_query(&hub, sql, samples);
    let show = time_query(&hub, "SHOW MEASUREMENTS FROM cat", samples);

    section.compare(Comparison::new(
        format!("`{sql}` with {tables} tables in the lake"),
        Unit::Ms,
        &many,
        "the same query with 1 table",
        &one,
    ));
    section.note(format!(
        "p99 {:.1} ms with {tables} tables, {:.1} ms with 1 ({samples} queries each, after one untimed)",
        percentile(&many, 0.99),
        percentile(&one, 0.99),
    ));
    section.note(format!(
        "`SHOW MEASUREMENTS FROM cat` with {tables} tables: median {:.1} ms; creating the {} tables took {created:.1} s ({} line-protocol bodies)",
        percentile(&show, 0.5),
        tables - 1,
        (tables - 1).div_ceil(100),
    ));
    hub.stop();
    section
}
