//! The global bound on ingest bytes in flight (`ingest.max_inflight_bytes`).
//!
//! Every write endpoint (segments, line protocol, MessagePack) takes its
//! body's bytes from one budget before the body is read, and gives them
//! back when it has answered. `Content-Length` is what a request claims;
//! a body without it (chunked) is counted at `server.max_body`, the most it
//! may be. A request that does not fit is answered at once with 503 and
//! `Retry-After`: many clients writing large bodies at the same moment get
//! told to come back, instead of the hub holding all their bytes (and the
//! rows decoded from them) in memory together. The refused body is read
//! and dropped chunk by chunk, so that the client sees the answer rather
//! than a reset connection.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::server::{ApiError, AppState};

/// The bytes ingest may hold at once; cheap to clone.
#[derive(Debug, Clone)]
pub struct IngestBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl IngestBudget {
    /// A budget of `total` bytes (at least 1).
    pub fn new(total: u64) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .clamp(1, Semaphore::MAX_PERMITS);
        IngestBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }
}

/// Middleware on the write routes: takes the request's bytes from the
/// budget for as long as the request runs, or answers 503.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let budget = &state.ingest_budget;
    let max_body = state.config.server.max_body_bytes();
    let claimed = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(max_body)
        .min(max_body)
        .clamp(1, budget.total);
    let permits = u32::try_from(claimed).unwrap_or(u32::MAX);
    let Ok(held) = budget.bytes.clone().try_acquire_many_owned(permits) else {
        metrics::counter!(m::INGEST_REFUSED, "reason" => "inflight_bytes").increment(1);
        // Read the body and drop it chunk by chunk (at most server.max_body):
        // an HTTP/1.1 client that is still sending would otherwise see the
        // connection reset instead of the answer.
        let mut body = req.into_body().into_data_stream();
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len();
            if seen > max_body {
                break;
            }
        }
        return ApiError::unavailable(format!(
            "the hub holds ingest.max_inflight_bytes ({}) of writes in flight; retry shortly",
            bytesize::ByteSize::b(budget.total as u64)
        ))
        .with_retry_after(1)
        .into_response();
    };
    metrics::gauge!(m::INGEST_INFLIGHT_BYTES).increment(claimed as f64);
    let response = next.run(req).await;
    drop(held);
    metrics::gauge!(m::INGEST_INFLIGHT_BYTES).decrement(claimed as f64);
    response
}
