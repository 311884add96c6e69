//! Hub benchmarks against a real release `ferry-hub` (fs tables, auth on),
//! each with a baseline measured in the same run.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/var/tmp/ferry-bench-target   # any; the hub is found next to this binary
//! cargo build --release -p ferry-hub -p ferry-hil-tests
//! cargo run --release -p ferry-hil-tests --bin hub_bench -- ingest [--rows 1000000] [--writers 1,4] \
//!     [--lp-lines 5000] [--segment-rows 10000] [--devices 1000] [--commit-interval 1s] [--json out.json]
//! cargo run --release -p ferry-hil-tests --bin hub_bench -- query [--hours 28] [--devices 1000] \
//!     [--runs 5] [--segment-rows 100000] [--writers 4] [--commit-interval 1s] [--dir /var/tmp] [--json out.json]
//! ```
//!
//! * `ingest`: rows/s of line protocol (`POST /api/v1/write/line-protocol`,
//!   `--lp-lines` per request) and of segments (`POST /api/v1/segments`,
//!   `--segment-rows` per segment, one agent id per writer), with 1 and 4
//!   concurrent writers; every answer comes after the durable Delta commit.
//!   Baselines: the same bodies parsed with `ferry_protocols` (or the same
//!   segments decoded with `read_segment`) and written as one zstd Parquet
//!   file with `ArrowWriter`, fsynced: the floor of work any ingest does.
//! * `query`: loads `--devices` × `--hours` of 10-s readings (1,000 × 28 h
//!   = 10.08 M rows by default) through segments, then runs five queries
//!   through `POST /api/v1/query` (JSON and Arrow IPC answers) and in DuckDB
//!   (Python, the project venv) over exactly the table's active Parquet
//!   files; median/min/max per engine, answers compared.
//!
//! Prints Markdown to stdout (progress on stderr) and, with `--json`, writes
//! the figures as JSON.

mod common;
mod ingest;
mod query;

use serde_json::json;

fn main() {
    let args = common::Args::parse(std::env::args().skip(1));
    let what = args.words.first().map(String::as_str).unwrap_or("");
    let hub = common::hub_binary();
    eprintln!("hub binary: {}", hub.display());
    if !hub.to_string_lossy().contains("/release/") {
        eprintln!("warning: not a release build of ferry-hub; run with --release");
    }
    let report = match what {
        "ingest" => ingest::run(&args),
        "query" => query::run(&args),
        _ => {
            eprintln!(
                "usage: hub_bench ingest|query [--json FILE] [options]; see the source header"
            );
            std::process::exit(2);
        }
    };
    let doc = json!({
        "bench": format!("hub_bench {what}"),
        "commit": common::git_commit(),
        "hub_binary": hub,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
        "report": report,
    });
    if let Some(path) = args.opts.get("json") {
        std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json"))
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
        eprintln!("wrote {path}");
    }
}
