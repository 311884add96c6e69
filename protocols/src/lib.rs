//! # ferry-protocols
//!
//! The one place for Ferry's wire formats and data model. Both `ferry-agent`
//! and `ferry-hub` depend on this crate; it depends on neither.
//!
//! | module | what it holds |
//! |---|---|
//! | [`name`] | typed, validated names: [`DatabaseName`], [`Measurement`], [`TagKey`], [`FieldKey`], [`AgentId`] |
//! | [`reading`] | the row model: [`Reading`], [`FieldValue`] |
//! | [`time`] | timestamp precisions and Arc's time-unit inference |
//! | [`lp`] | InfluxDB line protocol: parser and writer |
//! | [`msgpack`] | Arc's MessagePack write formats (columnar and row) |
//! | [`json`] | JSON readings, bare numbers and `{"value": x}` |
//! | [`compression`] | gzip / zstd bodies detected by magic bytes, with a size cap |
//! | [`topic`] | MQTT topic templates that extract a measurement and tags |
//! | [`batch`] | the columnar batch and the Arrow schema rules |
//! | [`segment`] | the segment file format (Parquet + key-value metadata) |
//! | [`api`] | agent ↔ hub HTTP API types |
//!
//! No function in this crate panics on input: every malformed input yields a
//! typed error that says where the problem is.

pub mod api;
pub mod batch;
pub mod compression;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod json;
pub mod lines;
pub mod lp;
pub mod msgpack;
pub mod name;
pub mod reading;
pub mod segment;
pub mod time;
pub mod topic;

pub use name::{AgentId, DatabaseName, FieldKey, Measurement, NameError, TagKey};
pub use reading::{FieldType, FieldValue, Fields, Reading, Tags};
pub use time::Precision;
