//! Arc's own Python client (`arc-tsdb-client` from PyPI, `from arc_client
//! import ArcClient`), unchanged, against a real `ferry-hub`: health,
//! MessagePack columnar writes, `query` (JSON), `query_arrow`,
//! `query_pandas`, `list_measurements`, `list_databases`, the delete config,
//! a dry-run delete and a real one, retention policies (create, list, get,
//! update, a dry-run execution, its executions, delete), and the client's
//! own exceptions for a
//! bad query, an unconfirmed whole-table delete and a read token deleting.

use std::path::Path;
use std::process::Command;

use ferry_hil_tests::{HubProcess, http, start_hub};
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

#[test]
fn arc_python_client_writes_queries_and_deletes_unchanged() {
    let Some(python) = ferry_hil_tests::serial::python_with(&["arc_client", "pandas"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), true);
    let admin = hub.admin.clone().expect("auth is on");
    let read = create_token(&hub, "dashboard", "read");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/arc_python_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(hub.addr.ip().to_string())
        .arg(hub.addr.port().to_string())
        .arg(&admin)
        .arg(&read)
        .output()
        .expect("run arc_python_client.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "arc_python_client.py failed:\n{stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("arc_python_client.py printed no JSON ({e}):\n{stderr}"));

    assert_eq!(r["health"], "ok");
    assert_eq!(r["ready"], true);
    assert_eq!(
        r["query"],
        json!({"success": true, "columns": ["n"], "data": [[100]], "row_count": 1})
    );
    assert_eq!(
        r["arrow"],
        json!([{"host": "a", "n": 50}, {"host": "b", "n": 50}])
    );
    // host a holds the even temperatures 0, 2, ..., 98.
    assert_eq!(r["pandas"], json!({"rows": 50, "sum": 2450.0}));
    assert_eq!(r["measurements"], json!([["plant", "boiler", 1]]));
    assert_eq!(r["databases"], json!(["plant"]));
    assert_eq!(r["delete_config"]["enabled"], true);

    // The client's default is a dry run: counted, nothing changed.
    let dry = &r["dry"];
    assert_eq!(dry["success"], true, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted_count"], 5, "{dry}");
    assert_eq!(dry["affected_files"], 1);
    assert_eq!(r["after_dry"], 100);
    let real = &r["real"];
    assert_eq!(real["dry_run"], false, "{real}");
    assert_eq!(real["deleted_count"], 5);
    assert_eq!(real["rewritten_files"], 1);
    assert_eq!(r["after"], 95);

    // Arc's client shows the body's `error`, which in Ferry's error body is
    // the code (the reason is in `message`; docs/hub-api.md, "Arc clients").
    let bad = r["bad_query"].as_str().expect("a bad query raises");
    assert!(
        bad.starts_with("ArcQueryError") && bad.contains("(400): bad_request"),
        "{bad}"
    );
    let unconfirmed = r["unconfirmed"]
        .as_str()
        .expect("an unconfirmed delete raises");
    assert!(
        unconfirmed.contains("(400): confirm_required"),
        "{unconfirmed}"
    );
    assert_eq!(r["after_unconfirmed"], 95);
    let denied = r["read_delete"]
        .as_str()
        .expect("a read token cannot delete");
    assert!(denied.starts_with("ArcAuthenticationError"), "{denied}");
    assert_eq!(r["read_query"], 95);

    // Retention policies in Arc's shape, through the client's own calls.
    let created = &r["retention_created"];
    assert_eq!(created["name"], "boiler-90d", "{created}");
    assert_eq!(created["retention_days"], 90);
    assert_eq!(created["buffer_days"], 7);
    assert_eq!(created["measurement"], "boiler");
    assert_eq!(r["retention_listed"], json!(["boiler-90d"]));
    assert_eq!(r["retention_got"], 90);
    assert_eq!(r["retention_updated"], 30);
    let dry = &r["retention_dry_run"];
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["deleted_count"], 0, "today's rows are kept: {dry}");
    assert_eq!(dry["policy_name"], "boiler-90d");
    assert_eq!(r["retention_executions"][0]["status"], "completed");
    assert_eq!(r["retention_after_delete"], json!([]));

    // A continuous query, through the client's own calls; executed twice
    // over the same windows, every source row is counted once.
    let created = &r["cq_created"];
    assert_eq!(created["name"], "boiler-1m", "{created}");
    assert_eq!(created["destination_measurement"], "boiler_1m");
    assert_eq!(created["is_active"], true);
    assert_eq!(r["cq_listed"], json!(["boiler-1m"]));
    assert_eq!(r["cq_got"], "1m");
    assert_eq!(r["cq_updated"], "per minute");
    assert_eq!(r["cq_dry"]["status"], "dry_run", "{}", r["cq_dry"]);
    assert!(
        r["cq_dry"]["executed_query"]
            .as_str()
            .is_some_and(|q| q.contains("boiler"))
    );
    assert_eq!(r["cq_run"]["status"], "completed", "{}", r["cq_run"]);
    assert_eq!(r["cq_again"]["status"], "completed");
    assert_eq!(r["cq_sum"], r["cq_source"], "{r}");
    assert_eq!(r["cq_executions"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["cq_after_delete"], json!([]));
}
