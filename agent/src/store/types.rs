//! Public value types of the store API.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{AgentId, DatabaseName, Measurement};
use serde::Serialize;

/// What a successful append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Readings in the append.
    pub rows: usize,
    /// Buffer id of the first reading (the rest follow consecutively), for
    /// durable appends; `None` for best-effort appends, which resolve before
    /// they are written.
    pub first_id: Option<u64>,
}

/// A message that could not be decoded or routed, kept for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    /// Who sent it (client id, upstream name, serial port).
    pub source: String,
    /// Why it was not stored as readings.
    pub error: String,
    pub payload: Bytes,
}

/// A segment waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSegment {
    pub seq: SegmentSeq,
    pub database: DatabaseName,
    pub measurement: Measurement,
    pub rows: u64,
    /// The segment file, as [`ferry_protocols::segment::write_segment`] wrote it.
    pub file: Bytes,
}

/// Why readings were dropped. Each is a label of
/// [`metrics::DROPS`](super::metrics::DROPS) and a persistent counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// A best-effort (QoS 0) reading was dropped for lack of space.
    Qos0Full,
    /// A best-effort reading could not be written because the disk failed.
    Qos0StorageError,
    /// A durable reading (buffered or in a pending segment) was dropped by
    /// `when_full = "drop_oldest"`.
    OldestFull,
    /// A quarantined segment's readings were dropped for space.
    QuarantinedFull,
    /// A durable reading was refused by `when_full = "reject_new"` (the
    /// sender was not acknowledged and still has it).
    RejectedFull,
    /// A dead letter was dropped because `dead_letter_max` was reached.
    DeadLetterCap,
    /// A dead letter was dropped for lack of space.
    DeadLetterFull,
    /// A buffered reading could not be put in any segment and was moved to
    /// the dead letters.
    Unsegmentable,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::Qos0Full,
        DropReason::Qos0StorageError,
        DropReason::OldestFull,
        DropReason::QuarantinedFull,
        DropReason::RejectedFull,
        DropReason::DeadLetterCap,
        DropReason::DeadLetterFull,
        DropReason::Unsegmentable,
    ];

    /// The metric label and counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Qos0Full => "qos0_full",
            DropReason::Qos0StorageError => "qos0_storage_error",
            DropReason::OldestFull => "oldest_full",
            DropReason::QuarantinedFull => "quarantined_full",
            DropReason::RejectedFull => "rejected_full",
            DropReason::DeadLetterCap => "dead_letter_cap",
            DropReason::DeadLetterFull => "dead_letter_full",
            DropReason::Unsegmentable => "unsegmentable",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<DropReason> {
        DropReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The buffer's state, for `ferry-agent status`, `/api/v1/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    pub agent_id: AgentId,
    /// Readings not yet cut into a segment.
    pub backlog_readings: u64,
    /// Of which best-effort.
    pub backlog_best_effort: u64,
    /// Accounted bytes of those readings.
    pub backlog_bytes: u64,
    pub pending_segments: u64,
    pub pending_segment_rows: u64,
    pub pending_segment_bytes: u64,
    pub quarantined_segments: u64,
    pub quarantined_bytes: u64,
    pub dead_letters: u64,
    /// Age of the oldest reading not yet acknowledged by the hub (receive clock).
    #[serde(with = "humantime_serde")]
    pub oldest_unsent_age: Option<Duration>,
    /// Accounted bytes: readings + segments + dead letters.
    pub used_bytes: u64,
    pub max_bytes: u64,
    /// The database file plus its WAL, on disk.
    pub db_file_bytes: u64,
    /// WAL checkpoints since start by the background thread, and by the
    /// writer itself (when the WAL grew past 4 times `store.wal_checkpoint`).
    pub wal_checkpoints_background: u64,
    pub wal_checkpoints_writer: u64,
    /// The sequence the next segment gets.
    pub next_sequence: u64,
    /// Drops since the buffer was created, by [`DropReason::as_str`].
    pub drops: BTreeMap<String, u64>,
    /// The last storage error, while the disk is failing.
    pub storage_error: Option<String>,
}
