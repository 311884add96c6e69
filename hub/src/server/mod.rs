//! The HTTP server and the hub's lifecycle.
//!
//! [`Hub::start`] opens the metadata store (creating the bootstrap admin
//! token on a first start), opens the tables, binds `server.listen` and
//! serves the [`router`]. [`RunningHub::shutdown`] stops it in order:
//!
//! 1. `/ready` turns 503 and the listener stops accepting;
//! 2. in-flight requests finish (at most `server.shutdown_timeout`; each
//!    write answers only after its commit, so none is lost);
//! 3. continuous queries stop between chunks, then the maintenance tasks
//!    (compaction, retention) between tables;
//! 4. the tables flush what is queued, then their batchers stop;
//! 5. the metadata store checkpoints and closes.
//!
//! Every task the server spawns is tracked and awaited.
//! [`serve`] is `ferry-hub serve`: start, wait for SIGTERM or SIGINT, stop.

mod error;
mod extract;
mod health;
pub mod logging;
mod replica;
mod router;
mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{ApiError, ApiResult, integer_id, not_found};
pub use extract::{Body, JsonBody, Remote, json_or_default};
pub use router::router;
pub use state::AppState;

use crate::config::HubConfig;
use crate::meta::{Meta, MetaError};
use crate::table::{TableError, Tables};

/// Why the hub could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("metadata store {path}: {source}")]
    Meta {
        path: String,
        #[source]
        source: MetaError,
    },
    #[error("tables: {0}")]
    Tables(#[from] TableError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),
    #[error("{0}")]
    Query(#[from] crate::query::executor::ExecutorError),
    #[error("import.spool_dir {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server.tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("flight sql: {0}")]
    Flight(String),
    #[error("encryption: {0}")]
    Keys(#[from] crate::encryption::KeyError),
}

/// Starts hubs.
#[derive(Debug)]
pub struct Hub;

/// The client address of a connection, plain or TLS (`ConnectInfo<PeerAddr>`
/// in a request's extensions).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A started hub.
#[derive(Debug)]
pub struct RunningHub {
    addr: SocketAddr,
    bootstrap_token: Option<String>,
    state: AppState,
    http_shutdown: CancellationToken,
    tables_shutdown: CancellationToken,
    maintenance_shutdown: CancellationToken,
    maintenance_tracker: TaskTracker,
    tracker: TaskTracker,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    flight: Option<crate::flight::FlightServer>,
}

impl Hub {
    /// Opens everything and starts serving. Does not print the bootstrap
    /// token: see [`RunningHub::bootstrap_token`].
    pub async fn start(config: HubConfig) -> Result<RunningHub, ServerError> {
        let config = Arc::new(config);
        let meta_err = |source| ServerError::Meta {
            path: config.metadata.path.display().to_string(),
            source,
        };
        let meta = Meta::open(&config.metadata.path).await.map_err(meta_err)?;
        let tables_shutdown = CancellationToken::new();
        let encryption = crate::encryption::Encryption::open(&config.encryption)?;
        let tables = Tables::open_with(
            &config.storage,
            &config.tables,
            encryption,
            tables_shutdown.clone(),
        )
        .await?;
        let reader = config.replica.is_reader();
        if reader {
            tables.follow_writers(config.replica.max_staleness);
            tracing::info!(max_staleness = ?config.replica.max_staleness, "read replica: serving queries, refusing writes, no maintenance");
        }
        if config
            .metadata
            .shared
            .unwrap_or(reader || tables.multi_writer())
        {
            let (store, root) = tables.raw_root()?;
            let place = crate::meta::shared::LogPlace {
                store,
                root,
                hub: format!("{} pid {}", config.server.listen, std::process::id()),
                read_only: reader,
                snapshot_every: crate::meta::shared::SNAPSHOT_EVERY,
            };
            crate::meta::shared::attach(&meta, place)
                .await
                .map_err(meta_err)?;
        }
        let bootstrap_token = if !config.auth.enabled {
            tracing::warn!("auth.enabled = false: every request acts as an admin");
            None
        } else if reader {
            None
        } else {
            crate::auth::bootstrap::ensure_admin_token(&meta)
                .await
                .map_err(meta_err)?
        };

        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.server.listen,
            source,
        })?;

        let spill = config.query.spill_dir_for(&config.metadata.path);
        let query =
            crate::query::QueryExecutor::new(&config.query, &spill).map_err(ServerError::Query)?;
        let state = AppState::new(Arc::clone(&config), tables, meta, Arc::new(query));
        crate::lastcache::routes::load(&state).await;
        let app = router(state.clone()).into_make_service_with_connect_info::<PeerAddr>();
        let http_shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let flight = crate::flight::start(&state, &tracker, http_shutdown.clone()).await?;
        let stop = http_shutdown.clone();
        let server = match &config.server.tls {
            None => tracker.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }),
            Some(tls) => {
                let listener = tls::listen(
                    listener,
                    tls,
                    &[b"http/1.1"],
                    &tracker,
                    http_shutdown.clone(),
                )?;
                tracker.spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                })
            }
        };
        let maintenance_shutdown = CancellationToken::new();
        let maintenance_tracker = TaskTracker::new();
        if !reader {
            if state.tables.multi_writer() {
                let (store, root) = state.tables.raw_root()?;
                state.tables.lease().contend(
                    crate::maintenance::lease::LeasePlace {
                        store,
                        root,
                        hub: format!("{addr} pid {}", std::process::id()),
                        ttl: config.replica.lease_ttl,
                    },
                    &maintenance_tracker,
                    maintenance_shutdown.clone(),
                );
            }
            state
                .maintenance
                .spawn(&maintenance_tracker, maintenance_shutdown.clone());
        }
        if let Some(handle) = state.metrics.clone() {
            maintenance_tracker.spawn(crate::metrics::upkeep(handle, maintenance_shutdown.clone()));
        }
        state
            .audit
            .spawn(&maintenance_tracker, maintenance_shutdown.clone());
        state.quotas.load().await.map_err(meta_err)?;
        if state.meta.shared().is_some() {
            let (store, root) = state.tables.raw_root()?;
            let id = crate::fleet::shared::hub_id(&state.meta)
                .await
                .map_err(meta_err)?;
            let share = Arc::new(crate::fleet::shared::FleetShare::new(
                store,
                &root,
                id,
                config.replica.fleet_interval,
            ));
            if !reader {
                share.publish(
                    state.meta.clone(),
                    &maintenance_tracker,
                    maintenance_shutdown.clone(),
                );
            }
            let _ = state.fleet_share.set(share);
            let follower = state.clone();
            maintenance_tracker.spawn(crate::meta::shared::follow(
                state.meta.clone(),
                (config.replica.max_staleness / 2).max(std::time::Duration::from_millis(50)),
                maintenance_shutdown.clone(),
                move |changed| {
                    let state = follower.clone();
                    async move {
                        if changed.contains("quotas")
                            && let Err(e) = state.quotas.load().await
                        {
                            tracing::warn!(error = %e, "cannot reload the quotas");
                        }
                        if changed.contains("last_caches") {
                            crate::lastcache::routes::sync(&state).await;
                        }
                    }
                },
            ));
        }
        state
            .quotas
            .spawn(&maintenance_tracker, maintenance_shutdown.clone());
        state.instance.spawn(
            state.clone(),
            &maintenance_tracker,
            maintenance_shutdown.clone(),
        );
        if !reader {
            crate::alerts::spawn(
                state.clone(),
                &maintenance_tracker,
                maintenance_shutdown.clone(),
            );
            state.cqs.start().await;
            state
                .imports
                .start()
                .await
                .map_err(|source| ServerError::Spool {
                    path: config
                        .import
                        .spool_dir_for(&config.metadata.path)
                        .display()
                        .to_string(),
                    source,
                })?;
        }
        state.ready.store(true, Ordering::SeqCst);
        tracing::info!(%addr, tls = config.server.tls.is_some(), version = env!("CARGO_PKG_VERSION"), "ferry-hub listening");
        crate::ingest::segments::warn_if_failpoint();
        Ok(RunningHub {
            addr,
            bootstrap_token,
            state,
            http_shutdown,
            tables_shutdown,
            maintenance_shutdown,
            maintenance_tracker,
            tracker,
            server,
            flight,
        })
    }
}

