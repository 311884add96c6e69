//! Every route of the hub, and the layers around them.
//!
//! | route | role | handler |
//! |---|---|---|
//! | `GET /health`, `GET /ready`, `GET /metrics`, `GET /ping` | none | [`super::health`] |
//! | `POST /api/v1/segments` | write | [`crate::ingest::segments`] |
//! | `POST /api/v1/segments/batch` | write | [`crate::ingest::segment_batch`] |
//! | `POST /write`, `/api/v2/write`, `/api/v1/write/line-protocol` | write | [`crate::ingest::line_protocol`] |
//! | `POST /api/v1/write/msgpack` | write | [`crate::ingest::msgpack`] |
//! | `POST /api/v1/query`, `POST /api/v1/query/arrow` | read | [`crate::query`] |
//! | `GET /api/v1/measurements`, `GET /api/v1/delete/config` | read | [`crate::data`] |
//! | `GET /api/v1/queries/{active,history,{id}}`, `DELETE /api/v1/queries/{id}`, `POST /api/v1/query/explain` | read (own queries; admin: all) | [`crate::query::manage`] |
//! | `POST /api/v1/delete` | delete (admin) | [`crate::data::delete`] |
//! | `POST /api/v1/import/{csv,parquet,lp}`, `GET, DELETE /api/v1/import/jobs[/{id}]`, `GET, PUT, DELETE /api/v1/import/uploads/{sha256}` | write (GET jobs: read) | [`crate::import::routes`] |
//! | `GET /api/v1/agents` | read | [`crate::fleet`] |
//! | `GET, POST, DELETE /api/v1/retention`, `POST /api/v1/retention/{dry-run,run}`, `GET /api/v1/compaction`, `POST /api/v1/compaction/run` | read (GET) / admin | [`crate::maintenance::routes`] |
//! | `GET, POST /api/v1/continuous_queries`, `GET, PUT, DELETE /api/v1/continuous_queries/{id}`, `POST .../{id}/execute`, `GET .../{id}/executions` | read (GET) / admin | [`crate::cq::routes`] |
//! | `GET, POST /api/v1/last_cache`, `DELETE /api/v1/last_cache/{id}`, `POST, DELETE /api/v3/configure/last_cache` | read (GET) / admin | [`crate::lastcache::routes`] |
//! | `GET, PUT, DELETE /api/v1/retention/{id}`, `POST /api/v1/retention/{id}/execute`, `GET /api/v1/retention/{id}/executions` | read (GET) / admin | [`crate::maintenance::policy_routes`] |
//! | `GET, POST /api/v1/auth/tokens`, `GET, PATCH, DELETE /api/v1/auth/tokens/{id}`, `POST .../{id}/{rotate,revoke}` | admin | [`crate::auth::routes`] |
//! | `GET, POST /api/v1/auth/roles`, `GET, PUT, DELETE /api/v1/auth/roles/{id}`, `PUT /api/v1/auth/tokens/{id}/roles`, `GET /api/v1/auth/tokens/{id}/permissions` | admin | [`crate::auth::role_routes`], [`crate::auth::routes`] |
//! | `GET /api/v1/quotas`, `PUT, DELETE /api/v1/quotas/{tokens,databases}/{key}` | admin | [`crate::quota::routes`] |
//! | `GET /api/v1/usage` | any (admin: everyone's) | [`crate::quota::routes`] |
//! | `GET /api/v1/instance`, `GET /api/v1/instance/history` | read | [`crate::instance`] |
//! | `GET /api/v1/auth/whoami` | any | [`crate::auth::routes::whoami`] |
//! | `GET /ui`, `/ui/app.js`, `/ui/app.css` | none (no data) | [`crate::console`] |
//! | `/api/v1/alerts`, `/api/v1/alerts/{id}`, `POST /api/v1/alerts/{id}/evaluate` | admin | [`crate::alerts::routes`] |
//! | `GET /api/v1/admin/audit-log`, `GET /api/v1/admin/audit-log/verify` | admin | [`crate::audit::routes`] |
//! | `GET /api/v1/admin/keys`, `POST /api/v1/admin/keys/{rotate,reencrypt}` | admin | [`crate::encryption::routes`] |
//!
//! Layers: the body limit (`server.max_body`, answered 413 with an error
//! body by the extractors), request metrics by matched route and status,
//! a handler that panics answered 500 (the others carry on), and
//! authentication on every route but the public ones.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};

use super::{AppState, health, not_found};
use crate::auth::{self, middleware::authenticate};
use crate::cq;
use crate::ingest::{line_protocol, msgpack, segment_batch, segments};
use crate::lastcache;
use crate::maintenance::policy_routes as policies;
use crate::maintenance::routes as maint;
use crate::{audit, data, encryption, fleet, import, metrics as m, query, quota};

