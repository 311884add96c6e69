//! Shared helpers for the broker integration tests: a recording sink whose
//! commits the test can hold, release or reject; broker start-up on port 0;
//! polling with a deadline; external tool checks.
#![allow(dead_code, unreachable_pub)]

pub mod tools;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_agent::broker::{self, BrokerEngine, BrokerHandle, MqttConfig};
use ferry_agent::ingest::{Accepted, IngestSink, Message};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the sink answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Resolve at once.
    Answer(Accepted),
    /// Keep every commit pending until `release`.
    Hold,
    /// Resolve `Stored` after a delay.
    Delay(Duration),
    /// Resolve `Stored` after a delay that shrinks by `step` with every
    /// message: later messages settle first.
    Countdown { from: Duration, step: Duration },
}

#[derive(Default)]
struct Inner {
    messages: Vec<Message>,
    held: Vec<oneshot::Sender<Accepted>>,
}

/// Records every message; commits follow the current [`Mode`].
#[derive(Clone)]
pub struct TestSink {
    inner: Arc<Mutex<Inner>>,
    mode: Arc<Mutex<Mode>>,
}

impl TestSink {
    pub fn new(mode: Mode) -> Self {
        TestSink {
            inner: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
        }
    }
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().expect("lock").messages.clone()
    }
    pub fn count(&self) -> usize {
        self.inner.lock().expect("lock").messages.len()
    }
    pub fn topics(&self) -> Vec<String> {
        self.messages().into_iter().map(|m| m.topic).collect()
    }
    pub fn held(&self) -> usize {
        self.inner.lock().expect("lock").held.len()
    }
    /// Resolves every held commit with `answer`; returns how many.
    pub fn release(&self, answer: Accepted) -> usize {
        let held = std::mem::take(&mut self.inner.lock().expect("lock").held);
        let n = held.len();
        for tx in held {
            let _ = tx.send(answer.clone());
        }
        n
    }
}

impl IngestSink for TestSink {
    type Outcome = std::pin::Pin<Box<dyn Future<Output = Accepted> + Send>>;

    fn submit(&self, message: Message) -> impl Future<Output = Self::Outcome> + Send {
        let mode = self.mode.lock().expect("lock").clone();
        let (rx, nth) = {
            let mut inner = self.inner.lock().expect("lock");
            inner.messages.push(message);
            let nth = u32::try_from(inner.messages.len()).unwrap_or(u32::MAX);
            let rx = match mode {
                Mode::Hold => {
                    let (tx, rx) = oneshot::channel();
                    inner.held.push(tx);
                    Some(rx)
                }
                _ => None,
            };
            (rx, nth)
        };
        // A delay runs from now, however late the outcome is first polled.
        let since = tokio::time::Instant::now();
        let outcome: Self::Outcome = Box::pin(async move {
            match (mode, rx) {
                (_, Some(rx)) => rx.await.unwrap_or(Accepted::Rejected(
                    ferry_agent::ingest::RejectReason::ShuttingDown,
                )),
                (Mode::Delay(d), None) => {
                    tokio::time::sleep_until(since + d).await;
                    Accepted::Stored
                }
                (Mode::Countdown { from, step }, None) => {
                    tokio::time::sleep_until(since + from.saturating_sub(step * nth)).await;
                    Accepted::Stored
                }
                (Mode::Answer(a), None) => a,
                (Mode::Hold, None) => Accepted::Stored,
            }
        });
        std::future::ready(outcome)
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A config listening on 127.0.0.1 port 0, on the engine that
/// `FERRY_TEST_MQTT_ENGINE` names (`ferry`, the default, or `rumqttd`):
/// scripts/test.sh runs the broker tests once with each.
pub fn test_config() -> MqttConfig {
    MqttConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_secs(2),
        engine: test_engine(),
        ..MqttConfig::default()
    }
}

/// The engine these tests run against; see [`test_config`].
pub fn test_engine() -> BrokerEngine {
    match std::env::var("FERRY_TEST_MQTT_ENGINE").as_deref() {
        Ok("ferry") | Err(_) => BrokerEngine::Ferry,
        Ok("rumqttd") => BrokerEngine::Rumqttd,
        Ok(other) => panic!("FERRY_TEST_MQTT_ENGINE={other:?}: use rumqttd or ferry"),
    }
}

pub struct Running {
    pub handle: BrokerHandle,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("broker tasks stop within 10s");
    }
}

pub async fn start(config: MqttConfig, sink: TestSink) -> Running {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let handle = broker::run(config, sink, shutdown.clone(), &tracker)
        .await
        .expect("broker starts");
    Running {
        handle,
        shutdown,
        tracker,
    }
}

/// A free loopback port (for external processes that need one up front).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Fails the test (never skips) when an external tool is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{tool}` is not installed: run `apt-get install -y {package}`"
    );
}
