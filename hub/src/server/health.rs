//! The unauthenticated routes: `/health`, `/ready`, `/metrics`, `/ping`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// `GET /health`'s answer (Arc's shape, which its clients parse).
#[derive(Debug, serde::Serialize)]
pub(super) struct Health {
    status: &'static str,
    version: &'static str,
    /// Since the process started, e.g. `3h 2m 5s`.
    uptime: String,
    uptime_seconds: u64,
}

/// `GET /health`: 200 while the process serves HTTP, with its version and
/// uptime.
pub(super) async fn health(State(state): State<AppState>) -> Json<Health> {
    let secs = state.started.elapsed().as_secs();
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime: humantime::format_duration(std::time::Duration::from_secs(secs)).to_string(),
        uptime_seconds: secs,
    })
}

/// `GET /ready`: 200 once the tables and metadata are open, 503 before
/// and during shutdown.
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET|HEAD /ping`: 204, for InfluxDB clients that check the server first.
pub(super) async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let body = match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
