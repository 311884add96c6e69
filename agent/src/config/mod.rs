//! The agent's configuration: one TOML file describes the topology.
//!
//! Every section uses `deny_unknown_fields`, so a typo is an error, not a
//! silently ignored key. [`load`] reports *every* problem at once with its key
//! path (`routes[2].measurement: ...`) before anything starts;
//! `ferry-agent check-config` prints exactly what `run` would reject.
//! `ferry-agent generate-config` prints [`TEMPLATE`], a fully commented file
//! with every default.

use std::path::{Path, PathBuf};

use ferry_protocols::AgentId;
use serde::{Deserialize, Serialize};

use crate::broker::MqttConfig;
use crate::http::HttpConfig;
use crate::route::RouteConfig;
use crate::serial::config::{ModbusTcpConfig, SerialConfig};
use crate::store::{SegmentConfig, StoreConfig};
use crate::supervise::SupervisorConfig;
use crate::uplink::UplinkConfig;

mod template;

pub use template::TEMPLATE;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub serial: SerialConfig,
    #[serde(default)]
    pub modbus_tcp: Vec<ModbusTcpConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub segment: SegmentConfig,
    #[serde(default)]
    pub uplink: UplinkConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub supervisor: SupervisorConfig,
}

/// `[agent]`: who this gateway is and where it keeps its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The gateway's identity at the hub (and the Delta transaction id of
    /// its segments). Must be unique in the fleet and stable.
    #[serde(default = "default_id")]
    pub id: AgentId,
    /// State directory: the buffer lives here unless `store.path` is set.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_id() -> AgentId {
    AgentId::new("ferry-agent").expect("a valid agent id")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("ferry-data/agent")
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            id: default_id(),
            data_dir: default_data_dir(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `ferry_agent=debug,info`, ...
    /// `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info,rumqttd=off".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            format: LogFormat::default(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Why a config file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n  {}", errors.len(), errors.join("\n  "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

impl AgentConfig {
    /// Every problem, each with its key path.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        self.mqtt.validate(&mut errors);
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(i, &mut errors);
        }
        self.serial.validate(&mut errors);
        for (i, device) in self.modbus_tcp.iter().enumerate() {
            device.validate(&format!("modbus_tcp[{i}]"), &mut errors);
        }
        let mut names = std::collections::BTreeSet::new();
        for name in self
            .serial
            .ports
            .iter()
            .map(|p| &p.name)
            .chain(self.modbus_tcp.iter().map(|d| &d.name))
        {
            if !names.insert(name) {
                errors.push(format!(
                    "modbus_tcp: name {name:?} is also used by another source"
                ));
            }
        }
        self.store.validate("store", &mut errors);
        self.segment.validate("segment", &mut errors);
        self.segment
            .validate_with_store(&self.store, "segment", &mut errors);
        self.uplink.validate(&mut errors);
        self.supervisor.validate(&mut errors);
        if self.http.listen == self.mqtt.listen {
            errors.push("http.listen: same address as mqtt.listen".into());
        }
        errors
    }

    /// The buffer's path: `store.path`, else `<agent.data_dir>/buffer.db`.
    pub fn buffer_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.agent.data_dir.join("buffer.db"))
    }
}

/// Parses and validates a config text.
pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
    let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let errors = config.validate();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors,
        })
    }
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests;
