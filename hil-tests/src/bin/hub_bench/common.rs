//! What the hub and drain benches share: a release hub with a chosen
//! commit interval, a byte-exact HTTP client, the IoT data set as sorted
//! Arrow batches (and as line protocol), segments, and small statistics.
//!
//! Included by `hub_bench` as a module and by `drain_bench` with `#[path]`;
//! each uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Float64Array, RecordBatch, TimestampNanosecondArray};
use ferry_hil_tests::{Answer, Peer, free_port, request, wait_for_port, wait_until, workspace_bin};
use ferry_protocols::batch::canonical_schema;
use ferry_protocols::segment::{SegmentHeader, SegmentSeq, write_segment};
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldType, Measurement, TagKey};

/// 2026-01-01T00:00:00Z in ns.
pub(crate) const T0_NS: i64 = 1_767_225_600_000_000_000;
/// Seconds between two readings of one device.
pub(crate) const STEP_S: i64 = 10;
pub(crate) const MODELS: [&str; 4] = ["m-alpha", "m-bravo", "m-charlie", "m-delta"];

// ---------------------------------------------------------------- arguments

pub(crate) use ferry_hil_tests::Args;

// ---------------------------------------------------------------- the hub

/// A release `ferry-hub serve` and its bootstrap admin token.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) peer: Peer,
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<String>,
    pub(crate) dir: PathBuf,
}

/// How the bench configures the hub.
#[derive(Debug, Clone)]
pub(crate) struct HubOptions {
    pub(crate) commit_interval: String,
    pub(crate) auth: bool,
    pub(crate) query_timeout: String,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            commit_interval: "1s".to_owned(),
            auth: true,
            query_timeout: "600s".to_owned(),
        }
    }
}

/// The hub binary next to this bench binary (the release one when the bench
/// runs from `target/release`).
pub(crate) fn hub_binary() -> PathBuf {
    workspace_bin("ferry-hub")
}

pub(crate) fn agent_binary() -> PathBuf {
    workspace_bin("ferry-agent")
}

/// Starts the hub on `addr` with fs tables under `dir/tables` and waits
/// until it listens. With auth, reads the bootstrap admin token from the log
/// (printed on the first start only; a restart keeps `token = None`).
pub(crate) fn start_hub(dir: &Path, addr: SocketAddr, o: &HubOptions) -> Hub {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\nmax_body = \"256MiB\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"{}\"\n[metadata]\npath = \"{}\"\n[query]\ntimeout = \"{}\"\n\
             [auth]\nenabled = {}\n[log]\nlevel = \"warn\"\n",
            dir.join("tables").display(),
            o.commit_interval,
            dir.join("hub.db").display(),
            o.query_timeout,
            o.auth
        ),
    )
    .expect("write hub.toml");
    let log = dir.join(format!("hub-{}.log", addr.port()));
    let already = std::fs::read_to_string(&log).unwrap_or_default().len();
    let peer = Peer::spawn(
        "ferry-hub",
        Command::new(hub_binary())
            .args(["serve", "--config"])
            .arg(&config),
        &log,
    );
    wait_for_port(addr, Duration::from_secs(120));
    let mut token = None;
    if o.auth && already == 0 {
        wait_until("the bootstrap admin token", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            token = text
                .split_whitespace()
                .find(|w| w.starts_with("ferry_"))
                .map(str::to_owned);
            token.is_some()
        });
    }
    Hub {
        peer,
        addr,
        token,
        dir: dir.to_owned(),
    }
}

pub(crate) fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(crate) fn fresh_addr() -> SocketAddr {
    local(free_port())
}

// ---------------------------------------------------------------- HTTP

/// How long a bench request may wait for its answer (bulk writes and
/// queries over the whole data set).
pub(crate) const BENCH_TIMEOUT: Duration = Duration::from_secs(900);

