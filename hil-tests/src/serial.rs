//! Serial peers for the serial-sensor and Modbus tests: virtual serial pairs
//! (socat), a Modbus RTU/TCP slave simulator (pymodbus, `peers/modbus_sim.py`)
//! and a noisy line between two serial paths (`peers/serial_noise.py`).
//!
//! Like the rest of the harness, a missing peer (socat, the venv's pymodbus
//! or pyserial) makes the constructor return `None` after saying so on
//! stderr, unless `FERRY_REQUIRE_PEERS=1`, where it panics instead.
//!
//! A typical RTU bus with noise in the middle:
//!
//! ```text
//! agent ── dir/agent = dir/relay-a ── NoiseRelay ── dir/relay-b = dir/sim ── ModbusSim
//!          SocatPair("agent", "relay-a")            SocatPair("relay-b", "sim")
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Peer, find_tool, peers_required, require_tool, wait_until};

/// How long a peer gets to print READY, and to answer one command.
const STARTUP: Duration = Duration::from_secs(20);
const ANSWER: Duration = Duration::from_secs(10);

/// The directory holding the Python peers (`hil-tests/peers`).
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn skip_or_panic(what: &str) -> Option<PathBuf> {
    assert!(
        !peers_required(),
        "{what}; scripts/test.sh installs it (scripts/lib/peers.sh)"
    );
    eprintln!("SKIPPED: {what}; run scripts/test.sh");
    None
}

