//! # ferry-agent
//!
//! The gateway agent. Sensors publish to its embedded MQTT broker or hang off
//! its serial ports; every reading goes into a durable SQLite buffer, is cut
//! into Parquet segments and shipped to the hub, and is deleted only once the
//! hub has acknowledged the segment that holds it.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | the TOML file: parsing, validation, the commented template |
//! | [`ingest`] | the seam between sources and the buffer |
//! | [`broker`] | the embedded broker and its acknowledgement gate |
//! | [`store`] | the SQLite buffer |
//! | [`uplink`] | segments → hub, in order, with backoff and quarantine |
//! | [`http`] | local health, metrics and status |
//! | [`route`] | topics → readings: templates, payload formats, dead letters |
//! | [`serial`] | serial line devices, Modbus RTU and Modbus TCP polling |
//! | [`supervise`] | crash-only panics, liveness of every part, `/health`, `/ready`, the systemd watchdog |

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod route;
pub mod segmenter;
pub mod serial;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod uplink;
