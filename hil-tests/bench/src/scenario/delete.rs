//! Delete: `POST /api/v1/delete` on a compacted table, next to delta-rs
//! (the `deltalake` Python package) deleting with the same predicate from
//! a copy of the same Delta table, in the same run.
//!
//! Each run has its own table `del.m{run}` of `delete_rows` rows (20 hosts,
//! 4 UTC days from 2026-01-01, written as line protocol and compacted to
//! about one file per day), copied for delta-rs before Ferry touches it.
//! Two deletes, in order: `host = 'h7'` (5 % of the rows, in every file:
//! every file rewritten) and `time < '2026-01-03T00:00:00Z'` (two whole
//! days: Ferry drops their files by statistics without reading them). Both
//! engines must leave the same number of rows.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::procs::{Hub, HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

const DAY_NS: u64 = 86_400_000_000_000;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;
const PREDICATES: [&str; 2] = ["host = 'h7'", "time < '2026-01-03T00:00:00Z'"];

/// Writes `rows` rows over 4 days into `del.{m}`.
fn fill(hub: &Hub, m: &str, rows: usize) {
    let step = 4 * DAY_NS / rows as u64;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(100_000) {
        let body: String = chunk
            .iter()
            .map(|&i| {
                format!(
                    "{m},host=h{} v={i}i,temp={}.5 {}\n",
                    i % 20,
                    i % 97,
                    T0 + i as u64 * step
                )
            })
            .collect();
        hub.post_lp("del", body.as_bytes());
    }
}

/// Ferry's delete, timed at the client; the answer.
fn ferry_delete(hub: &Hub, m: &str, predicate: &str) -> (f64, Value) {
    let body = json!({"database": "del", "measurement": m, "where": predicate, "confirm": true});
    let t = Instant::now();
    let a = hub.call(
        "POST",
        "/api/v1/delete",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(a.status, 200, "delete {predicate}: {}", a.text());
    (ms, a.json())
}

/// delta-rs deleting `PREDICATES` from the table at `dir`.
fn delta_rs(dir: &Path) -> Value {
    let job = json!({"table": dir, "predicates": PREDICATES});
    crate::procs::python_job("delete_peer.py", include_str!("delete_peer.py"), &job)
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -r {} {}",
        from.display(),
        to.display()
    );
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let rows = scale.delete_rows;
    let mut section = Section::new(
        "delete",
        &format!("Delete: rows of a {rows}-row table by predicate, Ferry vs delta-rs"),
    );
    let hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let tables: Vec<String> = (0..scale.runs).map(|r| format!("m{r}")).collect();
    let started = Instant::now();
    for m in &tables {
        fill(&hub, m, rows);
    }
    let loaded = started.elapsed().as_secs_f64();
    let compacted = hub.compact();
    let mut copies = Vec::new();
    for m in &tables {
        let copy = dir.join(format!("delta-rs-{m}"));
        copy_dir(&hub.dir.join("tables/del").join(m), &copy);
        copies.push(copy);
    }
    let files = hub
        .query(&format!(
            "SELECT count(DISTINCT day) FROM del.{}",
            tables[0]
        ))
        .ok()
        .and_then(|v| v["data"][0][0].as_u64())
        .unwrap_or(0);

    let mut ferry: Vec<Vec<f64>> = vec![Vec::new(); PREDICATES.len()];
    let mut peer: Vec<Vec<f64>> = vec![Vec::new(); PREDICATES.len()];
    let mut answers = Vec::new();
    let mut peer_answers = Vec::new();
    let mut version = String::new();
    for (m, copy) in tables.iter().zip(&copies) {
        let mut left = Vec::new();
        for (i, p) in PREDICATES.iter().enumerate() {
            let (ms, answer) = ferry_delete(&hub, m, p);
            ferry[i].push(ms);
            left.push(hub.count(&format!("del.{m}")));
            answers.push(answer);
        }
        let theirs = delta_rs(copy);
        version = theirs["deltalake_version"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        for (i, d) in theirs["deletes"]
            .as_array()
            .expect("deletes")
            .iter()
            .enumerate()
        {
            peer[i].push(d["ms"].as_f64().unwrap_or(f64::NAN));
            assert_eq!(
                d["rows_after"].as_u64(),
                Some(left[i]),
                "Ferry and delta-rs left different row counts after `{}`",
                PREDICATES[i]
            );
        }
        peer_answers.push(theirs);
    }
    section.intro = format!(
        "`del.m<run>`: {rows} rows (20 hosts, 4 UTC days), written as line protocol ({loaded:.1} s for {} table(s)) \
         and compacted ({} files removed, {} added; {files} day partitions per table). Ferry: `POST /api/v1/delete` \
         with `confirm`, timed at the client (plan, rewrite, commit). Baseline: delta-rs {version} \
         (`DeltaTable.delete`, Python) on a copy of the same table, same predicates in the same order. {} run(s), one \
         fresh table each; both engines leave the same row count after each delete.",
        tables.len(),
        compacted["files_removed"],
        compacted["files_added"],
        scale.runs,
    );
    let first = &answers[0];
    let second = &answers[1];
    section.compare(Comparison::new(
        format!(
            "`{}`: {} rows from {} files (rewritten {}, read {})",
            PREDICATES[0],
            first["deleted_count"],
            first["affected_files"],
            first["rewritten_files"],
            first["files_read"],
        ),
        Unit::Ms,
        &ferry[0],
        format!("delta-rs {version}"),
        &peer[0],
    ));
    section.compare(Comparison::new(
        format!(
            "`{}`: {} rows, {} whole files dropped by statistics (read {})",
            PREDICATES[1], second["deleted_count"], second["removed_files"], second["files_read"],
        ),
        Unit::Ms,
        &ferry[1],
        format!("delta-rs {version}"),
        &peer[1],
    ));
    section.details = json!({"ferry": answers, "delta_rs": peer_answers, "rows": rows});
    section
}
