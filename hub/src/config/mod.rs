//! The hub's configuration file, `hub.toml`.
//!
//! Every section and key is optional; a missing one takes the default that
//! [`TEMPLATE`] documents (and a test checks that the template parses back to
//! exactly [`HubConfig::default`]). Unknown keys are errors, not warnings: a
//! misspelt key would otherwise silently fall back to its default.
//!
//! [`load`] and [`check_file`] report **every** problem at once, each with the
//! path of its key (`server.listen: invalid socket address syntax`): the
//! document is parsed, each section is deserialized on its own (so one bad
//! section does not hide another), a bad section is re-read key by key to
//! name the key at fault, and then [`HubConfig::validate`] checks the rules
//! that serde cannot express. `ferry-hub check-config` prints exactly what
//! `ferry-hub serve` would reject.

mod load;
mod template;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::ingest::IngestConfig;
use crate::maintenance::{CompactionConfig, RetentionConfig};
pub use crate::query::QueryConfig;
use crate::table::{StorageConfig, TableConfig};

pub use load::{ConfigErrors, check_file, load, load_file, parse};
pub use template::TEMPLATE;

/// The largest accepted `server.max_body`: bodies are held in memory.
pub const MAX_BODY_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// The whole of `hub.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    pub server: ServerConfig,
    pub flight: crate::flight::FlightConfig,
    pub storage: StorageConfig,
    pub tables: TableConfig,
    pub compaction: CompactionConfig,
    pub retention: RetentionConfig,
    pub delete: crate::table::DeleteConfig,
    pub continuous_queries: crate::cq::CqConfig,
    pub last_cache: crate::lastcache::LastCacheConfig,
    pub import: crate::import::ImportConfig,
    pub metadata: MetadataConfig,
    pub query: QueryConfig,
    pub ingest: IngestConfig,
    pub auth: AuthConfig,
    pub audit: crate::audit::AuditConfig,
    pub quotas: crate::quota::QuotaConfig,
    pub instance: crate::instance::InstanceConfig,
    pub alerts: crate::alerts::AlertsConfig,
    pub encryption: crate::encryption::EncryptionConfig,
    pub replica: ReplicaConfig,
    pub log: LogConfig,
}

/// What this hub does among hubs sharing the same tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes, runs maintenance and serves queries.
    #[default]
    Writer,
    /// Serves queries from tables other hubs write: no writes, no
    /// maintenance, continuous queries, imports or alerts.
    Reader,
}

/// `[replica]`: several hubs over the same tables (docs/scale-out.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    pub role: Role,
    /// A reader serves a table it checked less than this long ago without
    /// reading the table's log again; its answers lag the writers by at
    /// most this much.
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    /// With several writers (`multi_writer`): how long the maintenance
    /// lease's holder may be silent before another writer takes it
    /// ([`crate::maintenance::lease`]).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// With several hubs: how often a writer publishes its agents for the
    /// others' fleet view, and how long a hub keeps the others' lists.
    #[serde(with = "humantime_serde")]
    pub fleet_interval: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            role: Role::Writer,
            max_staleness: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(30),
            fleet_interval: Duration::from_secs(10),
        }
    }
}

impl ReplicaConfig {
    /// Whether this hub is a read replica.
    pub fn is_reader(&self) -> bool {
        self.role == Role::Reader
    }
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Largest request body, as received and (for gzip / zstd bodies) after
    /// decompression. Larger bodies get 413 `payload_too_large`.
    pub max_body: ByteSize,
    /// HTTPS on `listen` (see `server::tls`); without it, plain HTTP.
    pub tls: Option<crate::server::tls::ServerTlsConfig>,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            max_body: ByteSize::mib(64),
            tls: None,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// `max_body` in bytes, as a `usize` (validation keeps it in range).
    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body.as_u64()).unwrap_or(usize::MAX)
    }
}

/// `[metadata]`: the SQLite file holding tokens, agents and settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub path: PathBuf,
    /// Share tokens, roles, quotas, policies, continuous queries, caches
    /// and alert rules with the lake's other hubs through the log in the
    /// store ([`crate::meta::shared`]). `None`: on when other hubs share
    /// the tables (`multi_writer`, or a read replica).
    pub shared: Option<bool>,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            path: PathBuf::from("./ferry-data/hub.db"),
            shared: None,
        }
    }
}

/// `[auth]`: bearer-token authentication.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When false, every request acts as an admin. For local experiments
    /// only; `serve` logs a warning at start.
    pub enabled: bool,
    /// How long a rotated token's previous secret keeps working when the
    /// rotation request names no `grace`.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
    /// The longest `expires_in` a token may be created with; `0s`: no limit.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            rotation_grace: Duration::from_secs(24 * 3600),
            max_token_lifetime: Duration::ZERO,
        }
    }
}

/// `[log]`: structured logs on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `ferry_hub=debug,info`, ...
    /// The `FERRY_LOG` environment variable overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl HubConfig {
    /// Checks the rules serde cannot express, pushing one message per
    /// problem, each starting with the key's path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let max_body = self.server.max_body.as_u64();
        if max_body == 0 {
            errors.push("server.max_body: must be greater than 0".to_owned());
        } else if max_body > MAX_BODY_LIMIT {
            errors.push(format!(
                "server.max_body: {} is over the limit of 4 GiB (bodies are held in memory)",
                self.server.max_body
            ));
        }
        if self.metadata.path.as_os_str().is_empty() {
            errors.push("metadata.path: must not be empty".to_owned());
        }
        self.flight.validate(self.server.listen, errors);
        self.compaction.validate(errors);
        self.retention.validate(errors);
        if self.storage.lacks_conditional_put() {
            errors.push(
                "storage.conditional_put = \"disabled\" is not supported: every Delta commit \
                 (the hub's appends, deltalake's writer, compaction and retention) is written with \
                 a conditional put (If-None-Match), which such a store refuses, so no write could \
                 ever commit; use a store with conditional put (AWS S3, MinIO, Ceph RGW, Azure \
                 Blob, local disk)"
                    .to_owned(),
            );
        }
        self.query.validate(errors);
        self.continuous_queries.validate(errors);
        self.last_cache.validate(errors);
        self.import.validate(errors);
        self.audit.validate(errors);
        self.quotas.validate(errors);
        self.instance.validate(errors);
        self.alerts.validate(errors);
        self.encryption.validate(errors);
        if self.replica.lease_ttl < Duration::from_millis(300) {
            errors.push(format!(
                "replica.lease_ttl: {} is too short; at least 300ms (the holder renews every third of it)",
                humantime::format_duration(self.replica.lease_ttl)
            ));
        }
        if self.replica.fleet_interval < Duration::from_millis(100) {
            errors.push("replica.fleet_interval: must be at least 100ms".to_owned());
        }
        if self.replica.max_staleness.is_zero() {
            errors.push("replica.max_staleness: must be greater than 0".to_owned());
        }
        if self.ingest.max_batch_segments == 0 {
            errors.push("ingest.max_batch_segments: must be at least 1".to_owned());
        }
        if self.tables.idle_timeout < self.tables.commit_interval {
            errors.push(format!(
                "tables.idle_timeout: {} is shorter than tables.commit_interval ({}); a table's \
                 writer would be released between its own commits",
                humantime::format_duration(self.tables.idle_timeout),
                humantime::format_duration(self.tables.commit_interval)
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            errors.push(format!(
                "log.level: {:?} is not a valid filter: {e}",
                self.log.level
            ));
        }
    }
}
