//! `POST /api/v1/segments`: agent uploads (see [`ferry_protocols::api`]).
//!
//! Order of checks, each with its answer:
//!
//! 1. the token grants `write` (401 / 403);
//! 2. the body is within `server.max_body` (413);
//! 3. `x-ferry-agent-id` is present and a valid agent id (400 `bad_request`);
//! 4. the body is a valid segment: [`read_segment`] checks format version,
//!    names, schema, sort order and checksum (400 `invalid_segment` with the
//!    reason);
//! 5. the header's agent id equals the segment's `ferry.agent_id`, and
//!    `x-ferry-segment-seq`, when sent, equals `ferry.sequence` (400
//!    `invalid_segment`);
//! 6. the segment's rows go to [`Tables::write`](crate::table::Tables::write)
//!    with [`Origin::Segment`]; the answer waits for the durable commit:
//!    200 [`SegmentAck`] `committed` or `duplicate`; a schema conflict with
//!    the table is 409 `schema_conflict`, a storage failure 503
//!    `unavailable` (the agent retries).
//!
//! Any write token may upload for any agent id for now; per-agent tokens
//! come with RBAC. The agent's last-seen time, backlog headers and version
//! are recorded in the metadata store after the write, whatever its result.
//!
//! # Failpoint (tests only)
//!
//! `FERRY_HUB_FAILPOINT=abort_after_commit` makes the process call
//! [`std::process::abort`] right after a segment's commit is durable and
//! before its acknowledgement is sent: the crash window that the Delta `txn`
//! check must make harmless (`hil-tests/tests/hub_crash_exactly_once.rs`).
//! The variable is read once; [`warn_if_failpoint`] logs an ERROR at start
//! when it is set. It exists in debug builds only: a release build treats
//! every value as unknown (ignored, with an ERROR).

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use ferry_protocols::AgentId;
use ferry_protocols::api::{AckStatus, ErrorCode, SegmentAck, headers};
use ferry_protocols::segment::read_segment;

use super::{SOURCE_SEGMENT, record_ingest};
use crate::auth::{Permission, Principal};
use crate::meta::AgentReport;
use crate::metrics as m;
use crate::server::{ApiError, ApiResult, AppState, Body};
use crate::table::{Origin, TableError, TableName, WriteOutcome, WriteRequest};

/// The environment variable that arms the test-only failpoint.
pub const FAILPOINT_ENV: &str = "FERRY_HUB_FAILPOINT";

/// What the failpoint does, read once from [`FAILPOINT_ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failpoint {
    Off,
    /// Abort the process after a segment commit, before its answer.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    AbortAfterCommit,
    /// Set to something this hub does not know: ignored, with an ERROR.
    Unknown(String),
}

static FAILPOINT: LazyLock<Failpoint> =
    LazyLock::new(|| match std::env::var(FAILPOINT_ENV).as_deref() {
        Err(_) | Ok("") => Failpoint::Off,
        // Compiled into debug builds only: a release hub cannot be made to
        // abort by its environment.
        #[cfg(debug_assertions)]
        Ok("abort_after_commit") => Failpoint::AbortAfterCommit,
        Ok(other) => Failpoint::Unknown(other.to_owned()),
    });

/// Logs an ERROR when the test-only failpoint is set; the hub calls it once
/// at start.
pub fn warn_if_failpoint() {
    match &*FAILPOINT {
        Failpoint::Off => {}
        Failpoint::AbortAfterCommit => tracing::error!(
            "{FAILPOINT_ENV}=abort_after_commit is set: TEST ONLY, this hub aborts after \
             committing the first segment, before acknowledging it"
        ),
        Failpoint::Unknown(v) => tracing::error!(
            value = %v,
            "{FAILPOINT_ENV} is set to an unknown failpoint and is ignored; unset it"
        ),
    }
}

