//! Continuous queries with Arc's routes: hand-computed answers, windows
//! computed again (late data, the same range twice) replaced and never
//! doubled, the scheduler across a restart and a stop in the middle of a
//! backfill, and what a careless or hostile client gets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

const MIN_NS: i64 = 60_000_000_000;
/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;

const HOURLY: &str = "SELECT date_bin(INTERVAL '1 hour', time) AS time, host, \
    avg(usage) AS usage, count(*) AS n FROM cpu \
    WHERE time >= {start_time} AND time < {end_time} GROUP BY 1, host";

fn cq_body(name: &str, query: &str) -> Value {
    json!({"name": name, "database": "plant", "source_measurement": "cpu",
           "destination_measurement": "cpu_1h", "query": query, "interval": "1h"})
}

async fn create(hub: &TestHub, body: &Value) -> reqwest::Response {
    hub.post("/api/v1/continuous_queries", &hub.admin)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn execute(hub: &TestHub, id: i64, body: Value) -> reqwest::Response {
    hub.post(
        &format!("/api/v1/continuous_queries/{id}/execute"),
        &hub.admin,
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn rows(hub: &TestHub, sql: &str) -> Value {
    let (status, v) = hub.sql(sql).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {v}");
    v["data"].clone()
}

fn lp(points: &[(&str, i64, f64)]) -> String {
    points
        .iter()
        .map(|(host, minute, v)| format!("cpu,host={host} usage={v} {}\n", T0 + minute * MIN_NS))
        .collect()
}

#[tokio::test]
async fn windows_have_hand_computed_answers_and_are_replaced_not_doubled() {
    // The scheduler stays out of the way: only POST .../execute runs.
    let hub = start_with(|c| c.continuous_queries.poll_interval = Duration::from_secs(3600)).await;
    // a: 1 at 00:10, 3 at 00:20, 5 at 01:30; b: 10 at 00:40.
    let r = hub
        .write_lp(
            "plant",
            &lp(&[
                ("a", 10, 1.0),
                ("a", 20, 3.0),
                ("a", 90, 5.0),
                ("b", 40, 10.0),
            ]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = create(&hub, &cq_body("cpu-hourly", HOURLY)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let cq = r.json::<Value>().await.unwrap()["query"].clone();
    let id = cq["id"].as_i64().unwrap();
    assert_eq!(cq["interval"], "1h");
    assert_eq!(cq["last_processed_time"], Value::Null);

    // A dry run plans and says what it would run; nothing is written.
    let dry: Value = execute(
        &hub,
        id,
        json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T03:00:00Z", "dry_run": true}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(dry["status"], "dry_run", "{dry}");
    assert!(
        dry["executed_query"]
            .as_str()
            .unwrap()
            .contains("'2026-01-01T00:00:00Z'"),
        "{dry}"
    );

    let range = json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T03:00:00Z"});
    let done: Value = execute(&hub, id, range.clone()).await.json().await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["windows_total"], 3);
    assert_eq!(done["records_written"], 3);
    let hourly = "SELECT CAST(time AS VARCHAR), host, usage, n FROM cpu_1h ORDER BY 1, 2";
    let want = json!([
        ["2026-01-01T00:00:00Z", "a", 2.0, 2],
        ["2026-01-01T00:00:00Z", "b", 10.0, 1],
        ["2026-01-01T01:00:00Z", "a", 5.0, 1],
    ]);
    assert_eq!(
        rows(&hub, &hourly.replace("cpu_1h", "plant.cpu_1h")).await,
        want
    );

    // The same range again: replaced, not doubled.
    let again: Value = execute(&hub, id, range.clone()).await.json().await.unwrap();
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        rows(&hub, &hourly.replace("cpu_1h", "plant.cpu_1h")).await,
        want
    );

    // Late data for 00:00-01:00: recomputing that window replaces it.
    let r = hub.write_lp("plant", &lp(&[("a", 50, 8.0)])).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let late: Value = execute(
        &hub,
        id,
        json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T01:00:00Z"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(late["windows_total"], 1, "{late}");
    assert_eq!(
        rows(&hub, &hourly.replace("cpu_1h", "plant.cpu_1h")).await,
        json!([
            ["2026-01-01T00:00:00Z", "a", 4.0, 3],
            ["2026-01-01T00:00:00Z", "b", 10.0, 1],
            ["2026-01-01T01:00:00Z", "a", 5.0, 1],
        ])
    );

    // Executions, newest first, with Arc's fields; the watermark.
    let ex = hub
        .admin_get(&format!(
            "/api/v1/continuous_queries/{id}/executions?limit=10"
        ))
        .await;
    assert_eq!(ex["count"], 4, "{ex}");
    assert_eq!(ex["executions"][0]["status"], "completed");
    assert_eq!(ex["executions"][0]["windows_done"], 1);
    assert_eq!(
        ex["executions"][0]["records_read"],
        Value::Null,
        "not counted"
    );
    assert_eq!(ex["executions"][3]["status"], "dry_run");
    let got = hub
        .admin_get(&format!("/api/v1/continuous_queries/{id}"))
        .await["query"]
        .clone();
    assert_eq!(
        got["last_processed_time"], "2026-01-01T03:00:00.000Z",
        "{got}"
    );
    assert_eq!(got["last_execution_status"], "completed");
    let list = hub
        .admin_get("/api/v1/continuous_queries?database=plant")
        .await;
    assert_eq!(list["queries"][0]["id"], id, "{list}");
    let none = hub
        .admin_get("/api/v1/continuous_queries?database=other")
        .await;
    assert_eq!(none["count"], 0);

    // An answer outside its window fails the execution and writes nothing.
    let shifted = HOURLY.replace(
        "date_bin(INTERVAL '1 hour', time) AS time",
        "date_bin(INTERVAL '1 hour', time) + INTERVAL '2 hours' AS time",
    );
    let mut body = cq_body("shifted", &shifted);
    body["destination_measurement"] = json!("cpu_shifted");
    let r = create(&hub, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bad_id = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();
    let failed: Value = execute(&hub, bad_id, range).await.json().await.unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("outside its window"),
        "{failed}"
    );
    let (status, _) = hub.sql("SELECT count(*) FROM plant.cpu_shifted").await;
    assert_ne!(status, StatusCode::OK, "nothing may be written");

    // A query that gains a column: refused over windows the destination
    // holds, appended (the table grows the column) over a new one.
    let with_peak = HOURLY.replace("count(*) AS n", "count(*) AS n, max(usage) AS peak");
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/continuous_queries/{id}")))
        .bearer_auth(&hub.admin)
        .json(
            &json!({"query": HOURLY.replace("count(*) AS n", "count(*) AS n, max(usage) AS peak")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let held: Value = execute(
        &hub,
        id,
        json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T01:00:00Z"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(held["status"], "failed", "{held}");
    assert!(
        held["error"]
            .as_str()
            .unwrap()
            .contains("already holds rows"),
        "{held}"
    );
    let r = hub.write_lp("plant", &lp(&[("a", 190, 6.0)])).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let grown: Value = execute(
        &hub,
        id,
        json!({"start_time": "2026-01-01T03:00:00Z", "end_time": "2026-01-01T04:00:00Z"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(grown["records_written"], 1, "{grown}");
    assert_eq!(
        rows(
            &hub,
            "SELECT CAST(time AS VARCHAR), usage, peak FROM plant.cpu_1h WHERE peak IS NOT NULL"
        )
        .await,
        json!([["2026-01-01T03:00:00Z", 6.0, 6.0]])
    );

    // Update (Arc's client sends only what changes), then delete: the
    // destination's rows stay.
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/continuous_queries/{id}")))
        .bearer_auth(&hub.admin)
        .json(&json!({"is_active": false, "description": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let updated = r.json::<Value>().await.unwrap()["query"].clone();
    assert_eq!(
        (updated["is_active"].clone(), updated["query"].clone()),
        (json!(false), json!(with_peak))
    );
    let r = execute(&hub, id, json!({})).await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/continuous_queries/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = hub
        .get(&format!("/api/v1/continuous_queries/{id}"), &hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(hub.count("plant.cpu_1h").await, 4);
    hub.stop().await;
}

#[tokio::test]
async fn careless_and_hostile_definitions_are_refused_with_reasons() {
    let hub = start_with(|c| c.continuous_queries.poll_interval = Duration::from_secs(3600)).await;
    let r = hub.write_lp("plant", &lp(&[("a", 10, 1.0)])).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cases: Vec<(Value, &str)> = vec![
        (cq_body("p", "SELECT * FROM cpu"), "{start_time}"),
        (
            {
                let mut b = cq_body("same", HOURLY);
                b["destination_measurement"] = json!("cpu");
                b
            },
            "differ",
        ),
        (
            {
                let mut b = cq_body("ret", HOURLY);
                b["retention_days"] = json!(30);
                b
            },
            "retention policy",
        ),
        (
            {
                let mut b = cq_body("iv", HOURLY);
                b["interval"] = json!("often");
                b
            },
            "interval",
        ),
        (
            {
                let mut b = cq_body("tiny", HOURLY);
                b["interval"] = json!("10ms");
                b
            },
            "min_interval",
        ),
        (cq_body("syntax", "SELEKT {start_time} {end_time}"), ""),
        (
            cq_body(
                "ddl",
                "CREATE TABLE x AS SELECT * FROM cpu WHERE time >= {start_time} AND time < {end_time}",
            ),
            "read-only",
        ),
        (
            {
                let mut b = cq_body("tags", HOURLY);
                b["tag_columns"] = json!(["nosuch"]);
                b
            },
            "nosuch",
        ),
        (
            {
                let mut b = cq_body("db", HOURLY);
                b["database"] = json!("../etc");
                b
            },
            "database",
        ),
    ];
    for (body, needle) in cases {
        let r = create(&hub, &body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        // The read-only rules answer as they do on /api/v1/query.
        let want = if needle == "read-only" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{body}: {v}"
        );
    }
    // Unknown fields, a taken name, roles, ids.
    let mut body = cq_body("x", HOURLY);
    body["bogus"] = json!(1);
    let r = create(&hub, &body).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = create(&hub, &cq_body("dup", HOURLY)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();
    let r = create(&hub, &cq_body("dup", HOURLY)).await;
    error(r, StatusCode::CONFLICT, "conflict").await;
    let (_, read) = hub.token("read").await;
    let r = hub
        .post("/api/v1/continuous_queries", &read)
        .json(&cq_body("mine", HOURLY))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post(&format!("/api/v1/continuous_queries/{id}/execute"), &read)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .get("/api/v1/continuous_queries", &read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (path, status) in [
        ("/api/v1/continuous_queries/999", StatusCode::NOT_FOUND),
        ("/api/v1/continuous_queries/abc", StatusCode::BAD_REQUEST),
    ] {
        let r = hub.get(path, &hub.admin).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    // A range holding no closed window.
    let r = execute(
        &hub,
        id,
        json!({"start_time": "2026-01-01T00:10:00Z", "end_time": "2026-01-01T00:50:00Z"}),
    )
    .await;
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        v["message"].as_str().unwrap().contains("no closed window"),
        "{v}"
    );
    let r = execute(&hub, id, json!({"start_time": "yesterday"})).await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    hub.stop().await;
}

/// The query's `last_processed_time`, in ms.
async fn watermark_ms(hub: &TestHub, id: i64) -> Option<i64> {
    let cq = hub
        .admin_get(&format!("/api/v1/continuous_queries/{id}"))
        .await["query"]
        .clone();
    let t = humantime::parse_rfc3339(cq["last_processed_time"].as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every source row before the watermark is counted once in the
/// destination, and no (time, host) is there twice.
async fn assert_exactly_once(hub: &TestHub, id: i64) -> i64 {
    let cq = hub
        .admin_get(&format!("/api/v1/continuous_queries/{id}"))
        .await["query"]
        .clone();
    let Some(mark) = cq["last_processed_time"].as_str().map(str::to_owned) else {
        return 0;
    };
    let source = rows(
        hub,
        &format!("SELECT count(*) FROM plant.cpu WHERE time < '{mark}'"),
    )
    .await[0][0]
        .as_i64()
        .unwrap();
    let counted = rows(
        hub,
        &format!("SELECT coalesce(sum(n), 0) FROM plant.cpu_2s WHERE time < '{mark}'"),
    )
    .await[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(counted, source, "rows counted once before {mark}");
    let doubled = rows(
        hub,
        "SELECT count(*) FROM (SELECT time, host FROM plant.cpu_2s GROUP BY 1, 2 HAVING count(*) > 1)",
    )
    .await[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(doubled, 0, "a window written twice");
    source
}

#[tokio::test]
async fn the_scheduler_writes_each_window_once_across_restarts_and_a_stopped_backfill() {
    let tweak = |c: &mut ferry_hub::config::HubConfig| {
        c.continuous_queries.poll_interval = Duration::from_millis(100);
        c.continuous_queries.delay = Duration::from_millis(200);
        c.continuous_queries.backfill_chunk = Duration::from_secs(2);
    };
    let mut hub = start_with(tweak).await;
    let start = now_ms() - 40_000;
    // One row per host every 500 ms over the last 40 s.
    let points: String = (0..80)
        .flat_map(|i| {
            ["a", "b"]
                .map(|h| format!("cpu,host={h} usage={i} {}\n", (start + i * 500) * 1_000_000))
        })
        .collect();
    assert_eq!(
        hub.write_lp("plant", &points).await.status(),
        StatusCode::NO_CONTENT
    );
    let query = "SELECT date_bin(INTERVAL '2 seconds', time) AS time, host, count(*) AS n \
        FROM cpu WHERE time >= {start_time} AND time < {end_time} GROUP BY 1, host";
    let started =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(start as u64))
            .to_string();
    let r = create(
        &hub,
        &json!({"name": "two-seconds", "database": "plant", "source_measurement": "cpu",
                "destination_measurement": "cpu_2s", "query": query, "interval": "2s",
                "start_time": started, "lookback_windows": 2}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();

    // The scheduler backfills from start_time in 2 s chunks, then follows.
    // Waiting for a mark past the 152nd row, not for one near "now": the
    // latter held 148 rows when the scheduler caught up within 2 s of the
    // write (CI, 2026-12-06).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while watermark_ms(&hub, id)
        .await
        .is_none_or(|w| w < start + 38_000)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = assert_exactly_once(&hub, id).await;
    assert!(first >= 150, "only {first} rows were before the watermark");

    // A restart: the scheduler resumes from the watermark; late rows for
    // the last windows are picked up by the look-back.
    hub.restart_with(tweak).await;
    let late = format!("cpu,host=a usage=1 {}\n", (now_ms() - 2_500) * 1_000_000);
    assert_eq!(
        hub.write_lp("plant", &late).await.status(),
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = assert_exactly_once(&hub, id).await;
    assert!(
        second > first,
        "the late row was counted: {first} then {second}"
    );

    // A long backfill stopped in the middle (the hub stops between chunks)
    // is interrupted; executing the range again completes it, once.
    let mut body = cq_body("again", &query.replace("2 seconds", "1 second"));
    body["destination_measurement"] = json!("cpu_again");
    body["interval"] = json!("1s");
    let r = create(&hub, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again = r.json::<Value>().await.unwrap()["query"]["id"]
        .as_i64()
        .unwrap();
    let range = json!({"start_time": started, "end_time": humantime::format_rfc3339_millis(
        UNIX_EPOCH + Duration::from_millis((start + 40_000) as u64)).to_string()});
    let request = hub
        .post(
            &format!("/api/v1/continuous_queries/{again}/execute"),
            &hub.admin,
        )
        .json(&range)
        .send();
    let running = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.restart_with(tweak).await;
    let _ = running.await;
    let ex = hub
        .admin_get(&format!("/api/v1/continuous_queries/{again}/executions"))
        .await;
    let status = ex["executions"][0]["status"].as_str().unwrap().to_owned();
    assert!(
        ["interrupted", "completed"].contains(&status.as_str()),
        "{ex}"
    );
    let done: Value = execute(&hub, again, range).await.json().await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let want = rows(
        &hub,
        &format!(
            "SELECT count(*) FROM plant.cpu WHERE time >= '{started}' AND time < '{}'",
            done["end_time"].as_str().unwrap()
        ),
    )
    .await;
    let got = rows(&hub, "SELECT sum(n) FROM plant.cpu_again").await;
    assert_eq!(got, want);
    hub.stop().await;
}
