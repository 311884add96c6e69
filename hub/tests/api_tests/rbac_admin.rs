//! A token that is admin on `plant_*` only manages the retention policies
//! and continuous queries of those databases: it sees only theirs, cannot
//! touch another database's, cannot run maintenance over the whole lake,
//! and cannot make a continuous query copy another database's data into
//! its own.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start};

async fn scoped_admin(hub: &TestHub) -> String {
    let r = hub
        .post("/api/v1/auth/roles", &hub.admin)
        .json(&json!({"name": "plant-admin",
                      "grants": [{"permission": "admin", "database": "plant_*"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "plant-ops", "roles": ["plant-admin"]}))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post(hub: &TestHub, token: &str, path: &str, body: Value) -> reqwest::Response {
    hub.post(path, token).json(&body).send().await.unwrap()
}

const HOURLY: &str = "SELECT date_bin(INTERVAL '1 hour', time) AS time, host, \
    avg(usage) AS usage FROM {source} WHERE time >= {start_time} AND time < {end_time} GROUP BY 1, host";

fn cq(name: &str, database: &str, source: &str) -> Value {
    json!({"name": name, "database": database, "source_measurement": "cpu",
           "destination_measurement": "cpu_1h",
           "query": HOURLY.replace("{source}", source), "interval": "1h"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_admin_manages_only_its_databases() {
    let hub = start().await;
    for db in ["plant_a", "other"] {
        let r = hub
            .write_lp(db, "cpu,host=h usage=1.5\nsecret,host=h v=42i\n")
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let ops = scoped_admin(&hub).await;

    // Retention policies.
    let r = post(
        &hub,
        &ops,
        "/api/v1/retention",
        json!({"database": "plant_a", "days": 30}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = post(
        &hub,
        &ops,
        "/api/v1/retention",
        json!({"database": "other", "days": 1}),
    )
    .await;
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = post(&hub, &hub.admin, "/api/v1/retention",
        json!({"name": "other-short", "database": "other", "retention_days": 9, "buffer_days": 1, "is_active": true})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let other_policy = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let listed: Value = hub
        .get("/api/v1/retention", &ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dbs: Vec<&str> = listed["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs, ["plant_a"], "{listed}");
    assert_eq!(
        hub.admin_get("/api/v1/retention").await["policies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for r in [
        hub.get(&format!("/api/v1/retention/{other_policy}"), &ops)
            .send()
            .await
            .unwrap(),
        hub.client
            .delete(hub.url(&format!("/api/v1/retention/{other_policy}")))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap(),
        post(
            &hub,
            &ops,
            &format!("/api/v1/retention/{other_policy}/execute"),
            json!({"dry_run": true}),
        )
        .await,
        hub.client
            .delete(hub.url("/api/v1/retention?database=other"))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap(),
        // Maintenance over the whole lake needs admin everywhere.
        post(&hub, &ops, "/api/v1/retention/run", json!({})).await,
        post(&hub, &ops, "/api/v1/compaction/run", json!({})).await,
    ] {
        error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }

    // Continuous queries.
    let r = post(
        &hub,
        &ops,
        "/api/v1/continuous_queries",
        cq("mine", "plant_a", "cpu"),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let mine = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();
    // Its statement may not read another database...
    let r = post(
        &hub,
        &ops,
        "/api/v1/continuous_queries",
        cq("steal", "plant_a", "other.cpu"),
    )
    .await;
    let body = error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(body.to_string().contains("other.cpu"), "{body}");
    // ...nor live in one.
    let r = post(
        &hub,
        &ops,
        "/api/v1/continuous_queries",
        cq("there", "other", "cpu"),
    )
    .await;
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = post(
        &hub,
        &hub.admin,
        "/api/v1/continuous_queries",
        cq("theirs", "other", "cpu"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let theirs = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();
    let listed: Value = hub
        .get("/api/v1/continuous_queries", &ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = listed["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [mine], "{listed}");
    for r in [
        hub.get(&format!("/api/v1/continuous_queries/{theirs}"), &ops)
            .send()
            .await
            .unwrap(),
        post(
            &hub,
            &ops,
            &format!("/api/v1/continuous_queries/{theirs}/execute"),
            json!({}),
        )
        .await,
        hub.client
            .delete(hub.url(&format!("/api/v1/continuous_queries/{theirs}")))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap(),
    ] {
        error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Its own it runs and deletes.
    let r = post(&hub, &ops, &format!("/api/v1/continuous_queries/{mine}/execute"),
        json!({"dry_run": true, "start_time": "2025-11-26T00:00:00Z", "end_time": "2025-11-26T02:00:00Z"})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/continuous_queries/{mine}")))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    hub.stop().await;
}
