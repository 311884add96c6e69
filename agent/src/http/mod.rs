//! The agent's local HTTP server (default `127.0.0.1:9180`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | liveness: `200` while no component is stalled or has exited, else `503`; JSON with every component's state and how the previous run ended |
//! | `GET /ready` | readiness: `200` while every MQTT listener serves clients and the buffer answers, else `503` (starting, stopping, a listener at its connection limit or failing) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/v1/status` | JSON: buffer backlog, drops, uplink state, broker clients, health |
//!
//! It binds to loopback by default: it has no authentication, and it is for
//! the gateway's own tools (`ferry-agent status`, a local Prometheus, systemd
//! health checks).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::supervise::{Lifecycle, Liveness};

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

/// What `/health` and `/ready` report from.
#[derive(Debug, Clone)]
pub struct Health {
    pub liveness: Liveness,
    pub lifecycle: Option<Arc<Lifecycle>>,
    pub started: Instant,
}

impl Health {
    /// The `/health` document.
    pub fn document(&self) -> serde_json::Value {
        let report = self.liveness.report();
        let record = self.lifecycle.as_ref().map(|l| l.record());
        serde_json::json!({
            "status": if report.healthy { "ok" } else { "unhealthy" },
            "ready": report.ready,
            "uptime_s": self.started.elapsed().as_secs(),
            "components": report.components,
            "restarts": record.as_ref().map(|r| serde_json::json!({
                "starts": r.starts,
                "unclean_exits": r.unclean_exits,
                "panics": r.panics,
                "stalls": r.stalls,
            })),
            "last_exit": record.and_then(|r| r.last_exit),
        })
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    status: StatusFn,
    health: Health,
}

/// Binds the listener (so a bad address fails at start, not later) and
/// returns the bound address and the server future.
pub async fn bind(
    config: &HttpConfig,
    metrics: PrometheusHandle,
    status: StatusFn,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<(
    SocketAddr,
    impl Future<Output = std::io::Result<()>> + Send + 'static,
)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(render_health))
        .route("/ready", get(render_ready))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/status", get(render_status));
    #[cfg(all(feature = "fault-injection", debug_assertions))]
    let app = app.route(
        "/debug/fault/{component}/{kind}",
        axum::routing::post(inject_fault),
    );
    let app = app.with_state(AppState {
        metrics,
        status,
        health,
    });
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

async fn render_health(State(state): State<AppState>) -> Response {
    let doc = state.health.document();
    let code = if doc["status"] == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(doc)).into_response()
}

async fn render_ready(State(state): State<AppState>) -> Response {
    let report = state.health.liveness.report();
    let waiting: Vec<_> = report
        .components
        .iter()
        .filter(|c| {
            !c.ready
                || !matches!(
                    c.state,
                    crate::supervise::State::Ok | crate::supervise::State::Idle
                )
        })
        .map(|c| serde_json::json!({ "name": c.name, "state": c.state, "note": c.note }))
        .collect();
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let doc = serde_json::json!({
        "ready": report.ready,
        "stopping": state.health.liveness.is_stopping(),
        "not_ready": waiting,
    });
    (code, axum::Json(doc)).into_response()
}

/// Test builds only: arm a panic or a stall in a component.
#[cfg(all(feature = "fault-injection", debug_assertions))]
async fn inject_fault(
    axum::extract::Path((component, kind)): axum::extract::Path<(String, String)>,
) -> Response {
    use crate::supervise::fault::{FaultKind, arm};
    let kind = match kind.as_str() {
        "panic" => FaultKind::Panic,
        "stall" => FaultKind::Stall,
        _ => return (StatusCode::BAD_REQUEST, "kind: panic | stall\n").into_response(),
    };
    arm(&component, kind);
    (StatusCode::OK, "armed\n").into_response()
}

async fn render_status(State(state): State<AppState>) -> Response {
    let doc = (state.status)().await;
    axum::Json(doc).into_response()
}
