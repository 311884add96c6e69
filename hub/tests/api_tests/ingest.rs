//! Segments, line protocol and MessagePack writes.

use std::io::Write;

use ferry_protocols::{FieldKey, FieldValue, Measurement, Reading};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{error, segment, start, start_with, upload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_exactly_once() {
    let hub = start().await;
    let (_, write) = hub.token("write").await;
    let r = upload(&hub, &write, "gw-1", segment("gw-1", 1, 5)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ack: Value = r.json().await.unwrap();
    assert_eq!(ack["status"], "committed");
    assert_eq!(ack["rows"], 5);
    assert_eq!(ack["table"], "plant.boiler");
    assert_eq!(hub.count("plant.boiler").await, 5);

    let r = upload(&hub, &write, "gw-1", segment("gw-1", 1, 5)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ack: Value = r.json().await.unwrap();
    assert_eq!(ack["status"], "duplicate");
    assert_eq!(ack["rows"], 0);
    assert_eq!(hub.count("plant.boiler").await, 5);

    let r = upload(&hub, &write, "gw-1", segment("gw-1", 2, 3)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(hub.count("plant.boiler").await, 8);

    let agents: Value = hub
        .get("/api/v1/agents", &hub.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = &agents["agents"][0];
    assert_eq!(a["id"], "gw-1");
    assert_eq!(a["last_sequence"], 2);
    assert_eq!(a["rows_received"], 8);
    // The agent reported 42 with the upload, counting the upload's own 3
    // readings; the record keeps what is still buffered after it.
    assert_eq!(a["backlog_readings"], 39);
    assert_eq!(a["version"], "0.1.0");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_segments_are_rejected() {
    let hub = start().await;
    let r = upload(&hub, &hub.admin, "gw-1", b"not parquet at all".to_vec()).await;
    let v = error(r, StatusCode::BAD_REQUEST, "invalid_segment").await;
    assert!(v["message"].as_str().unwrap().contains("Parquet"), "{v}");

    // The header must name the segment's writer.
    let r = upload(&hub, &hub.admin, "gw-2", segment("gw-1", 1, 1)).await;
    error(r, StatusCode::BAD_REQUEST, "invalid_segment").await;

    let r = upload(&hub, &hub.admin, "../etc", segment("gw-1", 1, 1)).await;
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    // A corrupted byte in the data fails the checksum or the decoder.
    let mut body = segment("gw-1", 1, 3);
    let mid = body.len() / 3;
    body[mid] ^= 0xff;
    let r = upload(&hub, &hub.admin, "gw-1", body).await;
    error(r, StatusCode::BAD_REQUEST, "invalid_segment").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_good_partial_and_bad() {
    let hub = start().await;
    let r = hub
        .write_lp(
            "plant",
            "cpu,host=a usage=1.5 1700000000000000000\ncpu,host=b usage=2 1700000000000000000\n",
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("plant.cpu").await, 2);

    // Line 2 is bad, line 3 conflicts with line 1 within the batch.
    let body = "cpu,host=c usage=3 1700000001000000000\ncpu,host=d usage=\ncpu,host=e usage=\"x\" 1700000002000000000\n";
    let r = hub.write_lp("plant", body).await;
    let v = error(r, StatusCode::BAD_REQUEST, "partial_write").await;
    let details = v["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{v}");
    assert_eq!(details[0]["line_number"], 2);
    assert_eq!(details[0]["original_line"], "cpu,host=d usage=");
    // Clients that show only `message` still see what to fix.
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("first: line 2: "), "{message}");
    assert_eq!(details[1]["line_number"], 3);
    assert!(
        details[1]["error_message"]
            .as_str()
            .unwrap()
            .contains("usage")
    );
    assert_eq!(hub.count("plant.cpu").await, 3);

    // All bad: nothing written.
    let r = hub
        .write_lp("plant", "garbage\n\nmore garbage here\n")
        .await;
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let lines: Vec<i64> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line_number"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 3]);

    // accept_partial=false: nothing of a body with a bad line is written.
    let r = hub
        .post(
            "/api/v1/write/line-protocol?db=plant&accept_partial=false",
            &hub.admin,
        )
        .body("cpu,host=f usage=4 1\nbad\n")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(hub.count("plant.cpu").await, 3);

    // A type conflict with the table names the column.
    let r = hub.write_lp("plant", "cpu,host=g usage=\"high\" 5\n").await;
    let v = error(r, StatusCode::CONFLICT, "schema_conflict").await;
    assert!(v.to_string().contains("usage"), "{v}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_routes_and_databases() {
    let hub = start().await;
    // 1.x with precision, 2.x with bucket/rp, Arc's header.
    let r = hub
        .post("/write?db=v1&precision=s&rp=autogen", &hub.admin)
        .body("m v=1 1700000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub
        .post(
            "/api/v2/write?bucket=v2/autogen&org=x&precision=ms",
            &hub.admin,
        )
        .body("m v=1 1700000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub
        .post("/api/v1/write/line-protocol", &hub.admin)
        .header("x-arc-database", "arc")
        .body("m v=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, v) = hub.sql("SELECT time FROM v1.m").await;
    assert_eq!(v["data"][0][0], "2023-11-14T22:13:20Z");
    assert_eq!(hub.count("v2.m").await, 1);
    assert_eq!(hub.count("arc.m").await, 1);

    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"m v=2 2\nm v=3 3\n").unwrap();
    let r = hub
        .post("/write?db=v1", &hub.admin)
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("v1.m").await, 3);

    // Missing database, hostile names.
    let r = hub
        .post("/write", &hub.admin)
        .body("m v=1")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = hub
        .post("/write?db=../../etc", &hub.admin)
        .body("m v=1")
        .send()
        .await
        .unwrap();
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("forbidden character"),
        "{v}"
    );
    let r = hub
        .post("/api/v1/write/line-protocol", &hub.admin)
        .header("x-ferry-database", "a/b")
        .body("m v=1")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = hub.write_lp("plant", "../../etc v=1\nok/../x v=1\n").await;
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let text = v.to_string();
    assert!(text.contains("measurement"), "{text}");
    assert_eq!(v["details"].as_array().unwrap().len(), 2);
    // Nothing escaped the tables directory.
    assert!(!hub.dir.path().join("etc").exists());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_writes() {
    let hub = start().await;
    let m = Measurement::new("env").unwrap();
    let readings = vec![
        Reading::new(m.clone(), 1_700_000_000_000_000_000)
            .with_field(FieldKey::new("t").unwrap(), FieldValue::F64(1.0)),
        Reading::new(m.clone(), 1_700_000_001_000_000_000)
            .with_field(FieldKey::new("t").unwrap(), FieldValue::F64(2.0)),
    ];
    let body = ferry_protocols::msgpack::encode_rows(&readings);
    let r = hub
        .post("/api/v1/write/msgpack", &hub.admin)
        .header("x-arc-database", "arc")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("arc.env").await, 2);

    // zstd by magic bytes, no Content-Encoding.
    let compressed = zstd_frame(&body);
    let r = hub
        .post("/api/v1/write/msgpack", &hub.admin)
        .header("x-ferry-database", "arc")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("arc.env").await, 4);

    // Not msgpack at all.
    let r = hub
        .post("/api/v1/write/msgpack", &hub.admin)
        .header("x-ferry-database", "arc")
        .body(vec![0xc1])
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    hub.stop().await;
}

fn zstd_frame(body: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(body, 3).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let hub = start_with(|c| c.server.max_body = bytesize::ByteSize::kib(1)).await;
    let big = "m v=1 1\n".repeat(1000);
    let r = hub.write_lp("plant", &big).await;
    error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Decompressed size is capped too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let r = hub
        .post("/write?db=plant", &hub.admin)
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let r = upload(&hub, &hub.admin, "gw-1", vec![0; 4096]).await;
    error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    hub.stop().await;
}
