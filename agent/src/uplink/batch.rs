//! Batch uploads: the next pending segments in one request while a backlog
//! drains (`uplink.batch_segments`, `uplink.batch_max_bytes`).
//!
//! The hub commits each table's segments of a batch together and answers
//! each segment as a single upload would have been answered, so the agent
//! acknowledges, quarantines or retries each one as it always did. A hub
//! that does not take batches (an older hub answers 404), or refuses a
//! batch as a whole for its size or form, gets single uploads for
//! [`SINGLE_FOR`] before the agent tries a batch again.

use std::time::Duration;

use ferry_protocols::AgentId;
use ferry_protocols::api::{ErrorBody, SegmentAck, SegmentBatchAck, SegmentOutcome};

use super::SegmentQueue;
use super::client::{PendingSegment, UploadError, classify_error};
use super::config::UplinkConfig;

/// How long a hub that refused a batch gets single uploads.
pub(crate) const SINGLE_FOR: Duration = Duration::from_secs(600);

/// A batch the hub did not answer segment by segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefused {
    /// The hub does not take this batch (no such route, too big, malformed
    /// in its eyes): send the segments one at a time.
    #[error("hub refused the batch ({status}): {message}")]
    Unsupported { status: u16, message: String },
    /// Anything else (network, hub health, auth): retry as for one segment.
    #[error("{0}")]
    Failed(UploadError),
}

/// The answer to a batch upload of `segments`.
pub(crate) fn classify_batch(
    status: u16,
    body: &[u8],
    agent_id: &AgentId,
    segments: &[PendingSegment],
) -> Result<Vec<Result<SegmentAck, UploadError>>, BatchRefused> {
    if status != 200 {
        return Err(
            match classify_error(status, serde_json::from_slice(body).ok(), body) {
                UploadError::Permanent { status, message } => {
                    BatchRefused::Unsupported { status, message }
                }
                // An old hub's router answers an unknown route 404 (not a
                // permanent error for one segment, but the batch never works).
                e if matches!(status, 404 | 405) => BatchRefused::Unsupported {
                    status,
                    message: e.to_string(),
                },
                e => BatchRefused::Failed(e),
            },
        );
    }
    let unreadable = |why: String| {
        BatchRefused::Failed(UploadError::Transient(format!(
            "hub answered a batch of {} with {why}",
            segments.len()
        )))
    };
    let ack: SegmentBatchAck =
        serde_json::from_slice(body).map_err(|e| unreadable(format!("an unreadable body: {e}")))?;
    if ack.agent_id != *agent_id || ack.results.len() != segments.len() {
        return Err(unreadable(format!(
            "{} results for agent {}",
            ack.results.len(),
            ack.agent_id
        )));
    }
    Ok(ack
        .results
        .into_iter()
        .zip(segments)
        .map(|(outcome, segment)| match outcome {
            SegmentOutcome::Ack(a) if a.sequence == segment.seq && a.agent_id == *agent_id => Ok(a),
            SegmentOutcome::Ack(a) => Err(UploadError::Transient(format!(
                "hub acknowledged {}#{} for {agent_id}#{}",
                a.agent_id, a.sequence, segment.seq
            ))),
            SegmentOutcome::Rejected(r) => {
                let raw = serde_json::to_vec(&r.error).unwrap_or_default();
                Err(classify_error(r.status, Some::<ErrorBody>(r.error), &raw))
            }
        })
        .collect())
}

/// `first` and the pending segments after it, in sequence order, up to
/// `uplink.batch_segments` and `uplink.batch_max_bytes` (`first` goes even
/// when it alone is bigger). A buffer error ends the batch early.
pub(crate) async fn gather<Q: SegmentQueue>(
    queue: &Q,
    first: PendingSegment,
    config: &UplinkConfig,
) -> Vec<PendingSegment> {
    let budget = config.batch_max_bytes.as_u64();
    let mut bytes = first.file.len() as u64;
    let mut last = first.seq;
    let mut batch = vec![first];
    while batch.len() < config.batch_segments {
        let next = match queue.next_pending_after(last).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "uplink: buffer read ended a batch early");
                break;
            }
        };
        bytes += next.file.len() as u64;
        if bytes > budget {
            break;
        }
        last = next.seq;
        batch.push(next);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocols::api::{AckStatus, ErrorCode, SegmentRejection};

    fn id() -> AgentId {
        AgentId::new("gw-1").unwrap()
    }

    fn segment(seq: u64) -> PendingSegment {
        PendingSegment {
            seq,
            table: "a.b".into(),
            rows: 1,
            file: bytes::Bytes::from_static(b"x"),
        }
    }

    fn ack(seq: u64) -> SegmentAck {
        SegmentAck {
            agent_id: id(),
            sequence: seq,
            status: AckStatus::Committed,
            rows: 1,
            table: "a.b".into(),
            table_version: Some(1),
        }
    }

    #[test]
    fn answers_per_segment() {
        let segments = [segment(3), segment(4), segment(5)];
        let answer = SegmentBatchAck {
            agent_id: id(),
            results: vec![
                SegmentOutcome::Ack(ack(3)),
                SegmentOutcome::Rejected(SegmentRejection {
                    sequence: Some(4),
                    status: 409,
                    error: ErrorBody::new(ErrorCode::SchemaConflict, "x"),
                }),
                SegmentOutcome::Rejected(SegmentRejection {
                    sequence: Some(5),
                    status: 503,
                    error: ErrorBody::new(ErrorCode::Unavailable, "store down"),
                }),
            ],
        };
        let body = serde_json::to_vec(&answer).unwrap();
        let results = classify_batch(200, &body, &id(), &segments).unwrap();
        assert_eq!(results[0], Ok(ack(3)));
        assert!(matches!(
            results[1],
            Err(UploadError::Permanent { status: 409, .. })
        ));
        assert!(matches!(results[2], Err(UploadError::Transient(_))));
        // An answer that does not match the request is retried whole.
        assert!(matches!(
            classify_batch(200, &body, &id(), &segments[..2]),
            Err(BatchRefused::Failed(_))
        ));
        // Acknowledging the wrong sequence is not an acknowledgement.
        let wrong = serde_json::to_vec(&SegmentBatchAck {
            agent_id: id(),
            results: vec![SegmentOutcome::Ack(ack(9))],
        })
        .unwrap();
        let results = classify_batch(200, &wrong, &id(), &segments[..1]).unwrap();
        assert!(matches!(results[0], Err(UploadError::Transient(_))));
    }

    #[test]
    fn whole_batch_answers() {
        let segments = [segment(1), segment(2)];
        let not_found =
            serde_json::to_vec(&ErrorBody::new(ErrorCode::NotFound, "no route")).unwrap();
        for (status, body) in [
            (404, not_found.as_slice()),
            (404, b"".as_slice()),
            (405, b"".as_slice()),
            (413, b"too big".as_slice()),
        ] {
            assert!(
                matches!(
                    classify_batch(status, body, &id(), &segments),
                    Err(BatchRefused::Unsupported { .. })
                ),
                "{status}"
            );
        }
        let auth = serde_json::to_vec(&ErrorBody::new(ErrorCode::Unauthorized, "x")).unwrap();
        for (status, body) in [
            (401, auth.as_slice()),
            (503, b"".as_slice()),
            (200, b"{".as_slice()),
        ] {
            assert!(
                matches!(
                    classify_batch(status, body, &id(), &segments),
                    Err(BatchRefused::Failed(_))
                ),
                "{status}"
            );
        }
    }
}
