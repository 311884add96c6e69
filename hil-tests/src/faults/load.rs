//! Sustained QoS 1 load from real MQTT clients (rumqttc), with an
//! acknowledgement log the oracle reads back.
//!
//! Each publisher thread keeps up to `window` publishes in flight, at a
//! target rate, and reconnects (new session, clean start) whenever the
//! connection breaks — the agent was killed, restarted, or is shutting
//! down. A reading is identified by a globally unique sequence number and
//! its value is a function of it ([`value_of`]), so the oracle can check
//! values in SQL. A reading counts as acknowledged only when its PUBACK
//! arrived; it is then appended to `acked-<n>.log`. Readings in flight when
//! a connection broke are logged to `unacked-<n>.log`: they were never
//! re-sent, so they may be stored at most once.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

/// The value published with reading `seq` (exact in f64).
pub fn value_of(seq: u64) -> f64 {
    seq as f64 * 0.25
}

/// The SQL expression that must equal the stored `v` (see [`value_of`]).
pub const VALUE_SQL: &str = "seq * 0.25";

/// What the load looks like.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub port: u16,
    pub publishers: usize,
    /// Messages per second per publisher.
    pub rate: u32,
    /// Publishes in flight per connection.
    pub window: usize,
    /// Published to `<topic_prefix>/dev<n>`.
    pub topic_prefix: String,
    /// Whose clock stamps the readings.
    pub timestamps: Timestamps,
}

/// Whose clock stamps the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// No `ts` in the payload: the agent stamps the reading.
    Agent,
    /// A device clock far off: `seq % 3 == 0` carries `"ts": past + seq`,
    /// `seq % 3 == 1` carries `"ts": future + seq` (milliseconds), the rest
    /// none. [`Timestamps::mismatch_sql`] finds stored times that differ.
    Mixed { past_ms: i64, future_ms: i64 },
}

impl Timestamps {
    /// The `ts` of reading `seq`, if it carries one.
    pub fn of(self, seq: u64) -> Option<i64> {
        match self {
            Timestamps::Agent => None,
            Timestamps::Mixed { past_ms, future_ms } => match seq % 3 {
                0 => Some(past_ms + seq as i64),
                1 => Some(future_ms + seq as i64),
                _ => None,
            },
        }
    }

    /// A query counting the device-stamped rows of `table` whose stored
    /// time is not the one published.
    pub fn mismatch_sql(self, table: &str) -> Option<String> {
        match self {
            Timestamps::Agent => None,
            Timestamps::Mixed { past_ms, future_ms } => Some(format!(
                "SELECT count(*) FROM {table} WHERE \
                 (CAST(seq AS BIGINT) % 3 = 0 AND CAST(time AS BIGINT) <> ({past_ms} + CAST(seq AS BIGINT)) * 1000) OR \
                 (CAST(seq AS BIGINT) % 3 = 1 AND CAST(time AS BIGINT) <> ({future_ms} + CAST(seq AS BIGINT)) * 1000)"
            )),
        }
    }
}

/// Running publishers; [`Load::stop`] joins them.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    acked: Arc<AtomicU64>,
    next: Arc<AtomicU64>,
    dir: PathBuf,
}

impl Load {
    /// Starts `spec.publishers` threads, logging into `dir`.
    pub fn start(spec: &LoadSpec, dir: &Path) -> Load {
        std::fs::create_dir_all(dir).expect("load log dir");
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let acked = Arc::new(AtomicU64::new(0));
        let handles = (0..spec.publishers)
            .map(|n| {
                let (spec, stop, next, acked) =
                    (spec.clone(), stop.clone(), next.clone(), acked.clone());
                let logs = (
                    dir.join(format!("acked-{n}.log")),
                    dir.join(format!("unacked-{n}.log")),
                );
                std::thread::spawn(move || publisher(n, &spec, &stop, &next, &acked, logs))
            })
            .collect();
        Load {
            stop,
            handles,
            acked,
            next,
            dir: dir.to_owned(),
        }
    }

