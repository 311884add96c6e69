//! Running the Mosquitto command-line clients and broker from tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::require_tool;

/// Runs `mosquitto_pub` with `args` (bounded by `timeout 20`).
pub async fn mosquitto_pub(addr: SocketAddr, args: &[&str]) -> Output {
    require_tool("mosquitto_pub", "mosquitto-clients");
    let mut cmd = Command::new("timeout");
    cmd.arg("20")
        .arg("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run mosquitto_pub"))
        .await
        .expect("join")
}

/// Runs `mosquitto_pub` and asserts it succeeded.
pub async fn publish_ok(addr: SocketAddr, args: &[&str]) {
    let out = mosquitto_pub(addr, args).await;
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A background `mosquitto_sub -v` whose output lines are collected.
pub struct Sub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sub {
    pub fn spawn(addr: SocketAddr, args: &[&str]) -> Sub {
        require_tool("mosquitto_sub", "mosquitto-clients");
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .arg("-v")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        Sub { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    pub fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|l| l == line)
    }

    /// Publishes QoS 0 pings to `topic` until this subscriber has seen one.
    pub async fn wait_subscribed(&self, addr: SocketAddr, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = mosquitto_pub(addr, &["-t", topic, "-m", "ping"]).await;
            if self.has(&format!("{topic} ping")) {
                return;
            }
            assert!(Instant::now() < deadline, "subscriber never saw {topic}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `line` was printed.
    pub async fn expect(&self, line: &str) {
        super::wait_for(line, Duration::from_secs(10), || self.has(line)).await;
    }

    /// SIGKILL: the client vanishes without DISCONNECT.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Mosquitto broker on a free loopback port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        require_tool("mosquitto", "mosquitto");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        super::wait_for("mosquitto listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        })
        .await;
        Mosquitto {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1/localhost made with `openssl`.
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    require_tool("openssl", "openssl");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
