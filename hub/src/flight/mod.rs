//! Arrow Flight SQL on the hub: the standard query protocol of the Arrow
//! world (ADBC, JDBC, Grafana's Flight SQL data source, `influxdb3-python`)
//! on its own port, `flight.listen` (by default the HTTP port + 1).
//!
//! * **One query path.** Statements run through [`crate::query::execute`],
//!   as `POST /api/v1/query` runs them: the same read-only rules, admission
//!   (`query.max_concurrent`, `query.max_per_token`), `query.timeout`,
//!   memory pool, `query.max_rows` / `query.max_result_bytes`, the query
//!   history and usage. A result cut at a limit carries the response header
//!   `x-ferry-truncated: true`.
//! * **Same credentials.** Every call carries `authorization: Bearer
//!   <token>` (or `Basic`, the token as the password), checked as the HTTP
//!   API checks it ([`crate::auth::middleware::principal_for`]), with the
//!   token's grants limiting what it reads and lists. The Flight handshake
//!   with Basic credentials answers `authorization: Bearer <token>` for the
//!   calls after it.
//! * **Same TLS.** With `[server.tls]`, this port speaks TLS with the same
//!   certificate (reloaded the same way), offering ALPN `h2`.
//! * **Stateless handles.** A statement's ticket and a prepared statement's
//!   handle carry the statement itself ([`handle`]); nothing is kept
//!   between calls, so a client that prepares and never closes costs
//!   nothing, and each `DoGet` is authorised again.
//! * **Bounded.** `flight.max_connections` connections, each with at most
//!   `flight.max_streams_per_connection` calls open and requests of at most
//!   `flight.max_request_bytes`; dead peers are found by HTTP/2 pings.
//!
//! `DoGet` also takes InfluxDB 3's JSON ticket (`{"database", "sql_query",
//! "query_type": "sql"}`), which `influxdb3-python` sends ([`outer`]).

mod catalog;
mod config;
pub mod handle;
mod listener;
mod metadata;
mod outer;
mod service;
mod status;

pub use config::FlightConfig;

use std::net::SocketAddr;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::{AppState, ServerError, tls};

/// The header of a Flight answer cut at `query.max_rows` or
/// `query.max_result_bytes`.
pub const TRUNCATED: &str = "x-ferry-truncated";

/// A started Flight SQL listener.
#[derive(Debug)]
pub struct FlightServer {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `flight.listen` and serves Flight SQL until `shutdown` (then
/// drains the calls in flight). `None` when `flight.enabled` is off.
pub async fn start(
    state: &AppState,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<Option<FlightServer>, ServerError> {
    let config = &state.config.flight;
    if !config.enabled {
        return Ok(None);
    }
    let want = config.address(state.config.server.listen);
    let bind_err = |source| ServerError::Bind { addr: want, source };
    let tcp = TcpListener::bind(want).await.map_err(bind_err)?;
    let addr = tcp.local_addr().map_err(bind_err)?;
    let slots = listener::Slots::new(config.max_connections);
    let ferry = outer::Ferry::new(state.clone())
        .map_err(|e| ServerError::Flight(e.message().to_owned()))?;
    let service = FlightServiceServer::new(ferry).max_decoding_message_size(
        usize::try_from(config.max_request_bytes.as_u64()).unwrap_or(usize::MAX),
    );
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true);
    let router = {
        let mut builder = builder;
        builder.add_service(service)
    };
    let stop = shutdown.clone();
    let task = match &state.config.server.tls {
        None => {
            let incoming = listener::plain(tcp, slots);
            tracker.spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "flight sql server stopped");
                }
            })
        }
        Some(tls_config) => {
            let tls_listener = tls::listen(tcp, tls_config, &[b"h2"], tracker, shutdown)?;
            let incoming = listener::tls(tls_listener, slots);
            tracker.spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "flight sql server stopped");
                }
            })
        }
    };
    tracing::info!(%addr, tls = state.config.server.tls.is_some(), "flight sql listening");
    Ok(Some(FlightServer { addr, task }))
}
