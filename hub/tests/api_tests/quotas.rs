//! Ingest quotas per token and per database, the stored-bytes quota, and
//! the usage report.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

fn lines(n: usize, from: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "m,k=a v={} {}\n",
                i,
                1_700_000_000_000_000_000_u64 + (from + i) as u64
            )
        })
        .collect()
}

async fn put(hub: &TestHub, path: &str, body: Value) -> reqwest::Response {
    hub.client
        .put(hub.url(path))
        .bearer_auth(&hub.admin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn write(hub: &TestHub, token: &str, db: &str, body: String) -> reqwest::Response {
    hub.post(&format!("/api/v1/write/line-protocol?db={db}"), token)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_and_nothing_is_written() {
    let hub = start_with(|c| c.quotas.burst = Duration::from_secs(1)).await;
    let (id, noisy) = hub.token("write").await;
    let (_, quiet) = hub.token("write").await;
    let r = put(
        &hub,
        &format!("/api/v1/quotas/tokens/{id}"),
        json!({"rows_per_second": 100}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A body larger than the burst goes through once (the bucket was full)…
    assert_eq!(
        write(&hub, &noisy, "q", lines(300, 0)).await.status(),
        StatusCode::NO_CONTENT
    );
    // …and leaves the token in debt: 429 with Retry-After, nothing written.
    let r = write(&hub, &noisy, "q", lines(10, 300)).await;
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=3).contains(&after), "Retry-After {after}");
    let body = error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        body["message"].as_str().unwrap().contains("100 rows/s"),
        "{body}"
    );
    assert_eq!(hub.count("q.m").await, 300);
    // Another token is not slowed down by it.
    assert_eq!(
        write(&hub, &quiet, "q", lines(10, 400)).await.status(),
        StatusCode::NO_CONTENT
    );
    // After the Retry-After the token writes again.
    tokio::time::sleep(Duration::from_secs(after)).await;
    assert_eq!(
        write(&hub, &noisy, "q", lines(10, 500)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(hub.count("q.m").await, 320);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_rate_and_storage_quotas() {
    let hub = start_with(|c| {
        c.quotas.burst = Duration::from_secs(1);
        c.quotas.storage_interval = Duration::from_secs(1);
    })
    .await;
    let (_, a) = hub.token("write").await;
    let (_, b) = hub.token("write").await;
    put(
        &hub,
        "/api/v1/quotas/databases/shared",
        json!({"bytes_per_second": 1000}),
    )
    .await;
    // Two tokens share the database's bucket.
    assert_eq!(
        write(&hub, &a, "shared", lines(100, 0)).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = write(&hub, &b, "shared", lines(1, 100)).await;
    let body = error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("database \"shared\"")
    );

    // Storage: over max_bytes, writes are 429 quota_exceeded.
    assert_eq!(
        write(&hub, &a, "small", lines(50, 0)).await.status(),
        StatusCode::NO_CONTENT
    );
    put(
        &hub,
        "/api/v1/quotas/databases/small",
        json!({"max_bytes": 100}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = write(&hub, &a, "small", lines(1, 50)).await;
    assert!(r.headers().contains_key("retry-after"));
    let body = error(r, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert!(
        body["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
    // Lifting the quota lets writes in again.
    let r = hub
        .client
        .delete(hub.url("/api/v1/quotas/databases/small"))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        write(&hub, &a, "small", lines(1, 50)).await.status(),
        StatusCode::NO_CONTENT
    );

    // Bad requests.
    for (path, body, status) in [
        (
            "/api/v1/quotas/tokens/999",
            json!({}),
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/quotas/users/1", json!({}), StatusCode::NOT_FOUND),
        (
            "/api/v1/quotas/tokens/1",
            json!({"max_bytes": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/quotas/databases/x",
            json!({"rows": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/quotas/databases/a%2Fb",
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(put(&hub, path, body).await.status(), status, "{path}");
    }
    let r = hub
        .client
        .put(hub.url("/api/v1/quotas/databases/x"))
        .bearer_auth(&a)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let view = hub.admin_get("/api/v1/quotas").await;
    assert_eq!(view["overrides"][0]["key"], "shared");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_reported_per_day_token_and_database() {
    let hub = start_with(|c| c.quotas.storage_interval = Duration::from_secs(1)).await;
    let (wid, w) = hub.token("write").await;
    let (_, r) = hub.token("read").await;
    for _ in 0..3 {
        assert_eq!(
            write(&hub, &w, "plant", lines(10, 0)).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    for _ in 0..2 {
        let a = hub
            .post("/api/v1/query", &r)
            .json(&json!({"sql": "SELECT count(*) FROM m", "database": "plant"}))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::OK);
    }
    // A bulk import's rows count for the token that imported them.
    let csv: String = std::iter::once("time,host,v\n".to_owned())
        .chain((0..5).map(|i| format!("{},a,{i}.5\n", 1_704_067_200 + i)))
        .collect();
    let imported = hub
        .post(
            "/api/v1/import/csv?db=imported&measurement=m&tag_columns=host&time_format=epoch_s",
            &w,
        )
        .body(csv)
        .send()
        .await
        .unwrap();
    assert!(
        imported.status().is_success(),
        "{}",
        imported.text().await.unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = hub.admin_get("/api/v1/usage").await;
    let import_row = report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["database"] == "imported")
        .cloned()
        .unwrap_or_default();
    assert_eq!(import_row["token_id"], wid, "{report}");
    assert_eq!(import_row["rows_ingested"], 5, "{report}");
    assert!(
        import_row["bytes_ingested"].as_i64().unwrap_or(0) > 0,
        "{report}"
    );
    let rows = report["usage"].as_array().unwrap();
    let of = |name: &str| {
        rows.iter()
            .find(|u| u["token_name"] == name && u["database"] == "plant")
            .unwrap()
            .clone()
    };
    let writer = of("test-write");
    assert_eq!(writer["token_id"], wid);
    assert_eq!(writer["database"], "plant");
    assert_eq!(writer["rows_ingested"], 30);
    assert!(writer["bytes_ingested"].as_i64().unwrap() > 0);
    let reader = of("test-read");
    assert_eq!(reader["queries"], 2);
    assert_eq!(reader["rows_ingested"], 0);
    let storage = report["storage"].as_array().unwrap();
    assert!(
        storage
            .iter()
            .any(|s| s["database"] == "plant" && s["bytes"].as_i64() > Some(0)),
        "{storage:?}"
    );
    // A non-admin token sees its own usage only.
    let own: Value = hub
        .get("/api/v1/usage", &w)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own_rows = own["usage"].as_array().unwrap();
    assert!(own_rows.iter().all(|u| u["token_id"] == wid), "{own}");
    assert!(own["storage"].as_array().unwrap().is_empty());
    let denied = hub
        .get("/api/v1/usage?token_id=1", &w)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let bad = hub
        .get("/api/v1/usage?since=yesterday", &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    hub.stop().await;
}
