//! The scenarios. Each one starts what it needs in its own temporary
//! directory, measures Ferry and its baseline in the same run, and returns
//! a report [`Section`](crate::report::Section).

pub mod catalog;
pub mod commit_growth;
pub mod delete;
pub mod drain;
pub mod encryption;
pub mod flight;
pub mod footprint;
pub mod freshness;
pub mod hub_ingest;
pub mod import;
pub mod ingest_long;
pub mod lake;
pub mod last_cache;
pub mod mqtt;
pub mod noisy;
pub mod queries;
pub mod recovery;
pub mod replicas;
pub mod storage;
pub mod store;
pub mod topics;

/// The agent's route for the MQTT scenarios: `bench/<device>/<measurement>`,
/// JSON payloads.
pub const BENCH_ROUTE: &str = "[[routes]]\ntopic = \"bench/{device}/{measurement}\"\ndatabase = \"bench\"\nformat = \"json\"\n";

/// Uplink settings for an agent whose hub never answers (it only buffers).
pub const NO_HUB: (&str, &str) = (
    "http://127.0.0.1:9",
    "backoff_initial = \"30s\"\nbackoff_max = \"60s\"\n",
);
