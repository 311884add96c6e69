//! The `[store]` and `[segment]` sections of the agent's TOML config.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Where the buffer lives when `store.path` is not set.
pub const DEFAULT_PATH: &str = "/var/lib/ferry-agent/buffer.db";

/// What the buffer does when `store.max_bytes` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Make room by deleting the oldest data (see the module docs for the order).
    #[default]
    DropOldest,
    /// Refuse new durable data with `RejectReason::Full`, so the sender keeps
    /// it. Best-effort readings and dead letters are still dropped to make
    /// room for durable readings.
    RejectNew,
}

/// How much of the database `PRAGMA integrity_check` examines at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityCheck {
    /// `PRAGMA integrity_check`: everything, including index contents. Slow
    /// on a large buffer on an SD card.
    Full,
    /// `PRAGMA quick_check`: page structure and record formats, O(N).
    #[default]
    Quick,
    /// No check (still fails over to a fresh buffer if the file is not a database).
    Off,
}

/// `[store]`: the durable SQLite buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The database file. Default [`DEFAULT_PATH`].
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The disk budget for readings, segments and dead letters.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// What happens when `max_bytes` is reached.
    #[serde(default)]
    pub when_full: WhenFull,
    /// The least time between two commits (group commit): a durable
    /// append commits at once when the last commit started at least this
    /// long ago, and otherwise with everything that queued meanwhile when
    /// it has. So at most one fsync per `commit_interval`, and an append
    /// waits at most this long (plus a commit running when it came).
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Commit as soon as this many readings are pending.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long QoS 0 readings may wait in memory before they are written.
    #[serde(default = "default_qos0_max_delay", with = "humantime_serde")]
    pub qos0_max_delay: Duration,
    /// How many dead letters are kept (the oldest go first).
    #[serde(default = "default_dead_letter_max")]
    pub dead_letter_max: u64,
    /// The check run at open.
    #[serde(default)]
    pub integrity_check: IntegrityCheck,
    /// Commands queued for the writer before `append` waits (backpressure).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// WAL size from which a background thread checkpoints it into the
    /// database file; the writer checkpoints it itself at four times this
    /// (which bounds the WAL file). See decision 0026.
    #[serde(default = "default_wal_checkpoint")]
    pub wal_checkpoint: ByteSize,
}

fn default_wal_checkpoint() -> ByteSize {
    ByteSize::mib(16)
}

/// `[segment]`: how buffered readings are cut into segment files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Most rows in one segment.
    #[serde(default = "default_segment_max_rows")]
    pub max_rows: usize,
    /// Most encoded reading bytes (buffer bodies) in one segment.
    #[serde(default = "default_segment_max_bytes")]
    pub max_bytes: ByteSize,
    /// A group is cut once its oldest reading was received this long ago.
    #[serde(default = "default_segment_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Most columns (time, tags and fields) in one segment, as the hub's
    /// `tables.max_columns`. A reading that would add one more starts the
    /// next segment; one that alone has more becomes a dead letter
    /// (`unsegmentable`, naming the table and column).
    #[serde(default = "default_segment_max_columns")]
    pub max_columns: usize,
}

fn default_segment_max_columns() -> usize {
    ferry_protocols::batch::DEFAULT_MAX_COLUMNS
}

fn default_max_bytes() -> ByteSize {
    ByteSize::gib(1)
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(2)
}
fn default_max_batch() -> usize {
    2000
}
fn default_qos0_max_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_dead_letter_max() -> u64 {
    10_000
}
fn default_queue_capacity() -> usize {
    1024
}
fn default_segment_max_rows() -> usize {
    10_000
}
fn default_segment_max_bytes() -> ByteSize {
    // A cut deletes its readings in one transaction on the writer thread,
    // which every acknowledgement waits behind: 2 MiB bounds that pause
    // (decision 0026).
    ByteSize::mib(2)
}
fn default_segment_max_age() -> Duration {
    Duration::from_millis(500)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: None,
            max_bytes: default_max_bytes(),
            when_full: WhenFull::default(),
            commit_interval: default_commit_interval(),
            max_batch: default_max_batch(),
            qos0_max_delay: default_qos0_max_delay(),
            dead_letter_max: default_dead_letter_max(),
            integrity_check: IntegrityCheck::default(),
            queue_capacity: default_queue_capacity(),
            wal_checkpoint: default_wal_checkpoint(),
        }
    }
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            max_rows: default_segment_max_rows(),
            max_bytes: default_segment_max_bytes(),
            max_age: default_segment_max_age(),
            max_columns: default_segment_max_columns(),
        }
    }
}

/// Smallest accepted `store.max_bytes`.
pub const MIN_STORE_BYTES: u64 = 1024 * 1024;

