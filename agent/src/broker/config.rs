//! The `[mqtt]` configuration: the public listeners, the limits handed to the
//! embedded rumqttd, optional TLS and password auth, and the
//! `[[mqtt.upstream]]` subscriptions.
//!
//! Every struct denies unknown keys. [`MqttConfig::validate`] reports every
//! problem at once, each prefixed with its key path
//! (`mqtt.upstream[1].port: must be 1..=65535`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// `[mqtt]`: the embedded broker and its acknowledgement gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain MQTT listener (`0.0.0.0:1883`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Most client connections at once (gate and rumqttd router).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest MQTT packet accepted, header included. Larger packets close
    /// the connection (MQTT 5 clients get DISCONNECT 0x95 first).
    #[serde(default = "default_max_payload_size")]
    pub max_payload_size: ByteSize,
    /// QoS 1/2 publishes per connection whose commit may be in flight at
    /// once; also rumqttd's outgoing inflight window.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Bytes of QoS 0/1/2 publishes (whole packets) whose commit may be in
    /// flight at once, across all connections. At the bound the gate stops
    /// reading from the connections that publish more until commits finish.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: ByteSize,
    /// rumqttd: most packets queued towards one subscriber.
    #[serde(default = "default_max_outgoing_packet_count")]
    pub max_outgoing_packet_count: u64,
    /// rumqttd: size of one segment of a topic's in-memory log. rumqttd keeps
    /// one log per distinct topic published (and per filter subscribed), each
    /// holding at most `max_segment_size × max_segment_count` (plus one
    /// packet), so the broker's memory is bounded by that times the number of
    /// distinct topics.
    #[serde(default = "default_max_segment_size")]
    pub max_segment_size: ByteSize,
    /// rumqttd: segments kept per topic log.
    #[serde(default = "default_max_segment_count")]
    pub max_segment_count: usize,
    /// Which broker serves the connections behind the gate: `ferry`
    /// (Ferry's own engine, in-process; decision 0023; the default) or
    /// `rumqttd` (the embedded rumqttd over loopback, the fallback for one
    /// release). The keys below up to `connect_timeout`
    /// bound the `ferry` engine; the `max_outgoing_*`/`max_segment_*` keys
    /// bound rumqttd.
    #[serde(default)]
    pub engine: BrokerEngine,
    /// Sessions held at once, connected or kept for a client that is away
    /// (MQTT 5 session expiry, MQTT 3.1.1 clean session 0). At the bound
    /// the kept session of a client that is away and that would end first
    /// makes room; a CONNECT is refused (MQTT 5: 0x97 quota exceeded; 3.1.1:
    /// 0x03) only when every session is connected.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Subscriptions one client may hold; more get SUBACK 0x97 (3.1.1: 0x80).
    #[serde(default = "default_max_subscriptions_per_client")]
    pub max_subscriptions_per_client: usize,
    /// Retained messages held, all topics together; a retained PUBLISH past
    /// it (or past `max_retained_bytes`) gets PUBACK 0x97 (MQTT 5) and is
    /// neither kept nor delivered.
    #[serde(default = "default_max_retained_messages")]
    pub max_retained_messages: usize,
    /// Bytes (topic and payload) of the retained messages held.
    #[serde(default = "default_max_retained_bytes")]
    pub max_retained_bytes: ByteSize,
    /// Deliveries queued for one session (not yet written: the client is
    /// away, slow, or its Receive Maximum is full). Past it, new ones for
    /// that session are dropped and counted.
    #[serde(default = "default_max_queued_messages")]
    pub max_queued_messages: usize,
    /// Bytes of the deliveries queued for one session.
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: ByteSize,
    /// Bytes of the deliveries queued for all sessions together: past it,
    /// new deliveries are dropped and counted, whichever session they are
    /// for. This is the bound on the queues' memory, however many sessions
    /// there are.
    #[serde(default = "default_max_queued_total_bytes")]
    pub max_queued_total_bytes: ByteSize,
    /// Time a new connection has to send CONNECT.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// On shutdown: how long open connections may take to finish pending
    /// commits and forward their acknowledgements.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Optional TLS listener.
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    /// Optional username/password check, done by the gate.
    #[serde(default)]
    pub auth: Option<MqttAuthConfig>,
    /// Subscriptions to other brokers.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
}

