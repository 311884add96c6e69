//! `POST /api/v1/delete`, `GET /api/v1/delete/config` and `GET
//! /api/v1/measurements` through the HTTP API: counts in a dry run,
//! partial deletes that rewrite only the files holding matching rows,
//! whole days dropped by their statistics without reading a file, the
//! confirmation rules, and what a careless or hostile client gets.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start, start_with};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
const SEC_NS: i64 = 1_000_000_000;

fn day_start_ns(days_ago: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    now - now.rem_euclid(DAY_NS) - days_ago * DAY_NS
}

/// RFC 3339 of a time in ns.
fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// 300 rows of `plant.m`: three days (2, 1 and 0 days ago) × hosts a and b
/// × v = 0..50, one write (one file) per day and host.
async fn seed(hub: &TestHub) {
    for days_ago in [2, 1, 0] {
        for host in ["a", "b"] {
            let body: String = (0..50)
                .map(|i| {
                    format!(
                        "m,host={host} v={i}i {}\n",
                        day_start_ns(days_ago) + i * SEC_NS
                    )
                })
                .collect();
            let r = hub.write_lp("plant", &body).await;
            assert_eq!(
                r.status(),
                StatusCode::NO_CONTENT,
                "{}",
                r.text().await.unwrap()
            );
        }
    }
    assert_eq!(hub.count("plant.m").await, 300);
}

