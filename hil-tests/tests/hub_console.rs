//! The Control Center in a real browser: Playwright (PyPI) driving
//! Debian's Chromium headless against a real `ferry-hub`, with a real
//! `ferry-agent` uploading so that a gateway appears
//! (hil-tests/scripts/console_browser.py). Log in, fleet, hub charts, a
//! query with its chart and CSV, a token created and revoked, an alert
//! that fires when new data crosses its threshold and a webhook that hears
//! it, and a read-only token that sees no admin page. The page makes no
//! request anywhere but the hub. Screenshots go to `FERRY_CONSOLE_SHOTS`
//! when set (docs/console/ holds the last ones), else a temporary
//! directory.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{
    free_port, http, publish_lines, require_tool, spawn_agent, spawn_hub, wait_until,
};
use serde_json::{Value, json};

fn token(addr: SocketAddr, admin: &str, body: Value) -> String {
    let auth = format!("Bearer {admin}");
    let (status, text) = http(
        "POST",
        addr,
        "/api/v1/auth/tokens",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<Value>(&text).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[test]
fn control_center_in_chromium() {
    let Some(python) = python_with(&["playwright"]) else {
        return;
    };
    let Some(chromium) = require_tool("chromium", "apt-get install chromium") else {
        return;
    };
    if require_tool("mosquitto_pub", "apt-get install mosquitto-clients").is_none() {
        return;
    }
    let mosquitto_pub = require_tool("mosquitto_pub", "").expect("mosquitto_pub");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = d.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\nbackend = \"fs\"\npath = \"{}\"\n[tables]\ncommit_interval = \"50ms\"\n\
             [metadata]\npath = \"{}\"\n[instance]\nsample_interval = \"1s\"\n\
             [alerts]\nmin_interval = \"1s\"\npoll_interval = \"200ms\"\n",
            d.join("tables").display(),
            d.join("hub.db").display()
        ),
    )
    .expect("hub.toml");
    let (_hub, admin) = spawn_hub(&config, addr, &d.join("hub.log"), true);
    let admin = admin.expect("bootstrap token");
    let gateway = token(
        addr,
        &admin,
        json!({"name": "gw-console", "role": "write", "agents": "gw-console"}),
    );
    let reader = token(addr, &admin, json!({"name": "viewer", "role": "read"}));

    // A real agent uploads, so the gateway appears in the fleet.
    let mqtt = free_port();
    std::fs::write(d.join("agent.token"), &gateway).expect("token file");
    let agent_config = d.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "[agent]\nid = \"gw-console\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [[routes]]\ntopic = \"plant/{{device}}\"\ndatabase = \"plant\"\nmeasurement = \"boiler\"\n\
             [segment]\nmax_age = \"200ms\"\n[uplink]\nhub_url = \"http://{addr}\"\ntoken_file = \"{}\"\n\
             backoff_initial = \"50ms\"\nbackoff_max = \"300ms\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            d.join("agent").display(),
            d.join("agent.token").display(),
            free_port()
        ),
    )
    .expect("agent.toml");
    let _agent = spawn_agent(&agent_config, mqtt, &d.join("agent.log"));
    let lines: String = (0..20)
        .map(|i| format!("{{\"value\": {}}}\n", 20 + i * 3))
        .collect();
    publish_lines(&mosquitto_pub, mqtt, "plant/d1", &["-q", "1"], &lines);
    let auth = format!("Bearer {admin}");
    wait_until("the agent's readings", Duration::from_secs(60), || {
        let (_, text) = http(
            "POST",
            addr,
            "/api/v1/query",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            json!({"sql": "SELECT count(*) FROM plant.boiler"})
                .to_string()
                .as_bytes(),
        );
        serde_json::from_str::<Value>(&text).is_ok_and(|v| v["data"][0][0] == 20)
    });

    let shots = std::env::var_os("FERRY_CONSOLE_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| d.join("shots"));
    std::fs::create_dir_all(&shots).expect("shots dir");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/console_browser.py");
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .args([&admin, &reader])
        .arg(&shots)
        .arg(&chromium)
        .output()
        .expect("run console_browser.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "console_browser.py failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("console_browser.py printed no JSON ({e}):\n{stderr}"));
    eprintln!(
        "browser suite: {:.1} s\n{report:#}",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(
        report["steps"],
        json!([
            "login", "fleet", "hub", "query", "tokens", "data", "alerts", "roles"
        ])
    );
    // Every reading committed: nothing left at the gateway.
    assert_eq!(report["fleet_health"], "ok", "{report}");
    assert!(report["hub_charts"].as_u64().unwrap_or(0) >= 4, "{report}");
    assert_eq!(report["gateway_charts"], 2, "{report}");
    assert_eq!(report["query_rows"], 20, "{report}");
    assert_eq!(report["chart_series"], 1, "{report}");
    assert_eq!(report["csv_first_line"], "time,value", "{report}");
    assert_eq!(report["secret_prefix"], "ferry_", "{report}");
    assert_eq!(report["revoked_status"], "revoked", "{report}");
    assert_eq!(report["lvc_listed"], true, "{report}");
    assert_eq!(report["retention_deleted"], true, "{report}");
    assert_eq!(report["alert_initial"], "ok", "{report}");
    assert_eq!(report["alert_state"], "firing", "{report}");
    assert_eq!(report["webhook"][0]["state"], "firing", "{report}");
    assert_eq!(report["webhook"][0]["rule"], "boiler-hot", "{report}");
    assert_eq!(report["webhook"][0]["value"], json!(250.0), "{report}");
    let nav = report["reader_nav"].as_str().unwrap_or_default();
    assert!(
        nav.contains("Query") && !nav.contains("Tokens") && !nav.contains("Alerts"),
        "{nav}"
    );
    assert!(
        report["reader_tokens_page"]
            .as_str()
            .unwrap_or_default()
            .contains("may not see Tokens"),
        "{report}"
    );
    assert!(
        report["bad_login"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid token"),
        "{report}"
    );
    assert_eq!(report["page_errors"], json!([]), "{report}");
    assert_eq!(report["foreign_requests"], json!([]), "{report}");
}
