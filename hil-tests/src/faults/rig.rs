//! A hub and an agent as real processes, each restartable on the same
//! ports and data, with the agent's uplink going through a
//! [`FaultProxy`](super::FaultProxy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Peer, free_port, wait_for_port, workspace_bin};

/// Where the hub keeps its tables.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A local directory (the embedded default).
    Fs,
    /// An S3 bucket behind `endpoint` (moto, or a proxy in front of it).
    S3 {
        endpoint: SocketAddr,
        bucket: String,
    },
}

/// A `ferry-hub` on a fixed address; `start`/`kill` as often as needed.
#[derive(Debug)]
pub struct HubCtl {
    pub addr: SocketAddr,
    dir: PathBuf,
    storage: Storage,
    peer: Option<Peer>,
    starts: u32,
}

impl HubCtl {
    pub fn new(dir: &Path, storage: Storage) -> HubCtl {
        std::fs::create_dir_all(dir).expect("hub dir");
        HubCtl {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: dir.to_owned(),
            storage,
            peer: None,
            starts: 0,
        }
    }

    /// Starts the hub and waits until it listens.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the hub with extra environment (a test failpoint).
    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        let storage = match &self.storage {
            Storage::Fs => format!(
                "backend = \"fs\"\npath = \"{}\"",
                self.dir.join("tables").display()
            ),
            Storage::S3 { endpoint, bucket } => format!(
                "backend = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"lake\"\nendpoint = \"http://{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true\naddressing = \"path\"\nconditional_put = \"etag\"\nrequest_timeout = \"2s\""
            ),
        };
        let config = self.dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\n{storage}\n[tables]\ncommit_interval = \"100ms\"\n[metadata]\npath = \"{}\"\n[auth]\nenabled = false\n",
                self.addr,
                self.dir.join("hub.db").display()
            ),
        )
        .expect("write hub.toml");
        self.starts += 1;
        let log = self.dir.join(format!("hub-{}.log", self.starts));
        let mut cmd = Command::new(workspace_bin("ferry-hub"));
        cmd.args(["serve", "--config"])
            .arg(&config)
            .env_remove("FERRY_HUB_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let peer = Peer::spawn("ferry-hub", &mut cmd, &log);
        self.peer = Some(peer);
        wait_for_port(self.addr, Duration::from_secs(60));
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.peer.take() {
            p.kill();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.peer.as_mut().is_some_and(Peer::is_running)
    }

    /// Lines of all this hub's logs containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        log_lines(&self.dir, "hub-", needle)
    }
}

/// The agent's knobs a scenario turns.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    pub id: String,
    /// Where the uplink connects (usually a proxy).
    pub hub: SocketAddr,
    pub segment_max_age: &'static str,
    pub uplink_timeout: &'static str,
    pub backoff_max: &'static str,
    pub max_bytes: Option<&'static str>,
    pub when_full: &'static str,
    /// `store.commit_interval`.
    pub commit_interval: &'static str,
    /// `agent.data_dir`; default `<dir>/data`.
    pub data_dir: Option<PathBuf>,
    /// `store.integrity_check`: full | quick | off.
    pub integrity_check: &'static str,
}

impl AgentOpts {
    pub fn new(id: &str, hub: SocketAddr) -> AgentOpts {
        AgentOpts {
            id: id.to_owned(),
            hub,
            segment_max_age: "200ms",
            uplink_timeout: "5s",
            backoff_max: "1s",
            max_bytes: None,
            when_full: "drop_oldest",
            commit_interval: "5ms",
            data_dir: None,
            integrity_check: "quick",
        }
    }
}

/// A `ferry-agent` routing `faults/{device}` to `plant.<measurement>`.
#[derive(Debug)]
pub struct AgentCtl {
    pub mqtt: u16,
    pub http: SocketAddr,
    pub dir: PathBuf,
    config: PathBuf,
    peer: Option<Peer>,
    starts: u32,
}

impl AgentCtl {
    pub fn new(dir: &Path, measurement: &str, opts: &AgentOpts) -> AgentCtl {
        std::fs::create_dir_all(dir).expect("agent dir");
        let mqtt = free_port();
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let budget = opts
            .max_bytes
            .map(|b| format!("max_bytes = \"{b}\"\n"))
            .unwrap_or_default();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"[agent]
id = "{id}"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "faults/{{device}}"
database = "plant"
measurement = "{measurement}"
format = "json"
[store]
{budget}when_full = "{when_full}"
integrity_check = "{integrity}"
commit_interval = "{commit}"
[segment]
max_age = "{age}"
max_rows = 2000
[uplink]
hub_url = "http://{hub}"
timeout = "{timeout}"
backoff_initial = "50ms"
backoff_max = "{backoff}"
[http]
listen = "{http}"
"#,
                id = opts.id,
                data = opts
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| dir.join("data"))
                    .display(),
                integrity = opts.integrity_check,
                when_full = opts.when_full,
                commit = opts.commit_interval,
                age = opts.segment_max_age,
                hub = opts.hub,
                timeout = opts.uplink_timeout,
                backoff = opts.backoff_max,
            ),
        )
        .expect("write agent.toml");
        AgentCtl {
            mqtt,
            http,
            dir: dir.to_owned(),
            config,
            peer: None,
            starts: 0,
        }
    }

    /// Starts the agent (optionally with extra environment) and waits for
    /// its broker; returns its pid.
    pub fn start_with(&mut self, env: &[(&str, &str)]) -> u32 {
        self.starts += 1;
        let log = self.dir.join(format!("agent-{}.log", self.starts));
        let mut cmd = Command::new(workspace_bin("ferry-agent"));
        cmd.args(["run", "--config"]).arg(&self.config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut peer = Peer::spawn("ferry-agent", &mut cmd, &log);
        let pid = peer.id();
        // Both listeners up, or the agent's own words on why not (a port
        // taken by another test's process between free_port and bind).
        let mqtt = SocketAddr::from(([127, 0, 0, 1], self.mqtt));
        crate::wait_until(
            "the agent's MQTT and HTTP listeners",
            Duration::from_secs(60),
            || {
                if let Some(status) = peer.exited() {
                    panic!(
                        "ferry-agent exited at start ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::net::TcpStream::connect(mqtt).is_ok()
                    && std::net::TcpStream::connect(self.http).is_ok()
            },
        );
        self.peer = Some(peer);
        pid
    }

    pub fn start(&mut self) -> u32 {
        self.start_with(&[])
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.peer.take() {
            p.kill();
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut p) = self.peer.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + grace;
            while p.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.peer.as_ref().map(Peer::id)
    }

    /// `/api/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        crate::agent_status(self.http)
    }

    /// Lines of all this agent's logs containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        log_lines(&self.dir, "agent-", needle)
    }

    /// Waits until the agent's buffer is empty: nothing pending, no
    /// segment waiting (its uplink caught up).
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if buffer_empty(&self.status()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

/// True when an agent status document shows nothing buffered: no reading
/// waiting to be cut, no segment waiting for the hub.
pub fn buffer_empty(status: &serde_json::Value) -> bool {
    status["buffer"]["backlog_readings"].as_u64() == Some(0)
        && status["buffer"]["pending_segments"].as_u64() == Some(0)
}

fn log_lines(dir: &Path, prefix: &str, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(str::to_owned),
            );
        }
    }
    out
}
