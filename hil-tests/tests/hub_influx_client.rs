//! The unchanged InfluxDB 2.x Python client (`influxdb-client`, PyPI)
//! writing to a real `ferry-hub` on `/api/v2/write`: Points, dict records and
//! raw lines; float, integer, boolean and string fields; ns and s precision;
//! escaped tags and strings; gzip bodies; a bad line and a type conflict the
//! client raises as `ApiException`. SQL then returns exactly the rows written.

use std::path::Path;
use std::process::Command;

use ferry_hil_tests::{HubProcess, http, query, require_tool, start_hub};
use serde_json::{Value, json};

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
    let v: Value = serde_json::from_str(&body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// The venv's Python with `influxdb_client`, or `None` (skip) when it is
/// missing and peers are not required.
fn python_with(module: &str) -> Option<std::path::PathBuf> {
    let hint = format!("python3 -m venv .venv && .venv/bin/pip install {module}");
    let python = require_tool("python", &hint)?;
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !ferry_hil_tests::peers_required(),
            "{module} is not installed in {}",
            python.display()
        );
        eprintln!("SKIPPED: {module} is not installed in {}", python.display());
        return None;
    }
    Some(python)
}

fn rows(hub: &HubProcess, token: &str, sql: &str) -> Vec<Value> {
    let v = query(hub.addr, Some(token), sql).unwrap_or_else(|| panic!("query failed: {sql}"));
    v["data"].as_array().expect("data").clone()
}

#[test]
fn influxdb_python_client_writes_through_api_v2() {
    let Some(python) = python_with("influxdb_client") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), true);
    let write = create_token(&hub, "influx-client", "write");
    let read = create_token(&hub, "operator", "read");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/influx_write.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", hub.addr))
        .arg(&write)
        .output()
        .expect("run influx_write.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "influx_write.py failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("influx_write.py printed no JSON ({e}):\n{stderr}"));

    // The bad line: 400 partial_write, raised by the client with the line
    // number and the line itself in what it shows.
    let partial = &report["partial"];
    eprintln!("influxdb_client raised: {}", partial["text"]);
    assert_eq!(partial["status"], 400, "{partial}");
    let body: Value = serde_json::from_str(partial["body"].as_str().expect("body")).expect("json");
    assert_eq!(body["error"], "partial_write", "{body}");
    assert_eq!(
        partial["message"], body["message"],
        "the client's message is the body's"
    );
    let detail = &body["details"][0];
    assert_eq!(detail["line_number"], 2, "{body}");
    assert_eq!(
        detail["original_line"], "pump,site=east rpm= 1764158640",
        "{body}"
    );
    assert_eq!(body["details"].as_array().map(Vec::len), Some(1), "{body}");
    let text = partial["text"].as_str().expect("text");
    assert!(
        text.contains("(400)") && text.contains("pump,site=east rpm= 1764158640"),
        "the raised exception does not name the bad line: {text}"
    );
    // The type conflict: 409 schema_conflict naming the column.
    let conflict = &report["conflict"];
    assert_eq!(conflict["status"], 409, "{conflict}");
    let text = conflict["text"].as_str().expect("text");
    assert!(
        text.contains("schema_conflict") && text.contains("rpm"),
        "{conflict}"
    );

    // Exactly the rows written; ns times are floored to µs (decision 0002).
    let boiler = rows(
        &hub,
        &read,
        "SELECT time, site, unit, temp, starts, running, mode FROM plant.boiler ORDER BY time",
    );
    assert_eq!(
        boiler,
        vec![
            json!([
                "2025-11-26T12:00:00.123456Z",
                "north",
                "b1",
                21.5,
                3,
                true,
                "auto"
            ]),
            json!([
                "2025-11-26T12:00:01Z",
                "east wing",
                "b=2,x",
                -4.25,
                0,
                false,
                "off, \"manual\""
            ]),
            json!([
                "2025-11-26T12:01:00Z",
                "north",
                "b1",
                22.0,
                null,
                null,
                null
            ]),
            json!(["2025-11-26T12:02:00Z", "south", "b3", null, 12, null, "eco"]),
        ],
    );
    let pump = rows(
        &hub,
        &read,
        "SELECT time, site, rpm, ok FROM plant.pump ORDER BY time",
    );
    assert_eq!(
        pump,
        vec![
            json!(["2025-11-26T12:00:00Z", "north", 1500, true]),
            json!(["2025-11-26T12:01:00Z", "south", 900, false]),
            json!(["2025-11-26T12:03:00Z", "east", 7, true]),
            json!(["2025-11-26T13:00:00Z", "west", 1200, true]),
        ],
    );
    // Column types as the client sent them: i suffix → long, floats stay
    // double even when integral (22.0), strings are strings (DataFusion may
    // read them as views).
    let types = rows(
        &hub,
        &read,
        "SELECT arrow_typeof(temp), arrow_typeof(starts), arrow_typeof(running), arrow_typeof(mode) FROM plant.boiler LIMIT 1",
    );
    let types = types[0].as_array().expect("row");
    assert_eq!(
        types[..3],
        [json!("Float64"), json!("Int64"), json!("Boolean")]
    );
    assert!(
        ["Utf8", "Utf8View", "LargeUtf8"].contains(&types[3].as_str().unwrap_or_default()),
        "mode is {}",
        types[3]
    );
}
