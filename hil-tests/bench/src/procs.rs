//! The processes a scenario runs against: `ferry-hub`, `ferry-agent` and
//! Mosquitto, each on a free loopback port with its state in a temporary
//! directory; and what the bench reads about them (RSS, CPU time, bytes on
//! disk). The binaries come from the same target directory as this bench
//! (`target/release` or `target/debug`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_hil_tests::{
    Answer, Peer, free_port, request, spawn_hub, wait_for_port, wait_until, workspace_bin,
};

/// How long a bench request may wait for its answer (bulk writes, queries
/// over the whole data set, a compaction run).
pub const TIMEOUT: Duration = Duration::from_secs(900);

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn fresh_addr() -> SocketAddr {
    local(free_port())
}

// ------------------------------------------------------------------ hub

/// A running `ferry-hub serve` and its admin token (auth on).
#[derive(Debug)]
pub struct Hub {
    pub peer: Peer,
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub dir: PathBuf,
}

/// How the bench configures the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub commit_interval: String,
    /// Background compaction (the bench runs it on demand instead).
    pub compaction: bool,
    /// `query.timeout`.
    pub query_timeout: String,
    /// `[encryption]` on, with a key file in the hub's directory.
    pub encryption: bool,
    /// `flight.listen`'s port (0: any free one).
    pub flight_port: u16,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            commit_interval: "0s".to_owned(),
            compaction: false,
            query_timeout: "600s".to_owned(),
            encryption: false,
            flight_port: 0,
        }
    }
}

/// Starts the hub on `addr` with fs tables under `dir/tables` and auth on,
/// and waits until it listens. Reads the bootstrap admin token from its log
/// on the first start in `dir` (a restart keeps `token = None`).
pub fn start_hub(dir: &Path, addr: SocketAddr, o: &HubOptions) -> Hub {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\nmax_body = \"256MiB\"\n[flight]\nlisten = \"127.0.0.1:{}\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"{}\"\n[compaction]\nenabled = {}\n[metadata]\npath = \"{}\"\n\
             [query]\ntimeout = \"{}\"\n[auth]\nenabled = true\n[log]\nlevel = \"warn\"\n{}",
            o.flight_port,
            dir.join("tables").display(),
            o.commit_interval,
            o.compaction,
            dir.join("hub.db").display(),
            o.query_timeout,
            // Only when on: a hub built before `[encryption]` existed (a
            // baseline binary) refuses the section.
            if o.encryption {
                format!(
                    "[encryption]\nenabled = true\nkey_file = \"{}\"\n",
                    dir.join("hub.keys").display()
                )
            } else {
                String::new()
            },
        ),
    )
    .expect("write hub.toml");
    let log = dir.join(format!("hub-{}.log", addr.port()));
    let first_start = std::fs::read_to_string(&log).unwrap_or_default().is_empty();
    let (peer, token) = spawn_hub(&config, addr, &log, first_start);
    Hub {
        peer,
        addr,
        token,
        dir: dir.to_owned(),
    }
}

impl Hub {
    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// A request with the admin token.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let auth = self.auth();
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        request(method, self.addr, path, &h, body, TIMEOUT)
    }

    /// A sample of the hub's `/metrics` by its full key (name and labels,
    /// as printed); NaN when absent.
    pub fn metric(&self, key: &str) -> f64 {
        self.call("GET", "/metrics", &[], b"")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    }

    /// `POST /api/v1/query` answered as JSON; `Err` with the answer unless 200.
    pub fn query(&self, sql: &str) -> Result<serde_json::Value, String> {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let a = self.call(
            "POST",
            "/api/v1/query",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            body.as_bytes(),
        );
        if a.status == 200 {
            Ok(a.json())
        } else {
            Err(format!("{} {}", a.status, a.text()))
        }
    }

    /// `SELECT count(*)` of a table; 0 when it does not exist yet.
    pub fn count(&self, table: &str) -> u64 {
        self.query(&format!("SELECT count(*) FROM {table}"))
            .ok()
            .and_then(|v| v["data"][0][0].as_u64())
            .unwrap_or(0)
    }

    /// Posts one segment as agent `agent`; panics unless 200 `committed`.
    pub fn post_segment(&self, agent: &str, seq: u64, bytes: &[u8]) {
        let seq_s = seq.to_string();
        let a = self.call(
            "POST",
            ferry_protocols::api::SEGMENTS_PATH,
            &[
                ("Content-Type", ferry_protocols::api::SEGMENT_CONTENT_TYPE),
                (ferry_protocols::api::headers::AGENT_ID, agent),
                (ferry_protocols::api::headers::SEGMENT_SEQ, seq_s.as_str()),
            ],
            bytes,
        );
        assert!(
            a.status == 200 && a.text().contains("\"committed\""),
            "segment {agent}/{seq}: {} {}",
            a.status,
            a.text()
        );
    }

    /// Posts one line-protocol body into `database`; panics unless 204.
    pub fn post_lp(&self, database: &str, body: &[u8]) {
        let a = self.call(
            "POST",
            "/api/v1/write/line-protocol",
            &[("x-ferry-database", database)],
            body,
        );
        assert_eq!(a.status, 204, "line protocol write: {}", a.text());
    }

    /// A new token with role `write`.
    pub fn write_token(&self, name: &str) -> String {
        self.new_token(name, "write")
    }

    /// A new token with `role`.
    pub fn new_token(&self, name: &str, role: &str) -> String {
        let body = serde_json::json!({"name": name, "role": role}).to_string();
        let a = self.call(
            "POST",
            "/api/v1/auth/tokens",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(a.status, 201, "create token: {}", a.text());
        a.json()["token"]
            .as_str()
            .expect("a token in the answer")
            .to_owned()
    }

    /// `POST /api/v1/compaction/run`: compacts every table now; the answer.
    pub fn compact(&self) -> serde_json::Value {
        let a = self.call("POST", "/api/v1/compaction/run", &[], b"");
        assert_eq!(a.status, 200, "compaction run: {}", a.text());
        a.json()
    }

    /// SIGTERM, then wait until it exits (a graceful stop flushes its tables).
    pub fn stop(&mut self) {
        terminate(&mut self.peer);
    }
}

