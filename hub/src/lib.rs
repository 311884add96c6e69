//! # ferry-hub
//!
//! The hub: accepts segments from agents and line protocol / MessagePack
//! writes, commits them exactly once into Delta Lake tables (one per
//! `database.measurement`, partitioned by day) on local disk, S3 or Azure
//! Blob, and serves SQL over them with DataFusion.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | `hub.toml`: parsing, validation of every key at once, the commented template |
//! | [`table`] | Delta tables: storage backends, the commit batcher, exactly-once, schema evolution |
//! | [`meta`] | the SQLite metadata store: tokens, agents, retention policies, settings |
//! | [`cq`] | continuous queries: the scheduler, exactly-once windows, their API |
//! | [`lastcache`] | the last-value cache: the newest rows per key in memory, `last_cache()` in SQL, its API |
//! | [`maintenance`] | background compaction, retention and vacuum; their API |
//! | [`audit`] | the audit log: administrative actions and authentication failures, hash-chained |
//! | [`quota`] | ingest rate and storage quotas per token and database, daily usage |
//! | [`auth`] | bearer tokens, roles, the request principal, token lifecycle and management |
//! | [`ingest`] | the write endpoints: segments, line protocol, MessagePack |
//! | [`query`] | read-only SQL over the tables: JSON, CSV and Arrow IPC answers |
//! | [`fleet`] | what the hub knows about its agents |
//! | [`server`] | the HTTP server: router, health, errors, logging, ordered shutdown |
//! | [`metrics`] | every Prometheus metric name |
//! | [`supervise`] | background tasks that panic are contained, answered and counted |
//!
//! The binary (`main.rs`) only parses the command line and calls
//! [`server::Hub`], [`config::check_file`] and [`config::TEMPLATE`].

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod config;
pub mod console;
pub mod cq;
pub mod data;
pub mod encryption;
pub mod fleet;
pub mod flight;
pub mod import;
pub mod ingest;
pub mod instance;
pub mod lastcache;
pub mod maintenance;
pub mod meta;
pub mod metrics;
pub mod query;
pub mod quota;
pub mod server;
pub mod supervise;
pub mod table;
#[cfg(test)]
pub(crate) mod test_faults;