/// The hub's router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes();
    // Every write takes its bytes from ingest.max_inflight_bytes (after
    // authentication, which wraps it below).
    let writes = Router::new()
        .route(ferry_protocols::api::SEGMENTS_PATH, post(segments::upload))
        .route(
            ferry_protocols::api::SEGMENT_BATCH_PATH,
            post(segment_batch::upload),
        )
        .route("/write", post(line_protocol::write_v1))
        .route("/api/v2/write", post(line_protocol::write_v2))
        .route(
            "/api/v1/write/line-protocol",
            post(line_protocol::write_ferry),
        )
        .route("/api/v1/write/msgpack", post(msgpack::write))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::ingest::budget::limit,
        ));
    let protected = Router::new()
        .merge(writes)
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/query/arrow", post(query::query_arrow))
        .route("/api/v1/query/explain", post(query::manage::explain))
        .route("/api/v1/queries/active", get(query::manage::active))
        .route("/api/v1/queries/history", get(query::manage::history))
        .route(
            "/api/v1/queries/{id}",
            get(query::manage::get).delete(query::manage::cancel),
        )
        .route("/api/v1/import/{format}", post(import::routes::import))
        .route("/api/v1/import/jobs", get(import::routes::list))
        .route(
            "/api/v1/import/jobs/{id}",
            get(import::routes::get).delete(import::routes::cancel),
        )
        .route(
            "/api/v1/import/uploads/{sha256}",
            get(import::routes::upload_status)
                .put(import::routes::upload_append)
                .delete(import::routes::upload_delete),
        )
        .route("/api/v1/measurements", get(data::measurements::list))
        .route("/api/v1/delete", post(data::delete::delete))
        .route("/api/v1/delete/config", get(data::delete::config))
        .route("/api/v1/agents", get(fleet::list))
        .route("/api/v1/agents/{id}/history", get(fleet::history))
        .route(
            "/api/v1/retention",
            get(maint::list_policies)
                .post(maint::set_policy)
                .delete(maint::delete_policy),
        )
        .route("/api/v1/retention/dry-run", post(maint::dry_run))
        .route(
            "/api/v1/retention/{id}",
            get(policies::get)
                .put(policies::update)
                .delete(policies::delete),
        )
        .route("/api/v1/retention/{id}/execute", post(policies::execute))
        .route(
            "/api/v1/retention/{id}/executions",
            get(policies::executions),
        )
        .route("/api/v1/retention/run", post(maint::run_retention))
        .route(
            "/api/v1/last_cache",
            get(lastcache::routes::list).post(lastcache::routes::create),
        )
        .route("/api/v1/last_cache/{id}", delete(lastcache::routes::delete))
        .route(
            "/api/v3/configure/last_cache",
            post(lastcache::routes::create).delete(lastcache::routes::delete_by_name),
        )
        .route(
            "/api/v1/continuous_queries",
            get(cq::routes::list).post(cq::routes::create),
        )
        .route(
            "/api/v1/continuous_queries/{id}",
            get(cq::routes::get)
                .put(cq::routes::update)
                .delete(cq::routes::delete),
        )
        .route(
            "/api/v1/continuous_queries/{id}/execute",
            post(cq::routes::execute),
        )
        .route(
            "/api/v1/continuous_queries/{id}/executions",
            get(cq::routes::executions),
        )
        .route("/api/v1/compaction", get(maint::compaction_status))
        .route("/api/v1/compaction/run", post(maint::run_compaction))
        .route(
            "/api/v1/auth/tokens",
            get(auth::routes::list).post(auth::routes::create),
        )
        .route(
            "/api/v1/auth/tokens/{id}",
            get(auth::routes::get)
                .patch(auth::routes::update)
                .delete(auth::routes::delete),
        )
        .route(
            "/api/v1/auth/tokens/{id}/rotate",
            post(auth::routes::rotate),
        )
        .route(
            "/api/v1/auth/tokens/{id}/revoke",
            post(auth::routes::revoke),
        )
        .route(
            "/api/v1/auth/tokens/{id}/roles",
            axum::routing::put(auth::routes::set_roles),
        )
        .route(
            "/api/v1/auth/tokens/{id}/permissions",
            get(auth::routes::permissions),
        )
        .route(
            "/api/v1/auth/roles",
            get(auth::role_routes::list).post(auth::role_routes::create),
        )
        .route(
            "/api/v1/auth/roles/{id}",
            get(auth::role_routes::get)
                .put(auth::role_routes::update)
                .delete(auth::role_routes::delete),
        )
        .route("/api/v1/quotas", get(quota::routes::list))
        .route(
            "/api/v1/quotas/{kind}/{key}",
            axum::routing::put(quota::routes::set).delete(quota::routes::remove),
        )
        .route("/api/v1/usage", get(quota::routes::usage))
        .route(
            "/api/v1/alerts",
            get(crate::alerts::routes::list).post(crate::alerts::routes::create),
        )
        .route(
            "/api/v1/alerts/{id}",
            get(crate::alerts::routes::get).delete(crate::alerts::routes::delete),
        )
        .route(
            "/api/v1/alerts/{id}/evaluate",
            post(crate::alerts::routes::evaluate),
        )
        .route("/api/v1/auth/whoami", get(crate::auth::routes::whoami))
        .route("/api/v1/instance", get(crate::instance::instance))
        .route("/api/v1/instance/history", get(crate::instance::history))
        .route("/api/v1/admin/audit-log", get(audit::routes::list))
        .route("/api/v1/admin/audit-log/verify", get(audit::routes::verify))
        .route("/api/v1/admin/keys", get(encryption::routes::list))
        .route(
            "/api/v1/admin/keys/rotate",
            axum::routing::post(encryption::routes::rotate),
        )
        .route(
            "/api/v1/admin/keys/reencrypt",
            axum::routing::post(encryption::routes::reencrypt),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/ping", get(health::ping).head(health::ping))
        .route("/ui", get(crate::console::index))
        .route("/ui/", get(crate::console::index))
        .route("/ui/app.js", get(crate::console::app_js))
        .route("/ui/app.css", get(crate::console::app_css))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::replica::refuse_writes,
        ))
        .layer(middleware::from_fn(track))
        // A handler that panics answers 500 to its own request only.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            handler_panicked,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The answer to a request whose handler panicked (see `crate::supervise`).
fn handler_panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = crate::supervise::panic_text(payload.as_ref());
    crate::supervise::record("http", "handler", &message);
    axum::response::IntoResponse::into_response(crate::server::ApiError::internal(
        "request handler",
        "an internal fault (a panic) while answering this request; it was logged",
    ))
}

/// Counts every answer by route template and status, and its duration.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
