//! The gateway is never deaf while it reports healthy (docs/agent.md,
//! "Supervision"):
//!
//! * a reconnect storm (fixed client ids, some that rumqttd refuses, wills,
//!   takeovers, abrupt drops, half-open connects) leaves the agent serving
//!   fresh MQTT 3.1.1 and 5 clients, like Mosquitto in the same run;
//! * a panic injected into each part (gate, accept loop, buffer writer,
//!   segmenter, uplink, serial poller, upstream subscription) ends the
//!   process at once; the stand-in for systemd restarts it, publishes are
//!   acknowledged again within seconds, and every acknowledged reading
//!   reaches the hub exactly once;
//! * a stall injected into each part is reported by `/health` (503, naming
//!   it), the watchdog stops being pinged, and the agent then exits and is
//!   restarted.
//!
//! The agent binary the tests run is a debug build with the
//! `fault-injection` feature (`POST /debug/fault/{component}/{kind}`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_hil_tests::serial::SocatPair;
use ferry_hil_tests::supervised::Supervised;
use ferry_hil_tests::{
    free_port, http, publish_lines, query, require_tool, start_hub, start_mosquitto, try_request,
    wait_or_kill, wait_until, workspace_bin,
};

fn python() -> Option<PathBuf> {
    ferry_hil_tests::serial::python_with(&["paho.mqtt"])
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs the reconnect storm against `port`; returns its JSON report.
fn storm(python: &Path, port: u16, seconds: u32, clients: u32) -> serde_json::Value {
    let out = Command::new(python)
        .arg(script("reconnect_storm.py"))
        .args([port.to_string(), seconds.to_string(), clients.to_string()])
        .output()
        .expect("run reconnect_storm.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reconnect_storm.py failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("storm report {text:?}: {e}"))
}

/// `GET path` on the agent's local HTTP server: the status and the JSON
/// body, or `(0, null)` while nothing listens (the agent is restarting).
fn get(http_addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    match try_request("GET", http_addr, path, &[], b"", Duration::from_secs(5)) {
        Ok(answer) => (
            answer.status,
            serde_json::from_str(&answer.text()).unwrap_or_default(),
        ),
        Err(_) => (0, serde_json::Value::Null),
    }
}

fn health(http_addr: SocketAddr) -> (u16, serde_json::Value) {
    get(http_addr, "/health")
}

/// One QoS 1 message with `mosquitto_pub`; true once it was acknowledged
/// (the client exits 0), false if it fails or takes over 3 s.
fn try_publish(pubber: &Path, port: u16, topic: &str, payload: &str) -> bool {
    let Ok(mut child) = Command::new(pubber)
        .args([
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    wait_or_kill(&mut child, Duration::from_secs(3)).is_some_and(|status| status.success())
}

/// Waits until a QoS 1 publish is acknowledged; returns when.
fn wait_for_ack(pubber: &Path, port: u16, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if try_publish(pubber, port, "sensors/probe/alive", r#"{"ok": 1}"#) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no QoS 1 acknowledgement within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn arm(http_addr: SocketAddr, component: &str, kind: &str) {
    let (status, body) = http(
        "POST",
        http_addr,
        &format!("/debug/fault/{component}/{kind}"),
        &[],
        b"",
    );
    assert_eq!(
        status, 200,
        "fault injection is compiled in (debug build, feature fault-injection): {body}"
    );
}

fn lifecycle(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("agent/lifecycle.json")).expect("lifecycle.json");
    serde_json::from_str(&text).expect("lifecycle.json is JSON")
}

fn agent_args(config: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

fn start_agent(config: &Path, log: &Path, watchdog: Option<Duration>) -> Supervised {
    let args = agent_args(config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Supervised::start(
        &workspace_bin("ferry-agent"),
        &args,
        log,
        Duration::from_millis(200),
        watchdog,
    )
}

#[test]
fn reconnect_storm_leaves_the_broker_serving_like_mosquitto() {
    let Some(python) = python() else { return };
    if require_tool("mosquitto", "apt-get install mosquitto").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mqtt, http_port) = (free_port(), free_port());
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-storm"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "sensors/{{device}}/{{measurement}}"
database = "sensors"
[uplink]
hub_url = "http://127.0.0.1:9"
backoff_initial = "5s"
[http]
listen = "{http_addr}"
[supervisor]
probe_interval = "500ms"
"#,
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let log = dir.path().join("agent.log");
    let agent = start_agent(&config, &log, None);
    wait_until("the agent is up", Duration::from_secs(30), || {
        get(http_addr, "/health").0 == 200
    });

    let ours = storm(&python, mqtt, 15, 30);
    let (mut mosquitto, mosquitto_port) = start_mosquitto(dir.path(), false);
    let theirs = storm(&python, mosquitto_port, 15, 30);
    mosquitto.kill();
    eprintln!("reconnect storm, ferry-agent: {ours}");
    eprintln!("reconnect storm, mosquitto:   {theirs}");

    for (name, report) in [("ferry-agent", &ours), ("mosquitto", &theirs)] {
        assert_eq!(
            report["fresh_v311"], "ok",
            "{name}: fresh MQTT 3.1.1 client"
        );
        assert_eq!(report["fresh_v5"], "ok", "{name}: fresh MQTT 5 client");
        assert!(
            report["wills_received"].as_u64() > Some(0),
            "{name}: wills fire"
        );
        assert!(report["connects"].as_u64() > Some(100), "{name}: a storm");
        assert!(
            report["half_connects"].as_u64() > Some(20),
            "{name}: half-open connects"
        );
        assert!(report["takeovers"].as_u64() > Some(20), "{name}: takeovers");
        assert_eq!(
            report["connect_failures"], 0,
            "{name}: every connect answered"
        );
    }
    // The agent never went down: no restart, no panic, healthy and ready.
    assert_eq!(agent.starts(), 1, "the agent was restarted");
    assert!(agent.exits().is_empty());
    let text = std::fs::read_to_string(&log).expect("agent log");
    assert!(
        !text.contains("panicked"),
        "a panic in the agent log:\n{text}"
    );
    let (status, doc) = health(http_addr);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["restarts"]["panics"], 0);
    assert_eq!(get(http_addr, "/ready").0, 200);
}

/// What sets a part's fault point off.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Its own loop or the self-probes reach it within a second.
    Itself,
    /// A client's PUBLISH.
    Publish,
    /// A line on the serial port.
    SerialLine,
    /// A message on the upstream broker.
    Upstream,
}

#[test]
fn a_panic_in_any_part_restarts_the_agent_and_loses_nothing() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    if require_tool("mosquitto", "apt-get install mosquitto").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(serial) = SocatPair::start(dir.path(), "tty-agent", "tty-device") else {
        return;
    };
    let hub_dir = dir.path().join("hub");
    std::fs::create_dir_all(&hub_dir).expect("hub dir");
    let hub = start_hub(&hub_dir, false);
    let (_upstream, upstream_port) = start_mosquitto(dir.path(), false);
    let (mqtt, http_port) = (free_port(), free_port());
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-panics"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[mqtt.upstream]]
name = "plant"
host = "127.0.0.1"
port = {upstream_port}
client_id = "gw-panics-upstream"
topics = ["plant/#"]
[[routes]]
topic = "sensors/{{device}}/{{measurement}}"
database = "sensors"
[[routes]]
topic = "plant/{{device}}/{{measurement}}"
database = "plant"
[[serial.ports]]
name = "line"
path = "{tty}"
mode = "lines"
database = "plant"
reopen_min = "100ms"
[serial.ports.lines]
format = "csv"
measurement = "serial"
columns = ["v"]
[segment]
max_age = "1s"
[uplink]
hub_url = "http://{hub}"
backoff_initial = "100ms"
backoff_max = "1s"
[http]
listen = "{http_addr}"
[supervisor]
probe_interval = "500ms"
"#,
            data = dir.path().join("agent").display(),
            tty = serial.path_a().display(),
            hub = hub.addr,
        ),
    )
    .expect("agent.toml");
    let log = dir.path().join("agent.log");
    let agent = start_agent(&config, &log, None);
    wait_for_ack(&pubber, mqtt, Duration::from_secs(30));

    let parts = [
        ("gate", Trigger::Publish),
        ("broker", Trigger::Itself),
        ("store", Trigger::Itself),
        ("segmenter", Trigger::Itself),
        ("uplink", Trigger::Itself),
        ("serial", Trigger::SerialLine),
        ("upstream", Trigger::Upstream),
    ];
    let mut figures = Vec::new();
    for (i, (part, trigger)) in parts.iter().enumerate() {
        // Acknowledged readings before the fault.
        let lines: String = (0..20).map(|n| format!("{{\"seq\": {n}}}\n")).collect();
        publish_lines(
            &pubber,
            mqtt,
            &format!("sensors/{part}/fault"),
            &["-q", "1"],
            &lines,
        );

        let armed = Instant::now();
        arm(http_addr, part, "panic");
        match trigger {
            Trigger::Itself => {}
            Trigger::Publish => {
                let _ = try_publish(&pubber, mqtt, "sensors/trigger/gate", r#"{"x": 1}"#);
            }
            Trigger::SerialLine => {
                use std::io::Write;
                let mut tty = std::fs::OpenOptions::new()
                    .write(true)
                    .open(serial.path_b())
                    .expect("open the device end");
                tty.write_all(b"21.5\n").expect("write a serial line");
            }
            Trigger::Upstream => {
                assert!(
                    try_publish(&pubber, upstream_port, "plant/trigger/t", r#"{"x": 1}"#),
                    "publish to the upstream broker"
                );
            }
        }
        let exit = agent.wait_for_exits(i + 1, Duration::from_secs(10));
        assert_eq!(
            exit.signal(),
            Some(6),
            "{part}: the agent aborts (SIGABRT) on a panic, got {:?}",
            exit.status
        );
        let acked = wait_for_ack(&pubber, mqtt, Duration::from_secs(30));
        let record = lifecycle(dir.path());
        assert_eq!(record["last_exit"]["kind"], "panic", "{part}: {record}");
        assert_eq!(record["last_exit"]["component"], *part, "{part}: {record}");
        // /health of the new process says how the previous one ended.
        let (_, doc) = health(http_addr);
        assert_eq!(doc["last_exit"]["component"], *part, "{doc}");
        figures.push(format!(
            "{part}: exit after {:?}, acknowledging again after {:?}",
            exit.at - armed,
            acked - armed
        ));
    }
    eprintln!("injected panics:\n  {}", figures.join("\n  "));
    assert_eq!(agent.starts(), parts.len() + 1);
    assert_eq!(lifecycle(dir.path())["panics"], parts.len());

    // Every acknowledged reading reached the lake exactly once.
    let sql = "SELECT device, count(*) AS rows, count(DISTINCT seq) AS distinct_seq \
               FROM sensors.fault GROUP BY device ORDER BY device";
    let mut last = serde_json::Value::Null;
    let complete = |v: &serde_json::Value| {
        v["data"].as_array().is_some_and(|rows| {
            rows.len() == parts.len() && rows.iter().all(|r| r[1] == 20 && r[2] == 20)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(v) = query(hub.addr, None, sql) {
            if complete(&v) {
                return;
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the lake does not hold every acknowledged reading exactly once: {last}");
}

#[test]
fn a_stalled_part_is_reported_then_the_agent_restarts() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mqtt, http_port) = (free_port(), free_port());
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-stalls"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "sensors/{{device}}/{{measurement}}"
database = "sensors"
[segment]
max_age = "1s"
[uplink]
hub_url = "http://127.0.0.1:9"
backoff_initial = "100ms"
backoff_max = "500ms"
[http]
listen = "{http_addr}"
[supervisor]
probe_interval = "500ms"
probe_timeout = "1s"
stall_timeout = "2s"
work_timeout = "2s"
"#,
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let log = dir.path().join("agent.log");
    // WatchdogSec=1s: a ping every 500 ms while healthy.
    let agent = start_agent(&config, &log, Some(Duration::from_secs(1)));
    wait_for_ack(&pubber, mqtt, Duration::from_secs(30));

    let mut figures = Vec::new();
    for (i, part) in ["store", "broker", "uplink", "segmenter"]
        .iter()
        .enumerate()
    {
        wait_until("the agent is healthy", Duration::from_secs(20), || {
            health(http_addr).0 == 200
        });
        let armed = Instant::now();
        arm(http_addr, part, "stall");
        // /health names the stalled part before the agent gives up. (Parts
        // that wait on it may be named first: the segmenter waits on the
        // buffer's writer.)
        let mut reported = None;
        while reported.is_none() && agent.exits().len() == i {
            let (status, doc) = health(http_addr);
            let stalled = doc["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["state"] == "stalled")
                .filter_map(|c| c["name"].as_str())
                .any(|n| n.starts_with(part));
            if status == 503 && stalled {
                reported = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let reported = reported.unwrap_or_else(|| panic!("{part}: exited before /health said so"));
        let exit = agent.wait_for_exits(i + 1, Duration::from_secs(30));
        assert_eq!(exit.signal(), Some(6), "{part}: {:?}", exit.status);
        assert!(reported < exit.at);
        // No watchdog ping once the part was reported stalled (the monitor
        // checks every 250 ms).
        let late_pings = agent
            .notifications()
            .iter()
            .filter(|(at, msg)| {
                msg == "WATCHDOG=1" && *at > reported + Duration::from_millis(300) && *at < exit.at
            })
            .count();
        assert_eq!(
            late_pings, 0,
            "{part}: the watchdog was pinged while stalled"
        );
        let record = lifecycle(dir.path());
        assert_eq!(record["last_exit"]["kind"], "stall", "{record}");
        assert!(
            record["last_exit"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(part)),
            "{record}"
        );
        let acked = wait_for_ack(&pubber, mqtt, Duration::from_secs(30));
        figures.push(format!(
            "{part}: /health 503 after {:?}, exit after {:?}, acknowledging again after {:?}",
            reported - armed,
            exit.at - armed,
            acked - armed
        ));
    }
    eprintln!("injected stalls:\n  {}", figures.join("\n  "));
    // Healthy again, the watchdog pinged again.
    wait_until(
        "healthy after the last restart",
        Duration::from_secs(20),
        || health(http_addr).0 == 200,
    );
    let since = Instant::now();
    wait_until("a watchdog ping", Duration::from_secs(5), || {
        agent
            .notifications()
            .iter()
            .any(|(at, m)| m == "WATCHDOG=1" && *at > since)
    });
}
