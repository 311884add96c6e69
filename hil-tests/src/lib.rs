//! End-to-end and hardware-in-the-loop test harness for Ferry.
//!
//! Tests here and in the agent and hub crates start real processes
//! (Mosquitto, an S3 server, Azurite, the Ferry binaries) and talk to them on
//! 127.0.0.1. This library holds what they share: finding the external
//! tools, free ports, child processes that die with the test, and waiting
//! for a port without sleeping blindly. [`faults`] is the fault-injection
//! harness and its scenarios (`docs/faults.md`); [`census`] counts what
//! reached the lake; [`shared_hubs`] runs several hubs over one lake; [`stores`]
//! starts moto and Azurite; [`serial`] and
//! [`lossy_fs`] provide virtual serial lines and a power-cut filesystem;
//! [`supervised`] plays systemd (restart on failure, the watchdog socket).
//!
//! External tools are installed by `scripts/test.sh`, which also sets
//! `FERRY_REQUIRE_PEERS=1`: then a missing tool fails the test with a clear
//! message. Without it (a plain `cargo test` on a developer machine) a test
//! whose peer is missing says so on stderr and returns early.

mod args;
pub mod census;
pub mod faults;
mod http;
pub mod lossy_fs;
pub mod serial;
pub mod shared_hubs;
pub mod stores;
pub mod supervised;

pub use args::Args;
pub use http::{Answer, request, try_request};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds an external tool on `PATH`, in the project's Python venv, or in
/// `/usr/sbin` (Debian puts `mosquitto` there).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(venv) = std::env::var_os("FERRY_VENV") {
        dirs.push(Path::new(&venv).join("bin"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dirs.push(root.join(".venv/bin"));
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.push(PathBuf::from("/usr/local/bin"));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The tool, or `None` after explaining on stderr; panics instead when
/// `FERRY_REQUIRE_PEERS=1` (as `scripts/test.sh` sets it).
pub fn require_tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if peers_required() => {
            panic!("{name} is not installed ({install_hint}); scripts/test.sh installs it")
        }
        None => {
            eprintln!("SKIPPED: {name} is not installed ({install_hint}); run scripts/test.sh");
            None
        }
    }
}

/// True when missing peers must fail tests.
pub fn peers_required() -> bool {
    std::env::var("FERRY_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a
/// child that binds it right away), never the same twice in one test
/// process, and outside the kernel's ephemeral range when there is room.
///
/// Inside that range the port is not safe until the child binds it: the
/// kernel hands ports of the range to every `:0` bind (a hub's
/// `flight.listen = "127.0.0.1:0"`) and to outgoing connections. A bench
/// run once lost a hub that way: another hub's Flight listener got the
/// port reserved for it, the hub could not bind, and a client's HTTP
/// request reached the Flight server, which reset the connection.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (from, to) = unassigned_ports();
    let random = std::collections::hash_map::RandomState::new();
    for i in 0u32..10_000 {
        let port = if from < to {
            let span = u64::from(to - from) + 1;
            from + u16::try_from(random.hash_one(i) % span).unwrap_or(0)
        } else {
            0
        };
        let Ok(l) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {from}..={to}");
}

/// Ports the kernel never hands out by itself: below its ephemeral range
/// (`net.ipv4.ip_local_port_range`) if there is room, else above it, else
/// none (`(0, 0)`: any port the kernel gives).
fn unassigned_ports() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let mut bounds = range
        .iter()
        .flat_map(|r| r.split_whitespace())
        .filter_map(|v| v.parse::<u16>().ok());
    let (low, high) = match (bounds.next(), bounds.next()) {
        (Some(low), Some(high)) => (low, high),
        _ => (32_768, 60_999),
    };
    if low > 11_000 {
        (10_000, low - 1)
    } else if high < 64_000 {
        (high + 1, u16::MAX)
    } else {
        (0, 0)
    }
}

/// Polls until `addr` accepts TCP connections, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {addr} after {timeout:?}");
}

/// Polls `cond` until it is true, or panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The last `lines` lines of the log at `path` (empty if unreadable), for
/// a failure message that says what the process was doing.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Peer {
    pub name: String,
    child: Child,
}

