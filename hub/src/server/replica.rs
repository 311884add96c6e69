//! A read replica's HTTP rule: it answers reads and refuses writes.
//!
//! With `replica.role = "reader"` a hub serves queries, the console and
//! the fleet view from tables other hubs write. Every request that would
//! change the data or start work that writes it (ingest, imports, deletes,
//! retention runs, compaction, continuous queries, caches, alerts, quotas)
//! is answered `403 forbidden` naming the reason, before authentication:
//! a writer's client pointed at a reader learns why at once, and an agent
//! that lists the reader among its `uplink.hub_urls` moves on to the next
//! hub. What a reader still takes: queries (`POST /api/v1/query…`), query
//! cancellation, a retention dry run, and token and role changes: those
//! the metadata store refuses (403) when it follows the lake's shared log,
//! and takes when the reader keeps metadata of its own (`metadata.shared =
//! false`; docs/scale-out.md).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_protocols::api::ErrorCode;

use super::{ApiError, AppState};
use crate::metrics as m;

/// Requests other than GET/HEAD/OPTIONS a reader still answers: path
/// prefixes.
const READER_TAKES: &[&str] = &[
    "/api/v1/query",
    "/api/v1/queries/",
    "/api/v1/retention/dry-run",
    "/api/v1/auth/",
];

/// Whether a reader refuses `method path`.
pub(crate) fn is_write(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    !READER_TAKES.iter().any(|p| path.starts_with(p))
}

/// The layer: on a reader, a write is answered 403.
pub(super) async fn refuse_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.replica.is_reader() && is_write(request.method(), request.uri().path()) {
        metrics::counter!(m::REPLICA_REFUSED).increment(1);
        return ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this hub is a read replica (replica.role = \"reader\"): {} {} changes data; send it to a writer hub",
                request.method(),
                request.uri().path()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_and_writes_do_not() {
        for (method, path) in [
            (Method::GET, "/api/v1/agents"),
            (Method::HEAD, "/ping"),
            (Method::POST, "/api/v1/query"),
            (Method::POST, "/api/v1/query/arrow"),
            (Method::POST, "/api/v1/query/explain"),
            (Method::DELETE, "/api/v1/queries/12"),
            (Method::POST, "/api/v1/retention/dry-run"),
            (Method::POST, "/api/v1/auth/tokens"),
            (Method::PUT, "/api/v1/auth/roles/3"),
        ] {
            assert!(!is_write(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::POST, "/api/v1/segments"),
            (Method::POST, "/api/v1/segments/batch"),
            (Method::POST, "/write"),
            (Method::POST, "/api/v2/write"),
            (Method::POST, "/api/v1/write/line-protocol"),
            (Method::POST, "/api/v1/write/msgpack"),
            (Method::POST, "/api/v1/import/csv"),
            (Method::PUT, "/api/v1/import/uploads/ab"),
            (Method::POST, "/api/v1/delete"),
            (Method::POST, "/api/v1/retention"),
            (Method::POST, "/api/v1/retention/run"),
            (Method::POST, "/api/v1/compaction/run"),
            (Method::POST, "/api/v1/continuous_queries"),
            (Method::POST, "/api/v1/last_cache"),
            (Method::POST, "/api/v1/alerts"),
            (Method::PUT, "/api/v1/quotas/token/1"),
            (Method::POST, "/api/v1/admin/keys/rotate"),
            (Method::POST, "/nowhere"),
        ] {
            assert!(is_write(&method, path), "{method} {path}");
        }
    }
}