/// A Python that can `import` every module in `modules`: the project's venv
/// (`$FERRY_VENV`, then `.venv` at the workspace root) first, then `python`
/// and `python3` as [`find_tool`] finds them. `None` (after explaining on
/// stderr) when none can; panics instead when peers are required.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("FERRY_VENV") {
        candidates.push(Path::new(&venv).join("bin/python"));
    }
    candidates.push(root.join(".venv/bin/python"));
    candidates.extend(find_tool("python"));
    candidates.extend(find_tool("python3"));
    let import = format!("import {}", modules.join(", "));
    let found = candidates.into_iter().filter(|p| p.is_file()).find(|p| {
        Command::new(p)
            .args(["-c", &import])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    match found {
        Some(p) => Some(p),
        None => skip_or_panic(&format!(
            "no Python can `{import}` (.venv/bin/pip install pymodbus==3.16.* pyserial==3.*)"
        )),
    }
}

/// A virtual serial cable: `socat -d -d pty,raw,echo=0,link=DIR/a
/// pty,raw,echo=0,link=DIR/b`. Bytes written to one path come out of the
/// other. Open both ends before writing.
#[derive(Debug)]
pub struct SocatPair {
    socat: PathBuf,
    a: PathBuf,
    b: PathBuf,
    log: PathBuf,
    peer: Option<Peer>,
    starts: u32,
}

impl SocatPair {
    /// Starts the pair with links `dir/a` and `dir/b` and waits until both
    /// exist. `None` when socat is not installed (see the module docs).
    pub fn start(dir: &Path, a: &str, b: &str) -> Option<SocatPair> {
        let socat = require_tool("socat", "apt-get install socat")?;
        let mut pair = SocatPair {
            socat,
            a: dir.join(a),
            b: dir.join(b),
            log: dir.join(format!("socat-{a}-{b}.log")),
            peer: None,
            starts: 0,
        };
        pair.launch();
        Some(pair)
    }

    fn launch(&mut self) {
        self.remove_links();
        self.starts += 1;
        // One log per start, so a restart does not truncate the story.
        let log = self.log.with_extension(format!("{}.log", self.starts));
        let arg = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let peer = Peer::spawn(
            "socat",
            Command::new(&self.socat)
                .args(["-d", "-d"])
                .arg(arg(&self.a))
                .arg(arg(&self.b)),
            &log,
        );
        self.peer = Some(peer);
        let (a, b) = (self.a.clone(), self.b.clone());
        // The links are made before socat starts its transfer loop; wait for
        // that line too, so that the first bytes are not written too early.
        wait_until(
            &format!("socat links {} and {}", a.display(), b.display()),
            Duration::from_secs(10),
            || {
                a.exists()
                    && b.exists()
                    && std::fs::read_to_string(&log)
                        .is_ok_and(|t| t.contains("starting data transfer loop"))
            },
        );
    }

    fn remove_links(&self) {
        for p in [&self.a, &self.b] {
            // Only a link (or nothing) is expected here; never delete a file.
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The first end (`dir/a`).
    pub fn path_a(&self) -> &Path {
        &self.a
    }

    /// The second end (`dir/b`).
    pub fn path_b(&self) -> &Path {
        &self.b
    }

    /// Pulls the cable: SIGKILL socat (the ptys hang up: readers get EOF or
    /// EIO) and remove the two links, which socat cannot do when killed.
    pub fn kill(&mut self) {
        if let Some(mut peer) = self.peer.take() {
            peer.kill();
        }
        self.remove_links();
    }

    /// Plugs the cable back: a new socat on the same two paths (new ptys
    /// behind them). Kills the running one first, if any.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// True while socat runs.
    pub fn is_running(&mut self) -> bool {
        self.peer.as_mut().is_some_and(Peer::is_running)
    }
}

impl Drop for SocatPair {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Python peer speaking the line protocol of `peers/*.py`: READY once
/// serving, then one answer line per command line.
#[derive(Debug)]
struct ScriptPeer {
    name: String,
    child: Child,
    io: Mutex<(ChildStdin, Receiver<String>)>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScriptPeer {
    /// Starts `python peers/<script> <args>`; `files` are written into a
    /// private temporary directory first and `{dir}` in `args` names it.
    fn start(python: &Path, script: &str, args: &[String], files: &[(&str, String)]) -> ScriptPeer {
        let dir = tempfile::Builder::new()
            .prefix("ferry-peer-")
            .tempdir()
            .expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write peer file");
        }
        let dir_text = dir.path().display().to_string();
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir_text)).collect();
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(python)
            .arg("-u")
            .arg(peers_dir().join(script))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("peer log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let peer = ScriptPeer {
            name: script.to_owned(),
            child,
            io: Mutex::new((stdin, rx)),
            log,
            _dir: dir,
        };
        let first = peer.next_line(STARTUP);
        assert!(
            first.as_deref() == Some("READY"),
            "{} {} did not get ready: {first:?}\n{}",
            peer.name,
            args.join(" "),
            peer.stderr_tail()
        );
        peer
    }

    fn next_line(&self, timeout: Duration) -> Option<String> {
        let io = self.io.lock().expect("peer io lock");
        io.1.recv_timeout(timeout).ok()
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- {} stderr (last lines) ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }

    /// Sends one command and returns its answer line.
    fn command(&self, line: &str) -> String {
        let mut io = self.io.lock().expect("peer io lock");
        // Drop answers nobody waited for (there should be none).
        while io.1.try_recv().is_ok() {}
        let sent = writeln!(io.0, "{line}").and_then(|()| io.0.flush());
        let answer = sent.ok().and_then(|()| io.1.recv_timeout(ANSWER).ok());
        drop(io);
        answer.unwrap_or_else(|| {
            panic!(
                "{} did not answer `{line}`\n{}",
                self.name,
                self.stderr_tail()
            )
        })
    }

    /// A command that must answer `OK`.
    fn ok(&self, line: &str) {
        let answer = self.command(line);
        assert!(
            answer == "OK" || answer.starts_with("OK "),
            "{} answered `{line}` with {answer}",
            self.name
        );
    }

    fn json(&self, line: &str) -> serde_json::Value {
        let answer = self.command(line);
        serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{} answered `{line}` with {answer}: {e}", self.name))
    }
}

impl Drop for ScriptPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A register or bit table of a Modbus slave in [`ModbusSim`].
pub const TABLES: [&str; 4] = ["hr", "ir", "co", "di"];

/// A Modbus slave simulator (pymodbus 3.16) serving several slave ids, over
/// RTU on a serial path or TCP on 127.0.0.1. See `peers/modbus_sim.py`.
///
/// The map is `{"slaves": {"1": {"hr": [..], "ir": [..], "co": [0, 1, ..],
/// "di": [..]}, ..}}`; every list starts at protocol address 0. Ids absent
/// from the map never answer (like an empty bus address).
#[derive(Debug)]
pub struct ModbusSim {
    peer: ScriptPeer,
}

impl ModbusSim {
    /// Serves Modbus RTU (8N1 at `baud`) on `path`, waiting up to 10 s for
    /// the path to appear.
    pub fn rtu(path: &Path, baud: u32, map: &serde_json::Value) -> Option<ModbusSim> {
        let args = vec![
            "--rtu".to_owned(),
            path.display().to_string(),
            "--baud".to_owned(),
            baud.to_string(),
        ];
        Self::start(args, map)
    }

    /// Serves Modbus TCP on 127.0.0.1:`port` (see [`crate::free_port`]).
    pub fn tcp(port: u16, map: &serde_json::Value) -> Option<ModbusSim> {
        Self::start(vec!["--tcp".to_owned(), port.to_string()], map)
    }

    fn start(mut args: Vec<String>, map: &serde_json::Value) -> Option<ModbusSim> {
        let python = python_with(&["pymodbus", "serial"])?;
        args.extend(["--map".to_owned(), "{dir}/map.json".to_owned()]);
        let peer = ScriptPeer::start(
            &python,
            "modbus_sim.py",
            &args,
            &[("map.json", map.to_string())],
        );
        Some(ModbusSim { peer })
    }

    /// The slave stops answering anything, like a dead device.
    pub fn mute(&self, id: u8) {
        self.peer.ok(&format!("mute {id}"));
    }

    /// The slave answers again.
    pub fn unmute(&self, id: u8) {
        self.peer.ok(&format!("unmute {id}"));
    }

    /// Sets one value: `table` is one of [`TABLES`], `addr` the 0-based
    /// protocol address; bits take 0 or 1.
    pub fn set(&self, id: u8, table: &str, addr: u16, value: u16) {
        self.set_many(id, table, addr, &[value]);
    }

    /// Sets consecutive values from `addr` (e.g. the two registers of an f32).
    pub fn set_many(&self, id: u8, table: &str, addr: u16, values: &[u16]) {
        let values: Vec<String> = values.iter().map(u16::to_string).collect();
        self.peer
            .ok(&format!("set {id} {table} {addr} {}", values.join(" ")));
    }

    /// Reads `count` values the simulator holds (what a write changed, say).
    pub fn get(&self, id: u8, table: &str, addr: u16, count: u16) -> Vec<u16> {
        let answer = self
            .peer
            .command(&format!("get {id} {table} {addr} {count}"));
        let rest = answer
            .strip_prefix("OK")
            .unwrap_or_else(|| panic!("modbus_sim get: {answer}"));
        rest.split_whitespace()
            .map(|v| v.parse().expect("a u16 from modbus_sim"))
            .collect()
    }

    /// The slave answers each request `ms` milliseconds late (0: at once).
    pub fn delay(&self, id: u8, ms: u64) {
        self.peer.ok(&format!("delay {id} {ms}"));
    }

    /// `{"served": {"1": n, ..}, "exceptions": {..}, "dropped": {..},
    /// "unknown": {"9": n}, "reopens": n}`: requests answered per slave
    /// (exception answers included), of which exceptions; requests not
    /// answered because the slave was muted; requests for ids absent from
    /// the map; times the serial port was lost and opened again.
    pub fn stats(&self) -> serde_json::Value {
        self.peer.json("stats")
    }

    /// Requests answered so far by slave `id`.
    pub fn served(&self, id: u8) -> u64 {
        self.stats()["served"][id.to_string()].as_u64().unwrap_or(0)
    }

    /// The simulator's stderr so far (pymodbus warnings, reopen notices).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.peer.log).unwrap_or_default()
    }
}

/// A noisy line between two serial paths (`peers/serial_noise.py`): forwards
/// bytes both ways in chunks (a chunk ends after 3 ms of silence), flipping
/// one random bit in a chunk with probability `corrupt`, and sending 1..8
/// random bytes before a chunk with probability `garbage`.
#[derive(Debug)]
pub struct NoiseRelay {
    peer: ScriptPeer,
}

impl NoiseRelay {
    /// Starts the relay between `a` and `b` (both must exist within 10 s).
    pub fn start(a: &Path, b: &Path, corrupt: f64, garbage: f64) -> Option<NoiseRelay> {
        Self::start_seeded(a, b, corrupt, garbage, None)
    }

    /// As [`NoiseRelay::start`], with a fixed random seed.
    pub fn start_seeded(
        a: &Path,
        b: &Path,
        corrupt: f64,
        garbage: f64,
        seed: Option<u64>,
    ) -> Option<NoiseRelay> {
        let python = python_with(&["serial"])?;
        let mut args = vec![
            "--a".to_owned(),
            a.display().to_string(),
            "--b".to_owned(),
            b.display().to_string(),
            "--corrupt".to_owned(),
            corrupt.to_string(),
            "--garbage".to_owned(),
            garbage.to_string(),
        ];
        if let Some(seed) = seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        let peer = ScriptPeer::start(&python, "serial_noise.py", &args, &[]);
        Some(NoiseRelay { peer })
    }

    /// `{"forwarded": chunks, "bytes": n, "corrupted": n, "garbage": n,
    /// "a_to_b": {same four}, "b_to_a": {same four}, "corrupt": p,
    /// "garbage_p": p, "reopens": n}`.
    pub fn stats(&self) -> serde_json::Value {
        self.peer.json("stats")
    }

    /// Changes the corruption probability from now on.
    pub fn set_corrupt(&self, p: f64) {
        self.peer.ok(&format!("set corrupt {p}"));
    }

    /// Changes the garbage probability from now on.
    pub fn set_garbage(&self, p: f64) {
        self.peer.ok(&format!("set garbage {p}"));
    }
}

/// One end of a serial path opened by a test, as a device would open it:
/// writes go straight to the port, a background thread reads so that reads
/// can time out. (socat already set the pty raw.) Dropping it closes the
/// port for real: the reader stops too, so the path can be handed to
/// another process.
#[derive(Debug)]
pub struct RawPort {
    path: PathBuf,
    file: File,
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// `O_NONBLOCK | O_NOCTTY` as Linux defines them on x86 and ARM (std has no
/// names for them and this crate does not link libc).
const OPEN_FLAGS: i32 = 0o4000 | 0o400;

impl RawPort {
    /// Opens `path` read-write; panics when it cannot.
    pub fn open(path: &Path) -> RawPort {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OPEN_FLAGS)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut reader = file.try_clone().expect("clone the port handle");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(n @ 1..) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EOF or EIO: the pty hung up (socat killed).
                    Ok(0) | Err(_) => break,
                }
            }
        });
        RawPort {
            path: path.to_owned(),
            file,
            rx,
            pending: Vec::new(),
            stop,
            reader: Some(reader),
        }
    }

    /// Writes all of `bytes` (waiting while the pty buffer is full).
    pub fn write(&mut self, bytes: &[u8]) {
        let deadline = Instant::now() + ANSWER;
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("write {}: {e}", self.path.display()),
            }
        }
    }

    /// Reads until `n` bytes have arrived or `timeout` passed; returns what
    /// arrived (fewer than `n` on timeout, never more).
    pub fn read_n(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while self.pending.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.pending.extend(chunk),
                Err(_) => break,
            }
        }
        let take = n.min(self.pending.len());
        self.pending.drain(..take).collect()
    }

    /// Everything that arrives within `wait` (and whatever was pending).
    pub fn read_for(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.pending.extend(chunk),
                Err(_) => break,
            }
        }
        std::mem::take(&mut self.pending)
    }
}

