//! Serial ingest: line-mode readings per second through a virtual serial
//! pair into the agent's durable buffer, and Modbus RTU polls per second on
//! one bus, each next to a baseline measured in the same run.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/var/tmp/ferry-bench-target
//! cargo build --release -p ferry-agent -p ferry-hil-tests
//! cargo run --release -p ferry-hil-tests --bin serial_bench -- [--lines 200000] [--seconds 10]
//! ```
//!
//! 1. **Lines, unthrottled.** Baseline: a plain reader drains the socat
//!    pair (no decoding, no commit). Then the agent reads the same bytes,
//!    decodes each CSV line and commits it (`synchronous = FULL`); the clock
//!    stops when its status counts every line.
//! 2. **Lines at 115200 baud.** The writer paces itself to 11 520 bytes/s
//!    (8N1); the ceiling is that rate divided by the line length. A pty has
//!    no baud rate of its own, so the pacing is the writer's.
//! 3. **Modbus RTU polls.** Four slaves (pymodbus), ten holding registers
//!    each in one request, each `poll_interval = 10ms` (more than the bus
//!    carries), `pacing = 0ms`, 19200 baud 8N1.
//!    The theoretical limit is one exchange per (request + answer frame time
//!    \+ two 3.5-character gaps). A pty carries the bytes without wire
//!    time, so a ratio above 1 is headroom: the agent would not be the
//!    bottleneck on a real wire.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_hil_tests::serial::{ModbusSim, RawPort, SocatPair, serial_agent};
use ferry_hil_tests::{Args, free_port, wait_until};
use serde_json::json;

fn line(i: u64) -> String {
    format!("dev-{},{i},{}.5\n", i % 8, i % 1000)
}

