//! `GET /api/v1/instance` and its history: the process, host and store
//! readings, rates that move when the hub ingests and answers queries, and
//! per-database storage limited to what the token may read.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::start_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reports_rates_and_readable_storage() {
    let hub = start_with(|c| {
        c.instance.sample_interval = Duration::from_secs(1);
        c.instance.history = 5;
        c.quotas.storage_interval = Duration::from_secs(1);
    })
    .await;
    for (db, line) in [
        ("plant", "boiler,device=d1 value=1.5"),
        ("secret", "vault n=1i"),
    ] {
        let body: String = (0..200)
            .map(|i| format!("{line} {}\n", 1_000 + i))
            .collect();
        assert_eq!(
            hub.write_lp(db, &body).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let r = hub
        .post("/api/v1/query", &hub.admin)
        .json(&json!({"sql": "SELECT count(*) FROM plant.boiler"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Wait for a sample that saw the writes and a measurement of storage.
    let mut answer = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = hub
            .get("/api/v1/instance", &hub.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        answer = r.json().await.unwrap();
        let history: Value = hub
            .get("/api/v1/instance/history", &hub.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let saw_rows = history["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["rows_per_second"].as_f64().unwrap_or(0.0) > 0.0);
        if saw_rows && answer["databases"].as_array().unwrap().len() == 2 {
            assert!(
                history["samples"].as_array().unwrap().len() <= 5,
                "{history}"
            );
            break;
        }
    }
    assert_eq!(answer["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(answer["store"], "fs");
    assert!(answer["cores"].as_u64().unwrap() >= 1);
    assert!(
        answer["memory_total_bytes"].as_u64().unwrap() > 0,
        "{answer}"
    );
    assert!(
        answer["disk_available_bytes"].as_u64().unwrap() > 0,
        "{answer}"
    );
    let latest = &answer["latest"];
    assert!(latest["rss_bytes"].as_u64().unwrap() > 1 << 20, "{answer}");
    assert!(latest["cpu_percent"].as_f64().is_some(), "{answer}");
    let dbs: Vec<&str> = answer["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs, ["plant", "secret"], "{answer}");
    assert!(answer["stored_bytes"].as_u64().unwrap() > 0);

    // A token that reads only `plant` sees only its storage; no token, 401.
    let r = hub
        .post("/api/v1/auth/roles", &hub.admin)
        .json(&json!({"name": "plant-reader", "grants": [{"permission": "read", "database": "plant"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "dash", "roles": ["plant-reader"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limited = v["token"].as_str().unwrap();
    let seen: Value = hub
        .get("/api/v1/instance", limited)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dbs: Vec<&str> = seen["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs, ["plant"], "{seen}");
    let r = hub
        .client
        .get(format!("{}/api/v1/instance", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
