//! SQL: read-only enforcement, SHOW, formats, limits.

use deltalake::arrow::ipc::reader::StreamReader;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start, start_with};

async fn seed(hub: &TestHub) {
    let r = hub
        .write_lp(
            "plant",
            "boiler,site=north temp=20.5,ok=true 1700000000000000000\n\
             boiler,site=south temp=21.5,ok=false 1700000001000000000\n\
             boiler,site=west temp=22.5,ok=true 1700000002000000000\n",
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub
        .write_lp("lab", "probe v=1i 1700000000000000000\n")
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_ddl_are_rejected() {
    let hub = start().await;
    seed(&hub).await;
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE plant.boiler",
        "INSERT INTO plant.boiler (temp) VALUES (1.0)",
        "COPY (SELECT 1) TO '/tmp/ferry-copy-test.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE VIEW v AS SELECT 1",
    ] {
        let (status, v) = hub.sql(sql).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {v}");
        assert_eq!(v["error"], "query_rejected", "{sql}: {v}");
    }
    assert!(!std::path::Path::new("/tmp/ferry-copy-test.csv").exists());
    // Local files cannot be read as tables or through table functions.
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM \"file:///etc/passwd\"",
    ] {
        let (status, v) = hub.sql(sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {v}");
        assert!(!v.to_string().contains("root:"), "{sql}: {v}");
    }
    // The data is untouched.
    assert_eq!(hub.count("plant.boiler").await, 3);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_shape_and_database_default() {
    let hub = start().await;
    seed(&hub).await;
    let r = hub
        .post("/api/v1/query", &hub.admin)
        .json(&json!({
            "sql": "SELECT time, site, temp, ok FROM boiler ORDER BY time",
            "database": "plant"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["columns"], json!(["time", "site", "temp", "ok"]));
    assert_eq!(v["row_count"], 3);
    assert_eq!(v["truncated"], false);
    assert!(v["execution_time_ms"].is_u64());
    assert_eq!(
        v["data"][0],
        json!(["2023-11-14T22:13:20Z", "north", 20.5, true])
    );
    // Bad SQL and unknown tables are 400.
    let (status, v) = hub.sql("SELEC 1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = hub.sql("SELECT * FROM plant.nothing").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_databases_and_measurements() {
    let hub = start().await;
    seed(&hub).await;
    let (status, v) = hub.sql("SHOW DATABASES").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["columns"], json!(["name"]));
    assert_eq!(v["data"], json!([["lab"], ["plant"]]));
    let (_, v) = hub.sql("show measurements;").await;
    assert_eq!(v["data"], json!([["lab", "probe"], ["plant", "boiler"]]));
    let (_, v) = hub.sql("SHOW MEASUREMENTS FROM plant").await;
    assert_eq!(v["data"], json!([["plant", "boiler"]]));
    assert_eq!(v["row_count"], 1);
    // DataFusion's own listings see the same tables.
    let (status, v) = hub
        .sql(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"], json!([["lab", "probe"], ["plant", "boiler"]]));
    let (status, v) = hub
        .sql(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = 'plant' AND table_name = 'boiler' ORDER BY 1",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"],
        json!([["day"], ["ok"], ["site"], ["temp"], ["time"]])
    );
    // A table just created is listed at once.
    let r = hub
        .write_lp("lab", "fresh v=1i 1700000000000000000\n")
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, v) = hub.sql("SHOW MEASUREMENTS FROM lab").await;
    assert_eq!(v["data"], json!([["lab", "fresh"], ["lab", "probe"]]));
    // Names that are not table names are not found, never paths.
    for sql in [
        "SELECT * FROM \"..\".\"..\"",
        "SELECT * FROM plant.\"../lab/probe\"",
        "SELECT * FROM \"plant/../lab\".probe",
    ] {
        let (status, v) = hub.sql(sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("not found"),
            "{sql}: {v}"
        );
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_arrow() {
    let hub = start().await;
    seed(&hub).await;
    let body = json!({"sql": "SELECT site, temp FROM plant.boiler ORDER BY site"});
    let r = hub
        .post("/api/v1/query", &hub.admin)
        .header("accept", "text/csv")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(r.headers()["x-ferry-row-count"], "3");
    let csv = r.text().await.unwrap();
    assert_eq!(csv, "site,temp\nnorth,20.5\nsouth,21.5\nwest,22.5\n");

    let r = hub
        .post("/api/v1/query", &hub.admin)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = r.bytes().await.unwrap();
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let schema = reader.schema();
    assert_eq!(schema.field(0).name(), "site");
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_limit_truncates() {
    let hub = start_with(|c| {
        c.query.max_rows = std::num::NonZeroUsize::new(2).unwrap();
    })
    .await;
    seed(&hub).await;
    let (status, v) = hub.sql("SELECT * FROM plant.boiler").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["row_count"], 2);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // Aggregates are not cut.
    assert_eq!(hub.count("plant.boiler").await, 3);
    let r = hub
        .post("/api/v1/query", &hub.admin)
        .json(&json!({"sql": "SELECT 1", "database": "../x"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_options_reach_the_session_and_the_delta_scan() {
    let setting = |v: &serde_json::Value| v["data"][0][0].as_str().map(str::to_owned);
    let sql = "SELECT value FROM information_schema.df_settings \
               WHERE name = 'datafusion.execution.parquet.pushdown_filters'";
    let explain = "EXPLAIN SELECT site FROM plant.boiler WHERE temp > 21.0";
    // Ferry's default turns pushdown on; the config can turn it off.
    for pushdown in ["true", "false"] {
        let hub = start_with(|c| {
            if pushdown == "false" {
                c.query.datafusion.insert(
                    "datafusion.execution.parquet.pushdown_filters".to_owned(),
                    pushdown.to_owned(),
                );
            }
        })
        .await;
        seed(&hub).await;
        let (status, v) = hub.sql(sql).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(setting(&v).as_deref(), Some(pushdown), "{v}");
        // With pushdown the Parquet scan filters rows itself; without, the
        // plan keeps a FilterExec above the scan.
        let (status, v) = hub.sql(explain).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let plan = v["data"].to_string();
        assert_eq!(plan.contains("FilterExec"), pushdown == "false", "{plan}");
        let (status, v) = hub
            .sql("SELECT count(*) AS n FROM plant.boiler WHERE temp > 21.0")
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["data"][0][0], 2, "{v}");
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_timeout_is_cancelled_with_504() {
    let hub = start_with(|c| {
        c.query.timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let started = std::time::Instant::now();
    let (status, v) = hub.sql("SELECT sum(value) FROM range(10000000000)").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(v["error"], "timeout", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("query.timeout"),
        "{v}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the timeout answered after {:?}",
        started.elapsed()
    );
    // The hub still answers.
    let (status, v) = hub.sql("SELECT 1 AS one").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    hub.stop().await;
}