impl StoreConfig {
    /// The database path: `path`, or [`DEFAULT_PATH`].
    pub fn resolved_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Appends every problem to `errors`, each prefixed with `prefix.key`.
    pub fn validate(&self, prefix: &str, errors: &mut Vec<String>) {
        if let Some(path) = &self.path {
            if path.as_os_str().is_empty() {
                errors.push(format!("{prefix}.path: must not be empty"));
            } else if path.is_dir() {
                errors.push(format!(
                    "{prefix}.path: {} is a directory; name the database file",
                    path.display()
                ));
            }
        }
        if self.max_bytes.as_u64() < MIN_STORE_BYTES {
            errors.push(format!("{prefix}.max_bytes: must be at least 1 MiB"));
        }
        if self.commit_interval > Duration::from_secs(1) {
            errors.push(format!(
                "{prefix}.commit_interval: must be at most 1s (it delays every acknowledgement)"
            ));
        }
        if !(1..=100_000).contains(&self.max_batch) {
            errors.push(format!("{prefix}.max_batch: must be between 1 and 100000"));
        }
        if self.qos0_max_delay > Duration::from_secs(60) {
            errors.push(format!("{prefix}.qos0_max_delay: must be at most 60s"));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.wal_checkpoint.as_u64()) {
            errors.push(format!(
                "{prefix}.wal_checkpoint: must be between 64 KiB and 1 GiB"
            ));
        }
        if !(1..=65_536).contains(&self.queue_capacity) {
            errors.push(format!(
                "{prefix}.queue_capacity: must be between 1 and 65536"
            ));
        }
    }
}

impl SegmentConfig {
    /// Appends every problem to `errors`, each prefixed with `prefix.key`.
    pub fn validate(&self, prefix: &str, errors: &mut Vec<String>) {
        if !(1..=1_000_000).contains(&self.max_rows) {
            errors.push(format!("{prefix}.max_rows: must be between 1 and 1000000"));
        }
        let bytes = self.max_bytes.as_u64();
        if !(1024..=256 * 1024 * 1024).contains(&bytes) {
            errors.push(format!(
                "{prefix}.max_bytes: must be between 1 KiB and 256 MiB"
            ));
        }
        if self.max_age < Duration::from_millis(10) {
            errors.push(format!("{prefix}.max_age: must be at least 10ms"));
        }
        if !(2..=100_000).contains(&self.max_columns) {
            errors.push(format!(
                "{prefix}.max_columns: must be between 2 and 100000"
            ));
        }
    }

    /// Checks that segments fit the store's budget: `segment.max_bytes` must
    /// be at most a quarter of `store.max_bytes`.
    pub fn validate_with_store(&self, store: &StoreConfig, prefix: &str, errors: &mut Vec<String>) {
        if self.max_bytes.as_u64() > store.max_bytes.as_u64() / 4 {
            errors.push(format!(
                "{prefix}.max_bytes: must be at most a quarter of store.max_bytes ({})",
                store.max_bytes
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        store: StoreConfig,
        #[serde(default)]
        segment: SegmentConfig,
    }

    #[test]
    fn defaults_from_empty_sections() {
        let f: File = toml::from_str("[store]\n[segment]\n").expect("parses");
        assert_eq!(f.store, StoreConfig::default());
        assert_eq!(f.segment, SegmentConfig::default());
        let mut errors = Vec::new();
        f.store.validate("store", &mut errors);
        f.segment.validate("segment", &mut errors);
        f.segment
            .validate_with_store(&f.store, "segment", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn parses_human_values() {
        let f: File = toml::from_str(
            "[store]\nmax_bytes = \"64 MiB\"\nwhen_full = \"reject_new\"\ncommit_interval = \"2ms\"\nqos0_max_delay = \"250ms\"\nintegrity_check = \"full\"\n[segment]\nmax_age = \"1m\"\nmax_bytes = \"1 MiB\"\n",
        )
        .expect("parses");
        assert_eq!(f.store.max_bytes, ByteSize::mib(64));
        assert_eq!(f.store.when_full, WhenFull::RejectNew);
        assert_eq!(f.store.commit_interval, Duration::from_millis(2));
        assert_eq!(f.store.integrity_check, IntegrityCheck::Full);
        assert_eq!(f.segment.max_age, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<File>("[store]\nmax_byte = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("max_byte"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let store = StoreConfig {
            max_bytes: ByteSize::kib(10),
            max_batch: 0,
            commit_interval: Duration::from_secs(5),
            ..StoreConfig::default()
        };
        let segment = SegmentConfig {
            max_rows: 0,
            max_bytes: ByteSize::b(10),
            max_age: Duration::ZERO,
            ..SegmentConfig::default()
        };
        let mut errors = Vec::new();
        store.validate("store", &mut errors);
        segment.validate("segment", &mut errors);
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors.contains(&"store.max_bytes: must be at least 1 MiB".to_owned()));
        assert!(errors.iter().any(|e| e.starts_with("segment.max_age:")));
    }
}
