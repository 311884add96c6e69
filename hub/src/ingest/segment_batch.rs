//! `POST /api/v1/segments/batch`: several segments of one agent in one
//! request (see [`ferry_protocols::api`] and
//! [`ferry_protocols::segment::decode_batch`]).
//!
//! An agent draining a backlog sends its next segments together: one
//! request, and one commit per table instead of one per segment. Each
//! segment is checked and answered as [`super::segments`] would answer it
//! alone; the answer lists the outcomes in the body's order.
//!
//! Order of checks for the whole request (an error answer for all):
//!
//! 1. the token grants `write` (401 / 403), and may upload for
//!    `x-ferry-agent-id` (400 / 403);
//! 2. the body is within `server.max_body` (413);
//! 3. the body splits into frames (400 `bad_request`), at most
//!    `ingest.max_batch_segments` of them (413 `payload_too_large`);
//! 4. the segments that decode carry strictly increasing sequences (400
//!    `bad_request`): the agent sends in order, and the `txn` check
//!    depends on it.
//!
//! The frames decode in order until their rows pass
//! `tables.max_queued_bytes` (the first always decodes); the rest are
//! answered 503 `unavailable` and sent again by the agent, so a batch of
//! highly compressed frames holds at most that much plus one segment.
//!
//! Then per segment (a rejection in its outcome, the others go on): it is a
//! valid segment of this agent (400 `invalid_segment`), within
//! `ingest.max_sequence_gap` (409 `sequence_gap`), and its table accepts it
//! (409 `schema_conflict`, 503 ...).
//!
//! # Exactly once
//!
//! The segments of one table go to the table's batcher as one group
//! ([`Tables::write_group`](crate::table::Tables::write_group)), which
//! commits them together: either all of them are in the table with the
//! agent's `txn` at the highest of their sequences, or none is (a segment
//! rejected on its own aside). So no later segment of an agent can commit
//! while an earlier one of the same table failed and will be retried,
//! which the `txn` check would then call a duplicate. Tables are
//! independent: their `txn`s are per table.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use bytes::Bytes;
use ferry_protocols::api::{ErrorCode, SegmentBatchAck, SegmentOutcome, SegmentRejection, headers};
use ferry_protocols::segment::{Segment, SegmentBatchError, decode_batch, read_segment};

use super::segments::{
    SequenceGate, abort_if_failpoint, agent_from_headers, agent_report, answer, record_agent,
};
use crate::auth::Principal;
use crate::metrics as m;
use crate::server::{ApiError, ApiResult, AppState, Body};
use crate::table::{Origin, TableName, WriteRequest};

/// `POST /api/v1/segments/batch`.
pub async fn upload(
    principal: Principal,
    State(state): State<AppState>,
    headers_map: HeaderMap,
    Body(body): Body,
) -> ApiResult<axum::response::Response> {
    let agent = agent_from_headers(&principal, &headers_map)?;
    let limit = state.config.ingest.max_batch_segments;
    let frames = decode_batch(&body, limit).map_err(|e| {
        metrics::counter!(m::SEGMENT_BATCHES, "status" => "refused").increment(1);
        match e {
            SegmentBatchError::TooMany { .. } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("{e} (ingest.max_batch_segments); send fewer per request"),
            ),
            other => ApiError::bad_request(other.to_string()),
        }
    })?;
    let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
    let budget = state.config.tables.max_queued_bytes.as_u64();
    let decoded = tokio::task::spawn_blocking(move || decode(frames, budget))
        .await
        .map_err(|e| ApiError::internal("segment decoder task failed", e))?;
    check_order(&decoded)?;
    metrics::counter!(m::SEGMENT_BATCHES, "status" => "accepted").increment(1);

    let gate = SequenceGate::load(&state, &principal, &agent).await?;
    let mut results: Vec<Option<SegmentOutcome>> = vec![None; decoded.len()];
    let mut groups: HashMap<TableName, Vec<(usize, WriteRequest)>> = HashMap::new();
    let mut quota_refused: Option<ApiError> = None;
    for (index, segment) in decoded.into_iter().enumerate() {
        let segment = match segment {
            Decoded::Ok(s) if s.meta.header.agent_id == agent => s,
            Decoded::Ok(s) => {
                let why = format!(
                    "header {} is {:?} but the segment was written by {:?}",
                    headers::AGENT_ID,
                    agent.as_str(),
                    s.meta.header.agent_id.as_str()
                );
                results[index] = Some(rejected(Some(s.meta.header.sequence.0), invalid(why)));
                continue;
            }
            Decoded::Invalid(why) => {
                results[index] = Some(rejected(None, invalid(why)));
                continue;
            }
            Decoded::Deferred => {
                let why = format!(
                    "the batch's segments before this one already decode to more than \
                     tables.max_queued_bytes ({}); nothing of this one was written, send it again",
                    state.config.tables.max_queued_bytes
                );
                results[index] = Some(rejected(None, ApiError::unavailable(why)));
                continue;
            }
        };
        let seq = segment.meta.header.sequence;
        if let Err(e) = gate.check(&agent, seq.0, &principal) {
            results[index] = Some(rejected(Some(seq.0), e));
            continue;
        }
        let table = TableName {
            database: segment.meta.header.database.clone(),
            measurement: segment.meta.header.measurement.clone(),
        };
        if let Err(e) = principal.require_on(
            crate::auth::Permission::Write,
            table.database.as_str(),
            table.measurement.as_str(),
        ) {
            results[index] = Some(rejected(Some(seq.0), e));
            continue;
        }
        // Once a quota refuses a segment, the later ones are refused too: a
        // later segment of the same table must not commit before it.
        if quota_refused.is_none() {
            let rows: u64 = segment.batches.iter().map(|b| b.num_rows() as u64).sum();
            let bytes = sizes.get(index).copied().unwrap_or(0) as u64;
            if let Err(e) = state
                .quotas
                .admit(&principal, table.database.as_str(), rows, bytes)
            {
                quota_refused = Some(e);
            }
        }
        if let Some(e) = &quota_refused {
            results[index] = Some(rejected(Some(seq.0), e.clone()));
            continue;
        }
        let request = WriteRequest {
            table: table.clone(),
            batches: segment.batches,
            origin: Origin::Segment {
                agent: agent.clone(),
                seq,
            },
        };
        groups.entry(table).or_default().push((index, request));
    }

    let tables = &state.tables;
    let commits = groups.into_iter().map(|(table, group)| async move {
        let (indices, requests): (Vec<usize>, Vec<WriteRequest>) = group.into_iter().unzip();
        let seqs: Vec<u64> = requests.iter().map(segment_seq).collect();
        let outcomes = tables.write_group(&table, requests).await;
        (table, indices, seqs, outcomes)
    });
    let mut report = agent_report(&agent, &headers_map);
    for (table, indices, seqs, outcomes) in futures_util::future::join_all(commits).await {
        for ((index, seq), outcome) in indices.into_iter().zip(seqs).zip(outcomes) {
            abort_if_failpoint(&agent, seq, &outcome);
            let received = sizes.get(index).copied().unwrap_or(0);
            results[index] = Some(
                match answer(&agent, seq, table.to_string(), received, outcome) {
                    Ok(ack) => {
                        if ack.status == ferry_protocols::api::AckStatus::Committed {
                            state.quotas.ingested(
                                &principal,
                                table.database.as_str(),
                                ack.rows,
                                received as u64,
                            );
                        }
                        // The agent counts this upload's readings in its backlog.
                        report.backlog_readings =
                            report.backlog_readings.map(|b| b.saturating_sub(ack.rows));
                        let (last, rows) = report.committed.unwrap_or((0, 0));
                        report.committed = Some((last.max(seq), rows + ack.rows));
                        SegmentOutcome::Ack(ack)
                    }
                    Err(e) => {
                        report.failed += 1;
                        report.error = Some(e.to_string().chars().take(500).collect());
                        rejected(Some(seq), ApiError::from(e))
                    }
                },
            );
        }
    }
    record_agent(&state, report).await;
    let results = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                rejected(
                    None,
                    ApiError::internal("segment batch", "segment left unanswered"),
                )
            })
        })
        .collect();
    let ack = Json(SegmentBatchAck {
        agent_id: agent,
        results,
    });
    // A quota refused part of the batch: its Retry-After on the answer, so
    // the agent waits that long before sending the rest.
    Ok(match quota_refused.and_then(|e| e.retry_after) {
        Some(secs) => ([(axum::http::header::RETRY_AFTER, secs.to_string())], ack).into_response(),
        None => ack.into_response(),
    })
}

