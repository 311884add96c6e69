//! Bulk import: rows per second of `POST /api/v1/import/csv` (the file
//! uploaded, parsed, committed into a Delta table, answered when the job
//! has ended) next to DuckDB loading the same CSV into a Parquet file on
//! the same machine in the same run. Both must keep every row.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::procs::{HubOptions, fresh_addr, peak_rss_kib, rss_kib, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

/// 2024-01-01T00:00:00Z in milliseconds.
const T0_MS: i64 = 1_704_067_200_000;

/// A CSV like an export of sensor data: time (epoch ms), a device tag,
/// three numbers and a status word.
fn write_csv(path: &Path, rows: usize) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create csv"));
    writeln!(out, "time,device,temp,humidity,pressure,status").expect("write");
    for i in 0..rows {
        let status = if i % 97 == 0 { "alarm" } else { "ok" };
        writeln!(
            out,
            "{},dev{:04},{}.{},{}.5,{},{status}",
            T0_MS + i as i64 * 100,
            i % 1000,
            15 + i % 20,
            i % 10,
            30 + i % 60,
            1000 + i % 50,
        )
        .expect("write");
    }
    out.flush().expect("flush");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn duckdb(csv: &Path, dir: &Path, runs: usize) -> Value {
    let job = json!({"csv": csv, "out_dir": dir, "runs": runs});
    crate::procs::python_job("import_peer.py", include_str!("import_peer.py"), &job)
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let rows = scale.import_rows;
    let mut section = Section::new(
        "import",
        &format!("Bulk import: a CSV file of {rows} rows into a table"),
    );
    let csv = dir.join("import.csv");
    let bytes = write_csv(&csv, rows);
    let body = std::fs::read(&csv).expect("read csv");
    let hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let rss_before = rss_kib(hub.peer.id());

    let mut ferry_rate = Vec::new();
    let mut job_rate = Vec::new();
    for run in 0..scale.runs {
        // A new table each run: the same file into the same table is a
        // duplicate and writes nothing.
        let path = format!(
            "/api/v1/import/csv?db=bench&measurement=run{run}&tag_columns=device&time_format=epoch_ms"
        );
        let started = Instant::now();
        let answer = hub.call("POST", &path, &[], &body);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(answer.status, 200, "import: {}", answer.text());
        let v = answer.json();
        assert_eq!(v["result"]["rows_imported"], rows as u64, "{v}");
        assert_eq!(hub.count(&format!("bench.run{run}")), rows as u64);
        ferry_rate.push(rows as f64 / secs);
        job_rate.push(v["job"]["rows_per_second"].as_f64().unwrap_or(0.0));
    }
    let again = hub.call(
        "POST",
        "/api/v1/import/csv?db=bench&measurement=run0&tag_columns=device&time_format=epoch_ms",
        &[],
        &body,
    );
    assert_eq!(
        again.json()["duplicate"],
        true,
        "the same file twice is a duplicate"
    );

    let peak = peak_rss_kib(hub.peer.id());
    section.note(format!(
        "Hub memory: {:.0} MiB resident before the imports, {:.0} MiB at its peak over all of them, \
         for a {:.0} MiB file sent whole in one request. The file itself is spooled to disk (receiving \
         it alone peaks near 60 MiB); the peak comes from the commits (see docs/benchmarks-hub.md).",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        bytes as f64 / 1048576.0
    ));
    let peer = duckdb(&csv, dir, scale.runs);
    let duck_rate: Vec<f64> = peer["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            assert_eq!(r["rows"], rows as u64, "DuckDB kept every row");
            rows as f64 / (r["ms"].as_f64().unwrap_or(f64::MAX) / 1000.0)
        })
        .collect();
    section.intro = format!(
        "A {bytes}-byte CSV of {rows} rows (time in epoch ms, a `device` tag with 1,000 values, \
         three numbers, a status word). Ferry: `POST /api/v1/import/csv?tag_columns=device&\
         time_format=epoch_ms` with the file as the body, timed at the client from the first byte \
         sent to the answer (upload, hashing, spooling, parsing, one commit per 100,000-row chunk \
         into a Delta table, durable), a new table each run. Baseline: DuckDB {} ({} threads) \
         `COPY (SELECT epoch_ms(time) AS time, * EXCLUDE (time) FROM read_csv(...)) TO '...parquet' \
         (FORMAT parquet, COMPRESSION zstd)` on the same file: a local conversion with no \
         durability, no upload and no table. {} run(s) each; both keep all {rows} rows; the same \
         file imported again is a duplicate (nothing written).",
        peer["duckdb_version"].as_str().unwrap_or("?"),
        peer["threads"],
        scale.runs,
    );
    section.compare(Comparison::new(
        format!("CSV import, {rows} rows"),
        Unit::Rate("rows"),
        &ferry_rate,
        "DuckDB read_csv → Parquet",
        &duck_rate,
    ));
    section.details = json!({
        "rows": rows, "bytes": bytes, "ferry_rows_per_s": ferry_rate,
        "ferry_job_rows_per_s": job_rate, "duckdb": peer,
        "hub_rss_before_kib": rss_before, "hub_peak_rss_kib": peak,
    });
    section
}
