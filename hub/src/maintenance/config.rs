//! `[compaction]` and `[retention]` of `hub.toml`.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::table::CompactionPolicy;

/// `[compaction]`: the background merge of small files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Run the background task at all (`POST /api/v1/compaction/run` works either way).
    pub enabled: bool,
    /// Time between two runs over every table.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size of the files compaction writes; files below half of it are
    /// "small". One bin of small files, up to this size compressed, is held
    /// in memory (decompressed) while it is sorted.
    pub target_file_size: ByteSize,
    /// Small files that make a partition worth compacting while it is still
    /// being written.
    pub min_files: usize,
    /// How long after its UTC day ends a partition counts as settled; a
    /// settled partition is compacted as soon as it has two small files.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// A table whose writer has added this many files since it last asked
    /// is compacted at once, between scheduled runs (0: only on schedule).
    /// Keeps the files of a table written many times a second bounded.
    pub trigger_files: u64,
    /// How much lower compaction's CPU priority is than the rest of the
    /// hub's, as a nice increment (0-19; 0 runs compaction on the hub's
    /// shared threads). Under contention ingest and queries go first.
    pub nice: u8,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            interval: Duration::from_secs(600),
            target_file_size: ByteSize::mib(64),
            min_files: 16,
            settle: Duration::from_secs(3600),
            trigger_files: 200,
            nice: 10,
        }
    }
}

impl CompactionConfig {
    pub fn policy(&self) -> CompactionPolicy {
        CompactionPolicy {
            target_file_size: self.target_file_size.as_u64(),
            min_files: self.min_files,
            settle: self.settle,
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if self.interval.is_zero() {
            errors.push("compaction.interval: must be greater than 0".to_owned());
        }
        if self.target_file_size.as_u64() < 1024 * 1024 {
            errors.push("compaction.target_file_size: must be at least 1MiB".to_owned());
        }
        if self.min_files < 2 {
            errors.push("compaction.min_files: must be at least 2".to_owned());
        }
        if self.nice > 19 {
            errors.push("compaction.nice: at most 19".to_owned());
        }
        if self.trigger_files != 0 && self.trigger_files < self.min_files as u64 {
            errors.push(format!(
                "compaction.trigger_files: must be 0 (off) or at least min_files ({})",
                self.min_files
            ));
        }
    }
}

/// `[retention]`: expiry of old partitions and vacuum.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run retention and vacuum (on schedule and through the API).
    pub enabled: bool,
    /// Time between two runs (expire by policy, then vacuum every table).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Days kept for databases with no policy; 0 keeps them forever.
    pub default_days: u32,
    /// How long a data file that no current version references stays in
    /// storage before vacuum deletes it. Queries running longer than this,
    /// and time travel further back, can fail.
    #[serde(with = "humantime_serde")]
    pub vacuum_grace: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            default_days: 0,
            vacuum_grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetentionConfig {
    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if self.interval.is_zero() {
            errors.push("retention.interval: must be greater than 0".to_owned());
        }
        if self.default_days > super::MAX_RETENTION_DAYS {
            errors.push(format!(
                "retention.default_days: at most {}",
                super::MAX_RETENTION_DAYS
            ));
        }
    }
}
