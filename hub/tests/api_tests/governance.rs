//! Token lifecycle (expiry, rotation, revocation, description, last_used)
//! and the audit log (one entry per administrative action, coalesced
//! authentication failures, filters, a tampered entry found).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start, start_with};

async fn create(hub: &TestHub, body: Value) -> (StatusCode, Value) {
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// `SELECT 1` with `token`: its status and body.
async fn select_1(hub: &TestHub, token: &str) -> (StatusCode, Value) {
    let r = hub
        .post("/api/v1/query", token)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn token_record(hub: &TestHub, id: i64) -> Value {
    hub.admin_get(&format!("/api/v1/auth/tokens/{id}")).await
}

/// Every audit entry matching `query` (oldest first), after writing the
/// failures counted in the current window.
async fn audit(hub: &TestHub, query: &str) -> Vec<Value> {
    let verify = hub.admin_get("/api/v1/admin/audit-log/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    let page = hub
        .admin_get(&format!("/api/v1/admin/audit-log?limit=1000&{query}"))
        .await;
    let mut entries = page["entries"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_rotate_and_are_revoked() {
    let hub = start().await;
    // Expiry, with a description.
    let (status, short) = create(
        &hub,
        json!({"name": "short", "role": "read", "expires_in": "2s", "description": "a contractor"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    assert_eq!(short["description"], "a contractor");
    assert_eq!(short["status"], "active");
    assert!(short["expires_at"].is_string());
    let secret = short["token"].as_str().unwrap().to_owned();
    let id = short["id"].as_i64().unwrap();
    assert_eq!(token_record(&hub, id).await["last_used"], Value::Null);
    assert_eq!(select_1(&hub, &secret).await.0, StatusCode::OK);
    assert!(token_record(&hub, id).await["last_used"].is_string());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = select_1(&hub, &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert_eq!(token_record(&hub, id).await["status"], "expired");
    for bad in [json!("soon"), json!(0), json!("-1s")] {
        let (status, body) = create(
            &hub,
            json!({"name": "bad", "role": "read", "expires_in": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // Rotation with a grace period: both secrets work, then only the new.
    let (_, gw) = create(&hub, json!({"name": "gw-1", "role": "write"})).await;
    let (gw_id, old) = (
        gw["id"].as_i64().unwrap(),
        gw["token"].as_str().unwrap().to_owned(),
    );
    let r = hub
        .post(&format!("/api/v1/auth/tokens/{gw_id}/rotate"), &hub.admin)
        .json(&json!({"grace": "2s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let new = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_valid_until"].is_string());
    let write = |token: String| {
        let hub = &hub;
        async move {
            hub.post("/api/v1/write/line-protocol?db=gov", &token)
                .body("m,k=a v=1 1700000000000000000")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(write(old.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(write(new.clone()).await, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = hub
        .post("/api/v1/write/line-protocol?db=gov", &old)
        .body("m,k=a v=1 1700000000000000000")
        .send()
        .await
        .unwrap();
    let body = error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains("rotation"),
        "{body}"
    );
    assert_eq!(write(new.clone()).await, StatusCode::NO_CONTENT);
    // Without a body the grace is auth.rotation_grace; "0s" stops the old
    // secret at once.
    let r = hub
        .post(&format!("/api/v1/auth/tokens/{gw_id}/rotate"), &hub.admin)
        .json(&json!({"grace": "0s"}))
        .send()
        .await
        .unwrap();
    let newer = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(write(new.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(write(newer.clone()).await, StatusCode::NO_CONTENT);

    // Revocation: every secret stops, the record stays and says so.
    let r = hub
        .post(&format!("/api/v1/auth/tokens/{gw_id}/revoke"), &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = hub
        .post("/api/v1/write/line-protocol?db=gov", &newer)
        .body("m,k=a v=1 1700000000000000000")
        .send()
        .await
        .unwrap();
    let body = error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(body["message"].as_str().unwrap().contains("revoked"));
    let rec = token_record(&hub, gw_id).await;
    assert_eq!(rec["status"], "revoked");
    assert!(rec["revoked_at"].is_string());
    // A revoked token cannot be rotated back to life.
    let r = hub
        .post(&format!("/api/v1/auth/tokens/{gw_id}/rotate"), &hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    // PATCH sets the description.
    let r = hub
        .client
        .patch(hub.url(&format!("/api/v1/auth/tokens/{gw_id}")))
        .bearer_auth(&hub.admin)
        .json(&json!({"description": "line 3 gateway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        token_record(&hub, gw_id).await["description"],
        "line 3 gateway"
    );
    // The only active admin token cannot be revoked; nothing lists a secret.
    let admin_id = 1;
    let r = hub
        .post(
            &format!("/api/v1/auth/tokens/{admin_id}/revoke"),
            &hub.admin,
        )
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let list = hub.admin_get("/api/v1/auth/tokens").await.to_string();
    for s in [&secret, &old, &new, &newer, &hub.admin] {
        assert!(!list.contains(s.as_str()));
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_token_lifetime_is_enforced() {
    let hub = start_with(|c| c.auth.max_token_lifetime = Duration::from_secs(3600)).await;
    let (status, body) = create(&hub, json!({"name": "forever", "role": "read"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_token_lifetime")
    );
    let (status, _) = create(
        &hub,
        json!({"name": "long", "role": "read", "expires_in": "2h"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = create(
        &hub,
        json!({"name": "ok", "role": "read", "expires_in": 600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_administrative_action_leaves_one_entry() {
    let hub = start().await;
    let (_, rec) = create(&hub, json!({"name": "reader", "role": "read"})).await;
    let id = rec["id"].as_i64().unwrap();
    let reader = rec["token"].as_str().unwrap().to_owned();
    hub.post(&format!("/api/v1/auth/tokens/{id}/rotate"), &hub.admin)
        .send()
        .await
        .unwrap();
    hub.post(&format!("/api/v1/auth/tokens/{id}/revoke"), &hub.admin)
        .send()
        .await
        .unwrap();
    // A refused action is an entry too, with its outcome.
    let (status, _) = create(&hub, json!({"name": "", "role": "read"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A delete names its database.
    assert_eq!(
        hub.write_lp("plant_a", "m,k=a v=1 1700000000000000000")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = hub
        .post("/api/v1/delete", &hub.admin)
        .json(&json!({"database": "plant_a", "measurement": "m", "where": "k = 'a'", "confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Reads and writes are not administrative: no entry.
    hub.sql("SELECT 1").await;

    let tokens = audit(&hub, "event_type=token.*").await;
    let summary: Vec<(String, String, i64)> = tokens
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("token.create".into(), "success".into(), 201),
            ("token.rotate".into(), "success".into(), 200),
            ("token.revoke".into(), "success".into(), 200),
            ("token.create".into(), "failure".into(), 400),
        ]
    );
    for e in &tokens {
        assert_eq!(e["actor"], "bootstrap-admin");
        assert_eq!(e["actor_token_id"], 1);
        assert_eq!(e["source"], "127.0.0.1");
    }
    assert_eq!(tokens[0]["target"], format!("token {id} (reader)"));
    assert_eq!(tokens[0]["detail"]["role"], "read");
    let deletes = audit(&hub, "database=plant_a").await;
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0]["event_type"], "data.delete");
    assert_eq!(deletes[0]["target"], "plant_a.m");
    assert_eq!(deletes[0]["detail"]["rows"], 1);
    assert!(audit(&hub, "event_type=query.*").await.is_empty());
    // Filters: actor, time, paging.
    assert_eq!(audit(&hub, "actor=bootstrap-admin").await.len(), 5);
    assert!(audit(&hub, "since=2100-01-01T00:00:00Z").await.is_empty());
    assert_eq!(audit(&hub, "until=2000-01-01T00:00:00Z").await.len(), 0);
    let page = hub
        .admin_get("/api/v1/admin/audit-log?limit=2&offset=1&actor=bootstrap-admin")
        .await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let r = hub
        .get("/api/v1/admin/audit-log?since=yesterday", &hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // Only admins read the log; the revoked reader's attempt is recorded.
    let r = hub
        .get("/api/v1/admin/audit-log", &reader)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let failures = audit(&hub, "event_type=auth.failure").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["actor"], "reader");
    assert_eq!(failures[0]["detail"]["reason"], "revoked");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_not_written_one_by_one() {
    let hub = start().await;
    let (_, reader) = hub.token("read").await;
    let wrong = format!("ferry_{}", "0".repeat(64));
    for _ in 0..200 {
        let (status, _) = select_1(&hub, &wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..30 {
        let r = hub
            .client
            .post(hub.url("/api/v1/query"))
            .json(&json!({"sql": "SELECT 1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // A read token asking for an admin route: denied.
    for _ in 0..5 {
        let r = hub
            .get("/api/v1/auth/tokens", &reader)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let failures = audit(&hub, "event_type=auth.*").await;
    let total = |reason: &str| -> i64 {
        failures
            .iter()
            .filter(|e| e["detail"]["reason"] == reason)
            .map(|e| e["count"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(total("invalid"), 200, "{failures:?}");
    assert_eq!(total("missing"), 30);
    assert_eq!(total("forbidden"), 5);
    // One entry per key per window: a few windows at most, not 235 rows.
    assert!(failures.len() < 40, "{} entries", failures.len());
    let denied = failures
        .iter()
        .find(|e| e["event_type"] == "auth.denied")
        .unwrap();
    assert_eq!(denied["actor"], "test-read");
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["target"], "GET /api/v1/auth/tokens");
    // No entry holds a presented secret.
    let all = hub
        .admin_get("/api/v1/admin/audit-log?limit=1000")
        .await
        .to_string();
    assert!(!all.contains(&wrong) && !all.contains(&reader));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_entry_is_found() {
    let mut hub = start().await;
    for name in ["a", "b", "c"] {
        create(&hub, json!({"name": name, "role": "read"})).await;
    }
    assert_eq!(audit(&hub, "").await.len(), 3);
    hub.restart().await;
    let db = hub.dir.path().join("meta/hub.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE audit_log SET actor = 'nobody' WHERE event_type = 'token.create' AND target LIKE '% (b)'",
        [],
    )
    .unwrap();
    drop(conn);
    let report = hub.admin_get("/api/v1/admin/audit-log/verify").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken_at"], 2);
    assert!(report["problem"].as_str().unwrap().contains("entry 2"));
    hub.stop().await;
}
