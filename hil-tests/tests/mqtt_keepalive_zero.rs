//! A client that asks for no keep alive (0: "the Server is not required to
//! disconnect the Client on the grounds of inactivity", MQTT 3.1.1 and 5
//! §3.1.2.10), as many small sensor stacks do. The same paho-mqtt script
//! runs against `ferry-agent` and against Mosquitto: both accept the
//! connection, keep it through a silence longer than any keep alive the
//! client could have meant, acknowledge and deliver its QoS 1 messages.
//! The agent also stores what it acknowledged.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{agent_status, free_port, require_tool, spawn_agent, start_mosquitto};
use serde_json::{Value, json};

/// Seconds the client stays silent between its two publishes.
const QUIET: &str = "3";

fn run(python: &Path, port: u16, version: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/paho_keepalive_zero.py");
    let out = Command::new(python)
        .arg(&script)
        .args([&port.to_string(), version, QUIET])
        .output()
        .expect("run paho");
    assert!(
        out.status.success(),
        "paho: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script's JSON report")
}

#[test]
fn keep_alive_zero_is_accepted_like_mosquitto() {
    let Some(python) = python_with(&["paho.mqtt"]) else {
        return;
    };
    if require_tool("mosquitto", "apt-get install mosquitto").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mqtt, http_port) = (free_port(), free_port());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-ka0\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [[routes]]\ntopic = \"ka0/{{measurement}}/{{device}}\"\ndatabase = \"plant\"\n\
             [uplink]\nhub_url = \"http://127.0.0.1:9\"\nbackoff_initial = \"5s\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let _agent = spawn_agent(&config, mqtt, &dir.path().join("agent.log"));
    let (_mosquitto, mosquitto_port) = start_mosquitto(dir.path(), false);

    let expected = json!({
        "connack": "Success",
        "acked": [true, true],
        "received": ["{\"n\": 0}", "{\"n\": 1}"],
        "connected_at_end": true,
    });
    for version in ["3", "5"] {
        let ours = run(&python, mqtt, version);
        let theirs = run(&python, mosquitto_port, version);
        eprintln!("MQTT {version}, keep alive 0: ferry-agent {ours}, mosquitto {theirs}");
        assert_eq!(theirs, expected, "mosquitto, MQTT {version}");
        assert_eq!(
            ours, theirs,
            "ferry-agent against mosquitto, MQTT {version}"
        );
    }

    // What the agent acknowledged is in its buffer: two readings per version.
    let status = agent_status(SocketAddr::from(([127, 0, 0, 1], http_port)));
    let b = &status["buffer"];
    let buffered = b["backlog_readings"].as_u64().unwrap_or(0)
        + b["pending_segment_rows"].as_u64().unwrap_or(0);
    assert_eq!(buffered, 4, "{status}");
}
