//! Bulk import: CSV, Parquet and line protocol files through Arc's routes
//! (raw and multipart bodies), resumable uploads, jobs with progress,
//! idempotency by content, a restart in the middle of a job, and what a
//! careless or hostile client gets.

use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{TestHub, error, start_with};

/// 2024-01-01T00:00:00Z in seconds.
const T0: i64 = 1_704_067_200;

/// `rows` good CSV rows (time in epoch seconds, host tag, temp, ok) and
/// three bad ones at known lines.
fn csv_file(rows: usize) -> (String, Vec<u64>) {
    let mut s = String::from("time,host,temp,ok\n");
    let mut bad = Vec::new();
    for i in 0..rows {
        s.push_str(&format!(
            "{},h{},{}.5,{}\n",
            T0 + i as i64,
            i % 7,
            i,
            i % 2 == 0
        ));
        // Bad rows after the type sample: a word where temp is a number,
        // a bad time, a row with no field value.
        if i == 1500 {
            s.push_str("not-a-time,h1,1.0,true\n");
            bad.push(i as u64 + 3);
        }
        if i == 1800 {
            s.push_str(&format!("{},h1,warm,true\n", T0));
            bad.push(i as u64 + 4);
        }
        if i == 2100 {
            s.push_str(&format!("{},h1,,\n", T0));
            bad.push(i as u64 + 5);
        }
    }
    (s, bad)
}

fn hub_config(c: &mut ferry_hub::config::HubConfig) {
    c.import.chunk_rows = 1000;
}