impl Peer {
    /// Starts `cmd` with stdout/stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Peer {
        let out = std::fs::File::create(log).expect("create peer log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            name: name.to_owned(),
            child,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls until `addr` accepts TCP connections. Panics with the end of
    /// `log` when the process exits first or `timeout` passes, so that a
    /// start that failed says why.
    pub fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration, log: &Path) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            let exited = self.exited();
            if exited.is_some() || Instant::now() >= deadline {
                let tail = log_tail(log, 40);
                let what = match exited {
                    Some(status) => format!("exited ({status}) before listening"),
                    None => format!("not listening after {timeout:?}"),
                };
                panic!(
                    "{} {what} on {addr}; the end of its log:\n{tail}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended (an exit code or a signal), once it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `ferry-agent run --config <config>` (output in `log`) and waits
/// until its broker accepts connections on `mqtt_port`.
pub fn spawn_agent(config: &Path, mqtt_port: u16, log: &Path) -> Peer {
    let mut peer = Peer::spawn(
        "ferry-agent",
        Command::new(workspace_bin("ferry-agent"))
            .args(["run", "--config"])
            .arg(config),
        log,
    );
    peer.wait_listening(
        SocketAddr::from(([127, 0, 0, 1], mqtt_port)),
        Duration::from_secs(30),
        log,
    );
    peer
}

/// One series of a process's Prometheus `/metrics` at `addr` (a metric
/// name with its labels exactly as exported, such as
/// `ferry_hub_segments_total{status="committed"}`), 0 when absent.
pub fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (_, text) = http("GET", addr, "/metrics", &[], b"");
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A minimal blocking HTTP/1.1 client for tests (no TLS): returns the status
/// code and the body as text.
pub fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let answer = request(method, addr, path, headers, body, Duration::from_secs(60));
    (answer.status, answer.text())
}

/// The directory holding the workspace's built binaries (`target/debug`),
/// found from the running executable (`target/debug/deps/…` for tests,
/// `target/debug/…` for bench binaries), or `$FERRY_BIN_DIR` (to run the
/// harness against release binaries).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("the executable's directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>").to_owned()
    } else {
        dir.to_owned()
    }
}

/// A workspace binary (`ferry-agent`, `ferry-hub`), which `cargo test
/// --workspace` builds before running tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A `ferry-hub` process on a free loopback port, with its tables and
/// metadata under `dir`.
#[derive(Debug)]
pub struct HubProcess {
    pub peer: Peer,
    pub addr: SocketAddr,
    /// The bootstrap admin token, when auth is on.
    pub admin: Option<String>,
}

/// Starts `ferry-hub serve` with fs tables in `dir` (50 ms commit interval)
/// and waits until it listens. With `auth`, also reads the bootstrap admin
/// token it prints once.
pub fn start_hub(dir: &Path, auth: bool) -> HubProcess {
    launch_hub(dir, SocketAddr::from(([127, 0, 0, 1], free_port())), auth)
}

/// Starts a hub without auth on a given address (one an agent has been
/// told to use before the hub existed).
pub fn start_hub_at(dir: &Path, addr: SocketAddr) -> HubProcess {
    launch_hub(dir, addr, false)
}

/// Spawns `ferry-hub serve --config <config>` logging to `log` and waits
/// until it listens on `addr`. With `read_token`, also reads the bootstrap
/// admin token a hub prints once, on its first start with auth on.
pub fn spawn_hub(
    config: &Path,
    addr: SocketAddr,
    log: &Path,
    read_token: bool,
) -> (Peer, Option<String>) {
    let mut peer = Peer::spawn(
        "ferry-hub",
        Command::new(workspace_bin("ferry-hub"))
            .args(["serve", "--config"])
            .arg(config),
        log,
    );
    peer.wait_listening(addr, Duration::from_secs(120), log);
    let mut token = None;
    if read_token {
        wait_until("the bootstrap admin token", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            token = text
                .split_whitespace()
                .find(|w| w.starts_with("ferry_"))
                .map(str::to_owned);
            token.is_some()
        });
    }
    (peer, token)
}

