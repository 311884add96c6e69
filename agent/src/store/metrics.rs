//! Metric names: the one place they are defined.
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`READINGS_COMMITTED`] | counter | `durability` (`durable`, `best_effort`) |
//! | [`APPENDS_REJECTED`] | counter | `reason` (`full`, `storage_error`, `shutting_down`) |
//! | [`DROPS`] | counter | `reason` (see [`crate::store::DropReason`]) |
//! | [`COMMITS`] | counter | |
//! | [`COMMIT_ERRORS`] | counter | |
//! | [`COMMIT_SECONDS`] | histogram | |
//! | [`COMMIT_ROWS`] | histogram | |
//! | [`QUEUE_PUSHED`] / [`QUEUE_POPPED`] | counter | writer command queue depth as a pair |
//! | [`BYTES`] | gauge | accounted bytes (readings + segments + dead letters) |
//! | [`MAX_BYTES`] | gauge | the budget |
//! | [`FILE_BYTES`] | gauge | size of the database file |
//! | [`BACKLOG_READINGS`] | gauge | readings not yet in a segment |
//! | [`PENDING_SEGMENTS`] | gauge | segments waiting for upload |
//! | [`QUARANTINED_SEGMENTS`] | gauge | segments the hub refused |
//! | [`DEAD_LETTERS`] | gauge | dead letters kept |
//! | [`SEGMENTS_CUT`] | counter | |
//! | [`SEGMENT_ROWS`] | counter | rows written into segments |
//! | [`SEGMENTS_ACKED`] | counter | |
//! | [`SEGMENTS_QUARANTINED`] | counter | |
//! | [`SEGMENT_CUT_SECONDS`] | histogram | encoding time of one segment |
//! | [`CHECKPOINTS`] | counter | `by` (`background`, `writer`) |
//! | [`CHECKPOINT_SECONDS`] | histogram | `by` (`background`, `writer`) |
//! | [`CHECKPOINT_ERRORS`] | counter | background checkpoints that failed |

pub const READINGS_COMMITTED: &str = "ferry_agent_store_readings_committed_total";
pub const APPENDS_REJECTED: &str = "ferry_agent_store_appends_rejected_total";
pub const DROPS: &str = "ferry_agent_store_drops_total";
pub const COMMITS: &str = "ferry_agent_store_commits_total";
pub const COMMIT_ERRORS: &str = "ferry_agent_store_commit_errors_total";
pub const COMMIT_SECONDS: &str = "ferry_agent_store_commit_seconds";
pub const COMMIT_ROWS: &str = "ferry_agent_store_commit_rows";
pub const QUEUE_PUSHED: &str = "ferry_agent_store_queue_pushed_total";
pub const QUEUE_POPPED: &str = "ferry_agent_store_queue_popped_total";
pub const BYTES: &str = "ferry_agent_store_bytes";
pub const MAX_BYTES: &str = "ferry_agent_store_max_bytes";
pub const FILE_BYTES: &str = "ferry_agent_store_file_bytes";
pub const BACKLOG_READINGS: &str = "ferry_agent_store_backlog_readings";
pub const PENDING_SEGMENTS: &str = "ferry_agent_store_pending_segments";
pub const QUARANTINED_SEGMENTS: &str = "ferry_agent_store_quarantined_segments";
pub const DEAD_LETTERS: &str = "ferry_agent_store_dead_letters";
pub const SEGMENTS_CUT: &str = "ferry_agent_segments_cut_total";
pub const SEGMENT_ROWS: &str = "ferry_agent_segment_rows_total";
pub const SEGMENTS_ACKED: &str = "ferry_agent_segments_acked_total";
pub const SEGMENTS_QUARANTINED: &str = "ferry_agent_segments_quarantined_total";
pub const SEGMENT_CUT_SECONDS: &str = "ferry_agent_segment_cut_seconds";
pub const CHECKPOINTS: &str = "ferry_agent_store_checkpoints_total";
pub const CHECKPOINT_SECONDS: &str = "ferry_agent_store_checkpoint_seconds";
pub const CHECKPOINT_ERRORS: &str = "ferry_agent_store_checkpoint_errors_total";
