//! Storage: bytes on disk per field value of the truck data set after the
//! hub's compaction (`POST /api/v1/compaction/run`: small files of each day
//! partition merged into files sorted by tags, then time), against DuckDB
//! writing the same rows in the same order as one zstd Parquet file.

use std::path::Path;

use serde_json::json;

use super::lake::{Lake, peer_engines};
use crate::procs::du;
use crate::report::{Comparison, Section};
use crate::stats::Unit;

pub fn run(lake: &Lake, dir: &Path) -> Section {
    let mut s = Section::new("storage", "Storage: bytes per field value after compaction");
    s.intro = format!(
        "The truck data set of the queries scenario ({} rows; `readings` has 7 fields, `diagnostics` 3, both 5 tags and a \
         timestamp), after the hub's compaction. Ferry: the Parquet files the Delta table references (its active files, \
         zstd, one table per measurement partitioned by day), divided by rows × fields. Baseline: DuckDB {} `COPY … TO … \
         (FORMAT parquet, COMPRESSION zstd)` of the same rows sorted the same way (tags, then time), one file per table. \
         The Delta log is counted separately.",
        lake.total_rows(),
        "(Python)"
    );
    let scratch = dir.join("duckdb-storage");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let d = peer_engines(
        lake,
        json!({"runs": 0, "queries": [], "storage_dir": scratch}),
    );
    let mut details = Vec::new();
    let (mut ferry_total, mut duck_total, mut values_total) = (0.0, 0.0, 0.0);
    for (kind, rows) in &lake.rows {
        let m = kind.measurement();
        let t = &d["tables"][m];
        let values = (*rows * kind.fields().len() as u64) as f64;
        let active = t["bytes"].as_f64().unwrap_or(f64::NAN);
        let duck = t["duckdb_zstd_bytes"].as_f64().unwrap_or(f64::NAN);
        let log = du(&lake.table_dir(*kind).join("_delta_log"));
        let before = lake
            .bytes_before
            .iter()
            .find(|b| b.0 == *kind)
            .map(|b| b.1)
            .unwrap_or(0);
        ferry_total += active;
        duck_total += duck;
        values_total += values;
        s.compare(Comparison::new(
            format!("`{m}`: bytes per field value"),
            Unit::Lower("B/value"),
            &[active / values],
            "DuckDB zstd Parquet, same order",
            &[duck / values],
        ));
        s.note(format!(
            "`{m}`: {rows} rows, {} active files, {:.1} MB after compaction ({:.1} MB on disk before it, all files and log); \
             Delta log {:.2} MB; DuckDB's file {:.1} MB.",
            t["files"],
            active / 1e6,
            before as f64 / 1e6,
            log as f64 / 1e6,
            duck / 1e6
        ));
        details.push(json!({"table": m, "rows": rows, "fields": kind.fields().len(), "active_files": t["files"],
            "active_bytes": active, "bytes_before_compaction": before, "delta_log_bytes": log, "duckdb_zstd_bytes": duck,
            "ferry_bytes_per_value": active / values, "duckdb_bytes_per_value": duck / values}));
    }
    s.compare(Comparison::new(
        "both tables: bytes per field value",
        Unit::Lower("B/value"),
        &[ferry_total / values_total],
        "DuckDB zstd Parquet, same order",
        &[duck_total / values_total],
    ));
    s.note(format!(
        "Compaction: {} ({:.1} s).",
        lake.compaction, lake.compaction_seconds
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    s.details = json!({"tables": details, "compaction": lake.compaction, "compaction_seconds": lake.compaction_seconds,
        "duckdb_version": d["duckdb_version"]});
    s
}