async fn import(hub: &TestHub, path_and_query: &str, body: Vec<u8>) -> reqwest::Response {
    hub.post(path_and_query, &hub.admin)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn a_csv_file_lands_once_with_its_bad_rows_reported_and_twice_writes_nothing() {
    let hub = start_with(hub_config).await;
    let (csv, bad) = csv_file(2500);
    let q = "/api/v1/import/csv?db=plant&measurement=boiler&tag_columns=host&time_format=epoch_s";
    let v = ok(import(&hub, q, csv.clone().into_bytes()).await).await;
    assert_eq!(v["status"], "ok");
    assert_eq!(v["duplicate"], false);
    assert_eq!(v["result"]["rows_imported"], 2500, "{v}");
    assert_eq!(v["result"]["rows_rejected"], 3, "{v}");
    assert_eq!(v["result"]["time_range_min"], "2024-01-01T00:00:00Z");
    let job = &v["job"];
    assert_eq!(job["state"], "completed");
    assert_eq!(job["chunks_done"], 3);
    assert_eq!(job["bytes_done"], job["bytes_total"]);
    let lines: Vec<u64> = job["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, bad, "{job}");
    let reasons = job["rejected"].to_string();
    assert!(
        reasons.contains("time") && reasons.contains("warm") && reasons.contains("no field values"),
        "{reasons}"
    );

    assert_eq!(hub.count("plant.boiler").await, 2500);
    let (_, types) = hub
        .sql("SELECT arrow_typeof(temp) AS t, arrow_typeof(ok) AS o, host FROM plant.boiler WHERE temp = 7.5")
        .await;
    assert_eq!(types["data"][0][0], "Float64", "{types}");
    assert_eq!(types["data"][0][1], "Boolean", "{types}");
    assert_eq!(types["data"][0][2], "h0", "{types}");

    // The same file the same way: the first job answers, nothing written.
    let again = ok(import(&hub, q, csv.clone().into_bytes()).await).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["result"]["rows_imported"], 0);
    assert_eq!(again["job"]["id"], job["id"]);
    assert_eq!(hub.count("plant.boiler").await, 2500);

    // The same file into another table is another job.
    let other = "/api/v1/import/csv?db=plant&measurement=boiler2&time_format=epoch_s";
    let v = ok(import(&hub, other, csv.into_bytes()).await).await;
    assert_eq!(v["duplicate"], false);
    // Without tag_columns, host is a string field: the row whose only
    // value is its host is no longer empty.
    assert_eq!(hub.count("plant.boiler2").await, 2501);
    let (_, t) = hub
        .sql("SELECT arrow_typeof(host) FROM plant.boiler2 LIMIT 1")
        .await;
    assert_eq!(t["data"][0][0], "Utf8View", "{t}");

    let jobs = hub
        .get("/api/v1/import/jobs", &hub.admin)
        .send()
        .await
        .unwrap();
    let jobs: Value = jobs.json().await.unwrap();
    assert_eq!(jobs["count"], 2, "{jobs}");
    hub.stop().await;
}

/// A multipart body as a browser or `curl -F file=@...` sends it.
fn multipart(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "ferry-test-boundary-7d1";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn line_protocol_and_parquet_arrive_as_multipart_with_arcs_options() {
    let hub = start_with(hub_config).await;
    // Line protocol, seconds, two measurements and Arc's measurement filter.
    let mut lp = String::new();
    for i in 0..1200 {
        lp.push_str(&format!("cpu,host=a usage={i}.0 {}\n", T0 + i));
        lp.push_str(&format!("mem,host=a used={i}i {}\n", T0 + i));
    }
    lp.push_str("cpu,host=a usage= 1\n");
    let (ct, body) = multipart("metrics.lp", lp.as_bytes());
    let r = hub
        .post("/api/v1/import/lp?db=sys&precision=s", &hub.admin)
        .header("content-type", ct.clone())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let v = ok(r).await;
    assert_eq!(v["result"]["rows_imported"], 2400, "{v}");
    assert_eq!(v["result"]["rows_rejected"], 1, "{v}");
    assert_eq!(v["job"]["file_name"], "metrics.lp");
    assert_eq!(v["job"]["rejected"][0]["line"], 2401, "{v}");
    assert_eq!(
        v["result"]["measurements"],
        serde_json::json!(["cpu", "mem"])
    );
    assert_eq!(hub.count("sys.cpu").await, 1200);
    assert_eq!(hub.count("sys.mem").await, 1200);
    let (_, t) = hub.sql("SELECT max(time) FROM sys.cpu").await;
    assert!(
        t["data"][0][0]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01T00:19:59"),
        "{t}"
    );

    // Arc's filter: only `cpu` lines, into another database.
    let r = hub
        .post(
            "/api/v1/import/lp?db=sys2&precision=s&measurement=cpu",
            &hub.admin,
        )
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    ok(r).await;
    let (status, v) = hub.sql("SELECT count(*) FROM sys2.mem").await;
    assert_ne!(status, StatusCode::OK, "{v}");
    assert_eq!(hub.count("sys2.cpu").await, 1200);

    // Parquet: a millisecond timestamp, a tag, a float, an integer, a text column.
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("site", DataType::Utf8, true),
        Field::new("level", DataType::Float64, true),
        Field::new("count", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let n = 3000usize;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter((0..n).map(|i| {
                // One row with no time: rejected.
                (i != 17).then_some(T0 * 1000 + i as i64 * 10)
            }))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("s{}", i % 3)),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| i as f64 / 4.0),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64))),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 2 == 0).then(|| "x".to_owned())),
            )),
        ],
    )
    .unwrap();
    let mut file = Vec::new();
    let mut writer =
        deltalake::parquet::arrow::ArrowWriter::try_new(&mut file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let (ct, body) = multipart("tanks.parquet", &file);
    let r = hub
        .post(
            "/api/v1/import/parquet?db=plant&measurement=tanks&time_column=ts&tag_columns=site",
            &hub.admin,
        )
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let v = ok(r).await;
    assert_eq!(v["result"]["rows_imported"], n - 1, "{v}");
    assert_eq!(v["job"]["rejected"][0]["record"], 17, "{v}");
    let (_, sums) = hub
        .sql("SELECT count(*), sum(count), count(note), count(DISTINCT site), arrow_typeof(max(count)) FROM plant.tanks")
        .await;
    let expect_sum: i64 = (0..n as i64).filter(|i| *i != 17).sum();
    assert_eq!(sums["data"][0][0], n - 1, "{sums}");
    assert_eq!(sums["data"][0][1], expect_sum, "{sums}");
    assert_eq!(sums["data"][0][2], n / 2, "{sums}");
    assert_eq!(sums["data"][0][3], 3, "{sums}");
    assert_eq!(sums["data"][0][4], "Int64", "{sums}");
    hub.stop().await;
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_resumable_upload_survives_a_restart_and_its_job_reports_progress() {
    let mut hub = start_with(hub_config).await;
    let (csv, _) = csv_file(5000);
    let bytes = csv.into_bytes();
    let sum = sha(&bytes);
    let path = format!("/api/v1/import/uploads/{sum}");
    let put = |hub: &TestHub, offset: usize, piece: Vec<u8>| {
        hub.client
            .put(hub.url(&format!("{path}?offset={offset}")))
            .bearer_auth(&hub.admin)
            .body(piece)
            .send()
    };
    let half = bytes.len() / 2;
    let v = ok(put(&hub, 0, bytes[..half].to_vec()).await.unwrap()).await;
    assert_eq!(v["received"], half);
    // Bytes the upload's state never saw (a write cut off half way) are
    // cut before the next piece: they must not end up in the file.
    let part = hub
        .dir
        .path()
        .join(format!("meta/imports/uploads/{sum}.part"));
    let mut junk = std::fs::OpenOptions::new()
        .append(true)
        .open(&part)
        .unwrap();
    std::io::Write::write_all(&mut junk, b"1,junk,junk\n").unwrap();
    drop(junk);
    let v = ok(put(&hub, half, bytes[half..half + 100].to_vec())
        .await
        .unwrap())
    .await;
    assert_eq!(v["received"], half + 100);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), (half + 100) as u64);
    let half = half + 100;
    // A piece at the wrong offset: 409, and the hub says where to go on.
    let r = put(&hub, 10, bytes[10..20].to_vec()).await.unwrap();
    let e = error(r, StatusCode::CONFLICT, "conflict").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("offset {half}")),
        "{e}"
    );

    // The hub restarts: the upload is still there, its hash rebuilt.
    hub.restart_with(hub_config).await;
    let v = ok(hub.get(&path, &hub.admin).send().await.unwrap()).await;
    assert_eq!(v["received"], half);
    ok(put(&hub, half, bytes[half..].to_vec()).await.unwrap()).await;

    let r = hub
        .post(&format!("/api/v1/import/csv?db=plant&measurement=r&upload={sum}&async=true&time_format=epoch_s&file_name=r.csv"), &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let id = v["job"]["id"].as_str().unwrap().to_owned();
    let mut job = v["job"].clone();
    for _ in 0..300 {
        if job["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        job = ok(hub
            .get(&format!("/api/v1/import/jobs/{id}"), &hub.admin)
            .send()
            .await
            .unwrap())
        .await;
    }
    assert_eq!(job["state"], "completed", "{job}");
    // host is a field here: only two rows are bad.
    assert_eq!(job["rows_imported"], 5001);
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["file_name"], "r.csv");
    assert!(job["rows_per_second"].as_f64().unwrap() > 0.0, "{job}");
    assert_eq!(hub.count("plant.r").await, 5001);
    // The upload became the job's file: it is gone as an upload.
    let v = ok(hub.get(&path, &hub.admin).send().await.unwrap()).await;
    assert_eq!(v["received"], 0);

    // Bytes that do not hash to the name: refused, and dropped.
    let wrong = sha(b"something else");
    let r = hub
        .client
        .put(hub.url(&format!("/api/v1/import/uploads/{wrong}?offset=0")))
        .bearer_auth(&hub.admin)
        .body("time,v\n1,2\n")
        .send()
        .await
        .unwrap();
    ok(r).await;
    let r = hub
        .post(
            &format!("/api/v1/import/csv?db=plant&measurement=w&upload={wrong}"),
            &hub.admin,
        )
        .send()
        .await
        .unwrap();
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("hash to"), "{e}");
    let r = hub
        .get("/api/v1/import/uploads/not-a-sha", &hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    hub.stop().await;
}

