//! Threshold alerts: an SQL rule goes ok → firing → resolved as the data
//! crosses the threshold, a local webhook receives each change, the
//! history keeps what the webhook answered, rules and state survive a
//! restart; a metric rule; and careless or hostile rules are refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, start_with};

type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver on loopback: `/hook` records bodies, `/slow` answers
/// after 3 s.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let keep = keep.clone();
                async move {
                    keep.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                StatusCode::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

async fn create(hub: &TestHub, token: &str, body: Value) -> (StatusCode, Value) {
    let r = hub
        .post("/api/v1/alerts", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn alert(hub: &TestHub, id: i64) -> Value {
    hub.get(&format!("/api/v1/alerts/{id}"), &hub.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_state(hub: &TestHub, id: i64, state: &str) -> Value {
    for _ in 0..150 {
        let v = alert(hub, id).await;
        if v["alert"]["state"] == state {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("alert {id} never reached {state}: {}", alert(hub, id).await);
}

fn tweak(c: &mut ferry_hub::config::HubConfig) {
    c.alerts.min_interval = Duration::from_secs(1);
    c.alerts.poll_interval = Duration::from_millis(100);
    c.alerts.webhook_timeout = Duration::from_secs(1);
    c.alerts.max_rules = 4;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_alert_fires_resolves_and_calls_the_webhook() {
    let mut hub = start_with(tweak).await;
    let (base, received) = receiver().await;
    let write = |v: f64, t: u64| format!("boiler,device=d1 value={v} {t}000000000\n");
    assert_eq!(
        hub.write_lp("plant", &write(10.0, 1000)).await.status(),
        StatusCode::NO_CONTENT
    );

    let (status, rule) = create(
        &hub,
        &hub.admin,
        json!({
            "name": "boiler-hot",
            "sql": "SELECT value FROM boiler ORDER BY time DESC LIMIT 1",
            "database": "plant",
            "op": ">",
            "threshold": 50.0,
            "interval": "1s",
            "webhook_url": format!("{base}/hook"),
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    assert_eq!(rule["state"], "ok");
    let id = rule["id"].as_i64().unwrap();

    // Below the threshold: evaluated, still ok, no webhook call.
    for _ in 0..100 {
        if alert(&hub, id).await["alert"]["last_value"] == json!(10.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alert(&hub, id).await["alert"]["state"], "ok");

    // Crosses it: firing, and the webhook hears it.
    assert_eq!(
        hub.write_lp("plant", &write(99.0, 2000)).await.status(),
        StatusCode::NO_CONTENT
    );
    let firing = wait_state(&hub, id, "firing").await;
    assert_eq!(firing["alert"]["last_value"], json!(99.0));
    // Back below: resolved.
    assert_eq!(
        hub.write_lp("plant", &write(20.0, 3000)).await.status(),
        StatusCode::NO_CONTENT
    );
    let resolved = wait_state(&hub, id, "resolved").await;
    let events = resolved["events"].as_array().unwrap();
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["resolved", "firing"], "{resolved}");
    for _ in 0..50 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["state"], "firing");
    assert_eq!(got[0]["value"], json!(99.0));
    assert_eq!(got[0]["rule"], "boiler-hot");
    assert_eq!(got[1]["state"], "resolved");
    let history = alert(&hub, id).await;
    for e in history["events"].as_array().unwrap() {
        assert_eq!(e["webhook_status"], "200", "{history}");
    }

    // A metric rule, evaluated on demand; a webhook that answers too late.
    let (status, metric_rule) = create(
        &hub,
        &hub.admin,
        json!({
            "name": "ingesting",
            "metric": "ferry_hub_rows_ingested_total",
            "op": ">",
            "threshold": 0,
            "interval": "1h",
            "webhook_url": format!("{base}/slow"),
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{metric_rule}");
    let mid = metric_rule["id"].as_i64().unwrap();
    let r = hub
        .post(&format!("/api/v1/alerts/{mid}/evaluate"), &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["state"], "firing", "{after}");
    assert!(after["last_value"].as_f64().unwrap() >= 3.0, "{after}");
    let events = alert(&hub, mid).await["events"].clone();
    assert_eq!(events[0]["webhook_status"], "timeout", "{events}");

    // Rules and their state survive a restart.
    hub.restart_with(tweak).await;
    let listed: Value = hub
        .get("/api/v1/alerts", &hub.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 2, "{listed}");
    assert_eq!(alert(&hub, id).await["alert"]["state"], "resolved");
    assert_eq!(alert(&hub, id).await["events"].as_array().unwrap().len(), 2);

    let r = hub
        .client
        .delete(format!("{}/api/v1/alerts/{mid}", hub.base))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        hub.get(&format!("/api/v1/alerts/{mid}"), &hub.admin)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_and_hostile_rules_are_refused() {
    let hub = start_with(tweak).await;
    assert_eq!(
        hub.write_lp("plant", "boiler value=1 1000000000000\n")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let ok = json!({"name": "a", "sql": "SELECT 1", "op": ">", "threshold": 0, "interval": "1s"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("sql", json!("DROP TABLE plant.boiler")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (with("sql", json!("SELEC 1")), StatusCode::BAD_REQUEST),
        (
            with("sql", json!("SELECT * FROM plant.nope")),
            StatusCode::BAD_REQUEST,
        ),
        (with("op", json!("=~")), StatusCode::BAD_REQUEST),
        (with("interval", json!("100ms")), StatusCode::BAD_REQUEST),
        (with("interval", json!("2days")), StatusCode::BAD_REQUEST),
        (
            with("webhook_url", json!("file:///etc/passwd")),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("webhook_url", json!("not a url")),
            StatusCode::BAD_REQUEST,
        ),
        (with("name", json!("../x")), StatusCode::BAD_REQUEST),
        (with("name", json!("")), StatusCode::BAD_REQUEST),
        (
            with("metric", json!("ferry_hub_rows_ingested_total")),
            StatusCode::BAD_REQUEST,
        ),
        (with("database", json!("bad/db")), StatusCode::BAD_REQUEST),
        (
            json!({"name": "m", "metric": "Bad Metric", "op": ">", "threshold": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "m", "metric": "x", "op": ">", "threshold": 0, "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in cases {
        let (status, answer) = create(&hub, &hub.admin, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(
            answer["message"].is_string() || answer["error"].is_string(),
            "{answer}"
        );
    }
    // Names are unique; the number of rules is bounded (alerts.max_rules).
    for i in 0..4 {
        let (status, answer) = create(&hub, &hub.admin, with("name", json!(format!("r{i}")))).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, answer) = create(&hub, &hub.admin, with("name", json!("r0"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, answer) = create(&hub, &hub.admin, with("name", json!("r9"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer.to_string().contains("alerts.max_rules"), "{answer}");

    // Only admins manage alerts.
    let v: Value = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "viewer", "role": "read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = v["token"].as_str().unwrap();
    let (status, _) = create(&hub, reader, with("name", json!("mine"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = hub.get("/api/v1/alerts", reader).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
