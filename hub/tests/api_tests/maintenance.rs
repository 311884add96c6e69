//! Compaction, retention and vacuum through the HTTP API, on local disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, start_with};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn today_start_ns() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    now - now.rem_euclid(DAY_NS)
}

/// The active data files of a table, from its Delta log.
async fn active_files(table_dir: &Path) -> Vec<(PathBuf, u64)> {
    let url = deltalake::ensure_table_uri(table_dir.to_str().unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let snapshot = table.snapshot().unwrap();
    snapshot
        .log_data()
        .iter()
        .map(|f| (table_dir.join(f.path().as_ref()), f.size() as u64))
        .collect()
}

/// Every row of a table as sorted text lines (a multiset fingerprint).
async fn rows(hub: &TestHub, table: &str) -> Vec<String> {
    let (status, v) = hub
        .sql(&format!(
            "SELECT CAST(time AS BIGINT) AS t, host, region, v FROM {table} ORDER BY t, host, region, v"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect()
}

fn read_file(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `(host, region, time)` of every row of a data file, in file order.
fn keys_of(path: &Path) -> Vec<(Option<String>, Option<String>, i64)> {
    let mut out = Vec::new();
    for b in read_file(path) {
        let host = b.column_by_name("host").unwrap().as_string::<i32>().clone();
        let region = b
            .column_by_name("region")
            .map(|c| c.as_string::<i32>().clone());
        let time = b
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        for i in 0..b.num_rows() {
            let s = |a: &deltalake::arrow::array::StringArray| {
                (!a.is_null(i)).then(|| a.value(i).to_owned())
            };
            out.push((s(&host), region.as_ref().and_then(s), time.value(i)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_merges_small_files_sorted_while_ingest_goes_on() {
    let hub = start_with(|c| {
        c.compaction.enabled = false;
        c.compaction.settle = Duration::ZERO;
        c.compaction.min_files = 4;
    })
    .await;
    let yesterday = today_start_ns() - DAY_NS;
    // 24 separate commits into yesterday's partition: 24 small files. Tags
    // arrive out of order; the second half brings a new tag (schema evolution).
    let mut expected = 0usize;
    for i in 0..24i64 {
        let mut body = String::new();
        for j in 0..50i64 {
            let host = format!("h{}", (i * 7 + j) % 5);
            let t = yesterday + (i * 50 + j) * 1_000_000_000;
            if i < 12 {
                body.push_str(&format!("cpu,host={host} v={j}i {t}\n"));
            } else {
                body.push_str(&format!("cpu,host={host},region=r{} v={j}i {t}\n", j % 3));
            }
        }
        let r = hub.write_lp("plant", &body).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        expected += 50;
    }
    let table_dir = hub.dir.path().join("tables/plant/cpu");
    let before_files = active_files(&table_dir).await;
    assert!(before_files.len() >= 24, "{}", before_files.len());
    let before = rows(&hub, "plant.cpu").await;
    assert_eq!(before.len(), expected);

    // Ingest goes on into today's and yesterday's partitions during compaction.
    let writer = {
        let base = hub.base.clone();
        let admin = hub.admin.clone();
        let client = hub.client.clone();
        tokio::spawn(async move {
            let mut acked = 0usize;
            for k in 0..20i64 {
                let t = yesterday + DAY_NS / 2 + k * 1_000_000_000;
                let body = format!(
                    "cpu,host=late v={k}i {t}\ncpu,host=now v={k}i {}\n",
                    t + DAY_NS / 2
                );
                let r = client
                    .post(format!("{base}/api/v1/write/line-protocol?db=plant"))
                    .bearer_auth(&admin)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
                acked += 2;
            }
            acked
        })
    };
    let r = hub
        .post("/api/v1/compaction/run", &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    let acked = writer.await.unwrap();
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["files_removed"].as_u64().unwrap() >= 24, "{report}");
    assert!(
        report["rows"].as_u64().unwrap() >= expected as u64,
        "{report}"
    );

    // Nothing lost, nothing twice: the old rows plus every acknowledged write.
    let after = rows(&hub, "plant.cpu").await;
    assert_eq!(after.len(), expected + acked);
    let mut old: BTreeMap<&String, usize> = BTreeMap::new();
    for r in &before {
        *old.entry(r).or_default() += 1;
    }
    for r in &after {
        if let Some(n) = old.get_mut(r) {
            *n -= 1;
        }
    }
    assert!(
        old.values().all(|n| *n == 0),
        "rows went missing after compaction"
    );

    // Yesterday's 24 small files are now one, sorted by tags, fewest
    // distinct values first (region: r0-r2 and null; host: h0-h4 and late),
    // then time.
    let files = active_files(&table_dir).await;
    let compacted: Vec<_> = files
        .iter()
        .filter(|(_, size)| *size > before_files.iter().map(|(_, s)| *s).max().unwrap())
        .collect();
    assert_eq!(compacted.len(), 1, "{files:?}");
    let keys: Vec<_> = keys_of(&compacted[0].0)
        .into_iter()
        .map(|(host, region, time)| (region, host, time))
        .collect();
    assert!(keys.len() >= expected);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "compacted rows are not sorted by region, host, time"
    );

    // Metrics and status show the run.
    let metrics = hub
        .client
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_table_compaction_files_removed_total"),
        "{metrics}"
    );
    let status: Value = hub.admin_get("/api/v1/compaction").await;
    assert_eq!(status["last_run"]["files_removed"], report["files_removed"]);

    // The writes that raced the first run left small files in both
    // partitions; a second run merges them (with the first run's file, still
    // small here), and a third finds nothing left to do.
    let second: Value = hub.admin_post("/api/v1/compaction/run").await;
    assert_eq!(second["partitions"].as_u64(), Some(2), "{second}");
    assert_eq!(active_files(&table_dir).await.len(), 2);
    let third: Value = hub.admin_post("/api/v1/compaction/run").await;
    assert_eq!(third["files_removed"].as_u64(), Some(0), "{third}");
    assert_eq!(rows(&hub, "plant.cpu").await, after);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_runs_on_its_interval() {
    let hub = start_with(|c| {
        c.compaction.interval = Duration::from_millis(300);
        c.compaction.settle = Duration::ZERO;
        c.compaction.min_files = 2;
    })
    .await;
    let yesterday = today_start_ns() - DAY_NS;
    for i in 0..3i64 {
        let r = hub
            .write_lp("plant", &format!("temp,host=a v={i} {}\n", yesterday + i))
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = hub.admin_get("/api/v1/compaction").await;
        if status["last_run"]["files_removed"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no compaction: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hub.count("plant.temp").await, 3);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expires_old_days_by_policy_with_a_dry_run_first() {
    let hub = start_with(|c| {
        c.retention.vacuum_grace = Duration::ZERO;
    })
    .await;
    let today = today_start_ns();
    for (days_ago, n) in [(10i64, 3), (5, 4), (0, 5)] {
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "cpu,host=h v={i}i {}\n",
                today - days_ago * DAY_NS + i
            ));
            body.push_str(&format!(
                "disk,host=h v={i}i {}\n",
                today - days_ago * DAY_NS + i
            ));
        }
        assert_eq!(
            hub.write_lp("plant", &body).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    // plant keeps 7 days; plant.disk keeps 3.
    for (body, days) in [
        (json!({"database": "plant", "days": 7}), 7),
        (
            json!({"database": "plant", "measurement": "disk", "days": 3}),
            3,
        ),
    ] {
        let r = hub
            .post("/api/v1/retention", &hub.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["policy"]["days"], days);
    }
    let (_, read) = hub.token("read").await;
    let list: Value = hub
        .get("/api/v1/retention", &read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["policies"].as_array().unwrap().len(), 2, "{list}");

    // The dry run reports, and deletes nothing.
    let r = hub
        .post("/api/v1/retention/dry-run", &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["rows"].as_u64(), Some(3 + 3 + 4), "{dry}");
    assert_eq!(hub.count("plant.cpu").await, 12);
    assert_eq!(hub.count("plant.disk").await, 12);

    let old_partition = hub.dir.path().join("tables/plant/cpu").join(format!(
        "day={}",
        dry["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "plant.cpu")
            .unwrap()["days"][0]
            .as_str()
            .unwrap()
    ));
    assert!(std::fs::read_dir(&old_partition).unwrap().count() > 0);

    let run: Value = hub.admin_post("/api/v1/retention/run").await;
    assert_eq!(run["rows"].as_u64(), Some(10), "{run}");
    assert!(run["vacuumed_files"].as_u64().unwrap() >= 3, "{run}");
    assert_eq!(hub.count("plant.cpu").await, 4 + 5);
    assert_eq!(hub.count("plant.disk").await, 5);
    let parquet_left = std::fs::read_dir(&old_partition)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(
        parquet_left, 0,
        "vacuum left the expired files in {old_partition:?}"
    );

    // Deleting a policy: the database policy now covers disk too.
    let r = hub
        .client
        .delete(hub.url("/api/v1/retention?database=plant&measurement=disk"))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = hub
        .client
        .delete(hub.url("/api/v1/retention?database=plant&measurement=disk"))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    hub.stop().await;
}

#[tokio::test]
async fn retention_api_rejects_bad_policies_and_non_admins() {
    let hub = start_with(|_| {}).await;
    let (_, read) = hub.token("read").await;
    let (_, write) = hub.token("write").await;
    for token in [&read, &write] {
        let r = hub
            .post("/api/v1/retention", token)
            .json(&json!({"database": "plant", "days": 3}))
            .send()
            .await
            .unwrap();
        error(r, StatusCode::FORBIDDEN, "forbidden").await;
        let r = hub
            .post("/api/v1/retention/run", token)
            .send()
            .await
            .unwrap();
        error(r, StatusCode::FORBIDDEN, "forbidden").await;
        let r = hub
            .post("/api/v1/compaction/run", token)
            .send()
            .await
            .unwrap();
        error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    for body in [
        json!({"database": "plant", "days": 0}),
        json!({"database": "plant", "days": 40000}),
        json!({"database": "../etc", "days": 3}),
        json!({"database": "plant", "measurement": "", "days": 3}),
        json!({"database": "plant", "days": 3, "extra": 1}),
    ] {
        let r = hub
            .post("/api/v1/retention", &hub.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    hub.stop().await;
}
