//! Recovery: how the gateway's broker copes with clients that reconnect all
//! the time, and how long it is deaf after it dies, against Mosquitto in
//! the same run.
//!
//! * **Reconnect storm** (`hil-tests/scripts/reconnect_storm.py`, paho-mqtt):
//!   clients with fixed ids reconnect for a while (clean and abrupt ends,
//!   takeovers, half-open connects, wills) while one connection publishes
//!   QoS 1 bursts. Connects and publisher acknowledgements per second;
//!   afterwards fresh MQTT 3.1.1 and 5 clients must get an acknowledgement,
//!   and the agent must not have panicked.
//! * **Restart to first acknowledgement**: the process is killed (SIGKILL;
//!   a panic aborts the agent the same way, see decision 0004) and started
//!   again at once, as systemd would without `RestartSec`; the time from the
//!   kill to the first QoS 1 publish acknowledged by the new process. For
//!   the agent with an empty buffer and with a backlog of buffered readings
//!   (its start-up checks the buffer), against Mosquitto without
//!   persistence.
//! * **Self-probe cost**: the idle agent's CPU with the default probes
//!   (every 5 s) against the same agent probing once an hour.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_hil_tests::supervised::Supervised;
use ferry_hil_tests::{free_port, workspace_bin};
use serde_json::{Value, json};

use super::{BENCH_ROUTE, NO_HUB};
use crate::load::burst;
use crate::procs::{cpu_secs, local, start_agent};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

/// One QoS 1 publish on a fresh connection; true once acknowledged.
fn acked_once(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_nodelay(true)?;
        // CONNECT (3.1.1, clean session, keep-alive 30 s, id "recovery").
        s.write_all(b"\x10\x14\x00\x04MQTT\x04\x02\x00\x1e\x00\x08recovery")?;
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack)?;
        if connack[0] != 0x20 || connack[3] != 0 {
            return Ok(false);
        }
        // PUBLISH QoS 1 to bench/recovery/t, packet id 1, {"celsius": 1}.
        let topic = b"bench/recovery/t";
        let payload = br#"{"celsius": 1}"#;
        let mut body = vec![0, topic.len() as u8];
        body.extend_from_slice(topic);
        body.extend_from_slice(&[0, 1]);
        body.extend_from_slice(payload);
        let mut packet = vec![0x32, body.len() as u8];
        packet.extend_from_slice(&body);
        s.write_all(&packet)?;
        let mut puback = [0u8; 4];
        s.read_exact(&mut puback)?;
        let _ = s.write_all(&[0xE0, 0x00]);
        Ok(puback[0] == 0x40)
    };
    attempt().unwrap_or(false)
}