/// SIGTERM to a process this bench started, then wait until it exits.
pub fn terminate(peer: &mut Peer) {
    let _ = Command::new("kill")
        .args(["-TERM", &peer.id().to_string()])
        .status();
    wait_until("a process to stop", Duration::from_secs(120), || {
        !peer.is_running()
    });
}

// ------------------------------------------------------------------ agent

/// A running `ferry-agent` and its ports.
#[derive(Debug)]
pub struct Agent {
    pub peer: Peer,
    pub mqtt: u16,
    pub http: SocketAddr,
}

/// Starts `ferry-agent run` with data in `dir/agent`, its MQTT listener and
/// status server on free ports, the uplink to `hub_url`, and `extra` TOML
/// appended (routes, store, segment, uplink keys). Waits for the broker.
pub fn start_agent(
    dir: &Path,
    hub_url: &str,
    token: Option<&str>,
    uplink_extra: &str,
    extra: &str,
) -> Agent {
    start_agent_with(dir, hub_url, token, uplink_extra, extra, "")
}

/// [`start_agent`] with `mqtt_extra` added to its `[mqtt]` table (such as
/// `engine = "ferry"`).
pub fn start_agent_with(
    dir: &Path,
    hub_url: &str,
    token: Option<&str>,
    uplink_extra: &str,
    extra: &str,
    mqtt_extra: &str,
) -> Agent {
    let mqtt = free_port();
    let http = free_port();
    let config = dir.join("agent.toml");
    let token = token
        .map(|t| format!("token = \"{t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"bench-gw\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\nmax_payload_size = \"1 MiB\"\n{mqtt_extra}\n\
             [uplink]\nhub_url = \"{hub_url}\"\n{token}{uplink_extra}\n[http]\nlisten = \"127.0.0.1:{http}\"\n[log]\nlevel = \"warn,rumqttd=off\"\n{extra}",
            dir.join("agent").display()
        ),
    )
    .expect("write agent.toml");
    let peer = Peer::spawn(
        "ferry-agent",
        Command::new(workspace_bin("ferry-agent"))
            .args(["run", "--config"])
            .arg(&config),
        &dir.join("agent.log"),
    );
    wait_for_port(local(mqtt), Duration::from_secs(30));
    Agent {
        peer,
        mqtt,
        http: local(http),
    }
}

// ------------------------------------------------------------------ mosquitto

pub use ferry_hil_tests::start_mosquitto;

// ------------------------------------------------------------------ /proc

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// A process's threads.
pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads:")
}

/// The anonymous part of a process's resident set, KiB: its heap, stacks
/// and private mappings, the memory the kernel cannot take back without
/// swap. The rest of RSS is file-backed (code and read-only data paged in
/// from the binary and libraries: clean, shared with the page cache, and
/// dropped under memory pressure).
pub fn rss_anon_kib(pid: u32) -> u64 {
    proc_status(pid, "RssAnon:")
}

/// Peak resident set size of a process so far, KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmHWM:")
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes under `dir`, recursively.
pub fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `script` (the source of a peer script, `name` for errors) with the
/// venv's Python, `job` as JSON on stdin; the JSON it prints.
pub fn python_job(name: &str, script: &str, job: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the venv's python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write the job");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "{name} failed");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name} prints JSON: {e}"))
}

/// The project venv's Python (DuckDB, deltalake, pyarrow), as
/// `scripts/lib/peers.sh` creates it.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FERRY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run `source scripts/lib/common.sh; source scripts/lib/peers.sh; install_peers`",
        py.display()
    );
    py
}
