//! Query management: the active list, cancelling, the history (kept
//! across a restart, each token seeing only its own queries), slow queries
//! recorded with their plan, and `explain` with the files skipped by
//! statistics.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

const LONG: &str = "SELECT count(*) FROM (SELECT a.value FROM generate_series(1, 100000000) a, \
                    generate_series(1, 100000) b)";

async fn query(hub: &TestHub, token: &str, sql: &str) -> reqwest::Response {
    hub.post("/api/v1/query", token)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap()
}

async fn get(hub: &TestHub, token: &str, path: &str) -> (StatusCode, Value) {
    let r = hub.get(path, token).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_are_listed_cancelled_explained_and_kept_in_history() {
    let mut hub = start_with(|c| c.query.slow_threshold = Duration::ZERO).await;
    for day in 0..3 {
        let body: String = (0..20)
            .map(|i| {
                format!(
                    "m,host=h{} v={i}i {}\n",
                    i % 2,
                    1_767_225_600_000_000_000i64 + day * 86_400_000_000_000 + i
                )
            })
            .collect();
        assert_eq!(
            hub.write_lp("plant", &body).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let (a_id, a) = hub.token("read").await;
    let (_, b) = hub.token("read").await;

    let r = query(
        &hub,
        &a,
        "SELECT host, count(*) FROM plant.m WHERE v > 5 GROUP BY host",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (status, mine) = get(&hub, &a, "/api/v1/queries/history?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["count"], 1, "{mine}");
    let q = &mine["queries"][0];
    assert_eq!(q["status"], "completed", "{q}");
    assert_eq!(q["row_count"], 2);
    assert_eq!(q["token_id"], a_id);
    assert!(
        q["peak_memory_bytes"].as_u64().unwrap() > 0,
        "a grouping holds memory: {q}"
    );
    assert!(
        q["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{q}"
    );
    assert!(q["bytes_returned"].as_u64().unwrap() > 0);
    assert_eq!(q["files_total"], 3, "{q}");
    assert_eq!(q["slow"], true, "every query is slow at threshold 0");
    assert!(q["plan"].as_str().unwrap().contains("output_rows"), "{q}");
    let id = q["id"].as_str().unwrap().to_owned();

    // Another token sees none of it; an admin sees everything.
    let (_, theirs) = get(&hub, &b, "/api/v1/queries/history").await;
    assert_eq!(theirs["count"], 0, "{theirs}");
    let r = hub
        .get(&format!("/api/v1/queries/{id}"), &b)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    let (status, one) = get(&hub, &hub.admin, &format!("/api/v1/queries/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], id);

    // A long query: listed while it runs, cancellable only by its owner
    // (or an admin), and its client gets 503.
    let long = {
        let (client, url, a) = (hub.client.clone(), hub.url("/api/v1/query"), a.clone());
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(a)
                .json(&json!({ "sql": LONG }))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    let mut running = None;
    for _ in 0..100 {
        let (_, active) = get(&hub, &a, "/api/v1/queries/active").await;
        if let Some(q) = active["queries"].as_array().unwrap().first() {
            running = Some(q["id"].as_str().unwrap().to_owned());
            assert_eq!(q["status"], "running");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = running.expect("the long query shows as active");
    let (_, others) = get(&hub, &b, "/api/v1/queries/active").await;
    assert_eq!(others["count"], 0);
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/queries/{running}")))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/queries/{running}")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), long)
        .await
        .expect("the cancelled query answers at once")
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cancelled"),
        "{body}"
    );
    let (_, q) = get(&hub, &a, &format!("/api/v1/queries/{running}")).await;
    assert_eq!(q["status"], "cancelled", "{q}");

    // Explain: the files a time filter rules out are not scanned.
    let r = hub
        .post("/api/v1/query/explain", &a)
        .json(&json!({"sql": "SELECT * FROM plant.m WHERE time < '2025-01-01T00:00:00Z'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (e["files_total"].clone(), e["files_scanned"].clone()),
        (json!(3), json!(0)),
        "{e}"
    );
    assert!(
        e["logical_plan"].as_str().unwrap().contains("Filter"),
        "{e}"
    );
    let r = hub
        .post("/api/v1/query/explain", &a)
        .json(&json!({"sql": "SELECT count(*) FROM plant.m WHERE time >= '2026-01-02T00:00:00Z'", "analyze": true}))
        .send()
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (e["files_total"].clone(), e["files_scanned"].clone()),
        (json!(3), json!(2)),
        "{e}"
    );
    assert_eq!(e["rows"], 1);
    assert!(
        e["physical_plan"].as_str().unwrap().contains("metrics"),
        "{e}"
    );
    for bad in [
        json!({"sql": "DROP TABLE plant.m"}),
        json!({"sql": "SELECT", "x": 1}),
    ] {
        let r = hub
            .post("/api/v1/query/explain", &a)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
    }

    // The history survives a restart.
    hub.restart().await;
    let (_, after) = get(&hub, &hub.admin, "/api/v1/queries/history?limit=1000").await;
    let ids: Vec<&str> = after["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&running.as_str()),
        "{after}"
    );
    hub.stop().await;
}
