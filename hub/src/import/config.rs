//! `[import]` of `hub.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// `[import]`: bulk imports of CSV, Parquet and line protocol files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The import API answers 403 `forbidden` when off.
    pub enabled: bool,
    /// Where received files wait for their job (default: `imports` beside
    /// `metadata.path`). Needs room for the largest file being imported.
    pub spool_dir: Option<PathBuf>,
    /// The largest file accepted (413 above it).
    pub max_file_size: ByteSize,
    /// Uploads received at once; one more is answered 503 with
    /// `Retry-After`.
    pub max_uploads: usize,
    /// Resumable uploads open at once (`PUT /api/v1/import/uploads/...`
    /// not yet made into a job); a new one beyond is answered 503.
    pub max_partial_uploads: usize,
    /// Jobs queued or running at once; one more is answered 503.
    pub max_pending_jobs: usize,
    /// Jobs that run at once (each commits one chunk at a time).
    pub max_running_jobs: usize,
    /// Input rows (lines, records) per chunk: each chunk is one commit per
    /// table and the unit of resumption.
    pub chunk_rows: usize,
    /// An upload that sends nothing for this long is dropped (408); what
    /// was received of a resumable upload is kept.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A resumable upload not touched for this long is deleted.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
    /// The longest CSV record or line protocol line; a longer one fails
    /// the job (CSV) or is rejected (line protocol).
    pub max_record_size: ByteSize,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            enabled: true,
            spool_dir: None,
            max_file_size: ByteSize::gib(50),
            max_uploads: 4,
            max_partial_uploads: 16,
            max_pending_jobs: 100,
            max_running_jobs: 1,
            chunk_rows: 100_000,
            idle_timeout: Duration::from_secs(60),
            upload_ttl: Duration::from_secs(24 * 3600),
            max_record_size: ByteSize::mib(1),
        }
    }
}

impl ImportConfig {
    /// `spool_dir`, or `imports` beside the metadata file.
    pub fn spool_dir_for(&self, metadata: &Path) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| {
            metadata
                .parent()
                .map_or_else(|| PathBuf::from("imports"), |d| d.join("imports"))
        })
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        let positive = [
            ("max_uploads", self.max_uploads),
            ("max_partial_uploads", self.max_partial_uploads),
            ("max_pending_jobs", self.max_pending_jobs),
            ("max_running_jobs", self.max_running_jobs),
            ("chunk_rows", self.chunk_rows),
        ];
        for (key, value) in positive {
            if value == 0 {
                errors.push(format!("import.{key}: must be at least 1"));
            }
        }
        if self.chunk_rows > 10_000_000 {
            errors.push(format!(
                "import.chunk_rows: {} is over 10000000 (a chunk is held in memory)",
                self.chunk_rows
            ));
        }
        if self.max_file_size.as_u64() == 0 {
            errors.push("import.max_file_size: must be greater than 0".to_owned());
        }
        if self.max_record_size.as_u64() < 1024 {
            errors.push("import.max_record_size: must be at least 1 KiB".to_owned());
        }
        if self.idle_timeout.is_zero() {
            errors.push("import.idle_timeout: must be greater than 0".to_owned());
        }
    }
}