/// Bytes per second a plain reader gets through a socat pair.
fn baseline_pty(dir: &Path, payload: &[u8]) -> f64 {
    let pair = SocatPair::start(dir, "baseA", "baseB").expect("socat");
    let mut reader = RawPort::open(pair.path_a());
    let mut writer = RawPort::open(pair.path_b());
    let started = Instant::now();
    let total = payload.len();
    let feeder = {
        let payload = payload.to_vec();
        std::thread::spawn(move || {
            for chunk in payload.chunks(4096) {
                writer.write(chunk);
            }
            writer
        })
    };
    let mut got = 0;
    while got < total {
        let n = reader.read_n(total - got, Duration::from_secs(10)).len();
        assert!(n > 0, "the pty stalled at {got} of {total} bytes");
        got += n;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(feeder.join());
    total as f64 / secs
}

fn lines_config(path: &Path) -> String {
    format!(
        r#"
[[serial.ports]]
name = "bench"
path = "{}"
mode = "lines"
database = "bench"
baud = 115200
[serial.ports.lines]
format = "csv"
measurement = "lines"
columns = ["dev", "seq", "v"]
tag_columns = ["dev"]
types = {{ seq = "i64" }}
"#,
        path.display()
    )
}

/// Lines per second into the buffer, and the mean line length sent;
/// `rate` paces the writer (bytes/s).
fn agent_lines(dir: &Path, lines: u64, rate: Option<f64>) -> (f64, f64) {
    let pair = SocatPair::start(dir, "ttyAgent", "ttyDev").expect("socat");
    let hub = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let agent = serial_agent(dir, hub, &lines_config(pair.path_a()));
    agent.wait_connected("bench", 1);
    let mut device = RawPort::open(pair.path_b());
    let started = Instant::now();
    let mut sent_bytes = 0usize;
    let mut batch = String::new();
    for i in 0..lines {
        batch.push_str(&line(i));
        if batch.len() >= 2048 || i + 1 == lines {
            device.write(batch.as_bytes());
            sent_bytes += batch.len();
            batch.clear();
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(sent_bytes as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    wait_until("every line committed", Duration::from_secs(600), || {
        agent.port_status("bench")["readings"].as_u64() == Some(lines)
    });
    let secs = started.elapsed().as_secs_f64();
    let status = agent.port_status("bench");
    assert_eq!(status["errors"], json!({}), "{status}");
    (lines as f64 / secs, sent_bytes as f64 / lines as f64)
}

/// Modbus polls per second on one RTU bus at 19200 baud: four slaves, each
/// asking for a poll every 10 ms (more than the bus can carry).
fn modbus_polls(dir: &Path, seconds: u64) -> (f64, f64) {
    const SLAVES: u8 = 4;
    let pair = SocatPair::start(dir, "ttyBus", "ttySim").expect("socat");
    let slave_map: serde_json::Map<String, serde_json::Value> = (1..=SLAVES)
        .map(|id| {
            (
                id.to_string(),
                json!({ "hr": (0..10).collect::<Vec<u16>>() }),
            )
        })
        .collect();
    let _sim =
        ModbusSim::rtu(pair.path_b(), 19200, &json!({ "slaves": slave_map })).expect("pymodbus");
    let hub = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let registers: Vec<String> = (0..10)
        .map(|a| format!("{{ field = \"r{a}\", table = \"holding\", address = {a} }}"))
        .collect();
    let mut config = format!(
        "[[serial.ports]]\nname = \"bus\"\npath = \"{}\"\nmode = \"modbus-rtu\"\ndatabase = \"bench\"\nbaud = 19200\npacing = \"0ms\"\ntimeout = \"200ms\"\n",
        pair.path_a().display()
    );
    for id in 1..=SLAVES {
        config.push_str(&format!(
            "[[serial.ports.slaves]]\nid = {id}\npoll_interval = \"10ms\"\nmeasurement = \"regs\"\ntags = {{ slave = \"{id}\" }}\nregisters = [{}]\n",
            registers.join(", ")
        ));
    }
    let agent = serial_agent(dir, hub, &config);
    agent.wait_connected("bus", 1);
    let polls = || {
        let s = agent.port_status("bus");
        (1..=SLAVES)
            .map(|id| s["slaves"][id.to_string()]["polls"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    std::thread::sleep(Duration::from_secs(1));
    let (p0, t0) = (polls(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let rate = (polls() - p0) as f64 / t0.elapsed().as_secs_f64();
    let errors = agent.port_status("bus");
    for id in 1..=SLAVES {
        let requests = &errors["slaves"][id.to_string()]["requests"];
        assert_eq!(
            requests.as_object().map(|o| o.len()),
            Some(1),
            "only ok requests: {requests}"
        );
    }
    // 8N1: 10 bits a character. Request 8 bytes; answer 5 + 2 * 10 bytes.
    let char_s = 10.0 / 19200.0;
    let exchange = (8.0 + 25.0) * char_s + 2.0 * 3.5 * char_s;
    (rate, 1.0 / exchange)
}

fn main() {
    let args = Args::parse(std::env::args().skip(1));
    let lines = args.num("lines", 200_000);
    let seconds = args.num("seconds", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let line_len = (0..lines).map(|i| line(i).len()).sum::<usize>() as f64 / lines as f64;

    let payload: String = (0..lines).map(line).collect();
    let base_bps = baseline_pty(&subdir(dir.path(), "base"), payload.as_bytes());
    let base_lps = base_bps / line_len;
    let (ferry, _) = agent_lines(&subdir(dir.path(), "fast"), lines, None);
    println!(
        "lines, unthrottled: ferry-agent {ferry:.0} lines/s committed; pty baseline {base_lps:.0} lines/s ({:.1} MB/s); ratio {:.2}",
        base_bps / 1e6,
        ferry / base_lps
    );
    let rate = 11_520.0;
    let paced_lines = (rate * line_len.recip() * 10.0) as u64; // about 10 s of traffic
    let (paced, paced_len) = agent_lines(&subdir(dir.path(), "paced"), paced_lines, Some(rate));
    let ceiling = rate / paced_len;
    println!(
        "lines at 115200 baud: ferry-agent {paced:.0} lines/s; wire ceiling {ceiling:.0} lines/s ({paced_len:.1} B lines); ratio {:.2}",
        paced / ceiling
    );
    let (polls, limit) = modbus_polls(&subdir(dir.path(), "modbus"), seconds);
    println!(
        "modbus rtu, 19200 baud, 4 slaves, 10 registers/poll: ferry-agent {polls:.0} polls/s on the bus; frame-time limit {limit:.1} polls/s; ratio {:.2}",
        polls / limit
    );
}

/// A fresh directory under `dir` for one scenario.
fn subdir(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("mkdir");
    path
}