/// One frame of a batch, read.
enum Decoded {
    Ok(Segment),
    /// Not a valid segment: why.
    Invalid(String),
    /// Not decoded: the segments before it already fill the budget.
    Deferred,
}

/// Decodes the frames in order until their rows hold more than `budget`
/// bytes (`tables.max_queued_bytes`, which a table's queue would refuse
/// anyway); the first always decodes, as a single upload would. The rest
/// are deferred, so a batch holds in memory at most the budget plus one
/// segment, whatever the compression ratio of its frames.
fn decode(frames: Vec<Bytes>, budget: u64) -> Vec<Decoded> {
    let mut used = 0u64;
    frames
        .into_iter()
        .enumerate()
        .map(|(index, frame)| {
            if index > 0 && used > budget {
                return Decoded::Deferred;
            }
            match read_segment(frame) {
                Ok(segment) => {
                    let bytes: usize = segment
                        .batches
                        .iter()
                        .map(|b| b.get_array_memory_size())
                        .sum();
                    used = used.saturating_add(bytes as u64);
                    if index > 0 && used > budget {
                        return Decoded::Deferred;
                    }
                    Decoded::Ok(segment)
                }
                Err(e) => Decoded::Invalid(e.to_string()),
            }
        })
        .collect()
}

/// The segments that decoded must come in strictly increasing sequence.
fn check_order(decoded: &[Decoded]) -> ApiResult<()> {
    let mut last: Option<u64> = None;
    let seqs = decoded.iter().filter_map(|d| match d {
        Decoded::Ok(s) => Some(s.meta.header.sequence.0),
        Decoded::Invalid(_) | Decoded::Deferred => None,
    });
    for seq in seqs {
        if let Some(before) = last.filter(|before| seq <= *before) {
            metrics::counter!(m::SEGMENT_BATCHES, "status" => "refused").increment(1);
            return Err(ApiError::bad_request(format!(
                "segment batch: sequence {seq} follows {before}; segments must be in strictly \
                 increasing sequence order"
            )));
        }
        last = Some(seq);
    }
    Ok(())
}

fn segment_seq(request: &WriteRequest) -> u64 {
    match &request.origin {
        Origin::Segment { seq, .. } => seq.0,
        Origin::Write => 0,
    }
}

fn invalid(why: String) -> ApiError {
    metrics::counter!(m::SEGMENTS, "status" => "rejected").increment(1);
    ApiError::new(ErrorCode::InvalidSegment, why)
}

fn rejected(sequence: Option<u64>, e: ApiError) -> SegmentOutcome {
    SegmentOutcome::Rejected(SegmentRejection {
        sequence,
        status: e.status().as_u16(),
        error: e.body,
    })
}
