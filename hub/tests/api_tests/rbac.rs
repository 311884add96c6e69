//! Roles per database: a token limited to `plant_*` cannot read, list,
//! write, delete or import outside it, through every route that reaches
//! data; built-in roles keep working.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, segment_of, start, upload};

async fn role(hub: &TestHub, name: &str, grants: Value) -> i64 {
    let r = hub
        .post("/api/v1/auth/roles", &hub.admin)
        .json(&json!({"name": name, "grants": grants}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn token_with(hub: &TestHub, name: &str, roles: &[&str]) -> (i64, String) {
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": name, "roles": roles}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["role"], "none", "{v}");
    (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

async fn sql_as(hub: &TestHub, token: &str, sql: &str) -> (StatusCode, Value) {
    let r = hub
        .post("/api/v1/query", token)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn lp_as(hub: &TestHub, token: &str, db: &str, body: &str) -> StatusCode {
    hub.post(&format!("/api/v1/write/line-protocol?db={db}"), token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

fn column(v: &Value, i: usize) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[i].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limited_to_plant_databases_stays_inside_them() {
    let hub = start().await;
    for db in ["plant_a", "plant_b", "office"] {
        assert_eq!(
            hub.write_lp(
                db,
                "m,k=x v=1 1700000000000000000\nm,k=y v=2 1700000000000000000"
            )
            .await
            .status(),
            StatusCode::NO_CONTENT
        );
    }
    role(
        &hub,
        "plant-readers",
        json!([{"permission": "read", "database": "plant_*"}]),
    )
    .await;
    let (_, reader) = token_with(&hub, "plant-dashboard", &["plant-readers"]).await;

    // Reads inside, 403 naming the table outside (existing or not).
    let (status, v) = sql_as(&hub, &reader, "SELECT count(*) FROM plant_a.m").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"][0][0], 2);
    for sql in [
        "SELECT * FROM office.m",
        "SELECT * FROM plant_a.m JOIN office.m USING (k)",
        "SELECT * FROM office.nothing_here",
        "SELECT * FROM (SELECT * FROM office.m) AS sub",
        "SELECT * FROM last_cache('office.m')",
    ] {
        let (status, v) = sql_as(&hub, &reader, sql).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sql}: {v}");
        assert!(v["message"].as_str().unwrap().contains("office."), "{v}");
    }
    // Lists hide what it cannot read.
    let (_, dbs) = sql_as(&hub, &reader, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, 0), vec!["plant_a", "plant_b"]);
    let (_, ms) = sql_as(&hub, &reader, "SHOW MEASUREMENTS").await;
    assert_eq!(column(&ms, 0), vec!["plant_a", "plant_b"]);
    let (status, schemas) = sql_as(
        &hub,
        &reader,
        "SELECT DISTINCT table_schema FROM information_schema.tables \
         WHERE table_schema NOT IN ('information_schema') ORDER BY 1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{schemas}");
    assert_eq!(column(&schemas, 0), vec!["plant_a", "plant_b"]);
    // Everything else it may not do.
    assert_eq!(
        lp_as(&hub, &reader, "plant_a", "m,k=z v=3 1700000000000000000").await,
        StatusCode::FORBIDDEN
    );
    let r = hub
        .post("/api/v1/delete", &reader)
        .json(&json!({"database": "plant_a", "measurement": "m", "where": "k = 'x'"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post("/api/v1/import/lp?db=plant_a", &reader)
        .body("m,k=z v=3 1700000000000000000\n")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    for path in [
        "/api/v1/agents",
        "/api/v1/auth/tokens",
        "/api/v1/admin/audit-log",
    ] {
        let r = hub.get(path, &reader).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(hub.count("plant_a.m").await, 2);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_deleters_and_segments_are_limited_to_their_tables() {
    let hub = start().await;
    role(
        &hub,
        "boiler-gateways",
        json!([{"permission": "write", "database": "plant", "measurement": "boiler"}]),
    )
    .await;
    role(
        &hub,
        "plant-a-cleaner",
        json!([{"permission": "delete", "database": "plant_a"}]),
    )
    .await;
    let (writer_id, writer) = token_with(&hub, "gw", &["boiler-gateways"]).await;
    let (_, cleaner) = token_with(&hub, "cleaner", &["plant-a-cleaner"]).await;

    // Line protocol: a body naming any table outside is refused whole.
    assert_eq!(
        lp_as(&hub, &writer, "plant", "boiler,k=a v=1 1700000000000000000").await,
        StatusCode::NO_CONTENT
    );
    let r = hub
        .post("/api/v1/write/line-protocol?db=plant", &writer)
        .body("boiler,k=a v=2 1700000000000000001\nfurnace,k=a v=1 1700000000000000000")
        .send()
        .await
        .unwrap();
    let body = error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(body["message"].as_str().unwrap().contains("plant.furnace"));
    assert_eq!(hub.count("plant.boiler").await, 1);
    assert_eq!(
        lp_as(
            &hub,
            &writer,
            "office",
            "boiler,k=a v=1 1700000000000000000"
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // Segments: the table in the segment's header decides.
    let r = upload(&hub, &writer, "gw-1", segment_of("boiler", "gw-1", 1, 5)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload(&hub, &writer, "gw-1", segment_of("furnace", "gw-1", 2, 5)).await;
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    // No read anywhere: no query at all.
    let (status, _) = sql_as(&hub, &writer, "SELECT 1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Imports into its table only.
    let r = hub
        .post("/api/v1/import/lp?db=plant&measurement=boiler", &writer)
        .body("boiler,k=b v=1 1700000000000000000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = hub
        .post("/api/v1/import/lp?db=plant", &writer)
        .body("furnace,k=b v=1 1700000000000000000\n")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;

    // Delete only where granted.
    for db in ["plant_a", "plant_b"] {
        hub.write_lp(db, "m,k=x v=1 1700000000000000000").await;
    }
    let delete = |db: &str| {
        hub.post("/api/v1/delete", &cleaner)
            .json(&json!({"database": db, "measurement": "m", "where": "k = 'x'", "confirm": true}))
    };
    assert_eq!(
        delete("plant_a").send().await.unwrap().status(),
        StatusCode::OK
    );
    let r = delete("plant_b").send().await.unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(hub.count("plant_a.m").await, 0);
    assert_eq!(hub.count("plant_b.m").await, 1);

    // What a token may do, and taking its roles away.
    let perms = hub
        .admin_get(&format!("/api/v1/auth/tokens/{writer_id}/permissions"))
        .await;
    assert_eq!(perms["roles"], json!(["boiler-gateways"]));
    assert_eq!(
        perms["grants"],
        json!([{"permission": "write", "database": "plant", "measurement": "boiler"}])
    );
    assert_eq!(perms["everywhere"]["write"], false);
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/auth/tokens/{writer_id}/roles")))
        .bearer_auth(&hub.admin)
        .json(&json!({"roles": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        lp_as(&hub, &writer, "plant", "boiler,k=a v=3 1700000000000000002").await,
        StatusCode::FORBIDDEN
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_managed_and_checked() {
    let hub = start().await;
    let id = role(
        &hub,
        "ops",
        json!([{"permission": "read", "database": "*"}]),
    )
    .await;
    let list = hub.admin_get("/api/v1/auth/roles").await;
    assert_eq!(list["builtin"].as_array().unwrap().len(), 3);
    assert_eq!(list["roles"][0]["name"], "ops");
    // Bad roles and names.
    for body in [
        json!({"name": "admin", "grants": []}),
        json!({"name": "bad name", "grants": []}),
        json!({"name": "x", "grants": [{"permission": "root", "database": "*"}]}),
        json!({"name": "x", "grants": [{"permission": "read", "database": ""}]}),
    ] {
        let r = hub
            .post("/api/v1/auth/roles", &hub.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let r = hub
        .post("/api/v1/auth/roles", &hub.admin)
        .json(&json!({"name": "ops", "grants": []}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::CONFLICT, "conflict").await;
    // A token naming an unknown role is not created.
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "t", "roles": ["nope"]}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // A held role cannot be deleted; an update takes effect at once.
    let (_, ops) = token_with(&hub, "ops-1", &["ops"]).await;
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/auth/roles/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(sql_as(&hub, &ops, "SELECT 1").await.0, StatusCode::OK);
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/auth/roles/{id}")))
        .bearer_auth(&hub.admin)
        .json(&json!({"grants": [{"permission": "write", "database": "*"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sql_as(&hub, &ops, "SELECT 1").await.0,
        StatusCode::FORBIDDEN
    );
    // Role changes are audited.
    let log = hub
        .admin_get("/api/v1/admin/audit-log?event_type=role.*")
        .await;
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"role.create") && kinds.contains(&"role.update"));
    hub.stop().await;
}