impl RunningHub {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Flight SQL listener's address, when `flight.enabled`.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight.as_ref().map(|f| f.addr)
    }

    /// The admin token created by this start, if the store had none.
    pub fn bootstrap_token(&self) -> Option<&str> {
        self.bootstrap_token.as_deref()
    }

    /// The shared state (tables, metadata, config).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the hub in order (see the module docs).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let RunningHub {
            state,
            http_shutdown,
            tables_shutdown,
            maintenance_shutdown,
            maintenance_tracker,
            tracker,
            mut server,
            flight,
            ..
        } = self;
        tracing::info!("shutting down: no new connections");
        state.ready.store(false, Ordering::SeqCst);
        // Continuous queries stop at their next chunk, so that an execute
        // request in flight answers `interrupted` instead of holding the
        // drain below.
        state.cqs.cancel();
        state.imports.cancel();
        http_shutdown.cancel();
        let grace = state.config.server.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + grace;
        let served = match tokio::time::timeout(grace, &mut server).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!(
                    timeout = %humantime::format_duration(grace),
                    "in-flight requests did not finish in time; closing them"
                );
                server.abort();
                Ok(())
            }
        };
        if let Some(mut flight) = flight {
            // Flight SQL calls in flight finish within what is left of the grace.
            if tokio::time::timeout_at(deadline, &mut flight.task)
                .await
                .is_err()
            {
                tracing::warn!("flight sql calls did not finish in time; closing them");
                flight.task.abort();
            }
        }
        tracing::info!("stopping continuous queries");
        state.cqs.stop().await;
        tracing::info!("stopping import jobs");
        state.imports.stop().await;
        state.query.shutdown();
        if let Some(enc) = state.tables.encryption() {
            tracing::info!("stopping re-encryption");
            enc.job.stop().await;
        }
        tracing::info!("stopping maintenance");
        maintenance_shutdown.cancel();
        maintenance_tracker.close();
        maintenance_tracker.wait().await;
        tracing::info!("flushing tables");
        state.tables.flush().await;
        tables_shutdown.cancel();
        state.tables.wait_stopped().await;
        tracker.close();
        tracker.wait().await;
        if let Err(e) = state.meta.close().await {
            tracing::warn!(error = %e, "closing the metadata store failed");
        }
        tracing::info!("stopped");
        served.map_err(ServerError::Serve)
    }
}

/// `ferry-hub serve`: starts, prints a new bootstrap token once on stdout,
/// waits for SIGTERM or SIGINT, and stops in order.
pub async fn serve(config: HubConfig) -> Result<(), ServerError> {
    let hub = Hub::start(config).await?;
    if let Some(token) = hub.bootstrap_token() {
        // stdout, not the log: shown once, never logged.
        println!(
            "ferry-hub: created an admin token. It is shown only this once; store it now:\n\n    {token}\n"
        );
    }
    shutdown_signal().await;
    hub.shutdown().await
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
