//! `ferry-bench`: one reproducible benchmark runner that measures Ferry
//! against the tools a user would pick instead, side by side, in one run on
//! one machine, so that the ratios hold even when the machine is noisy.
//!
//! Every scenario starts what it needs itself (release or debug
//! `ferry-agent` and `ferry-hub` from the same target directory as this
//! binary, Mosquitto from Debian, DuckDB from the project's Python venv), on
//! 127.0.0.1 only, in a temporary directory that is removed afterwards. Each
//! Ferry figure is reported next to a baseline measured in the same run, with
//! the ratio and a plain verdict ("Ferry is slower").
//!
//! | scenario | Ferry | baseline (same run) |
//! |---|---|---|
//! | [`scenario::mqtt`] | `ferry-agent` broker, every QoS 1 PUBACK after an fsynced commit | Mosquitto without and with persistence |
//! | [`scenario::store`] | the agent's SQLite buffer (`StoreHandle`, group commit) | raw rusqlite batched inserts of the same rows |
//! | [`scenario::drain`] | agent uplink emptying a backlog into the hub | the same segments posted directly, one at a time |
//! | [`scenario::footprint`] | agent binary size, RSS and CPU at 1k and 10k msg/s | Mosquitto at the same rates |
//! | [`scenario::hub_ingest`] | LP and segment writes, HTTP → committed | parse/decode + one zstd Parquet file + fsync in-process |
//! | [`scenario::queries`] | TSBS-IoT-style queries through `POST /api/v1/query` | DuckDB on the same Parquet files; answers compared |
//! | [`scenario::freshness`] | publish at the agent → visible in a hub query | line protocol straight to the hub → visible |
//! | [`scenario::storage`] | bytes per field value after compaction | DuckDB's zstd Parquet of the same rows |
//!
//! What it does not do: it measures loopback only (no network latency or
//! loss), and a 2-core machine shared with the load generators; the
//! absolute numbers move ±30 % between runs, the ratios much less.

pub mod dataset;
pub mod load;
pub mod procs;
pub mod report;
pub mod scale;
pub mod scenario;
pub mod stats;
pub mod truck;

pub use report::Report;
pub use scale::Scale;
