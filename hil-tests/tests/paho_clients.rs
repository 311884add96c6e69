//! A Python client (paho-mqtt, PyPI) publishing at QoS 1 and 2 over MQTT
//! 3.1.1 and 5: the moment paho reports a message acknowledged, the reading
//! is already in the agent's buffer (the hub is unreachable, so nothing
//! leaves it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ferry_hil_tests::{agent_status, free_port, require_tool, spawn_agent};

fn buffered(status_addr: SocketAddr) -> u64 {
    let v = agent_status(status_addr);
    let b = &v["buffer"];
    b["backlog_readings"].as_u64().unwrap_or(0) + b["pending_segment_rows"].as_u64().unwrap_or(0)
}

#[test]
fn paho_acknowledged_means_buffered() {
    let Some(python) = require_tool(
        "python",
        "python3 -m venv .venv && .venv/bin/pip install paho-mqtt",
    ) else {
        return;
    };
    let check = Command::new(&python)
        .args(["-c", "import paho.mqtt"])
        .status();
    if !check.is_ok_and(|s| s.success()) {
        assert!(
            !ferry_hil_tests::peers_required(),
            "paho-mqtt is not installed in {}",
            python.display()
        );
        eprintln!("SKIPPED: paho-mqtt is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt = free_port();
    let http_port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-paho\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n[[routes]]\ntopic = \"paho/{{device}}\"\ndatabase = \"plant\"\nmeasurement = \"paho\"\n[uplink]\nhub_url = \"http://127.0.0.1:9\"\nbackoff_initial = \"5s\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let _agent = spawn_agent(&config, mqtt, &dir.path().join("agent.log"));
    let status_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/paho_publish.py");

    let mut expected = 0;
    for (qos, version) in [("1", "3"), ("2", "3"), ("1", "5"), ("2", "5")] {
        let out = Command::new(&python)
            .arg(&script)
            .args([
                &mqtt.to_string(),
                &format!("paho/v{version}q{qos}"),
                "100",
                qos,
                version,
            ])
            .output()
            .expect("run paho");
        assert!(
            out.status.success(),
            "paho: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let acked: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("count");
        assert_eq!(acked, 100, "QoS {qos}, MQTT {version}");
        expected += acked;
        // No waiting: acknowledged means committed.
        assert_eq!(
            buffered(status_addr),
            expected,
            "after QoS {qos}, MQTT {version}"
        );
    }
}