/// `mqtt.engine`: which broker serves connections behind the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerEngine {
    /// The embedded rumqttd behind a loopback hop (decision 0009); kept
    /// for one release as a fallback, then removed (decision 0023).
    Rumqttd,
    /// Ferry's own engine (decision 0023), the default.
    #[default]
    Ferry,
}

/// `[mqtt.tls]`: a TLS listener (rustls, ring provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// TLS listener (`0.0.0.0:8883`).
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[mqtt.auth]`: `users = { name = "password" }`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttAuthConfig {
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

impl fmt::Debug for MqttAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttAuthConfig")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[[mqtt.upstream]]`: a subscription to another broker.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name used in logs, metrics and `Source::Upstream`.
    pub name: String,
    pub host: String,
    #[serde(default = "default_upstream_port")]
    pub port: u16,
    /// TLS towards the upstream broker.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Client id; must be stable for a persistent session.
    pub client_id: String,
    /// Topic filters to subscribe to.
    pub topics: Vec<String>,
    /// Subscription QoS (0, 1 or 2); 2 subscribes at QoS 1 (see
    /// `upstream::subscribed_qos`).
    #[serde(default = "default_upstream_qos")]
    pub qos: u8,
    /// `false` keeps a persistent session: messages published while the
    /// agent is away are queued upstream and redelivered.
    #[serde(default)]
    pub clean_session: bool,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First reconnect delay; doubles up to `max_backoff`.
    #[serde(default = "default_min_backoff", with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Largest packet accepted from the upstream broker.
    #[serde(default = "default_max_payload_size")]
    pub max_packet_size: ByteSize,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field("topics", &self.topics)
            .field("qos", &self.qos)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

/// `[mqtt.upstream.tls]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA bundle; the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt`) when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where upstream TLS looks for roots when `ca_file` is not set.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1883))
}
fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8883))
}
fn default_max_connections() -> usize {
    1000
}
fn default_max_payload_size() -> ByteSize {
    ByteSize::kib(256)
}
fn default_max_inflight() -> usize {
    100
}
fn default_max_inflight_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_max_outgoing_packet_count() -> u64 {
    200
}
fn default_max_segment_size() -> ByteSize {
    ByteSize::kib(64)
}
fn default_max_segment_count() -> usize {
    2
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_max_subscriptions_per_client() -> usize {
    1_000
}
fn default_max_retained_messages() -> usize {
    10_000
}
fn default_max_retained_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_max_queued_messages() -> usize {
    1_000
}
fn default_max_queued_bytes() -> ByteSize {
    ByteSize::mib(4)
}
fn default_max_queued_total_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_upstream_port() -> u16 {
    1883
}
fn default_upstream_qos() -> u8 {
    1
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: default_listen(),
            max_connections: default_max_connections(),
            max_payload_size: default_max_payload_size(),
            max_inflight: default_max_inflight(),
            max_inflight_bytes: default_max_inflight_bytes(),
            max_outgoing_packet_count: default_max_outgoing_packet_count(),
            max_segment_size: default_max_segment_size(),
            max_segment_count: default_max_segment_count(),
            engine: BrokerEngine::default(),
            max_sessions: default_max_sessions(),
            max_subscriptions_per_client: default_max_subscriptions_per_client(),
            max_retained_messages: default_max_retained_messages(),
            max_retained_bytes: default_max_retained_bytes(),
            max_queued_messages: default_max_queued_messages(),
            max_queued_bytes: default_max_queued_bytes(),
            max_queued_total_bytes: default_max_queued_total_bytes(),
            connect_timeout: default_connect_timeout(),
            shutdown_grace: default_shutdown_grace(),
            tls: None,
            auth: None,
            upstream: Vec::new(),
        }
    }
}