pub(crate) fn bearer(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

/// `POST /api/v1/query` answered as JSON; panics unless 200.
pub(crate) fn query_json(hub: &Hub, sql: &str) -> serde_json::Value {
    let a = query(hub, sql, "application/json");
    assert_eq!(a.status, 200, "{sql}: {}", a.text());
    a.json()
}

/// `POST /api/v1/query` with an `Accept` header.
pub(crate) fn query(hub: &Hub, sql: &str, accept: &str) -> Answer {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let auth = bearer(hub.token.as_deref());
    let mut headers = vec![("Content-Type", "application/json"), ("Accept", accept)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(
        "POST",
        hub.addr,
        "/api/v1/query",
        &headers,
        body.as_bytes(),
        BENCH_TIMEOUT,
    )
}

/// `SELECT count(*)` of a table.
pub(crate) fn count(hub: &Hub, table: &str) -> u64 {
    let v = query_json(hub, &format!("SELECT count(*) FROM {table}"));
    v["data"][0][0].as_u64().unwrap_or(0)
}

/// Posts one segment as agent `agent`; panics unless 200 `committed`.
pub(crate) fn post_segment(hub: &Hub, agent: &str, seq: u64, bytes: &[u8]) {
    let auth = bearer(hub.token.as_deref());
    let seq_s = seq.to_string();
    let mut headers = vec![
        ("Content-Type", ferry_protocols::api::SEGMENT_CONTENT_TYPE),
        (ferry_protocols::api::headers::AGENT_ID, agent),
        (ferry_protocols::api::headers::SEGMENT_SEQ, seq_s.as_str()),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let a = request(
        "POST",
        hub.addr,
        ferry_protocols::api::SEGMENTS_PATH,
        &headers,
        bytes,
        BENCH_TIMEOUT,
    );
    assert!(
        a.status == 200 && a.text().contains("\"committed\""),
        "segment {agent}/{seq}: {} {}",
        a.status,
        a.text()
    );
}

/// Posts one line-protocol body into `database`; panics unless 204.
pub(crate) fn post_lp(hub: &Hub, database: &str, body: &[u8]) {
    let auth = bearer(hub.token.as_deref());
    let mut headers = vec![("x-ferry-database", database)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let a = request(
        "POST",
        hub.addr,
        "/api/v1/write/line-protocol",
        &headers,
        body,
        BENCH_TIMEOUT,
    );
    assert_eq!(a.status, 204, "line protocol write: {}", a.text());
}

// ---------------------------------------------------------------- data set

/// The IoT data set: `devices` devices, one reading each every 10 s.
/// Row `(step, d)`: time `T0 + step·10 s + (d mod 10) s`; tags `device`
/// (`dev-0000`…), `fleet` (`fleet-00` for devices 0–99, …), `model` (4);
/// fields `battery`, `humidity`, `speed` (integer values 0–120),
/// `temperature`, all f64 with two decimals at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dataset {
    pub(crate) devices: usize,
    pub(crate) steps: usize,
}

pub(crate) struct Row {
    pub(crate) time_ns: i64,
    pub(crate) device: usize,
    pub(crate) temperature: f64,
    pub(crate) humidity: f64,
    pub(crate) battery: f64,
    pub(crate) speed: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Dataset {
    pub(crate) fn rows(&self) -> u64 {
        (self.devices * self.steps) as u64
    }

    pub(crate) fn device(d: usize) -> String {
        format!("dev-{d:04}")
    }

    pub(crate) fn fleet(d: usize) -> String {
        format!("fleet-{:02}", d / 100)
    }

    pub(crate) fn model(d: usize) -> &'static str {
        MODELS[d % MODELS.len()]
    }

    pub(crate) fn row(step: usize, d: usize) -> Row {
        let s = step as f64;
        let df = d as f64;
        Row {
            time_ns: T0_NS + (step as i64 * STEP_S + (d % 10) as i64) * 1_000_000_000,
            device: d,
            temperature: round2(20.0 + 8.0 * (s / 360.0 + df).sin() + (d % 7) as f64 * 0.5),
            humidity: round2(55.0 + 25.0 * (s / 500.0 + df * 0.3).cos()),
            battery: round2(100.0 - (s * 0.01 + df) % 95.0),
            speed: ((step * 7 + d * 13) % 121) as f64,
        }
    }

    /// Steps `[first, first + n)` of every device, as one batch in segment
    /// order (device, then time), with the canonical schema.
    pub(crate) fn batch(&self, first: usize, n: usize) -> RecordBatch {
        let n = n.min(self.steps.saturating_sub(first));
        let mut rows = Vec::with_capacity(n * self.devices);
        for d in 0..self.devices {
            for step in first..first + n {
                rows.push(Dataset::row(step, d));
            }
        }
        to_batch(&rows)
    }

    /// The same rows as line protocol (measurement `m`, ns timestamps), in
    /// time order (step, then device), as a client would send them.
    pub(crate) fn line_protocol(&self, m: &str, first: usize, n: usize) -> Vec<u8> {
        use std::fmt::Write as _;
        let n = n.min(self.steps.saturating_sub(first));
        let mut out = String::with_capacity(n * self.devices * 130);
        for step in first..first + n {
            for d in 0..self.devices {
                let r = Dataset::row(step, d);
                let _ = writeln!(
                    out,
                    "{m},device={},fleet={},model={} battery={},humidity={},speed={},temperature={} {}",
                    Dataset::device(d),
                    Dataset::fleet(d),
                    Dataset::model(d),
                    r.battery,
                    r.humidity,
                    r.speed,
                    r.temperature,
                    r.time_ns
                );
            }
        }
        out.into_bytes()
    }
}

pub(crate) fn schema() -> arrow_schema::SchemaRef {
    let tags: Vec<TagKey> = ["device", "fleet", "model"]
        .iter()
        .map(|t| TagKey::new(*t).expect("tag"))
        .collect();
    let fields: Vec<FieldKey> = ["battery", "humidity", "speed", "temperature"]
        .iter()
        .map(|f| FieldKey::new(*f).expect("field"))
        .collect();
    Arc::new(canonical_schema(
        tags.iter(),
        fields.iter().map(|f| (f, FieldType::F64)),
    ))
}

fn tag_array(values: impl Iterator<Item = String>) -> ArrayRef {
    let values: Vec<String> = values.collect();
    let array: DictionaryArray<Int32Type> = values.iter().map(String::as_str).collect();
    Arc::new(array)
}

/// Rows (already sorted by device, then time) as a canonical batch.
fn to_batch(rows: &[Row]) -> RecordBatch {
    let time = TimestampNanosecondArray::from(rows.iter().map(|r| r.time_ns).collect::<Vec<_>>())
        .with_timezone("UTC");
    let f = |get: fn(&Row) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(get).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time),
        tag_array(rows.iter().map(|r| Dataset::device(r.device))),
        tag_array(rows.iter().map(|r| Dataset::fleet(r.device))),
        tag_array(rows.iter().map(|r| Dataset::model(r.device).to_owned())),
        f(|r| r.battery),
        f(|r| r.humidity),
        f(|r| r.speed),
        f(|r| r.temperature),
    ];
    RecordBatch::try_new(schema(), columns).expect("batch")
}

/// A segment of `batch` from `agent` with sequence `seq`.
pub(crate) fn segment(
    agent: &str,
    seq: u64,
    database: &str,
    measurement: &str,
    batch: &RecordBatch,
) -> Vec<u8> {
    let rows = batch.num_rows() as u64;
    let header = SegmentHeader {
        agent_id: AgentId::new(agent).expect("agent id"),
        sequence: SegmentSeq(seq),
        first_reading_id: seq * 10_000_000,
        last_reading_id: seq * 10_000_000 + rows.saturating_sub(1),
        database: DatabaseName::new(database).expect("database"),
        measurement: Measurement::new(measurement).expect("measurement"),
    };
    write_segment(&header, batch).expect("write segment")
}

// ---------------------------------------------------------------- statistics

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn stats(samples: &[f64]) -> Stats {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Stats {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// The `p` quantile (0..=1) of a sample, nearest rank.
pub(crate) fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Resident set size of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Bytes under `dir`, recursively.
pub(crate) fn du(dir: &Path) -> u64 {
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

/// `1234567.0` → `1.23 M`, `45678.0` → `45.7 K`.
pub(crate) fn human(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_owned()
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} K", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The git commit of the sources, for the report: `FERRY_BENCH_COMMIT`,
/// else `git rev-parse` in the work tree.
pub(crate) fn git_commit() -> String {
    if let Ok(c) = std::env::var("FERRY_BENCH_COMMIT") {
        return c;
    }
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
