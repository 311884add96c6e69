//! `POST /api/v1/write/msgpack`: Arc-compatible MessagePack writes.
//!
//! The database comes from `x-ferry-database` or Arc's `x-arc-database`
//! (or `?db=`). The body may be gzip or zstd, recognised by its magic bytes
//! (Arc clients do not always set `Content-Encoding`); the decompressed size
//! is capped at `server.max_body`. The formats are those of
//! [`ferry_protocols::msgpack`]. A body that is not MessagePack at all is a
//! 400; bad records are dropped and reported like bad lines
//! ([`super::write`]), with `record_index` instead of `line_number`.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use ferry_protocols::msgpack;

use super::params::{self, DatabaseSource, WriteParams};
use super::write::{self, Locator, Prepared};
use super::{SOURCE_MSGPACK, now_ns, record_ingest};
use crate::auth::{Permission, Principal};
use crate::server::{ApiError, ApiResult, AppState, Body};

/// `POST /api/v1/write/msgpack`.
pub async fn write(
    principal: Principal,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    principal.require_anywhere(Permission::Write)?;
    let params = WriteParams::from_uri(&uri)?;
    let database = params::database(DatabaseSource::Ferry, &params, &headers)?;
    let max = state.config.server.max_body_bytes();
    let max_columns = state.config.tables.max_columns.get();
    let received = body.len();
    let now = now_ns();

    let mut prepared = tokio::task::spawn_blocking(move || {
        let decoded = params::decode_body(&headers, &body, max)?;
        let out =
            msgpack::decode(&decoded, now).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut prepared = Prepared::default();
        for e in &out.errors {
            prepared.reject(Locator::Record(e.record as u64), e.to_string());
        }
        // Errors past the kept ones are only counted.
        prepared.rejected_count += out.error_count.saturating_sub(out.errors.len());
        prepared.group(
            out.readings.into_iter().map(|r| (Locator::Unknown, r)),
            max_columns,
        );
        Ok::<_, ApiError>(prepared)
    })
    .await
    .map_err(|e| ApiError::internal("msgpack decoder task failed", e))??;

    let no_lines = |at: &[Locator]| vec![None; at.len()];
    if prepared.rejected_count > 0 && !params.accept_partial() {
        record_ingest(SOURCE_MSGPACK, received, 0, prepared.rejected_count);
        return Err(write::reject_all(&prepared, no_lines));
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
        SOURCE_MSGPACK,
        received,
        committed.rows,
        prepared.rejected_count,
    );
    Ok(write::answer(&prepared, &committed, no_lines))
}
