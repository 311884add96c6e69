//! SIGTERM is an ordered shutdown that loses nothing: QoS 0 readings still
//! waiting in memory (`qos0_max_delay`) are written before the agent exits,
//! and they reach the hub after the next start.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ferry_hil_tests::{
    agent_status, free_port, publish_lines, query, require_tool, spawn_agent, start_hub_at,
    wait_until,
};

#[test]
fn sigterm_keeps_qos0_readings_held_in_memory() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The hub's address is fixed now; it starts only after the SIGTERM.
    let hub_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let http_port = free_port();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
id = "gw-term"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "term/{{device}}"
database = "plant"
measurement = "qos0"
[store]
qos0_max_delay = "60s"
[segment]
max_age = "50ms"
[uplink]
hub_url = "http://{hub_addr}"
backoff_initial = "50ms"
backoff_max = "300ms"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            dir.path().join("agent").display()
        ),
    )
    .expect("agent.toml");
    let start_agent = |n: usize| {
        spawn_agent(
            &agent_config,
            mqtt,
            &dir.path().join(format!("agent-{n}.log")),
        )
    };
    let mut agent = start_agent(0);
    let lines: String = (0..150).map(|i| format!("{i}\n")).collect();
    publish_lines(&pubber, mqtt, "term/dev1", &["-q", "0"], &lines);

    // They are held in memory, not yet in the buffer.
    let status_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let v = agent_status(status_addr);
    assert_eq!(
        v["buffer"]["backlog_readings"], 0,
        "QoS 0 readings were written early: {v}"
    );

    let pid = agent.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_until(
        "the agent to exit after SIGTERM",
        Duration::from_secs(30),
        || !agent.is_running(),
    );

    // Next start, with the hub up: all 150 arrive.
    let hub = start_hub_at(dir.path(), hub_addr);
    let _agent = start_agent(1);
    let sql = "SELECT count(*), count(DISTINCT value) FROM plant.qos0";
    let mut last = serde_json::Value::Null;
    wait_until(
        "150 QoS 0 readings in the lake",
        Duration::from_secs(60),
        || {
            last = query(hub.addr, None, sql).unwrap_or_default();
            last["data"][0][0] == 150
        },
    );
    assert_eq!(last["data"][0][1], 150, "{last}");
}