/// Kills the supervised process, which restarts at once; seconds from the
/// kill to the first acknowledged publish.
fn restart_to_ack(process: &Supervised, addr: SocketAddr) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acked_once(addr) {
        assert!(Instant::now() < deadline, "not serving before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = process.pid().expect("running");
    let exits = process.exits().len();
    let killed = Instant::now();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    process.wait_for_exits(exits + 1, Duration::from_secs(10));
    let deadline = killed + Duration::from_secs(120);
    loop {
        if acked_once(addr) {
            return killed.elapsed().as_secs_f64();
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledgement after a restart"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn agent_config(dir: &Path, mqtt: u16, http: u16, supervisor: &str) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"bench-recovery\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n{BENCH_ROUTE}\
             [uplink]\nhub_url = \"{}\"\n{}\n[http]\nlisten = \"127.0.0.1:{http}\"\n[log]\nlevel = \"warn,rumqttd=off\"\n{supervisor}",
            dir.join("agent").display(),
            NO_HUB.0,
            NO_HUB.1,
        ),
    )
    .expect("agent.toml");
    config
}

fn supervised_agent(dir: &Path, supervisor: &str) -> (Supervised, SocketAddr, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    let (mqtt, http) = (free_port(), free_port());
    let config = agent_config(dir, mqtt, http, supervisor);
    let config = config.display().to_string();
    let process = Supervised::start(
        &workspace_bin("ferry-agent"),
        &["run", "--config", &config],
        &dir.join("agent.log"),
        Duration::ZERO,
        None,
    );
    (process, local(mqtt), http)
}

fn supervised_mosquitto(dir: &Path) -> (Supervised, SocketAddr) {
    let mosquitto = ferry_hil_tests::find_tool("mosquitto").expect("mosquitto");
    let port = free_port();
    let conf = dir.join("mosquitto-recovery.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("mosquitto.conf");
    let conf = conf.display().to_string();
    let process = Supervised::start(
        &mosquitto,
        &["-c", &conf],
        &dir.join("mosquitto-recovery.log"),
        Duration::ZERO,
        None,
    );
    (process, local(port))
}

fn storm(port: u16, seconds: u32, clients: u32) -> Value {
    let python = crate::procs::venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reconnect_storm.py");
    let out = Command::new(python)
        .arg(script)
        .args([port.to_string(), seconds.to_string(), clients.to_string()])
        .output()
        .expect("reconnect_storm.py");
    assert!(
        out.status.success(),
        "reconnect_storm.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("storm report")
}

fn per_second(report: &Value, key: &str, seconds: u32) -> f64 {
    report[key].as_f64().unwrap_or(0.0) / f64::from(seconds)
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut section = Section::new("recovery", "Recovery: reconnect storms and restarts");
    section.intro = "A reconnect storm against the agent and Mosquitto (paho-mqtt, fixed client ids, \
        wills, takeovers, abrupt drops, half-open connects, one QoS 1 publisher throughout); the time \
        from a SIGKILL to the first QoS 1 acknowledgement of the restarted process (a panic aborts the \
        agent the same way); and what the agent's self-probes cost when idle."
        .to_owned();
    let (seconds, clients) = if scale.quick { (3, 10) } else { (15, 30) };

    // The storm.
    let agent_dir = dir.join("storm-agent");
    let (agent, agent_addr, agent_http) = supervised_agent(&agent_dir, "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acked_once(agent_addr) {
        assert!(Instant::now() < deadline, "the agent does not serve");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ours = storm(agent_addr.port(), seconds, clients);
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    let panics = log.matches("panicked").count();
    assert_eq!(panics, 0, "the agent panicked during the storm");
    assert_eq!(agent.starts(), 1, "the agent restarted during the storm");
    let health = ferry_hil_tests::try_request(
        "GET",
        local(agent_http),
        "/health",
        &[],
        b"",
        Duration::from_secs(5),
    )
    .map(|a| a.status)
    .unwrap_or(0);
    assert_eq!(health, 200, "the agent is unhealthy after the storm");
    drop(agent);
    let (mosquitto, mosquitto_addr) = supervised_mosquitto(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !acked_once(mosquitto_addr) {
        assert!(Instant::now() < deadline, "mosquitto does not serve");
        std::thread::sleep(Duration::from_millis(20));
    }
    let theirs = storm(mosquitto_addr.port(), seconds, clients);
    for (name, r) in [("ferry-agent", &ours), ("mosquitto", &theirs)] {
        assert_eq!(
            r["fresh_v311"], "ok",
            "{name}: a fresh 3.1.1 client after the storm"
        );
        assert_eq!(
            r["fresh_v5"], "ok",
            "{name}: a fresh MQTT 5 client after the storm"
        );
        assert_eq!(r["handover_failures"], 0, "{name}: handovers");
    }
    section.compare(Comparison::new(
        "reconnect storm: client connects handled",
        Unit::Rate("connects"),
        &[per_second(&ours, "connects", seconds)],
        "Mosquitto",
        &[per_second(&theirs, "connects", seconds)],
    ));
    section.compare(Comparison::new(
        "reconnect storm: QoS 1 acks to a steady publisher meanwhile",
        Unit::Rate("acks"),
        &[per_second(&ours, "publisher_acked", seconds)],
        "Mosquitto",
        &[per_second(&theirs, "publisher_acked", seconds)],
    ));

    // Restart to the first acknowledgement.
    let runs = scale.runs.max(1);
    let mut mosquitto_times = Vec::new();
    for _ in 0..runs {
        mosquitto_times.push(restart_to_ack(&mosquitto, mosquitto_addr));
    }
    drop(mosquitto);
    let (agent, agent_addr, _) = supervised_agent(&dir.join("restart-empty"), "");
    let mut empty = Vec::new();
    for _ in 0..runs {
        empty.push(restart_to_ack(&agent, agent_addr));
    }
    drop(agent);
    let backlog = if scale.quick { 20_000 } else { 400_000 };
    let (agent, agent_addr, _) = supervised_agent(&dir.join("restart-backlog"), "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acked_once(agent_addr) {
        assert!(Instant::now() < deadline, "the agent does not serve");
        std::thread::sleep(Duration::from_millis(20));
    }
    let filled = burst(
        agent_addr.port(),
        4,
        backlog / 4,
        100,
        rumqttc::QoS::AtLeastOnce,
    );
    let mut full = Vec::new();
    for _ in 0..runs {
        full.push(restart_to_ack(&agent, agent_addr));
    }
    let buffer_bytes = std::fs::metadata(dir.join("restart-backlog/agent/buffer.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    drop(agent);
    let ms = |v: &[f64]| v.iter().map(|s| s * 1000.0).collect::<Vec<_>>();
    section.compare(Comparison::new(
        "SIGKILL to the first QoS 1 ack of the restarted process, empty buffer",
        Unit::Ms,
        &ms(&empty),
        "Mosquitto (no persistence)",
        &ms(&mosquitto_times),
    ));
    section.compare(Comparison::new(
        format!(
            "SIGKILL to the first QoS 1 ack, {} readings buffered ({:.0} MB)",
            filled.messages,
            buffer_bytes as f64 / 1e6
        ),
        Unit::Ms,
        &ms(&full),
        "the agent with an empty buffer",
        &ms(&empty),
    ));

    // Self-probe cost, idle.
    let idle = if scale.quick { 2.0 } else { 20.0 };
    let cpu = |supervisor: &str, name: &str| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).expect("dir");
        let agent = start_agent(
            &sub,
            NO_HUB.0,
            None,
            NO_HUB.1,
            &format!("{BENCH_ROUTE}{supervisor}"),
        );
        std::thread::sleep(Duration::from_secs(1));
        let pid = agent.peer.id();
        let c0 = cpu_secs(pid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(idle));
        (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
    };
    let probing = cpu("", "idle-probing");
    let quiet = cpu("[supervisor]\nprobe_interval = \"1h\"\n", "idle-quiet");
    section.compare(Comparison::new(
        "idle CPU with the self-probes (every 5 s)",
        Unit::CpuPercent,
        &[probing],
        "the agent probing once an hour",
        &[quiet],
    ));
    section.note(format!(
        "Storm ({clients} clients, {seconds} s): the agent {ours}; Mosquitto {theirs}. \
         The agent did not panic or restart and answered /health 200 afterwards. \
         Restarts are immediate (no RestartSec); under systemd add RestartSec (2 s in the unit)."
    ));
    section.details = json!({
        "storm": { "ferry": ours, "mosquitto": theirs, "seconds": seconds, "clients": clients },
        "restart_ms": { "mosquitto": ms(&mosquitto_times), "agent_empty": ms(&empty), "agent_backlog": ms(&full),
                        "backlog_readings": filled.messages, "buffer_bytes": buffer_bytes },
        "idle_cpu_pct": { "probing": probing, "quiet": quiet },
    });
    section
}
