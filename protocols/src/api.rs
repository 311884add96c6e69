//! Agent ↔ hub HTTP API types.
//!
//! ## Segment upload
//!
//! `POST /api/v1/segments` with the segment file (see [`crate::segment`]) as
//! the body, `Content-Type: application/vnd.ferry.segment+parquet`, the
//! agent's token in `Authorization: Bearer <token>`, and these headers:
//!
//! | header | value |
//! |---|---|
//! | `x-ferry-agent-id` | the agent id; must equal the segment's `ferry.agent_id` |
//! | `x-ferry-segment-seq` | the segment sequence; must equal `ferry.sequence` |
//! | `x-ferry-backlog-readings` | optional: readings still buffered at the agent |
//! | `x-ferry-backlog-bytes` | optional: bytes still buffered at the agent |
//! | `x-ferry-agent-version` | optional: the agent's version |
//!
//! The hub answers `200` with a [`SegmentAck`] only once the commit holding the
//! segment is durable. A replay of a committed segment is answered `200` with
//! status [`AckStatus::Duplicate`]: the agent treats both the same way and
//! deletes the readings. Any other answer carries an [`ErrorBody`]; see
//! [`ErrorCode::is_permanent`] for what the agent retries.
//!
//! ## Segment batch upload
//!
//! `POST /api/v1/segments/batch` with several segments of one agent in one
//! body ([`crate::segment::encode_batch`]), `Content-Type:
//! application/vnd.ferry.segment-batch`, the same headers except
//! `x-ferry-segment-seq`. The segments must be in strictly increasing
//! sequence order. The hub commits each table's segments of the batch in
//! one commit (all or none of them, except a segment rejected on its own)
//! and answers `200` with a [`SegmentBatchAck`]: one [`SegmentOutcome`] per
//! segment, in the body's order, each an acknowledgement or a rejection
//! with the status and [`ErrorBody`] a single upload of that segment would
//! have had. A problem with the whole request (auth, headers, framing, too
//! many segments, order) is an ordinary error answer. A hub without this
//! route answers 404; the agent then uploads one segment at a time.

use serde::{Deserialize, Serialize};

use crate::name::AgentId;

/// The segment upload route.
pub const SEGMENTS_PATH: &str = "/api/v1/segments";
/// The segment body's content type.
pub const SEGMENT_CONTENT_TYPE: &str = "application/vnd.ferry.segment+parquet";
/// The segment batch upload route.
pub const SEGMENT_BATCH_PATH: &str = "/api/v1/segments/batch";
/// The segment batch body's content type.
pub const SEGMENT_BATCH_CONTENT_TYPE: &str = "application/vnd.ferry.segment-batch";

/// Header names used between agents, clients and the hub.
pub mod headers {
    pub const AGENT_ID: &str = "x-ferry-agent-id";
    pub const SEGMENT_SEQ: &str = "x-ferry-segment-seq";
    pub const BACKLOG_READINGS: &str = "x-ferry-backlog-readings";
    pub const BACKLOG_BYTES: &str = "x-ferry-backlog-bytes";
    pub const AGENT_VERSION: &str = "x-ferry-agent-version";
    /// The target database of a write or query.
    pub const DATABASE: &str = "x-ferry-database";
    /// Arc's name for [`DATABASE`], accepted so Arc clients work unchanged.
    pub const ARC_DATABASE: &str = "x-arc-database";
}

/// How the hub handled an uploaded segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Committed by this request.
    Committed,
    /// Committed earlier (a replay); nothing was added.
    Duplicate,
}

/// The hub's answer to a successful segment upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentAck {
    pub agent_id: AgentId,
    pub sequence: u64,
    pub status: AckStatus,
    /// Rows added by this request (0 for a duplicate).
    pub rows: u64,
    /// The table, `database.measurement`.
    pub table: String,
    /// The table version that holds the segment, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
}

/// The hub's answer to a segment batch: one outcome per segment, in the
/// body's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentBatchAck {
    pub agent_id: AgentId,
    pub results: Vec<SegmentOutcome>,
}

/// What became of one segment of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentOutcome {
    /// Committed or a duplicate, as for a single upload.
    Ack(SegmentAck),
    /// Not committed: what a single upload of it would have been answered.
    Rejected(SegmentRejection),
}

/// A segment of a batch that was not committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRejection {
    /// The segment's sequence, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The HTTP status a single upload would have had.
    pub status: u16,
    pub error: ErrorBody,
}