impl Drop for RawPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A running agent whose config has serial sources (see [`serial_agent`]).
#[derive(Debug)]
pub struct SerialAgent {
    pub peer: Peer,
    pub http: std::net::SocketAddr,
    pub log: PathBuf,
}

impl SerialAgent {
    /// `serial.<port>` of the agent's status document.
    pub fn port_status(&self, port: &str) -> serde_json::Value {
        crate::agent_status(self.http)["serial"][port].clone()
    }

    /// Waits until `port` reports `connected` (with at least `opens` opens).
    pub fn wait_connected(&self, port: &str, opens: u64) {
        wait_until(
            &format!("serial port {port} open ({opens} opens)"),
            Duration::from_secs(30),
            || {
                let s = self.port_status(port);
                s["connected"] == true && s["opens"].as_u64().unwrap_or(0) >= opens
            },
        );
    }
}

/// Starts `ferry-agent` with `sources` (TOML: `[[serial.ports]]`,
/// `[[modbus_tcp]]` blocks) appended to a config that ships to `hub` every
/// 200 ms. The agent's data and log live in `dir`.
pub fn serial_agent(dir: &Path, hub: std::net::SocketAddr, sources: &str) -> SerialAgent {
    let mqtt_port = crate::free_port();
    let http_port = crate::free_port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-serial"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt_port}"
[segment]
max_age = "200ms"
[uplink]
hub_url = "http://{hub}"
backoff_initial = "100ms"
backoff_max = "1s"
[http]
listen = "127.0.0.1:{http_port}"
{sources}
"#,
            data = dir.join("agent").display(),
        ),
    )
    .expect("write agent.toml");
    let log = dir.join("agent.log");
    let mut peer = crate::spawn_agent(&config, mqtt_port, &log);
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    // Says whether the agent exited, with the end of its log.
    peer.wait_listening(http, Duration::from_secs(30), &log);
    SerialAgent { peer, http, log }
}