/// `POST /api/v1/segments`.
pub async fn upload(
    principal: Principal,
    State(state): State<AppState>,
    headers_map: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<SegmentAck>> {
    // Before reading the body: a token bound to other agents gets nothing.
    let agent = agent_from_headers(&principal, &headers_map)?;
    let header_seq = optional_u64(&headers_map, headers::SEGMENT_SEQ)?;
    let received = body.len();

    let segment = tokio::task::spawn_blocking(move || read_segment(body))
        .await
        .map_err(|e| ApiError::internal("segment decoder task failed", e))?
        .map_err(|e| {
            metrics::counter!(m::SEGMENTS, "status" => "rejected").increment(1);
            ApiError::new(ErrorCode::InvalidSegment, e.to_string())
        })?;
    let meta = &segment.meta;
    if meta.header.agent_id != agent {
        metrics::counter!(m::SEGMENTS, "status" => "rejected").increment(1);
        return Err(ApiError::new(
            ErrorCode::InvalidSegment,
            format!(
                "header {} is {:?} but the segment was written by {:?}",
                headers::AGENT_ID,
                agent.as_str(),
                meta.header.agent_id.as_str()
            ),
        ));
    }
    let seq = meta.header.sequence;
    if let Some(h) = header_seq.filter(|h| *h != seq.0) {
        metrics::counter!(m::SEGMENTS, "status" => "rejected").increment(1);
        return Err(ApiError::new(
            ErrorCode::InvalidSegment,
            format!(
                "header {} is {h} but the segment's sequence is {seq}",
                headers::SEGMENT_SEQ
            ),
        ));
    }
    SequenceGate::load(&state, &principal, &agent)
        .await?
        .check(&agent, seq.0, &principal)?;
    let table = TableName {
        database: meta.header.database.clone(),
        measurement: meta.header.measurement.clone(),
    };
    principal.require_on(
        Permission::Write,
        table.database.as_str(),
        table.measurement.as_str(),
    )?;
    let rows: u64 = segment.batches.iter().map(|b| b.num_rows() as u64).sum();
    let database = table.database.as_str().to_owned();
    state
        .quotas
        .admit(&principal, &database, rows, received as u64)?;
    let table_label = table.to_string();
    let request = WriteRequest {
        table,
        batches: segment.batches,
        origin: Origin::Segment {
            agent: agent.clone(),
            seq,
        },
    };
    let outcome = state.tables.write(request).await;
    abort_if_failpoint(&agent, seq.0, &outcome);
    if let Ok(WriteOutcome::Committed { rows, .. }) = &outcome {
        state
            .quotas
            .ingested(&principal, &database, *rows, received as u64);
    }
    let mut report = agent_report(&agent, &headers_map);
    let ack = answer(&agent, seq.0, table_label, received, outcome);
    match &ack {
        Ok(ack) => {
            report.committed = Some((seq.0, ack.rows));
            // The agent counts this upload's readings in its backlog.
            report.backlog_readings = report.backlog_readings.map(|b| b.saturating_sub(ack.rows));
        }
        Err(e) => {
            report.failed = 1;
            report.error = Some(e.to_string().chars().take(500).collect());
        }
    }
    record_agent(&state, report).await;
    Ok(Json(ack.map_err(ApiError::from)?))
}

/// The test-only failpoint: abort after a durable commit, before answering.
pub(super) fn abort_if_failpoint(
    agent: &AgentId,
    seq: u64,
    outcome: &Result<WriteOutcome, TableError>,
) {
    if *FAILPOINT == Failpoint::AbortAfterCommit
        && matches!(outcome, Ok(WriteOutcome::Committed { .. }))
    {
        tracing::error!(agent = %agent, seq, "failpoint abort_after_commit: aborting");
        std::process::abort();
    }
}

/// What the upload's headers say about the agent (backlog, version).
pub(super) fn agent_report(agent: &AgentId, headers_map: &HeaderMap) -> AgentReport {
    AgentReport {
        agent: agent.clone(),
        committed: None,
        backlog_readings: optional_u64(headers_map, headers::BACKLOG_READINGS).unwrap_or(None),
        backlog_bytes: optional_u64(headers_map, headers::BACKLOG_BYTES).unwrap_or(None),
        version: headers_map
            .get(headers::AGENT_VERSION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(64).collect()),
        failed: 0,
        error: None,
    }
}

/// Turns a segment's write outcome into its acknowledgement, counting it
/// in the metrics. `received` is the segment's size in bytes.
pub(super) fn answer(
    agent: &AgentId,
    seq: u64,
    table: String,
    received: usize,
    outcome: Result<WriteOutcome, TableError>,
) -> Result<SegmentAck, TableError> {
    let ack = match outcome {
        Ok(WriteOutcome::Committed { version, rows }) => {
            metrics::counter!(m::SEGMENTS, "status" => "committed").increment(1);
            record_ingest(SOURCE_SEGMENT, received, rows, 0);
            SegmentAck {
                agent_id: agent.clone(),
                sequence: seq,
                status: AckStatus::Committed,
                rows,
                table,
                table_version: Some(version),
            }
        }
        Ok(WriteOutcome::Duplicate { version }) => {
            metrics::counter!(m::SEGMENTS, "status" => "duplicate").increment(1);
            SegmentAck {
                agent_id: agent.clone(),
                sequence: seq,
                status: AckStatus::Duplicate,
                rows: 0,
                table,
                table_version: version,
            }
        }
        Err(e) => {
            let status = if e.is_client_error() {
                "rejected"
            } else {
                "failed"
            };
            metrics::counter!(m::SEGMENTS, "status" => status).increment(1);
            tracing::info!(agent = %agent, seq, error = %e, "segment not committed");
            return Err(e);
        }
    };
    tracing::debug!(
        agent = %agent,
        seq,
        status = ?ack.status,
        rows = ack.rows,
        table = %ack.table,
        "segment acknowledged"
    );
    Ok(ack)
}

/// Refuses (409 `sequence_gap`) a segment whose sequence lies more than
/// `ingest.max_sequence_gap` beyond the last one committed for its agent (0
/// for an agent not seen yet, unless the token is bound to it): nothing is
/// written, so no `txn` version can be pushed far ahead of the agent's real
/// segments.
pub(super) struct SequenceGate {
    /// The last committed sequence the hub knows, if any.
    last: Option<u64>,
    /// The highest sequence accepted; `None`: no check.
    limit: Option<u64>,
    gap: u64,
}

impl SequenceGate {
    /// Looks up where the agent stands (one metadata read).
    pub(super) async fn load(
        state: &AppState,
        principal: &Principal,
        agent: &AgentId,
    ) -> ApiResult<Self> {
        let gap = state.config.ingest.max_sequence_gap;
        if gap == 0 {
            return Ok(SequenceGate {
                last: None,
                limit: None,
                gap,
            });
        }
        let last = state
            .meta
            .agent_last_sequence(agent)
            .await
            .map_err(|e| ApiError::internal("agent lookup failed", e))?;
        let limit = match last {
            Some(last) => Some(last.saturating_add(gap)),
            // A token bound to this agent was issued for this gateway: trust
            // where its sequence stands when the hub first sees it.
            None if principal.agents.as_ref().is_some_and(|p| p.matches(agent)) => None,
            None => Some(gap),
        };
        Ok(SequenceGate { last, limit, gap })
    }

    /// Passes `seq`, or answers why not.
    pub(super) fn check(&self, agent: &AgentId, seq: u64, principal: &Principal) -> ApiResult<()> {
        let Some(limit) = self.limit.filter(|limit| seq > *limit) else {
            return Ok(());
        };
        let (last, gap) = (self.last, self.gap);
        metrics::counter!(m::SEGMENTS, "status" => "sequence_gap").increment(1);
        tracing::warn!(agent = %agent, seq, last = ?last, gap, limit, by = %principal.name, "segment refused: sequence gap");
        Err(ApiError::new(
            ErrorCode::SequenceGap,
            format!(
                "segment {seq} of agent {:?} is more than ingest.max_sequence_gap ({gap}) beyond {}; \
                 nothing was written. A gateway moved from another hub: upload with a token bound to it, \
                 or raise ingest.max_sequence_gap",
                agent.as_str(),
                match last {
                    Some(l) => format!("its last committed segment ({l})"),
                    None => "0 (the hub has not seen this agent)".to_owned(),
                }
            ),
        ))
    }
}

/// Records the agent's report; a failure is logged, not answered: the
/// segment's fate is decided by the table commit alone.
pub(super) async fn record_agent(state: &AppState, report: AgentReport) {
    if let Err(e) = state.meta.record_agent(report).await {
        tracing::warn!(error = %e, "cannot record the agent in the metadata store");
    }
}

/// The uploading agent: the principal may write, `x-ferry-agent-id` is a
/// valid agent id (400), and the token may act for that agent (403).
pub(super) fn agent_from_headers(
    principal: &Principal,
    headers_map: &HeaderMap,
) -> Result<AgentId, ApiError> {
    principal.require_anywhere(Permission::Write)?;
    let header_agent = required_header(headers_map, headers::AGENT_ID)?;
    let agent = AgentId::new(header_agent)
        .map_err(|e| ApiError::bad_request(format!("header {}: {e}", headers::AGENT_ID)))?;
    principal.require_agent(&agent)?;
    Ok(agent)
}

pub(super) fn required_header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    h.get(name)
        .ok_or_else(|| ApiError::bad_request(format!("missing header {name}")))?
        .to_str()
        .map(str::trim)
        .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII")))
}

pub(super) fn optional_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("header {name} is not an unsigned integer"))
            }),
    }
}