fn launch_hub(dir: &Path, addr: SocketAddr, auth: bool) -> HubProcess {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n[tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n[auth]\nenabled = {auth}\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let (peer, admin) = spawn_hub(&config, addr, &dir.join("hub.log"), auth);
    HubProcess { peer, addr, admin }
}

/// `POST /api/v1/query`; `None` unless the hub answers 200.
pub fn query(hub: SocketAddr, token: Option<&str>, sql: &str) -> Option<serde_json::Value> {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, text) = http("POST", hub, "/api/v1/query", &headers, body.as_bytes());
    (status == 200).then(|| serde_json::from_str(&text).expect("query answer is JSON"))
}

/// The agent's `/api/v1/status` document.
pub fn agent_status(http_addr: SocketAddr) -> serde_json::Value {
    let (_, body) = http("GET", http_addr, "/api/v1/status", &[], b"");
    serde_json::from_str(&body).unwrap_or_default()
}

/// How `child` exited, polled every 10 ms; `None` if it was still running
/// after `limit` (or could not be polled), and then it is killed and reaped.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// How long [`publish_lines`] waits for `mosquitto_pub` to finish.
pub const PUBLISH_LIMIT: Duration = Duration::from_secs(120);

/// Publishes each line of `lines` as one message with `mosquitto_pub -l`
/// and waits until the client exits successfully.
///
/// Panics with the client's error output if it fails or is still running
/// after [`PUBLISH_LIMIT`], and kills it first: at QoS 1 or 2 a
/// `mosquitto_pub -l` whose broker died with messages unacknowledged
/// reconnects forever. Its output is never the test's own, so a client
/// left behind cannot hold the test run's output open.
pub fn publish_lines(mosquitto_pub: &Path, port: u16, topic: &str, args: &[&str], lines: &str) {
    publish_lines_within(mosquitto_pub, port, topic, args, lines, PUBLISH_LIMIT);
}

/// [`publish_lines`], with `limit` instead of [`PUBLISH_LIMIT`].
pub fn publish_lines_within(
    mosquitto_pub: &Path,
    port: u16,
    topic: &str,
    args: &[&str],
    lines: &str,
    limit: Duration,
) {
    use std::io::{Read, Seek, Write};
    let mut errors = tempfile::tempfile().expect("a file for mosquitto_pub's errors");
    let mut child = Command::new(mosquitto_pub)
        .args(["-p", &port.to_string(), "-l", "-t", topic])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(errors.try_clone().expect("clone a file handle"))
        .spawn()
        .expect("start mosquitto_pub");
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes());
    let status = wait_or_kill(&mut child, limit);
    let mut said = String::new();
    let _ = errors.rewind();
    let _ = errors.read_to_string(&mut said);
    match status {
        Some(status) if status.success() && written.is_ok() => {}
        Some(status) => panic!("mosquitto_pub to port {port} failed ({status}): {said}"),
        None => {
            panic!("mosquitto_pub to port {port} still running after {limit:?}, killed: {said}")
        }
    }
}

/// Starts Mosquitto on a free loopback port, with persistence (snapshots to
/// `dir` every second and on changes, its most durable setting) or without.
/// Panics if `mosquitto` is missing (check with [`require_tool`] first).
pub fn start_mosquitto(dir: &Path, persistent: bool) -> (Peer, u16) {
    let mosquitto = find_tool("mosquitto").expect("mosquitto (apt-get install mosquitto)");
    let port = free_port();
    let conf = dir.join(format!("mosquitto-{port}.conf"));
    let mut text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\nmax_queued_messages 100000\n"
    );
    if persistent {
        let data = dir.join(format!("mosquitto-{port}"));
        std::fs::create_dir_all(&data).expect("mosquitto data dir");
        text.push_str(&format!(
            "persistence true\npersistence_location {}/\nautosave_on_changes true\nautosave_interval 1\n",
            data.display()
        ));
    } else {
        text.push_str("persistence false\n");
    }
    std::fs::write(&conf, text).expect("mosquitto.conf");
    let peer = Peer::spawn(
        "mosquitto",
        Command::new(mosquitto).arg("-c").arg(&conf),
        &dir.join(format!("mosquitto-{port}.log")),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    (peer, port)
}
