//! Line protocol writes, InfluxDB 1.x and 2.x compatible.
//!
//! | route | database from | precision |
//! |---|---|---|
//! | `POST /write` (1.x) | `?db=` (`rp`, `u`, `p`, `consistency` ignored) | `?precision=` `ns` (default), `u`/`us`, `ms`, `s` |
//! | `POST /api/v2/write` (2.x) | `?bucket=` (`db` or `db/rp`; `org` ignored) | same |
//! | `POST /api/v1/write/line-protocol` | `x-ferry-database`, `x-arc-database`, `?db=` | same |
//!
//! Bodies may be gzip or zstd (`Content-Encoding`, or recognised by magic
//! bytes). Lines without a timestamp get the time the request arrived.
//! Partial writes follow [`super::write`].

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use bytes::Bytes;
use ferry_protocols::lp;

use super::params::{self, DatabaseSource, WriteParams};
use super::write::{self, Locator, Prepared};
use super::{SOURCE_LINE_PROTOCOL, now_ns, record_ingest};
use crate::auth::{Permission, Principal};
use crate::server::{ApiError, ApiResult, AppState, Body};

/// `POST /write`.
pub async fn write_v1(
    principal: Principal,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    handle(state, principal, DatabaseSource::V1, uri, headers, body).await
}

/// `POST /api/v2/write`.
pub async fn write_v2(
    principal: Principal,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    handle(state, principal, DatabaseSource::V2, uri, headers, body).await
}

/// `POST /api/v1/write/line-protocol`.
pub async fn write_ferry(
    principal: Principal,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    handle(state, principal, DatabaseSource::Ferry, uri, headers, body).await
}

async fn handle(
    state: AppState,
    principal: Principal,
    source: DatabaseSource,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    principal.require_anywhere(Permission::Write)?;
    let params = WriteParams::from_uri(&uri)?;
    let database = params::database(source, &params, &headers)?;
    let precision = params.precision()?;
    let max = state.config.server.max_body_bytes();
    let max_columns = state.config.tables.max_columns.get();
    let received = body.len();
    let now = now_ns();

    let (mut prepared, text) = tokio::task::spawn_blocking(move || {
        let text = match params::decode_body(&headers, &body, max)? {
            std::borrow::Cow::Borrowed(_) => body.clone(),
            std::borrow::Cow::Owned(v) => Bytes::from(v),
        };
        let mut prepared = Prepared::default();
        let mut readings = Vec::new();
        for line in lp::parse_lines(&text) {
            let parsed = line.and_then(|l| {
                let n = l.line;
                l.into_reading(precision, now).map(|r| (n, r))
            });
            match parsed {
                Ok((n, r)) => readings.push((Locator::Line(n as u64), r)),
                Err(e) => prepared.reject(
                    Locator::Line(e.line as u64),
                    format!("column {}: {}", e.column, e.kind),
                ),
            }
        }
        prepared.group(readings, max_columns);
        Ok::<_, ApiError>((prepared, text))
    })
    .await
    .map_err(|e| ApiError::internal("line protocol parser task failed", e))??;

    let original = |at: &[Locator]| write::original_lines(&text, at);
    if prepared.rejected_count > 0 && !params.accept_partial() {
        record_ingest(SOURCE_LINE_PROTOCOL, received, 0, prepared.rejected_count);
        return Err(write::reject_all(&prepared, original));
    }
    prepared.admit(&state.quotas, &principal, &database, received)?;
    let committed = write::commit(&state.tables, &database, &mut prepared).await?;
    state.quotas.ingested(
        &principal,
        database.as_str(),
        committed.rows,
        received as u64,
    );
    record_ingest(
        SOURCE_LINE_PROTOCOL,
        received,
        committed.rows,
        prepared.rejected_count,
    );
    tracing::debug!(
        database = %database,
        rows = committed.rows,
        rejected = prepared.rejected_count,
        "line protocol write"
    );
    Ok(write::answer(&prepared, &committed, original))
}
