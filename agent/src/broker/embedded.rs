//! The embedded rumqttd: configuration, its dedicated thread, and waiting
//! until its loopback listeners accept connections.
//!
//! rumqttd binds its own listeners and does not report the bound address, so
//! the gate picks two free loopback ports first (bind port 0, read the port,
//! release it) and hands them over. A port another process took in between
//! shows up as [`BrokerError::Embedded`]: the listener never answers, or
//! the one that answers is not this process's (`own_port`), and the agent
//! does not start rather than hand its password and messages to it.
//!
//! rumqttd's `start()` blocks forever and cannot be stopped: its thread lives
//! until the process exits. Only the gate connects to it: the listeners are
//! on loopback (ephemeral ports), and they take only the gate's login
//! ([`GATE_USER`] and a per-process random password, never written
//! anywhere), so a local process cannot go around the gate, its `mqtt.auth`
//! and its acknowledgement after commit by connecting to them directly.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::net::TcpStream;

use super::BrokerError;
use super::config::MqttConfig;

/// The user name the gate logs in to rumqttd with, for every client.
pub(crate) const GATE_USER: &str = "ferry-gate";

/// The loopback addresses of the embedded broker's listeners, and the
/// gate's password there.
#[derive(Clone)]
pub(crate) struct Embedded {
    pub(crate) v4: SocketAddr,
    pub(crate) v5: SocketAddr,
    pub(crate) password: Arc<str>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("v4", &self.v4)
            .field("v5", &self.v5)
            .finish_non_exhaustive()
    }
}

fn free_port() -> Result<SocketAddrV4, BrokerError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| BrokerError::Bind {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| BrokerError::Embedded(format!("no local address: {e}")))?
        .port();
    Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn rumqttd_config(config: &MqttConfig, v4: SocketAddr, v5: SocketAddr, password: &str) -> Config {
    let max_packet = usize::try_from(config.max_payload_size.as_u64()).unwrap_or(usize::MAX);
    let connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(config.connect_timeout.as_millis())
            .unwrap_or(u16::MAX),
        max_payload_size: max_packet,
        max_inflight_count: config.max_inflight,
        auth: Some(HashMap::from([(GATE_USER.to_owned(), password.to_owned())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    Config {
        id: 0,
        router: RouterConfig {
            // Twice the gate's limit: connections the gate has closed are
            // still counted until rumqttd notices, and a refusal by the
            // router leaves state behind (see `client_ids`).
            max_connections: config.max_connections.saturating_mul(2).saturating_add(64),
            max_outgoing_packet_count: config.max_outgoing_packet_count,
            max_segment_size: usize::try_from(config.max_segment_size.as_u64())
                .unwrap_or(usize::MAX),
            max_segment_count: config.max_segment_count,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server("rumqttd-v4", v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("rumqttd-v5", v5))])),
        ..Config::default()
    }
}

/// Starts rumqttd on its own thread and waits (up to 10 s) until both
/// listeners accept connections.
pub(crate) async fn start(config: &MqttConfig) -> Result<Embedded, BrokerError> {
    let (v4_listen, v5_listen) = (free_port()?, free_port()?);
    let (v4, v5) = (SocketAddr::V4(v4_listen), SocketAddr::V4(v5_listen));
    let password: Arc<str> = super::probe::hex(&rand::random::<[u8; 32]>()).into();
    let rconfig = rumqttd_config(config, v4, v5, &password);
    std::thread::Builder::new()
        .name("ferry-rumqttd".into())
        .spawn(move || {
            let mut broker = Broker::new(rconfig);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Embedded(format!("cannot spawn thread: {e}")))?;

    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in [v4, v5] {
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(BrokerError::Embedded(format!(
                    "embedded broker did not listen on {addr} within 10s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Something answers on both ports; it must be rumqttd, in this process.
    for addr in [v4_listen, v5_listen] {
        match super::own_port::listened_by_this_process(addr) {
            Ok(true) => {}
            Ok(false) => {
                return Err(BrokerError::Embedded(format!(
                    "another process took {addr}, the port chosen for the embedded broker, before it could listen; not connecting to it (start again: new ports are chosen)"
                )));
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot tell which process listens on the embedded broker's port");
            }
        }
    }
    tracing::debug!(%v4, %v5, "embedded broker listening");
    Ok(Embedded { v4, v5, password })
}