    /// Readings acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// The highest sequence number handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.next.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// Stops publishing, waits for in-flight acknowledgements (a few
    /// seconds at most), and returns the log directory.
    pub fn stop(self) -> PathBuf {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            let _ = h.join();
        }
        self.dir
    }
}

struct Logs {
    acked: std::io::BufWriter<std::fs::File>,
    unacked: std::io::BufWriter<std::fs::File>,
}

fn publisher(
    n: usize,
    spec: &LoadSpec,
    stop: &AtomicBool,
    next: &AtomicU64,
    acked_total: &AtomicU64,
    (acked_path, unacked_path): (PathBuf, PathBuf),
) {
    let open = |p: &Path| std::io::BufWriter::new(std::fs::File::create(p).expect("create log"));
    let mut logs = Logs {
        acked: open(&acked_path),
        unacked: open(&unacked_path),
    };
    let topic = format!("{}/dev{n}", spec.topic_prefix);
    let mut attempt = 0u64;
    while !stop.load(Ordering::SeqCst) {
        attempt += 1;
        let connected = session(n, attempt, spec, &topic, stop, next, acked_total, &mut logs);
        let _ = logs.acked.flush();
        let _ = logs.unacked.flush();
        if !connected {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = logs.acked.flush();
    let _ = logs.unacked.flush();
}

/// One connection's life. Returns whether it ever connected.
#[allow(clippy::too_many_arguments)]
fn session(
    n: usize,
    attempt: u64,
    spec: &LoadSpec,
    topic: &str,
    stop: &AtomicBool,
    next: &AtomicU64,
    acked_total: &AtomicU64,
    logs: &mut Logs,
) -> bool {
    let mut opts = MqttOptions::new(format!("faults-{n}-{attempt}"), "127.0.0.1", spec.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    opts.set_inflight(u16::try_from(spec.window.max(1)).unwrap_or(100));
    let (client, mut connection) = Client::new(opts, spec.window.max(1) * 2);
    // Requested, not yet given a packet id; then by packet id.
    let mut requested: VecDeque<u64> = VecDeque::new();
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut connected = false;
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut due = Instant::now();
    let mut drain_until: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) && drain_until.is_none() {
            drain_until = Some(Instant::now() + Duration::from_secs(5));
        }
        if drain_until.is_some_and(|d| Instant::now() >= d)
            || (drain_until.is_some() && requested.is_empty() && in_flight.is_empty())
        {
            break;
        }
        let pending = requested.len() + in_flight.len();
        if connected && drain_until.is_none() && pending < spec.window && Instant::now() >= due {
            let seq = next.fetch_add(1, Ordering::SeqCst);
            let payload = payload(seq, spec.timestamps.of(seq));
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                // Never sent: the number is simply unused.
                break;
            }
            requested.push_back(seq);
            due += interval;
            if due + Duration::from_secs(1) < Instant::now() {
                due = Instant::now();
            }
        }
        let wait = if connected && pending < spec.window {
            due.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50))
        } else {
            Duration::from_millis(50)
        };
        match connection.recv_timeout(wait) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => connected = true,
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(seq) = requested.pop_front() {
                    in_flight.insert(pkid, seq);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(seq) = in_flight.remove(&ack.pkid) {
                    let _ = writeln!(logs.acked, "{seq}");
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {} // timeout: go round
        }
    }
    for seq in requested.into_iter().chain(in_flight.into_values()) {
        let _ = writeln!(logs.unacked, "{seq}");
    }
    let _ = client.disconnect();
    connected
}

fn payload(seq: u64, ts_ms: Option<i64>) -> String {
    let v = value_of(seq);
    match ts_ms {
        None => format!("{{\"seq\":{seq},\"v\":{v}}}"),
        Some(ts) => format!("{{\"seq\":{seq},\"v\":{v},\"ts\":{ts}}}"),
    }
}

/// Reads the sequence numbers in every `<prefix>-*.log` under `dir`.
pub fn read_logs(dir: &Path, prefix: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-")) && name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| l.trim().parse::<u64>().ok()));
        }
    }
    out.sort_unstable();
    out
}
