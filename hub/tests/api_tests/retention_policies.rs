//! Arc's retention policy routes: create with `name`, `retention_days`,
//! `buffer_days` and `is_active`; get, update and delete by id; execute
//! one policy (dry run, then confirmed) and read its executions; and what
//! a careless or hostile client gets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn days_ago_ns(days: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    now - now.rem_euclid(DAY_NS) - days * DAY_NS + 3_600 * 1_000_000_000
}

async fn create(hub: &TestHub, body: Value) -> reqwest::Response {
    hub.post("/api/v1/retention", &hub.admin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn execute(hub: &TestHub, id: i64, body: Value) -> reqwest::Response {
    hub.post(&format!("/api/v1/retention/{id}/execute"), &hub.admin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Ten rows of `plant.{m}` on each of 5, 3 and 0 days ago.
async fn seed(hub: &TestHub, m: &str) {
    for days in [5, 3, 0] {
        let body: String = (0..10)
            .map(|i| format!("{m},host=a v={i}i {}\n", days_ago_ns(days) + i))
            .collect();
        let r = hub.write_lp("plant", &body).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn arc_policies_are_created_changed_executed_and_deleted_by_id() {
    let hub = start_with(|c| c.retention.enabled = false).await;
    seed(&hub, "vib").await;
    seed(&hub, "temp").await;

    let r = create(
        &hub,
        json!({"name": "vib-short", "database": "plant", "measurement": "vib",
               "retention_days": 2, "buffer_days": 1, "is_active": true}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let p: Value = r.json().await.unwrap();
    let id = p["id"].as_i64().unwrap();
    assert_eq!(p["name"], "vib-short");
    assert_eq!(
        (p["retention_days"].clone(), p["buffer_days"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(p["last_execution_time"], Value::Null);

    let list = hub.admin_get("/api/v1/retention").await;
    assert_eq!(list["policies"][0]["id"], id, "{list}");
    let (_, read) = hub.token("read").await;
    let got: Value = hub
        .get(&format!("/api/v1/retention/{id}"), &read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "vib-short");

    // Keeps 2 + 1 days (plus today): the rows of 5 days ago go, 3 days ago stay.
    let dry: Value = execute(&hub, id, json!({"dry_run": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dry["deleted_count"], 10, "{dry}");
    assert_eq!(dry["affected_measurements"], json!(["vib"]));
    assert_eq!(hub.count("plant.vib").await, 30);
    error(
        execute(&hub, id, json!({})).await,
        StatusCode::BAD_REQUEST,
        "confirm_required",
    )
    .await;
    let done: Value = execute(&hub, id, json!({"confirm": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["deleted_count"], 10, "{done}");
    assert_eq!(done["policy_name"], "vib-short");
    assert_eq!(hub.count("plant.vib").await, 20);
    assert_eq!(
        hub.count("plant.temp").await,
        30,
        "another table's data stays"
    );

    let ex = hub
        .admin_get(&format!("/api/v1/retention/{id}/executions?limit=10"))
        .await;
    assert_eq!(ex["count"], 2, "{ex}");
    assert_eq!(ex["executions"][0]["dry_run"], false);
    assert_eq!(ex["executions"][0]["deleted_count"], 10);
    assert_eq!(ex["executions"][1]["dry_run"], true);
    let p = hub.admin_get(&format!("/api/v1/retention/{id}")).await;
    assert_eq!(p["last_deleted_count"], 10, "{p}");
    assert_eq!(p["last_execution_status"], "completed");

    // Update: shorter, then off (an inactive policy cannot run).
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/retention/{id}")))
        .bearer_auth(&hub.admin)
        .json(&json!({"retention_days": 4, "buffer_days": 0, "is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["retention_days"].clone(), p["is_active"].clone()),
        (json!(4), json!(false))
    );
    error(
        execute(&hub, id, json!({"confirm": true})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;

    // The scheduled (here: manual) run records an execution for each policy.
    let db = create(
        &hub,
        json!({"name": "plant-wide", "database": "plant", "measurement": null, "retention_days": 1}),
    )
    .await;
    assert_eq!(db.status(), StatusCode::CREATED);
    let db_id = db.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let run = hub.admin_post("/api/v1/retention/run").await;
    // vib's own policy is off, so the database's covers it too: temp loses
    // 5 and 3 days ago (20 rows), vib 3 days ago (10).
    assert_eq!(run["rows"], 30, "{run}");
    let ex = hub
        .admin_get(&format!("/api/v1/retention/{db_id}/executions"))
        .await;
    assert_eq!(ex["executions"][0]["deleted_count"], 30, "{ex}");

    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/retention/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let gone = hub
        .get(&format!("/api/v1/retention/{id}"), &hub.admin)
        .send()
        .await
        .unwrap();
    error(gone, StatusCode::NOT_FOUND, "not_found").await;
    hub.stop().await;
}

#[tokio::test]
async fn bad_arc_policies_and_ids_are_refused() {
    let hub = start_with(|c| c.retention.enabled = false).await;
    let ok = json!({"name": "p", "database": "plant", "retention_days": 30});
    assert_eq!(create(&hub, ok.clone()).await.status(), StatusCode::CREATED);
    // The same name, or the same scope: 409.
    error(create(&hub, ok).await, StatusCode::CONFLICT, "conflict").await;
    error(
        create(
            &hub,
            json!({"name": "q", "database": "plant", "retention_days": 9}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    for bad in [
        json!({"name": "a", "database": "plant", "measurement": "m", "retention_days": 0}),
        json!({"name": "a", "database": "plant", "measurement": "m", "retention_days": 7, "buffer_days": 7}),
        json!({"name": "a", "database": "plant", "measurement": "m", "retention_days": 40000}),
        json!({"name": "", "database": "plant", "measurement": "m", "retention_days": 7}),
        json!({"name": "a\u{7}", "database": "plant", "measurement": "m", "retention_days": 7}),
        json!({"name": "x".repeat(129), "database": "plant", "measurement": "m", "retention_days": 7}),
        json!({"name": "a", "database": "plant", "measurement": "m", "days": 7, "retention_days": 7}),
        json!({"name": "a", "database": "../x", "retention_days": 7}),
        json!({"name": "a", "database": "plant", "retention_days": 7, "extra": true}),
        json!({"database": "plant", "measurement": "m"}),
    ] {
        error(
            create(&hub, bad).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    for (path, status, code) in [
        (
            "/api/v1/retention/abc",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("/api/v1/retention/999", StatusCode::NOT_FOUND, "not_found"),
        (
            "/api/v1/retention/999/executions",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/api/v1/retention/-1", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let r = hub.get(path, &hub.admin).send().await.unwrap();
        error(r, status, code).await;
    }
    let (_, read) = hub.token("read").await;
    let r = hub
        .client
        .put(hub.url("/api/v1/retention/1"))
        .bearer_auth(&read)
        .json(&json!({"retention_days": 1}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post("/api/v1/retention/1/execute", &read)
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post("/api/v1/retention/1/execute", &hub.admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let p = hub.admin_get("/api/v1/retention/1").await;
    assert_eq!(p["retention_days"], 30, "nothing changed: {p}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    hub.stop().await;
}