#[tokio::test]
async fn a_job_interrupted_by_a_restart_resumes_and_every_row_lands_once() {
    // Small chunks and a slow commit window: the job is mid-file at the stop.
    let tweak = |c: &mut ferry_hub::config::HubConfig| {
        c.import.chunk_rows = 500;
        c.tables.commit_interval = Duration::from_millis(150);
    };
    let mut hub = start_with(tweak).await;
    let (csv, _) = csv_file(20_000);
    let r = import(
        &hub,
        "/api/v1/import/csv?db=plant&measurement=big&time_format=epoch_s&async=true",
        csv.into_bytes(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let id = v["job"]["id"].as_str().unwrap().to_owned();
    let mut job = v["job"].clone();
    for _ in 0..200 {
        job = ok(hub
            .get(&format!("/api/v1/import/jobs/{id}"), &hub.admin)
            .send()
            .await
            .unwrap())
        .await;
        if job["chunks_done"].as_u64().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(job["state"], "running", "{job}");
    assert!(job["eta_seconds"].as_f64().is_some(), "{job}");
    hub.restart_with(tweak).await;
    for _ in 0..600 {
        job = ok(hub
            .get(&format!("/api/v1/import/jobs/{id}"), &hub.admin)
            .send()
            .await
            .unwrap())
        .await;
        if job["state"] != "running" && job["state"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["rows_imported"], 20_001, "{job}");
    assert_eq!(job["rows_rejected"], 2, "{job}");
    assert_eq!(hub.count("plant.big").await, 20_001);
    let (_, d) = hub.sql("SELECT count(DISTINCT time) FROM plant.big").await;
    // The extra row shares T0 with the first.
    assert_eq!(d["data"][0][0], 20_000, "{d}");
    hub.stop().await;
}

#[tokio::test]
async fn careless_and_hostile_imports_get_clear_errors_and_leave_nothing() {
    let hub = start_with(|c| {
        c.import.max_file_size = bytesize::ByteSize::b(4096);
    })
    .await;
    let q = "/api/v1/import/csv?db=plant&measurement=m";
    // No time column, no measurement, a bad delimiter, a bad option.
    let r = import(&hub, q, b"when,v\n1,2\n".to_vec()).await;
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("time column \"time\" is not in the header (when, v)"),
        "{e}"
    );
    let r = import(
        &hub,
        "/api/v1/import/csv?db=plant",
        b"time,v\n1,2\n".to_vec(),
    )
    .await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = import(
        &hub,
        "/api/v1/import/csv?db=plant&measurement=m&delimiter=ab",
        b"x".to_vec(),
    )
    .await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = import(
        &hub,
        "/api/v1/import/csv?db=plant&measurement=m&time_format=weird",
        b"x".to_vec(),
    )
    .await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = import(
        &hub,
        "/api/v1/import/csv?db=plant&measurement=m&types=v:decimal",
        b"x".to_vec(),
    )
    .await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // Empty, too large, not Parquet, unknown format, no database.
    let r = import(&hub, q, Vec::new()).await;
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("empty"), "{e}");
    let r = import(&hub, q, vec![b'1'; 5000]).await;
    error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let r = import(
        &hub,
        "/api/v1/import/parquet?db=plant&measurement=m",
        b"PAR1 not really".to_vec(),
    )
    .await;
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("Parquet"), "{e}");
    let r = import(&hub, "/api/v1/import/xlsx?db=plant", b"x".to_vec()).await;
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = import(&hub, "/api/v1/import/lp", b"m v=1 1\n".to_vec()).await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    // Every row bad: the job fails and says why.
    let r = import(&hub, q, b"time,v\nnope,1\nnever,2\n".to_vec()).await;
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no row could be imported"),
        "{e}"
    );
    assert_eq!(e["details"][0]["line_number"], 2, "{e}");
    // A read token cannot import; a multipart body without a file field.
    let (_, reader) = hub.token("read").await;
    let r = hub
        .post(q, &reader)
        .body("time,v\n1,2\n")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post(q, &hub.admin)
        .header("content-type", "multipart/form-data; boundary=b")
        .body("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n")
        .send()
        .await
        .unwrap();
    let e = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(e["message"].as_str().unwrap().contains("`file`"), "{e}");
    // Nothing was written, no job is left queued, no file is left behind.
    let (status, v) = hub.sql("SELECT count(*) FROM plant.m").await;
    assert_ne!(status, StatusCode::OK, "{v}");
    let spool = hub.dir.path().join("meta/imports");
    for sub in ["incoming", "jobs", "uploads"] {
        let left: Vec<_> = std::fs::read_dir(spool.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
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
        metrics.contains("ferry_hub_import_refused_total{reason=\"file_size\"}"),
        "{metrics}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn imports_can_be_turned_off_and_a_queued_job_cancelled() {
    let hub = start_with(|c| {
        c.import.enabled = false;
    })
    .await;
    let r = import(&hub, "/api/v1/import/lp?db=a", b"m v=1 1\n".to_vec()).await;
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    hub.stop().await;

    // No worker runs while the only slot is held by a long job: the second
    // job stays queued and can be cancelled.
    let hub = start_with(|c| {
        c.import.chunk_rows = 100;
        c.tables.commit_interval = Duration::from_millis(200);
    })
    .await;
    let (csv, _) = csv_file(3000);
    let first = import(
        &hub,
        "/api/v1/import/csv?db=p&measurement=a&time_format=epoch_s&async=true",
        csv.clone().into_bytes(),
    )
    .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let second = import(
        &hub,
        "/api/v1/import/csv?db=p&measurement=b&time_format=epoch_s&async=true",
        csv.into_bytes(),
    )
    .await;
    let v: Value = second.json().await.unwrap();
    assert_eq!(v["job"]["state"], "queued", "{v}");
    let id = v["job"]["id"].as_str().unwrap();
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/import/jobs/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    let v = ok(r).await;
    assert_eq!(v["state"], "cancelled", "{v}");
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/import/jobs/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::CONFLICT, "conflict").await;
    hub.stop().await;
}
