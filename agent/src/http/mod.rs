//! The agent's local HTTP server (default `127.0.0.1:9180`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `200 ok` while the agent runs |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/v1/status` | JSON: buffer backlog, drops, uplink state, broker clients |
//!
//! It binds to loopback by default: it has no authentication, and it is for
//! the gateway's own tools (`ferry-agent status`, a local Prometheus, systemd
//! health checks).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The `[http]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the local HTTP server listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

/// Produces the status document on demand.
pub type StatusFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    status: StatusFn,
}

/// Binds the listener (so a bad address fails at start, not later) and
/// returns the bound address and the server future.
pub async fn bind(
    config: &HttpConfig,
    metrics: PrometheusHandle,
    status: StatusFn,
    shutdown: CancellationToken,
) -> std::io::Result<(
    SocketAddr,
    impl Future<Output = std::io::Result<()>> + Send + 'static,
)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/status", get(render_status))
        .with_state(AppState { metrics, status });
    let server = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    };
    Ok((addr, server))
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn render_status(State(state): State<AppState>) -> Response {
    let doc = (state.status)().await;
    axum::Json(doc).into_response()
}
