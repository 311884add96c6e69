//! The unauthenticated routes: `/health`, `/ready`, `/metrics`, `/ping`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// `GET /health`: 200 while the process serves HTTP.
pub(super) async fn health() -> &'static str {
    "ok\n"
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
