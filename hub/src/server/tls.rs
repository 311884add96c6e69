//! HTTPS on the hub: a rustls listener (ring provider, TLS 1.2 and 1.3)
//! whose certificate can be replaced without a restart.
//!
//! * `[server.tls]` names a PEM certificate chain and key. When it is set,
//!   `server.listen` speaks only HTTPS.
//! * The certificate is reloaded on SIGHUP, and when either file changes
//!   (checked every `server.tls.reload_interval`). A new pair that does not
//!   load is logged at ERROR and the old one stays in use; connections
//!   already open keep theirs.
//! * Handshakes run in their own tasks (at most [`MAX_HANDSHAKES`] at once,
//!   each at most [`HANDSHAKE_TIMEOUT`]): a client that stalls its
//!   handshake holds up no one else.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handshakes in progress at once; more connections wait in the kernel.
pub const MAX_HANDSHAKES: usize = 256;
/// A handshake that takes longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the two files are checked for changes.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and its key.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file = File::open(cert).map_err(|e| err(cert, e))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e))?;
    if chain.is_empty() {
        return Err(err(cert, "no certificate in the PEM file"));
    }
    let file = File::open(key).map_err(|e| err(key, e))?;
    let der = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| err(key, e))?
        .ok_or_else(|| err(key, "no private key in the PEM file"))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| err(key, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| err(key, format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The current certificate, swapped on reload.
#[derive(Debug)]
struct Reloading {
    config: ServerTlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Reloading {
    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        (modified(&self.config.cert), modified(&self.config.key))
    }

    /// Loads the files again; keeps the old pair if they do not load.
    fn reload(&self, why: &str) {
        match load(&self.config.cert, &self.config.key) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = self.stamps();
                metrics::counter!(crate::metrics::TLS_RELOADS, "result" => "ok").increment(1);
                tracing::info!(cert = %self.config.cert.display(), why, "tls certificate reloaded");
            }
            Err(e) => {
                metrics::counter!(crate::metrics::TLS_RELOADS, "result" => "failed").increment(1);
                tracing::error!(error = %e, why, "tls certificate reload failed; the previous one stays in use");
            }
        }
    }

    fn changed(&self) -> bool {
        *self.stamps.read().unwrap_or_else(|e| e.into_inner()) != self.stamps()
    }
}

/// A TLS listener for `axum::serve`: accepted connections whose handshake
/// has completed.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// The next connection whose handshake completed; `None` once the
    /// acceptor stopped (shutdown).
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.rx.recv().await
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The acceptor stopped (shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Loads the certificate (failing the start if it does not load), and
/// starts the accept loop and the reload watcher on `tracker` until
/// `shutdown`. `alpn`: the protocols offered (`http/1.1` for the HTTP API,
/// `h2` for Flight SQL's gRPC).
pub fn listen(
    tcp: TcpListener,
    config: &ServerTlsConfig,
    alpn: &[&[u8]],
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<TlsListener, TlsError> {
    let local = tcp.local_addr().map_err(|e| err(&config.cert, e))?;
    let first = load(&config.cert, &config.key)?;
    let resolver = Arc::new(Reloading {
        config: config.clone(),
        current: RwLock::new(Arc::new(first)),
        stamps: RwLock::new((modified(&config.cert), modified(&config.key))),
    });
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&config.cert, e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let mut server = server;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let (tx, rx) = mpsc::channel(64);
    tracker.spawn(accept_loop(
        tcp,
        acceptor,
        tx,
        tracker.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(watch(resolver, shutdown));
    Ok(TlsListener { rx, local })
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tcp.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                }
                Err(_) => {
                    metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
                    tracing::debug!(%peer, "tls handshake timed out");
                }
            }
        });
    }
}

/// Reloads on SIGHUP and when the files change.
async fn watch(resolver: Arc<Reloading>, shutdown: CancellationToken) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(resolver.config.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = hangup => resolver.reload("SIGHUP"),
            _ = tick.tick() => {
                if resolver.changed() {
                    resolver.reload("the files changed");
                }
            }
        }
    }
}
