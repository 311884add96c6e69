//! `POST /api/v1/segments/batch`: several segments of one agent in one
//! request, each answered as a single upload would be.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    TestHub, error, segment, segment_of, start, start_with, upload, upload_batch,
};

async fn results(r: reqwest::Response) -> Vec<Value> {
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["results"].as_array().unwrap().clone()
}

async fn write_token(hub: &TestHub) -> String {
    hub.token("write").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_each_table_once_and_answers_each_segment() {
    let hub = start().await;
    let write = write_token(&hub).await;
    let batch = [
        segment("gw-1", 1, 5),
        segment_of("pump", "gw-1", 2, 3),
        segment("gw-1", 3, 4),
        b"not a segment".to_vec(),
        segment("gw-2", 5, 1),
    ];
    let got = results(upload_batch(&hub, &write, "gw-1", &batch).await).await;
    assert_eq!(got.len(), 5, "{got:?}");
    for (i, seq, rows, table) in [
        (0, 1, 5, "plant.boiler"),
        (1, 2, 3, "plant.pump"),
        (2, 3, 4, "plant.boiler"),
    ] {
        let ack = &got[i]["ack"];
        assert_eq!(ack["status"], "committed", "{ack}");
        assert_eq!(ack["sequence"], seq, "{ack}");
        assert_eq!(ack["rows"], rows, "{ack}");
        assert_eq!(ack["table"], table, "{ack}");
    }
    // One table's segments of a batch are one commit.
    assert_eq!(
        got[0]["ack"]["table_version"],
        got[2]["ack"]["table_version"]
    );
    // A bad frame and another agent's segment are rejected alone.
    assert_eq!(got[3]["rejected"]["status"], 400, "{got:?}");
    assert_eq!(got[3]["rejected"]["error"]["error"], "invalid_segment");
    assert_eq!(got[4]["rejected"]["error"]["error"], "invalid_segment");
    assert_eq!(got[4]["rejected"]["sequence"], 5);
    assert_eq!(hub.count("plant.boiler").await, 9);
    assert_eq!(hub.count("plant.pump").await, 3);

    // A replay (the answer was lost) with one more segment: duplicates and
    // the new one, and a single upload of an old one is a duplicate too.
    let replay = [
        segment("gw-1", 1, 5),
        segment_of("pump", "gw-1", 2, 3),
        segment("gw-1", 3, 4),
        segment_of("pump", "gw-1", 4, 2),
    ];
    let got = results(upload_batch(&hub, &write, "gw-1", &replay).await).await;
    let statuses: Vec<&Value> = got.iter().map(|r| &r["ack"]["status"]).collect();
    assert_eq!(
        statuses,
        ["duplicate", "duplicate", "duplicate", "committed"],
        "{got:?}"
    );
    let r = upload(&hub, &write, "gw-1", segment("gw-1", 3, 4)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(hub.count("plant.boiler").await, 9);
    assert_eq!(hub.count("plant.pump").await, 5);

    // The fleet view counts the batch like single uploads.
    let agents: Value = hub
        .get("/api/v1/agents", &hub.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents["agents"][0]["last_sequence"], 4, "{agents}");
    assert_eq!(agents["agents"][0]["rows_received"], 14, "{agents}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_commit_even_past_max_commit_rows() {
    let hub =
        start_with(|c| c.tables.max_commit_rows = std::num::NonZeroUsize::new(4).unwrap()).await;
    let write = write_token(&hub).await;
    let batch: Vec<Vec<u8>> = (1..=4).map(|seq| segment("gw-1", seq, 5)).collect();
    let got = results(upload_batch(&hub, &write, "gw-1", &batch).await).await;
    let versions: Vec<&Value> = got.iter().map(|r| &r["ack"]["table_version"]).collect();
    assert!(
        versions.iter().all(|v| *v == versions[0] && v.is_i64()),
        "{got:?}"
    );
    assert_eq!(hub.count("plant.boiler").await, 20);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batches_are_refused_whole() {
    let hub = start_with(|c| c.ingest.max_batch_segments = 3).await;
    let write = write_token(&hub).await;
    let (_, read) = hub.token("read").await;
    let two = [segment("gw-1", 1, 1), segment("gw-1", 2, 1)];

    let r = upload_batch(&hub, &read, "gw-1", &two).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Not the batch framing (a bare segment, garbage, a cut frame).
    for body in [
        segment("gw-1", 1, 1),
        b"FSB1".to_vec(),
        b"FSB1\xff\xff\xff\x7fPAR1".to_vec(),
    ] {
        let r = hub
            .post("/api/v1/segments/batch", &write)
            .header("x-ferry-agent-id", "gw-1")
            .body(body)
            .send()
            .await
            .unwrap();
        let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            v["message"].as_str().unwrap().contains("segment batch"),
            "{v}"
        );
    }
    // More segments than ingest.max_batch_segments.
    let four: Vec<Vec<u8>> = (1..=4).map(|seq| segment("gw-1", seq, 1)).collect();
    let r = upload_batch(&hub, &write, "gw-1", &four).await;
    let v = error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("max_batch_segments"),
        "{v}"
    );
    // Out of order or repeated sequences: the txn check depends on order.
    for seqs in [[2, 1], [1, 1]] {
        let batch = seqs.map(|seq| segment("gw-1", seq, 1));
        let r = upload_batch(&hub, &write, "gw-1", &batch).await;
        let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(v["message"].as_str().unwrap().contains("increasing"), "{v}");
    }
    // A far-future sequence is refused alone, and writes nothing.
    let batch = [segment("gw-1", 1, 1), segment("gw-1", 5_000_000, 1)];
    let got = results(upload_batch(&hub, &write, "gw-1", &batch).await).await;
    assert_eq!(got[0]["ack"]["status"], "committed", "{got:?}");
    assert_eq!(got[1]["rejected"]["status"], 409, "{got:?}");
    assert_eq!(got[1]["rejected"]["error"]["error"], "sequence_gap");
    // Nothing written by the refused requests.
    assert_eq!(hub.count("plant.boiler").await, 1);
    let metrics = hub
        .get("/metrics", &hub.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_hub_segment_batches_total{status=\"refused\"} 6"),
        "{metrics}"
    );

    // A token bound to another agent uploads nothing for gw-1.
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "gw-9", "role": "write", "agents": "gw-9"}))
        .send()
        .await
        .unwrap();
    let bound = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = upload_batch(&hub, &bound, "gw-1", &two).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_decodes_no_more_than_a_table_queue_holds() {
    // One 200-row segment fills this budget: the next ones are not decoded.
    let hub = start_with(|c| c.tables.max_queued_bytes = bytesize::ByteSize::kib(1)).await;
    let write = write_token(&hub).await;
    let batch: Vec<Vec<u8>> = (1..=3).map(|seq| segment("gw-1", seq, 200)).collect();
    let got = results(upload_batch(&hub, &write, "gw-1", &batch).await).await;
    assert_eq!(got[0]["ack"]["status"], "committed", "{got:?}");
    for deferred in &got[1..] {
        assert_eq!(deferred["rejected"]["status"], 503, "{got:?}");
        assert_eq!(deferred["rejected"]["error"]["error"], "unavailable");
    }
    assert_eq!(hub.count("plant.boiler").await, 200);
    // Sent again, the next one leads its batch and goes through.
    let got = results(upload_batch(&hub, &write, "gw-1", &batch[1..]).await).await;
    assert_eq!(got[0]["ack"]["status"], "committed", "{got:?}");
    assert_eq!(hub.count("plant.boiler").await, 400);
    hub.stop().await;
}
