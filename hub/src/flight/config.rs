//! `[flight]` of `hub.toml`: the Arrow Flight SQL listener.

use std::net::SocketAddr;

use bytesize::ByteSize;
use serde::Deserialize;

/// `[flight]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    /// Serve Flight SQL at all.
    pub enabled: bool,
    /// Address and port; unset, `server.listen`'s address with the next
    /// port (8001 beside the default 8000; port 0 stays 0).
    pub listen: Option<SocketAddr>,
    /// The largest gRPC message a client may send (a statement, a prepared
    /// statement's parameters); larger ones are refused with
    /// `OUT_OF_RANGE` ("decoded message length too large") before they
    /// are read.
    pub max_request_bytes: ByteSize,
    /// Calls one connection may have open at once (HTTP/2 streams); a
    /// client opening more is refused the extra streams.
    pub max_streams_per_connection: u32,
    /// Connections served at once; further ones wait until one closes (in
    /// the kernel's backlog; with TLS, after their handshake, which the
    /// listener bounds as for HTTPS).
    pub max_connections: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            enabled: true,
            listen: None,
            max_request_bytes: ByteSize::mib(4),
            max_streams_per_connection: 64,
            max_connections: 1024,
        }
    }
}

impl FlightConfig {
    /// Where Flight SQL listens, given the HTTP listener's address.
    pub fn address(&self, http: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = match http.port() {
                0 => 0,
                p => p.saturating_add(1),
            };
            SocketAddr::new(http.ip(), port)
        })
    }

    /// `http` is `server.listen`: the default Flight port is the next one.
    pub fn validate(&self, http: SocketAddr, errors: &mut Vec<String>) {
        if self.enabled && self.listen.is_none() && http.port() == u16::MAX {
            errors.push(
                "flight.listen: server.listen uses port 65535, so there is no next port for \
                 Flight SQL; set flight.listen"
                    .to_owned(),
            );
        }
        if self.max_request_bytes.as_u64() < 1024 {
            errors.push("flight.max_request_bytes: must be at least 1 KiB".to_owned());
        }
        if self.max_streams_per_connection == 0 {
            errors.push("flight.max_streams_per_connection: must be at least 1".to_owned());
        }
        if self.max_connections == 0 {
            errors.push("flight.max_connections: must be at least 1".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_port_by_default() {
        let c = FlightConfig::default();
        let http: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(c.address(http), "0.0.0.0:8001".parse().unwrap());
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(c.address(any), any);
        let set = FlightConfig {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..c
        };
        assert_eq!(set.address(http), "127.0.0.1:9999".parse().unwrap());
    }
}