impl UpstreamConfig {
    /// An upstream block with defaults for everything optional.
    pub fn new(name: &str, host: &str, client_id: &str, topics: Vec<String>) -> Self {
        UpstreamConfig {
            name: name.to_owned(),
            host: host.to_owned(),
            port: default_upstream_port(),
            tls: None,
            username: None,
            password: None,
            client_id: client_id.to_owned(),
            topics,
            qos: default_upstream_qos(),
            clean_session: false,
            keep_alive: default_keep_alive(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            max_packet_size: default_max_payload_size(),
        }
    }
}

/// The most packets MQTT allows: remaining length is at most 268,435,455.
const MQTT_MAX_PACKET: u64 = 268_435_460;

impl MqttConfig {
    /// Appends every problem to `errors`, each prefixed with its key path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.max_connections == 0 {
            errors.push("mqtt.max_connections: must be at least 1".into());
        }
        let size = self.max_payload_size.as_u64();
        if !(64..=MQTT_MAX_PACKET).contains(&size) {
            errors.push(format!(
                "mqtt.max_payload_size: must be 64 B..=256 MiB, got {}",
                self.max_payload_size
            ));
        }
        if !(1..=u16::MAX as usize).contains(&self.max_inflight) {
            errors.push("mqtt.max_inflight: must be 1..=65535".into());
        }
        if self.max_inflight_bytes < self.max_payload_size
            || self.max_inflight_bytes.as_u64() > u64::from(u32::MAX)
        {
            errors.push(format!(
                "mqtt.max_inflight_bytes: must be at least mqtt.max_payload_size ({}) and at most 4 GiB, got {}",
                self.max_payload_size, self.max_inflight_bytes
            ));
        }
        if self.max_outgoing_packet_count == 0 {
            errors.push("mqtt.max_outgoing_packet_count: must be at least 1".into());
        }
        if self.max_segment_size.as_u64() < 1024 {
            errors.push("mqtt.max_segment_size: must be at least 1 KiB".into());
        }
        if self.max_segment_count == 0 {
            errors.push("mqtt.max_segment_count: must be at least 1".into());
        }
        for (key, value) in [
            ("max_sessions", self.max_sessions),
            (
                "max_subscriptions_per_client",
                self.max_subscriptions_per_client,
            ),
            ("max_retained_messages", self.max_retained_messages),
            ("max_queued_messages", self.max_queued_messages),
        ] {
            if value == 0 {
                errors.push(format!("mqtt.{key}: must be at least 1"));
            }
        }
        for (key, value) in [
            ("max_retained_bytes", self.max_retained_bytes),
            ("max_queued_bytes", self.max_queued_bytes),
            ("max_queued_total_bytes", self.max_queued_total_bytes),
        ] {
            if value < self.max_payload_size {
                errors.push(format!(
                    "mqtt.{key}: must be at least mqtt.max_payload_size ({}), got {value}",
                    self.max_payload_size
                ));
            }
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > Duration::from_secs(65) {
            errors.push("mqtt.connect_timeout: must be between 1ms and 65s".into());
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !path.is_file() {
                    errors.push(format!(
                        "mqtt.tls.{key}: file not found: {}",
                        path.display()
                    ));
                }
            }
            if tls.listen == self.listen && tls.listen.port() != 0 {
                errors.push("mqtt.tls.listen: must differ from mqtt.listen".into());
            }
        }
        if let Some(auth) = &self.auth {
            if auth.users.is_empty() {
                errors.push("mqtt.auth.users: must name at least one user".into());
            }
            for name in auth.users.keys() {
                if name.is_empty() {
                    errors.push("mqtt.auth.users: user names must not be empty".into());
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, up) in self.upstream.iter().enumerate() {
            up.validate(&format!("mqtt.upstream[{i}]"), errors);
            if !names.insert(up.name.as_str()) {
                errors.push(format!(
                    "mqtt.upstream[{i}].name: duplicate name {:?}",
                    up.name
                ));
            }
        }
    }
}

impl UpstreamConfig {
    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if self.name.is_empty() {
            errors.push(format!("{path}.name: must not be empty"));
        }
        if self.host.is_empty() {
            errors.push(format!("{path}.host: must not be empty"));
        }
        if self.port == 0 {
            errors.push(format!("{path}.port: must be 1..=65535"));
        }
        if self.client_id.is_empty() {
            errors.push(format!(
                "{path}.client_id: must not be empty (a persistent session needs a stable id)"
            ));
        }
        if self.topics.is_empty() {
            errors.push(format!("{path}.topics: must list at least one filter"));
        }
        for (j, topic) in self.topics.iter().enumerate() {
            if !valid_filter(topic) {
                errors.push(format!(
                    "{path}.topics[{j}]: invalid MQTT topic filter {topic:?}"
                ));
            }
        }
        if self.qos > 2 {
            errors.push(format!("{path}.qos: must be 0, 1 or 2"));
        }
        if self.keep_alive < Duration::from_secs(1) {
            errors.push(format!("{path}.keep_alive: must be at least 1s"));
        }
        if self.min_backoff.is_zero() || self.min_backoff > self.max_backoff {
            errors.push(format!(
                "{path}.min_backoff: must be non-zero and at most max_backoff"
            ));
        }
        if !(64..=MQTT_MAX_PACKET).contains(&self.max_packet_size.as_u64()) {
            errors.push(format!("{path}.max_packet_size: must be 64 B..=256 MiB"));
        }
        if self.password.is_some() && self.username.is_none() {
            errors.push(format!("{path}.password: set without username"));
        }
        if let Some(tls) = &self.tls {
            let ca = tls
                .ca_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
            if !ca.is_file() {
                errors.push(format!(
                    "{path}.tls.ca_file: file not found: {}",
                    ca.display()
                ));
            }
        }
    }
}

