//! The last-value cache: created through the API, InfluxDB 3's route and
//! hub.toml; read with `last_cache(...)` in SQL with the same answer as
//! the window query over the table; kept current by every write (read
//! your own write); refilled after a restart; rows past the ttl dropped;
//! bounded by `last_cache.max_keys`; and what a careless client gets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn create(hub: &TestHub, body: Value) -> reqwest::Response {
    hub.post("/api/v1/last_cache", &hub.admin)
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

const FROM_CACHE: &str =
    "SELECT site, temp FROM last_cache('plant.boiler') ORDER BY site, time DESC";
const FROM_TABLE: &str = "SELECT site, temp FROM (SELECT site, temp, time, row_number() OVER \
    (PARTITION BY site ORDER BY time DESC) AS rn FROM plant.boiler) WHERE rn <= 2 \
    ORDER BY site, time DESC";

#[tokio::test]
async fn the_cache_answers_like_the_table_stays_current_and_survives_a_restart() {
    let mut hub = start_with(|_| {}).await;
    let t = now_ns() - 60_000_000_000;
    // north: 1, 2, 3 (newest 3); south: 10; east (no temp, only a flag).
    let body = format!(
        "boiler,site=north temp=1 {}\nboiler,site=north temp=2 {}\nboiler,site=north temp=3 {}\n\
         boiler,site=south temp=10 {}\nboiler,site=east ok=true {}\n",
        t,
        t + 1_000,
        t + 2_000,
        t + 500,
        t + 700
    );
    assert_eq!(
        hub.write_lp("plant", &body).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = create(
        &hub,
        json!({"database": "plant", "measurement": "boiler", "key_columns": ["site"], "count": 2}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let cache: Value = r.json().await.unwrap();
    assert_eq!(cache["name"], "boiler_site_last", "{cache}");
    assert_eq!(cache["keys"], 3, "{cache}");
    let want = json!([
        ["east", null],
        ["north", 3.0],
        ["north", 2.0],
        ["south", 10.0]
    ]);
    assert_eq!(rows(&hub, FROM_CACHE).await, want);
    assert_eq!(rows(&hub, FROM_TABLE).await, want);

    // A write is in the cache when it is acknowledged.
    let body = format!("boiler,site=south temp=11 {}\n", t + 5_000);
    assert_eq!(
        hub.write_lp("plant", &body).await.status(),
        StatusCode::NO_CONTENT
    );
    let want = json!([
        ["east", null],
        ["north", 3.0],
        ["north", 2.0],
        ["south", 11.0],
        ["south", 10.0]
    ]);
    assert_eq!(rows(&hub, FROM_CACHE).await, want);
    assert_eq!(rows(&hub, FROM_TABLE).await, want);
    // Filters, joins and the default database work on it like on a table.
    let (status, v) = hub
        .post("/api/v1/query", &hub.admin)
        .json(&json!({"sql": "SELECT temp FROM last_cache('boiler') WHERE site = 'south' ORDER BY time DESC LIMIT 1", "database": "plant"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v.json::<Value>().await.unwrap()["data"], json!([[11.0]]));

    // Refilled from the table after a restart.
    hub.restart().await;
    assert_eq!(rows(&hub, FROM_CACHE).await, want);
    let list = hub.admin_get("/api/v1/last_cache").await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["caches"][0]["keys"], 3);

    // A second cache on the table: the function then needs its name.
    let r = hub
        .post("/api/v3/configure/last_cache", &hub.admin)
        .json(&json!({"db": "plant", "table": "boiler", "name": "recent", "key_columns": [], "ttl": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, v) = hub.sql("SELECT * FROM last_cache('plant.boiler')").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("several"), "{v}");
    // Its ttl is 1 s: the rows written a minute ago are not in it, a new one is, for a second.
    assert_eq!(
        rows(
            &hub,
            "SELECT count(*) FROM last_cache('plant.boiler', 'recent')"
        )
        .await,
        json!([[0]])
    );
    let body = format!("boiler,site=west temp=7 {}\n", now_ns());
    assert_eq!(
        hub.write_lp("plant", &body).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        rows(
            &hub,
            "SELECT temp FROM last_cache('plant.boiler', 'recent')"
        )
        .await,
        json!([[7.0]])
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        rows(
            &hub,
            "SELECT count(*) FROM last_cache('plant.boiler', 'recent')"
        )
        .await,
        json!([[0]])
    );
    let r = hub
        .client
        .delete(hub.url("/api/v3/configure/last_cache?db=plant&table=boiler&name=recent"))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        rows(&hub, "SELECT count(*) FROM last_cache('plant.boiler')").await,
        json!([[6]])
    );
    hub.stop().await;
}

#[tokio::test]
async fn declared_caches_bounds_and_careless_requests() {
    let mut hub = start_with(|c| c.last_cache.max_keys = 2).await;
    let t = now_ns() - 1_000_000_000;
    let body: String = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, s)| format!("vib,sensor={s} g={i} {}\n", t + i as i64))
        .collect();
    assert_eq!(
        hub.write_lp("plant", &body).await.status(),
        StatusCode::NO_CONTENT
    );

    // At most max_keys keys: the third sensor is not cached.
    let r = create(&hub, json!({"database": "plant", "measurement": "vib"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let cache: Value = r.json().await.unwrap();
    assert_eq!(
        cache["key_columns"],
        json!(["sensor"]),
        "the tags by default: {cache}"
    );
    assert_eq!(cache["keys"], 2, "{cache}");
    let id = cache["id"].as_i64().unwrap();

    for (body, status, needle) in [
        (
            json!({"database": "plant", "measurement": "vib", "key_columns": ["nosuch"]}),
            StatusCode::BAD_REQUEST,
            "nosuch",
        ),
        (
            json!({"database": "plant", "measurement": "vib", "count": 11}),
            StatusCode::BAD_REQUEST,
            "1-10",
        ),
        (
            json!({"database": "plant", "measurement": "vib", "ttl": -5}),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            json!({"database": "plant", "measurement": "vib", "value_columns": ["sensor"]}),
            StatusCode::BAD_REQUEST,
            "both",
        ),
        (
            json!({"database": "plant", "measurement": "nosuch"}),
            StatusCode::NOT_FOUND,
            "nosuch",
        ),
        (
            json!({"database": "plant", "measurement": "vib"}),
            StatusCode::CONFLICT,
            "already",
        ),
    ] {
        let r = create(&hub, body.clone()).await;
        let got = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    let (_, read) = hub.token("read").await;
    let r = hub
        .post("/api/v1/last_cache", &read)
        .json(&json!({"database": "plant", "measurement": "vib", "name": "mine"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let (status, v) = hub.sql("SELECT * FROM last_cache('plant.boiler')").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no last-value cache"),
        "{v}"
    );
    let (status, _) = hub.sql("SELECT * FROM last_cache(42)").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleted by id; then declared in hub.toml, created and filled at start.
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/last_cache/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    hub.restart_with(|c| {
        c.last_cache.caches = vec![ferry_hub::lastcache::config::DeclaredCache {
            database: "plant".into(),
            measurement: "vib".into(),
            name: Some("vib_now".into()),
            key_columns: None,
            value_columns: Some(vec!["g".into()]),
            count: Some(1),
            ttl: None,
        }];
    })
    .await;
    assert_eq!(
        rows(
            &hub,
            "SELECT sensor, g FROM last_cache('plant.vib') ORDER BY sensor"
        )
        .await,
        json!([["a", 0.0], ["b", 1.0], ["c", 2.0]])
    );
    hub.stop().await;
}