/// A machine-readable error class, shared by every hub endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed.
    BadRequest,
    /// 400: a segment failed validation (format, checksum, names, schema).
    InvalidSegment,
    /// 400: some lines or records of a write were rejected.
    PartialWrite,
    /// 401: no token, or an unknown one.
    Unauthorized,
    /// 403: the token's role does not allow this.
    Forbidden,
    /// 404: no such table, token or route.
    NotFound,
    /// 409: a field's type conflicts with the table's schema.
    SchemaConflict,
    /// 409: a segment's sequence is too far beyond its agent's last one
    /// (`ingest.max_sequence_gap`); nothing was written. Retried by agents:
    /// an operator can raise the limit or bind the agent's token.
    SequenceGap,
    /// 400: a destructive request (a delete of many rows, or of a whole
    /// table) needs `"confirm": true`; nothing was changed.
    ConfirmRequired,
    /// 409: the data changed under the request (e.g. a delete whose files
    /// were compacted meanwhile); nothing was changed, retry.
    Conflict,
    /// 413: the body is over the configured limit.
    PayloadTooLarge,
    /// 415: unsupported content type or encoding.
    UnsupportedMediaType,
    /// 422: the SQL is not allowed (writes, DDL, file access).
    QueryRejected,
    /// 422: the query needs more memory than the hub grants it.
    ResourcesExhausted,
    /// 429: slow down.
    TooManyRequests,
    /// 429: a quota of the token or the database is used up (an ingest
    /// rate, or the database's stored bytes); retry after `Retry-After`.
    /// Not permanent: agents keep the data and retry.
    QuotaExceeded,
    /// 500: a bug or an unexpected failure.
    Internal,
    /// 503: the hub or its object store is temporarily unavailable.
    Unavailable,
    /// 504: the query or commit took too long.
    Timeout,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidSegment
            | ErrorCode::PartialWrite
            | ErrorCode::ConfirmRequired => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::SchemaConflict | ErrorCode::SequenceGap | ErrorCode::Conflict => 409,
            ErrorCode::ResourcesExhausted => 422,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::QueryRejected => 422,
            ErrorCode::TooManyRequests | ErrorCode::QuotaExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// True if retrying the same request cannot succeed: the agent
    /// quarantines a segment rejected with a permanent error and moves on.
    /// Authentication errors are *not* permanent: a token can be fixed
    /// without losing the backlog.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorCode::BadRequest
                | ErrorCode::InvalidSegment
                | ErrorCode::PartialWrite
                | ErrorCode::ConfirmRequired
                | ErrorCode::SchemaConflict
                | ErrorCode::PayloadTooLarge
                | ErrorCode::UnsupportedMediaType
                | ErrorCode::QueryRejected
        )
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// A human-readable reason, e.g. `field "temp" is f64 in plant.boiler, got str`.
    pub message: String,
    /// Per-line or per-record details, e.g. for a partial write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// One rejected line or record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// 1-based line number (line protocol) or 0-based record index (msgpack, JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_index: Option<u64>,
    pub error_message: String,
    /// The offending input, truncated, where it is text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_line: Option<String>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// The hub's answer to a write (line protocol or msgpack) that was accepted
/// in whole or in part. A partial write answers 400 with an [`ErrorBody`]
/// of code [`ErrorCode::PartialWrite`] instead; its good rows are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    pub rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_json_shape() {
        let ack = SegmentAck {
            agent_id: AgentId::new("gw-1").unwrap(),
            sequence: 7,
            status: AckStatus::Duplicate,
            rows: 0,
            table: "plant.boiler".into(),
            table_version: None,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(
            json,
            r#"{"agent_id":"gw-1","sequence":7,"status":"duplicate","rows":0,"table":"plant.boiler"}"#
        );
        assert_eq!(serde_json::from_str::<SegmentAck>(&json).unwrap(), ack);
    }

    #[test]
    fn error_codes() {
        let body = ErrorBody::new(ErrorCode::SchemaConflict, "field x is f64, got str");
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"error":"schema_conflict","message":"field x is f64, got str"}"#
        );
        assert!(ErrorCode::SchemaConflict.is_permanent());
        assert!(!ErrorCode::Unauthorized.is_permanent());
        assert!(!ErrorCode::Unavailable.is_permanent());
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
    }

    #[test]
    fn hostile_agent_id_rejected() {
        let json =
            r#"{"agent_id":"../x","sequence":1,"status":"committed","rows":1,"table":"a.b"}"#;
        assert!(serde_json::from_str::<SegmentAck>(json).is_err());
    }
}
