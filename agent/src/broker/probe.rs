//! The broker probing itself: connect to one of its own listeners like a
//! client would, `CONNECT` → `CONNACK` (accepted) → `PINGREQ` → `PINGRESP`
//! → `DISCONNECT`, over MQTT 3.1.1 or 5, in plain TCP or TLS.
//!
//! A probe goes the whole way a sensor's connection goes: the accept loop,
//! the gate, the login check and the embedded broker's server thread for
//! that protocol version. It proves what `/ready` promises: a client that
//! connects now is served. It logs in with a per-process secret when
//! `[mqtt.auth]` is set, and pins the listener's own certificate for TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use super::codec::{self, FrameReader, ReadError};

/// The user name the probe logs in with when `[mqtt.auth]` is set.
pub(crate) const PROBE_USER: &str = "$ferry-probe";

/// Where and how to probe.
#[derive(Clone)]
pub struct ProbeTarget {
    /// `mqtt`, `mqtt-v5`, `mqtts`, `mqtts-v5`: the component name under
    /// `broker.`.
    pub name: String,
    pub addr: SocketAddr,
    pub v5: bool,
    tls: Option<Arc<ClientConfig>>,
    login: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("v5", &self.v5)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("closed before {0}")]
    Closed(&'static str),
    #[error("CONNACK refused the probe with code {0:#04x}")]
    Refused(u8),
    #[error("expected {expected}, got packet type {got}")]
    Unexpected { expected: &'static str, got: u8 },
    #[error("i/o: {0}")]
    Io(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The address a probe connects to for a listener bound to `bound`.
fn dial_addr(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// The targets for a broker: each listener, MQTT 3.1.1 and 5.
pub(crate) fn targets(
    plain: SocketAddr,
    tls: Option<(SocketAddr, CertificateDer<'static>)>,
    login: Option<Arc<[u8; 32]>>,
) -> Vec<ProbeTarget> {
    let mut out = Vec::new();
    for v5 in [false, true] {
        out.push(ProbeTarget {
            name: if v5 { "mqtt-v5" } else { "mqtt" }.into(),
            addr: dial_addr(plain),
            v5,
            tls: None,
            login: login.clone(),
        });
    }
    if let Some((addr, cert)) = tls {
        let config = Arc::new(pinned::client_config(cert));
        for v5 in [false, true] {
            out.push(ProbeTarget {
                name: if v5 { "mqtts-v5" } else { "mqtts" }.into(),
                addr: dial_addr(addr),
                v5,
                tls: Some(config.clone()),
                login: login.clone(),
            });
        }
    }
    out
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    buf.put_u16(len);
    buf.put_slice(&s[..usize::from(len)]);
}

/// A CONNECT with a clean session, keep-alive 30 s, and the probe login.
fn connect_packet(target: &ProbeTarget) -> Bytes {
    let mut body = BytesMut::new();
    put_str(&mut body, b"MQTT");
    body.put_u8(if target.v5 { 5 } else { 4 });
    let mut flags = 0x02; // clean session / clean start
    if target.login.is_some() {
        flags |= 0xC0;
    }
    body.put_u8(flags);
    body.put_u16(30);
    if target.v5 {
        body.put_u8(0); // no properties
    }
    let tls = if target.tls.is_some() { "s" } else { "" };
    let client_id = format!(
        "ferry-probe-{}{tls}-v{}",
        std::process::id(),
        if target.v5 { 5 } else { 4 }
    );
    put_str(&mut body, client_id.as_bytes());
    if let Some(secret) = &target.login {
        put_str(&mut body, PROBE_USER.as_bytes());
        put_str(&mut body, hex(secret.as_ref()).as_bytes());
    }
    codec::encode_frame(0x10, &body)
}

/// The probe's password: the secret in hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one probe; resolves within `timeout`.
pub async fn probe(target: &ProbeTarget, timeout: Duration) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, probe_inner(target))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn probe_inner(target: &ProbeTarget) -> Result<(), ProbeError> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => exchange(tcp, target).await,
        Some(config) => {
            let name = ServerName::try_from("ferry-probe")
                .map_err(|e| ProbeError::Tls(std::io::Error::other(e.to_string())))?;
            let stream = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(ProbeError::Tls)?;
            exchange(stream, target).await
        }
    }
}

async fn next_type<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    expected: &'static str,
) -> Result<(u8, Bytes), ProbeError> {
    match reader.next().await {
        Ok(Some(f)) => Ok((f.packet_type(), f.body())),
        Ok(None) => Err(ProbeError::Closed(expected)),
        Err(ReadError::Io(e)) => Err(ProbeError::Io(e)),
        Err(e) => Err(ProbeError::Io(std::io::Error::other(e.to_string()))),
    }
}

async fn exchange<S>(stream: S, target: &ProbeTarget) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = FrameReader::new(r, 64 * 1024);
    w.write_all(&connect_packet(target))
        .await
        .map_err(ProbeError::Io)?;
    let (ptype, body) = next_type(&mut reader, "CONNACK").await?;
    if ptype != 2 {
        return Err(ProbeError::Unexpected {
            expected: "CONNACK",
            got: ptype,
        });
    }
    let code = body.get(1).copied().unwrap_or(0xFF);
    if code != 0 {
        return Err(ProbeError::Refused(code));
    }
    w.write_all(&[0xC0, 0x00]).await.map_err(ProbeError::Io)?;
    let (ptype, _) = next_type(&mut reader, "PINGRESP").await?;
    if ptype != 13 {
        return Err(ProbeError::Unexpected {
            expected: "PINGRESP",
            got: ptype,
        });
    }
    let _ = w.write_all(&[0xE0, 0x00]).await;
    let _ = w.shutdown().await;
    // Wait for the gate to close its side, so that the probe's connection is
    // gone before the next one (bounded by the caller's timeout).
    reader.discard_until_eof().await;
    Ok(())
}

/// A TLS client that trusts exactly the listener's own certificate.
mod pinned {
    use std::sync::Arc;

    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{
        CryptoProvider, verify_tls12_signature, verify_tls13_signature,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

    #[derive(Debug)]
    struct Pinned {
        cert: CertificateDer<'static>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            if end_entity.as_ref() == self.cert.as_ref() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Error::General("not the listener's own certificate".into()))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub(super) fn client_config(cert: CertificateDer<'static>) -> ClientConfig {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
            .with_no_client_auth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packets_parse_back() {
        let target = ProbeTarget {
            name: "mqtt-v5".into(),
            addr: dial_addr("0.0.0.0:1883".parse().expect("addr")),
            v5: true,
            tls: None,
            login: Some(Arc::new([7u8; 32])),
        };
        assert_eq!(target.addr, "127.0.0.1:1883".parse().expect("addr"));
        let bytes = connect_packet(&target);
        let frame = super::super::codec::test_frame(&bytes);
        let info = super::super::codec::parse_connect(&frame).expect("a valid CONNECT");
        assert_eq!(info.level, super::super::codec::ProtocolLevel::V5);
        assert_eq!(info.username.as_deref(), Some(PROBE_USER));
        assert_eq!(info.password.as_deref(), Some(hex(&[7u8; 32]).as_bytes()));
        assert!(info.client_id.starts_with("ferry-probe-"));
    }
}
