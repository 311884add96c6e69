//! The public listeners: plain TCP and optional TLS (rustls with the ring
//! provider), the connection limit, and the accept loops.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::BrokerError;
use super::config::MqttTlsConfig;
use super::gate::{self, Shared};
use super::metrics as m;
use crate::ingest::IngestSink;

fn tls_error(path: &Path, message: impl std::fmt::Display) -> BrokerError {
    BrokerError::Tls {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Builds the TLS acceptor from the PEM files in `[mqtt.tls]`; also returns
/// the end-entity certificate (the self-probe pins it).
pub(crate) fn tls_acceptor(
    config: &MqttTlsConfig,
) -> Result<(TlsAcceptor, CertificateDer<'static>), BrokerError> {
    let file = File::open(&config.cert).map_err(|e| tls_error(&config.cert, e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(&config.cert, e))?;
    let Some(leaf) = certs.first().cloned() else {
        return Err(tls_error(&config.cert, "no certificate in PEM file"));
    };
    let file = File::open(&config.key).map_err(|e| tls_error(&config.key, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_error(&config.key, e))?
        .ok_or_else(|| tls_error(&config.key, "no private key in PEM file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&config.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&config.key, e))?;
    Ok((TlsAcceptor::from(Arc::new(server)), leaf))
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Accepts connections until shutdown; each one runs in its own tracked
/// task, holding one of the `limit` permits.
pub(crate) async fn accept_loop<S: IngestSink>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Shared<S>>,
    limit: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        crate::supervise::fault::point("broker").await;
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached, refusing");
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "limit").increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        let tracker = ctx.tracker.clone();
        tracker.spawn(crate::supervise::in_component("gate", async move {
            let _permit = permit;
            match tls {
                None => gate::serve(stream, peer, ctx).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(ctx.connect_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls_stream)) => gate::serve(tls_stream, peer, ctx).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                }
            }
        }));
    }
    tracing::debug!(addr = ?listener.local_addr().ok(), "listener stopped");
}
