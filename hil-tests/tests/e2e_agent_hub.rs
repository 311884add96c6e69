//! End to end on embedded defaults: real `ferry-hub` and `ferry-agent`
//! processes, a real MQTT client (`mosquitto_pub`) publishing to the agent's
//! broker at QoS 1, and SQL over the hub's HTTP API returning exactly the
//! published readings.

use std::time::Duration;

use ferry_hil_tests::{
    HubProcess, free_port, http, metric, publish_lines, query, require_tool, spawn_agent,
    start_hub, wait_until,
};

fn create_token(hub: &HubProcess, name: &str, role: &str) -> String {
    let auth = format!("Bearer {}", hub.admin.as_deref().expect("auth is on"));
    let (status, body) = http(
        "POST",
        hub.addr,
        "/api/v1/auth/tokens",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"name": "{name}", "role": "{role}"}}"#).as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

fn query_or_error(hub: &HubProcess, token: &str, sql: &str) -> serde_json::Value {
    query(hub.addr, Some(token), sql).unwrap_or(serde_json::Value::Null)
}

#[test]
fn published_readings_arrive_in_the_lake_exactly_once() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), true);
    let write = create_token(&hub, "gw-e2e", "write");
    let read = create_token(&hub, "operator", "read");

    let mqtt_port = free_port();
    let http_port = free_port();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
id = "gw-e2e"
data_dir = "{data}"
[mqtt]
listen = "127.0.0.1:{mqtt_port}"
[[routes]]
topic = "sensors/{{device}}/{{measurement}}"
database = "plant"
[segment]
max_age = "200ms"
[uplink]
hub_url = "http://{hub}"
token = "{write}"
backoff_initial = "100ms"
backoff_max = "1s"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            data = dir.path().join("agent").display(),
            hub = hub.addr,
        ),
    )
    .expect("write agent.toml");
    let _agent = spawn_agent(&agent_config, mqtt_port, &dir.path().join("agent.log"));

    // 100 readings at QoS 1 over MQTT 3.1.1 and 100 over MQTT 5.
    let lines: String = (0..100)
        .map(|i| format!("{{\"celsius\": {i}.5}}\n"))
        .collect();
    for (device, version) in [("boiler-1", "mqttv311"), ("boiler-2", "mqttv5")] {
        let topic = format!("sensors/{device}/temperature");
        publish_lines(
            &pubber,
            mqtt_port,
            &topic,
            &["-q", "1", "-V", version],
            &lines,
        );
    }

    let mut last = serde_json::Value::Null;
    wait_until(
        "200 rows in plant.temperature",
        Duration::from_secs(60),
        || {
            last = query_or_error(&hub, &read, "SELECT count(*) AS n FROM plant.temperature");
            last["data"][0][0] == 200
        },
    );
    let sums = query_or_error(
        &hub,
        &read,
        "SELECT device, count(*), sum(celsius), min(celsius), max(celsius) FROM plant.temperature GROUP BY device ORDER BY device",
    );
    let expected_sum: f64 = (0..100).map(|i| i as f64 + 0.5).sum();
    assert_eq!(sums["row_count"], 2, "{sums}");
    for (i, device) in ["boiler-1", "boiler-2"].iter().enumerate() {
        let row = &sums["data"][i];
        assert_eq!(row[0], *device, "{sums}");
        assert_eq!(row[1], 100, "{sums}");
        assert_eq!(row[2].as_f64(), Some(expected_sum), "{sums}");
        assert_eq!(row[3].as_f64(), Some(0.5), "{sums}");
        assert_eq!(row[4].as_f64(), Some(99.5), "{sums}");
    }
    // The fleet view knows the agent.
    let auth = format!("Bearer {read}");
    let (status, agents) = http(
        "GET",
        hub.addr,
        "/api/v1/agents",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{agents}");
    assert!(agents.contains("gw-e2e"), "{agents}");
    // The agent counted every message on its way (handles registered once,
    // at start: they must reach the exporter all the same).
    let http_addr: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
    for series in [
        "ferry_broker_publishes_received_total{qos=\"1\"}",
        "ferry_broker_ack_hold_seconds_count",
        "ferry_agent_store_queue_pushed_total",
        "ferry_agent_store_queue_popped_total",
    ] {
        let value = metric(http_addr, series);
        assert!(value >= 200, "{series} = {value}");
    }
}
