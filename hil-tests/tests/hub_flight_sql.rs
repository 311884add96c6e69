//! Arrow Flight SQL on a real `ferry-hub`, driven by the unchanged client
//! libraries users run: ADBC (`adbc-driver-flightsql` with
//! `adbc-driver-manager`), `influxdb3-python`'s query path and
//! `flightsql-dbapi` (hil-tests/scripts/flight_clients.py). Each returns the
//! rows `POST /api/v1/query` returns for the same statement; the catalog
//! calls list what the token may read; and hostile or careless calls (no
//! token, a wrong one, DDL, a database the token may not read, a 5 MiB
//! statement, a forged ticket, InfluxQL) get the error a user can act on.

use std::process::Command;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{free_port, http, spawn_hub, wait_for_port};
use serde_json::{Value, json};

fn post(addr: std::net::SocketAddr, path: &str, token: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    http(
        "POST",
        addr,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

fn ok<'a>(report: &'a Value, case: &str) -> &'a Value {
    let v = &report[case];
    assert!(v.get("ok").is_some(), "{case} failed: {v}");
    &v["ok"]
}

fn error(report: &Value, case: &str) -> String {
    let v = &report[case];
    assert!(v.get("error").is_some(), "{case} should have failed: {v}");
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn flight_sql_clients_get_what_the_http_api_answers() {
    let Some(python) = python_with(&["adbc_driver_flightsql", "influxdb_client_3", "flightsql"])
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let flight_port = free_port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:{flight_port}\"\n\
             [storage]\nbackend = \"fs\"\npath = \"{}\"\n[tables]\ncommit_interval = \"50ms\"\n\
             [metadata]\npath = \"{}\"\n",
            dir.path().join("tables").display(),
            dir.path().join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let (_hub, admin) = spawn_hub(&config, addr, &dir.path().join("hub.log"), true);
    let admin = admin.expect("bootstrap token");
    wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], flight_port)),
        std::time::Duration::from_secs(20),
    );

    for (db, body) in [
        (
            "plant",
            "boiler,device=d2 value=2.5 2000\nboiler,device=d1 value=1.5 1000\nboiler,device=d3 value=3.5 3000\n",
        ),
        ("secret", "boiler,device=x value=99.0 1000\n"),
    ] {
        let (status, text) = post(
            addr,
            &format!("/api/v1/write/line-protocol?db={db}&precision=s"),
            &admin,
            body,
        );
        assert_eq!(status, 204, "{text}");
    }
    let (status, text) = post(
        addr,
        "/api/v1/auth/roles",
        &admin,
        &json!({"name": "plant-reader", "grants": [{"permission": "read", "database": "plant"}]})
            .to_string(),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = post(
        addr,
        "/api/v1/auth/tokens",
        &admin,
        &json!({"name": "dashboard", "roles": ["plant-reader"]}).to_string(),
    );
    assert_eq!(status, 201, "{text}");
    let limited = serde_json::from_str::<Value>(&text).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let sql = "SELECT device, value FROM boiler ORDER BY device";
    let (status, text) = post(
        addr,
        "/api/v1/query",
        &admin,
        &json!({"sql": sql, "database": "plant"}).to_string(),
    );
    assert_eq!(status, 200, "{text}");
    let expected = serde_json::from_str::<Value>(&text).expect("json")["data"].clone();
    assert_eq!(expected, json!([["d1", 1.5], ["d2", 2.5], ["d3", 3.5]]));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/flight_clients.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([
            &flight_port.to_string(),
            &addr.port().to_string(),
            &admin,
            &limited,
        ])
        .output()
        .expect("run flight_clients.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flight_clients.py failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("flight_clients.py printed no JSON ({e}):\n{stderr}"));
    eprintln!("{report:#}");

    // The same rows through every client, and through both auth forms.
    for case in [
        "adbc_query",
        "adbc_basic_auth",
        "influx_query",
        "dbapi_query",
        "adbc_limited_own_db",
    ] {
        assert_eq!(ok(&report, case), &expected, "{case}");
    }
    let prepared = ok(&report, "adbc_prepared");
    assert_eq!(prepared["first"], expected);
    assert_eq!(prepared["second"], expected);
    assert_eq!(ok(&report, "adbc_health"), &json!([[1]]));
    // The call's `database` metadata is the default database, as on HTTP.
    assert_eq!(ok(&report, "adbc_show"), &json!([["plant", "boiler"]]));

    // Catalog calls: what the token may read, with columns.
    let objects = ok(&report, "adbc_objects");
    for table in ["datafusion.plant.boiler", "datafusion.secret.boiler"] {
        let cols = objects[table]
            .as_array()
            .unwrap_or_else(|| panic!("{table} in {objects}"));
        for c in ["time", "device", "value"] {
            assert!(cols.contains(&json!(c)), "{table} lacks {c}: {cols:?}");
        }
    }
    let limited_objects = ok(&report, "adbc_objects_limited");
    assert!(
        limited_objects.get("datafusion.plant.boiler").is_some(),
        "{limited_objects}"
    );
    assert!(
        limited_objects.get("datafusion.secret.boiler").is_none(),
        "{limited_objects}"
    );
    let columns = ok(&report, "adbc_table_schema");
    assert!(
        columns
            .as_array()
            .is_some_and(|c| c.contains(&json!("value"))),
        "{columns}"
    );
    let info = ok(&report, "adbc_info");
    assert_eq!(info["vendor_name"], "Ferry", "{info}");
    assert!(
        info["table_types"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("TABLE"))),
        "{info}"
    );
    let tables = ok(&report, "dbapi_tables");
    assert!(
        tables
            .as_array()
            .is_some_and(|t| t.contains(&json!("plant.boiler"))),
        "{tables}"
    );

    // Hostile and careless calls.
    assert!(
        error(&report, "adbc_no_token").contains("missing token"),
        "{report}"
    );
    assert!(
        error(&report, "adbc_bad_token").contains("invalid token"),
        "{report}"
    );
    assert!(
        error(&report, "adbc_bad_basic").contains("invalid token"),
        "{report}"
    );
    assert!(error(&report, "adbc_ddl").contains("read-only"), "{report}");
    assert!(!error(&report, "adbc_bad_sql").is_empty());
    let denied = error(&report, "adbc_limited_other_db");
    assert!(denied.contains("secret"), "{denied}");
    let huge = error(&report, "adbc_huge_statement");
    assert!(huge.contains("decoded message length too large"), "{huge}");
    assert!(!error(&report, "adbc_bad_database").is_empty());
    assert!(
        error(&report, "influx_bad_token").contains("invalid token"),
        "{report}"
    );
    assert!(
        error(&report, "influx_influxql").contains("SQL only"),
        "{report}"
    );
    assert!(!error(&report, "forged_ticket").is_empty());

    // Every call is counted, failures by their gRPC code.
    let (_, metrics) = http("GET", addr, "/metrics", &[], b"");
    for line in [
        "ferry_hub_flight_calls_total{call=\"do_get\",code=\"ok\"}",
        "ferry_hub_flight_calls_total{call=\"get_flight_info\",code=\"unauthenticated\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in /metrics");
    }
    // Flight queries are in the query history like HTTP ones.
    let auth = format!("Bearer {admin}");
    let (status, text) = http(
        "GET",
        addr,
        "/api/v1/queries/history",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let dashboard_runs = serde_json::from_str::<Value>(&text).expect("json")["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .filter(|q| q["token_name"] == "dashboard")
        .count();
    assert!(
        dashboard_runs >= 1,
        "no query of the dashboard token in {text}"
    );
}