/// An MQTT topic filter: non-empty, `#` only as the last level, `+` only as
/// a whole level, no NUL.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| {
        (!level.contains('#') || (*level == "#" && i == last))
            && (!level.contains('+') || *level == "+")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut errors = Vec::new();
        MqttConfig::default().validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn inflight_bytes_must_hold_the_largest_packet() {
        let config = MqttConfig {
            max_payload_size: ByteSize::mib(1),
            max_inflight_bytes: ByteSize::kib(512),
            ..MqttConfig::default()
        };
        let mut errors = Vec::new();
        config.validate(&mut errors);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("mqtt.max_inflight_bytes: must be at least")),
            "{errors:?}"
        );
    }

    #[test]
    fn parses_toml_and_reports_paths() {
        let toml = r#"
            listen = "127.0.0.1:1883"
            max_payload_size = "64 KiB"
            shutdown_grace = "2s"
            [tls]
            cert = "/nonexistent/cert.pem"
            key = "/nonexistent/key.pem"
            [auth]
            users = { alice = "secret" }
            [[upstream]]
            name = "a"
            host = "broker"
            client_id = "c"
            topics = ["x/#"]
            [[upstream]]
            name = "b"
            host = "broker"
            port = 0
            client_id = "c"
            topics = ["x/#/y"]
            qos = 3
        "#;
        let config: MqttConfig = toml::from_str(toml).expect("valid toml");
        assert_eq!(config.max_payload_size, ByteSize::kib(64));
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
        assert!(!config.upstream[0].clean_session);
        let mut errors = Vec::new();
        config.validate(&mut errors);
        let joined = errors.join("\n");
        assert!(joined.contains("mqtt.tls.cert: file not found"), "{joined}");
        assert!(joined.contains("mqtt.tls.key: file not found"), "{joined}");
        assert!(joined.contains("mqtt.upstream[1].port: must be 1..=65535"));
        assert!(joined.contains("mqtt.upstream[1].topics[0]"));
        assert!(joined.contains("mqtt.upstream[1].qos"));
        assert!(!joined.contains("mqtt.upstream[0]"), "{joined}");
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(toml::from_str::<MqttConfig>("lisen = \"0.0.0.0:1\"").is_err());
    }

    #[test]
    fn filters() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "/"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "a\0"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }
}
