//! `[ingest]`: what the write endpoints accept from one client.

use bytesize::ByteSize;
use serde::Deserialize;

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A segment whose sequence lies further than this beyond the last one
    /// committed for its agent is refused with 409 `sequence_gap` and writes
    /// nothing: a client that claims a far-future sequence would otherwise
    /// make every later real segment of that agent a "duplicate". For an
    /// agent the hub has not seen, the gap counts from 0 unless the token is
    /// bound to that agent. 0 turns the check off.
    pub max_sequence_gap: u64,
    /// Bytes of write bodies (segments, line protocol, MessagePack) the hub
    /// holds at once, summed over all clients; a write that does not fit is
    /// answered 503 with `Retry-After` before its body is read.
    pub max_inflight_bytes: ByteSize,
    /// Segments one `POST /api/v1/segments/batch` may carry; more is
    /// answered 413 and nothing of it is written. At least 1.
    pub max_batch_segments: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_sequence_gap: 1_000_000,
            max_inflight_bytes: ByteSize::mib(256),
            max_batch_segments: 64,
        }
    }
}
