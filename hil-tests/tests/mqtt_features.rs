//! The MQTT features sensors rely on, side by side: the same paho-mqtt
//! script (`scripts/mqtt_features.py`: keep alive expiry and wills, `$`
//! topics, delivered QoS, retained messages, offline queueing for MQTT 5 and
//! 3.1.1 sessions, session expiry, user properties, payload format, content
//! type, response topic and correlation data, message expiry, no-local,
//! retain-as-published, retain handling, client topic aliases, the client's
//! Maximum Packet Size, shared subscriptions) against Mosquitto and against
//! ferry-agent on its own broker engine (`mqtt.engine = "ferry"`). Each
//! feature's observation must equal Mosquitto's and what the MQTT
//! specification requires; where Mosquitto 2.0 departs from the
//! specification (the DISCONNECT 0x8E of a takeover), the script records
//! what it does, and the agent must follow the specification.

use std::process::Command;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{free_port, spawn_agent, start_mosquitto};

fn observe(python: &std::path::Path, port: u16, what: &str) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mqtt_features.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(port.to_string())
        .arg("side-by-side")
        .output()
        .expect("run mqtt_features.py");
    assert!(
        out.status.success(),
        "mqtt_features.py against {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mqtt_features.py prints JSON")
}

#[test]
fn mqtt_features_like_mosquitto() {
    let Some(python) = python_with(&["paho.mqtt"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut mosquitto, mosquitto_port) = start_mosquitto(dir.path(), false);
    let mqtt = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-features\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\nengine = \"ferry\"\n\
             [[routes]]\ntopic = \"features/{{run}}/{{measurement}}\"\ndatabase = \"plant\"\n\
             [uplink]\nhub_url = \"http://127.0.0.1:9\"\nbackoff_initial = \"5s\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            dir.path().join("agent").display(),
            free_port()
        ),
    )
    .expect("agent.toml");
    let _agent = spawn_agent(&config, mqtt, &dir.path().join("agent.log"));

    // Both at once: the brokers share nothing, and the script mostly waits.
    let (peer, agent) = std::thread::scope(|s| {
        let peer = s.spawn(|| observe(&python, mosquitto_port, "Mosquitto"));
        let agent = observe(&python, mqtt, "ferry-agent");
        (peer.join().expect("the Mosquitto run"), agent)
    });
    mosquitto.kill();

    let features = agent.as_object().expect("an object");
    assert!(features.len() >= 17, "{agent}");
    let mut differences = Vec::new();
    for (feature, result) in features {
        let (observed, expected) = (&result["observed"], &result["expected"]);
        // Where Mosquitto departs from the specification the script says
        // what it does instead; the agent follows the specification.
        let mosquitto = &peer[feature]["observed"];
        let mosquitto_expected = result.get("mosquitto").unwrap_or(expected);
        if observed != expected || mosquitto != mosquitto_expected {
            differences.push(format!(
                "{feature}: ferry-agent {observed}, Mosquitto {mosquitto}, the specification {expected}, Mosquitto expected {mosquitto_expected}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
