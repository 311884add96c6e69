//! The hub is unreachable (connection refused) while sensors publish; the
//! agent buffers, and when the hub comes up the backlog drains: every
//! reading exactly once, and the agent's segments arrive in sequence order.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_hil_tests::{
    agent_status, free_port, http, publish_lines, query, require_tool, spawn_agent, start_hub_at,
    wait_until,
};

#[test]
fn backlog_drains_once_the_hub_is_back() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The hub's address is fixed now; nothing listens there yet.
    let hub_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let http_port = free_port();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
id = "gw-outage"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[[routes]]
topic = "outage/{{device}}"
database = "plant"
measurement = "backlog"
[segment]
max_age = "50ms"
max_rows = 25
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
    let _agent = spawn_agent(&agent_config, mqtt, &dir.path().join("agent.log"));

    // 200 readings in 8 batches while nothing listens on the hub's port.
    for batch in 0..8 {
        let lines: String = (0..25).map(|i| format!("{}\n", batch * 25 + i)).collect();
        publish_lines(&pubber, mqtt, "outage/dev1", &["-q", "1"], &lines);
    }
    // The agent holds them as pending segments and keeps retrying.
    let status_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    wait_until(
        "segments pending while the hub is down",
        Duration::from_secs(30),
        || {
            let (_, body) = http("GET", status_addr, "/api/v1/status", &[], b"");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["buffer"]["pending_segments"].as_u64().unwrap_or(0) >= 8
                && v["uplink"]["consecutive_failures"].as_u64().unwrap_or(0) > 0
        },
    );

    // The hub comes up, on the address the agent has been trying.
    let hub = start_hub_at(dir.path(), hub_addr);
    let sql = "SELECT count(*), count(DISTINCT value), min(value), max(value) FROM plant.backlog";
    let mut last = serde_json::Value::Null;
    wait_until("the backlog in the lake", Duration::from_secs(60), || {
        last = query(hub.addr, None, sql).unwrap_or_default();
        last["data"][0][0] == 200
    });
    let row = &last["data"][0];
    assert_eq!(row[1], 200, "duplicates or losses: {last}");
    assert_eq!(row[2].as_f64(), Some(0.0), "{last}");
    assert_eq!(row[3].as_f64(), Some(199.0), "{last}");

    // Segments were committed in sequence order: the fleet view shows the
    // last sequence, and the agent's buffer is empty.
    let (_, agents) = http("GET", hub_addr, "/api/v1/agents", &[], b"");
    let agents: serde_json::Value = serde_json::from_str(&agents).expect("json");
    let me = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "gw-outage"))
        .cloned()
        .unwrap_or_default();
    assert!(me["last_sequence"].as_u64().unwrap_or(0) >= 8, "{agents}");
    wait_until("an empty agent buffer", Duration::from_secs(30), || {
        let v = agent_status(status_addr);
        v["buffer"]["pending_segments"] == 0 && v["buffer"]["backlog_readings"] == 0
    });
}