async fn delete(hub: &TestHub, token: &str, body: Value) -> reqwest::Response {
    hub.post("/api/v1/delete", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete_ok(hub: &TestHub, body: Value) -> Value {
    let r = delete(hub, &hub.admin, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
    v
}

async fn scalar(hub: &TestHub, sql: &str) -> i64 {
    let (status, v) = hub.sql(sql).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"][0][0].as_i64().unwrap()
}

#[tokio::test]
async fn a_dry_run_counts_and_a_delete_rewrites_only_files_with_matching_rows() {
    let hub = start().await;
    seed(&hub).await;
    let body = |dry_run| {
        json!({"database": "plant", "measurement": "m",
               "where": "host = 'a' AND v < 10", "dry_run": dry_run})
    };
    let dry = delete_ok(&hub, body(true)).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted_count"], 30, "{dry}");
    assert_eq!(dry["affected_files"], 3, "{dry}");
    assert_eq!(dry["rewritten_files"], 3, "{dry}");
    assert_eq!(
        dry["files_read"], 3,
        "host b's files are ruled out by statistics: {dry}"
    );
    assert_eq!(dry["table_rows"], 300);
    assert_eq!(dry["confirm_required"], false);
    assert_eq!(dry["version"], Value::Null);
    assert_eq!(dry["files_processed"].as_array().unwrap().len(), 3);
    assert_eq!(hub.count("plant.m").await, 300, "a dry run changes nothing");

    let done = delete_ok(&hub, body(false)).await;
    assert_eq!(done["deleted_count"], 30, "{done}");
    assert_eq!(done["rewritten_files"], 3);
    assert!(done["version"].as_u64().is_some(), "{done}");
    assert_eq!(hub.count("plant.m").await, 270);
    assert_eq!(
        scalar(
            &hub,
            "SELECT count(*) FROM plant.m WHERE host = 'a' AND v < 10"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&hub, "SELECT count(*) FROM plant.m WHERE host = 'b'").await,
        150
    );
    assert_eq!(
        scalar(&hub, "SELECT sum(v) FROM plant.m WHERE host = 'a'").await,
        3 * (10..50).sum::<i64>(),
        "the rows kept are exactly the others"
    );
    // Nothing left to match: nothing committed.
    let again = delete_ok(&hub, body(false)).await;
    assert_eq!(again["deleted_count"], 0);
    assert_eq!(again["version"], Value::Null);

    let m = hub.admin_get("/api/v1/measurements?database=plant").await;
    assert_eq!(m["success"], true, "{m}");
    assert_eq!(m["count"], 1);
    assert_eq!(m["measurements"][0]["measurement"], "m");
    assert_eq!(m["measurements"][0]["row_count"], 270, "{m}");
    assert_eq!(m["measurements"][0]["file_count"], 6, "{m}");
    hub.stop().await;
}

#[tokio::test]
async fn whole_days_go_by_metadata_and_big_deletes_need_confirmation() {
    let hub = start_with(|c| c.delete.confirm_threshold = 100).await;
    seed(&hub).await;
    let cutoff = rfc3339(day_start_ns(0));
    let body = |confirm| {
        json!({"database": "plant", "measurement": "m",
               "where": format!("time < '{cutoff}'"), "confirm": confirm})
    };
    let dry = delete_ok(
        &hub,
        json!({"database": "plant", "measurement": "m",
               "where": format!("time < '{cutoff}'"), "dry_run": true}),
    )
    .await;
    assert_eq!(dry["deleted_count"], 200, "{dry}");
    assert_eq!(dry["confirm_required"], true);
    assert_eq!(dry["files_read"], 0, "whole files by statistics: {dry}");

    let refused = delete(&hub, &hub.admin, body(false)).await;
    let v = error(refused, StatusCode::BAD_REQUEST, "confirm_required").await;
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("delete.confirm_threshold (100)"),
        "{message}"
    );
    assert_eq!(hub.count("plant.m").await, 300, "nothing changed");

    let done = delete_ok(&hub, body(true)).await;
    assert_eq!(done["deleted_count"], 200, "{done}");
    assert_eq!(done["removed_files"], 4, "{done}");
    assert_eq!(done["rewritten_files"], 0, "{done}");
    assert_eq!(done["files_read"], 0, "{done}");
    assert_eq!(hub.count("plant.m").await, 100);

    // Every row: refused without confirm, whatever the threshold says.
    let everything = json!({"database": "plant", "measurement": "m", "where": "1 = 1"});
    let v = error(
        delete(&hub, &hub.admin, everything.clone()).await,
        StatusCode::BAD_REQUEST,
        "confirm_required",
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("every row of plant.m"),
        "{v}"
    );
    let mut confirmed = everything;
    confirmed["confirm"] = json!(true);
    let done = delete_ok(&hub, confirmed).await;
    assert_eq!(done["deleted_count"], 100);
    assert_eq!(hub.count("plant.m").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn careless_and_hostile_deletes_are_refused_and_change_nothing() {
    let hub = start_with(|c| c.delete.confirm_threshold = 1_000_000).await;
    seed(&hub).await;
    let (_, read) = hub.token("read").await;
    let (_, write) = hub.token("write").await;
    let ok_body = json!({"database": "plant", "measurement": "m", "where": "v = 1"});
    for token in [&read, &write] {
        error(
            delete(&hub, token, ok_body.clone()).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let r = hub
        .client
        .post(hub.url("/api/v1/delete"))
        .json(&ok_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    for predicate in [
        "",
        "v + 1",
        "nosuch = 1",
        "1 = 1; DROP TABLE m",
        "v IN (SELECT v FROM plant.m)",
        "host = ",
        "read_parquet('/etc/passwd') IS NOT NULL",
    ] {
        let body = json!({"database": "plant", "measurement": "m", "where": predicate});
        let v = error(
            delete(&hub, &hub.admin, body).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert!(
            v["message"].as_str().unwrap().contains("where clause"),
            "{predicate:?}: {v}"
        );
    }
    error(
        delete(
            &hub,
            &hub.admin,
            json!({"database": "plant", "measurement": "nosuch", "where": "true"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for body in [
        json!({"database": "../etc", "measurement": "m", "where": "true"}),
        json!({"database": "plant", "measurement": "m", "where": "true", "extra": 1}),
        json!({"database": "plant", "measurement": "m"}),
    ] {
        error(
            delete(&hub, &hub.admin, body).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    assert_eq!(hub.count("plant.m").await, 300, "nothing was deleted");
    let config = hub.admin_get("/api/v1/delete/config").await;
    assert_eq!(config["enabled"], true);
    assert_eq!(config["confirmation_threshold"], 1_000_000);
    hub.stop().await;

    let off = start_with(|c| c.delete.enabled = false).await;
    seed(&off).await;
    let v = error(
        delete(&off, &off.admin, ok_body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        v["message"].as_str().unwrap().contains("delete.enabled"),
        "{v}"
    );
    assert_eq!(off.count("plant.m").await, 300);
    off.stop().await;
}