/// Real hardware instead of a virtual pair: `FERRY_SERIAL_DEVICE` is the
/// agent's port (e.g. a USB-RS485 adapter) and `FERRY_SERIAL_PEER` the port
/// wired to it, where the test runs its writer or the Modbus simulator.
/// `None` when they are not set (the tests then use socat pairs).
pub fn hardware_ports() -> Option<(PathBuf, PathBuf)> {
    let device = std::env::var_os("FERRY_SERIAL_DEVICE")?;
    let peer = std::env::var_os("FERRY_SERIAL_PEER")
        .expect("FERRY_SERIAL_DEVICE needs FERRY_SERIAL_PEER: the port wired to it");
    Some((PathBuf::from(device), PathBuf::from(peer)))
}

/// The two ends of a test's serial line: the agent's port and the peer's
/// (where the test writes lines or runs the simulator).
#[derive(Debug)]
pub struct SerialLine {
    pub agent: PathBuf,
    pub peer: PathBuf,
    /// The virtual pair, `None` on real hardware (which cannot be unplugged
    /// by a test).
    pub pair: Option<SocatPair>,
}

/// Real hardware from [`hardware_ports`] when set, else a socat pair made in
/// `dir` with links `agent` and `peer`. `None` when socat is missing and
/// peers are not required.
pub fn serial_line(dir: &Path, agent: &str, peer: &str) -> Option<SerialLine> {
    if let Some((agent, peer)) = hardware_ports() {
        return Some(SerialLine {
            agent,
            peer,
            pair: None,
        });
    }
    let pair = SocatPair::start(dir, agent, peer)?;
    Some(SerialLine {
        agent: pair.path_a().to_owned(),
        peer: pair.path_b().to_owned(),
        pair: Some(pair),
    })
}
