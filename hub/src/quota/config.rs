//! `[quotas]` of `hub.toml`.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// `[quotas]`: default ingest rates per token and per database, stored
/// bytes per database, and how usage is measured. 0 is unlimited; per-token
/// and per-database overrides are set with `PUT /api/v1/quotas/...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Rows per second one token may ingest (line protocol, MessagePack,
    /// segments).
    pub token_rows_per_second: u64,
    /// Body bytes per second one token may send to the write routes.
    pub token_bytes_per_second: ByteSize,
    /// Rows per second one database may take, over all tokens.
    pub database_rows_per_second: u64,
    /// Body bytes per second one database may take, over all tokens.
    pub database_bytes_per_second: ByteSize,
    /// Bytes one database may hold in the store.
    pub database_max_bytes: ByteSize,
    /// How many seconds of its rate a bucket holds: a client idle that long
    /// may send that much at once.
    #[serde(with = "humantime_serde")]
    pub burst: Duration,
    /// How often each database's stored bytes are measured (for
    /// `database_max_bytes` and the usage report).
    #[serde(with = "humantime_serde")]
    pub storage_interval: Duration,
    /// How often usage counted in memory is added to the metadata store.
    #[serde(with = "humantime_serde")]
    pub usage_flush_interval: Duration,
    /// Daily usage and storage rows older than this are deleted (with each
    /// storage measurement); `0s` keeps them all.
    #[serde(with = "humantime_serde")]
    pub usage_retention: Duration,
    /// Rate buckets kept at most (tokens and databases; without auth, client
    /// addresses); idle full buckets are dropped first.
    pub max_buckets: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            token_rows_per_second: 0,
            token_bytes_per_second: ByteSize(0),
            database_rows_per_second: 0,
            database_bytes_per_second: ByteSize(0),
            database_max_bytes: ByteSize(0),
            burst: Duration::from_secs(10),
            storage_interval: Duration::from_secs(600),
            usage_flush_interval: Duration::from_secs(10),
            usage_retention: Duration::from_secs(400 * 86_400),
            max_buckets: 100_000,
        }
    }
}

impl QuotaConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.burst < Duration::from_secs(1) {
            errors.push("quotas.burst: must be at least 1s".to_owned());
        }
        if self.storage_interval < Duration::from_secs(1) {
            errors.push("quotas.storage_interval: must be at least 1s".to_owned());
        }
        if self.usage_flush_interval < Duration::from_millis(100) {
            errors.push("quotas.usage_flush_interval: must be at least 100ms".to_owned());
        }
        if self.max_buckets < 16 {
            errors.push("quotas.max_buckets: must be at least 16".to_owned());
        }
    }
}
