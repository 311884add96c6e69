//! The hub as a shared service: one client cannot impersonate, poison or
//! overload what others write.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, error, segment, start, start_with, upload};

/// A write token bound to `agents`; returns its secret.
async fn bound_token(hub: &TestHub, agents: &str) -> String {
    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": format!("gw {agents}"), "role": "write", "agents": agents}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["agents"], agents, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_tokens_upload_only_for_their_agents() {
    let hub = start().await;
    let plant1 = bound_token(&hub, "gw-plant1-*").await;
    let r = upload(&hub, &plant1, "gw-plant1-07", segment("gw-plant1-07", 1, 3)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload(&hub, &plant1, "gw-plant2-01", segment("gw-plant2-01", 1, 3)).await;
    let v = error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        v["message"].as_str().unwrap().contains("gw-plant1-*"),
        "{v}"
    );
    // A header that lies about the segment is caught as before.
    let r = upload(&hub, &plant1, "gw-plant1-07", segment("gw-plant2-01", 2, 3)).await;
    error(r, StatusCode::BAD_REQUEST, "invalid_segment").await;
    assert_eq!(hub.count("plant.boiler").await, 3);

    // Only write tokens are bound; patterns are checked.
    for (role, agents) in [
        ("read", "gw-1"),
        ("admin", "gw-*"),
        ("write", "*"),
        ("write", "gw/1"),
    ] {
        let r = hub
            .post("/api/v1/auth/tokens", &hub.admin)
            .json(&json!({"name": "x", "role": role, "agents": agents}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{role} {agents}");
    }
    let list = hub.admin_get("/api/v1/auth/tokens").await;
    let bound: Vec<&Value> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["agents"] == "gw-plant1-*")
        .collect();
    assert_eq!(bound.len(), 1, "{list}");
    hub.stop().await;
}

/// The poisoning attack of the issue: any write token uploads a segment
/// claiming another gateway's id with a sequence near the top. It is
/// refused, writes no `txn`, and the gateway's next segments commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_sequence_cannot_poison_another_gateway() {
    let hub = start().await;
    let (_, victim) = hub.token("write").await;
    let (_, attacker) = hub.token("write").await;
    let r = upload(&hub, &victim, "gw-victim", segment("gw-victim", 1, 2)).await;
    assert_eq!(r.status(), StatusCode::OK);

    let far = i64::MAX as u64 - 1;
    let r = upload(&hub, &attacker, "gw-victim", segment("gw-victim", far, 2)).await;
    let v = error(r, StatusCode::CONFLICT, "sequence_gap").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("ingest.max_sequence_gap"),
        "{v}"
    );
    for seq in 2..=4 {
        let r = upload(&hub, &victim, "gw-victim", segment("gw-victim", seq, 2)).await;
        let ack: Value = r.json().await.unwrap();
        assert_eq!(ack["status"], "committed", "segment {seq}: {ack}");
    }
    assert_eq!(hub.count("plant.boiler").await, 8);

    // An agent the hub has never seen: the gap counts from 0 for an
    // unbound token, while a token bound to it is trusted.
    let r = upload(&hub, &attacker, "gw-new", segment("gw-new", 5_000_000, 1)).await;
    error(r, StatusCode::CONFLICT, "sequence_gap").await;
    let bound = bound_token(&hub, "gw-new").await;
    let r = upload(&hub, &bound, "gw-new", segment("gw-new", 5_000_000, 1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // From there on the gap counts from its last segment.
    let r = upload(&hub, &bound, "gw-new", segment("gw-new", 5_000_001, 1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload(&hub, &bound, "gw-new", segment("gw-new", 9_000_000, 1)).await;
    error(r, StatusCode::CONFLICT, "sequence_gap").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_lines_are_refused_naming_table_and_column() {
    let hub = start_with(|c| {
        c.tables.max_columns = std::num::NonZeroUsize::new(8).unwrap();
        c.tables.max_new_columns = std::num::NonZeroUsize::new(3).unwrap();
    })
    .await;
    // One line with 20,000 fields: refused on its own, naming the table.
    let fields: Vec<String> = (0..20_000).map(|i| format!("f{i}=1")).collect();
    let body = format!("wide {} 1\nwide f0=1 2\n", fields.join(","));
    let r = hub.write_lp("db", &body).await;
    let v = error(r, StatusCode::BAD_REQUEST, "partial_write").await;
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("wide") && msg.contains("8 columns"), "{v}");
    assert_eq!(hub.count("db.wide").await, 1);

    // Lines that each add a field: those past the cap are refused, each
    // naming its column; the rest is committed.
    let body: String = (1..=10).map(|i| format!("grow g{i}=1 {i}\n")).collect();
    let r = hub.write_lp("db", &body).await;
    let v = error(r, StatusCode::BAD_REQUEST, "partial_write").await;
    assert!(v["message"].as_str().unwrap().contains("\"g8\""), "{v}");
    assert_eq!(v["details"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(hub.count("db.grow").await, 7);

    // An existing table: one write may add at most max_new_columns.
    let r = hub.write_lp("db", "narrow a=1 1\n").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub.write_lp("db", "narrow a=1,b=1,c=1,d=1,e=1 2\n").await;
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("tables.max_new_columns"),
        "{v}"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_with_many_measurements_waits_one_commit_window() {
    let hub = start_with(|c| c.tables.commit_interval = Duration::from_millis(500)).await;
    // 40 tables, one line each. One table after the other would take
    // 40 × 500 ms = 20 s; together they share one window.
    let body: String = (0..40).map(|i| format!("m{i} v=1 1\n")).collect();
    let started = Instant::now();
    let r = hub.write_lp("many", &body).await;
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(hub.count("many.m39").await, 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_do_not_fit_the_store_are_refused_up_front() {
    let hub = start().await;
    // 43 Cyrillic letters: 86 bytes, 258 as a directory name.
    let long: String = std::iter::repeat_n('ж', 43).collect();
    let body = format!("{long} v=1 1\nshort v=1 1\n");
    let r = hub.write_lp("names", &body).await;
    let v = error(r, StatusCode::BAD_REQUEST, "partial_write").await;
    assert!(v["message"].as_str().unwrap().contains("255"), "{v}");
    assert_eq!(hub.count("names.short").await, 1);
    assert!(
        !hub.dir
            .path()
            .join("tables/names")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().len() > 255 })
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_holds_at_most_max_per_database_tables() {
    let hub = start_with(|c| {
        c.tables.max_per_database = std::num::NonZeroUsize::new(3).unwrap();
    })
    .await;
    let r = hub.write_lp("capped", "a v=1\nb v=1\nc v=1").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub.write_lp("capped", "d v=1").await;
    let v = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("capped") && message.contains("tables.max_per_database"),
        "{v}"
    );
    // Existing tables take writes; another database has its own count.
    let r = hub.write_lp("capped", "a v=2").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub.write_lp("other", "d v=1").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("capped.a").await, 2);
    let (status, _) = hub.sql("SELECT * FROM capped.d").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no table d was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_inflight_byte_budget_are_told_to_retry() {
    let hub = start_with(|c| {
        c.ingest.max_inflight_bytes = bytesize::ByteSize::kib(64);
    })
    .await;
    // A body larger than the whole budget still gets through alone (it is
    // counted as the whole budget)...
    let big: String = (0..4000)
        .map(|i| format!("big,site=s{i} v={i} {}\n", 1_700_000_000_000_000_000u64 + i))
        .collect();
    assert!(big.len() > 64 * 1024);
    let r = hub.write_lp("plant", &big).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // ...but not beside another: many at once, the ones that do not fit are
    // answered 503 with Retry-After at once, and every one acknowledged is
    // in the table.
    let sends = (0..8).map(|_| hub.write_lp("plant", &big));
    let answers = futures_util::future::join_all(sends).await;
    let (ok, refused) = accepted_and_retried(answers, &["ingest.max_inflight_bytes"]).await;
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert_eq!(hub.count("plant.big").await, 4000 * (1 + ok));
}

/// `tables.max_queued_bytes`: one busy table holds at most that much in
/// writes waiting to commit; the rest are told to retry, and another
/// table's writes are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_table_refuses_writes_beyond_its_queued_bytes() {
    let hub = start_with(|c| {
        c.tables.max_queued_bytes = bytesize::ByteSize::kib(16);
        c.tables.commit_interval = std::time::Duration::from_secs(1);
    })
    .await;
    let body: String = (0..2000)
        .map(|i| format!("hot,site=s{i} v={i} {}\n", 1_700_000_000_000_000_000u64 + i))
        .collect();
    let sends = (0..6).map(|_| hub.write_lp("plant", &body));
    let (answers, calm) = tokio::join!(
        futures_util::future::join_all(sends),
        hub.write_lp("plant", "calm v=1")
    );
    assert_eq!(calm.status(), StatusCode::NO_CONTENT);
    let (ok, refused) =
        accepted_and_retried(answers, &["tables.max_queued_bytes", "plant.hot"]).await;
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert_eq!(hub.count("plant.hot").await, 2000 * ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_conditional_put_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[storage]\nbackend = \"s3\"\nbucket = \"lake\"\nconditional_put = \"disabled\"\n";
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, text).unwrap();
    let errors = ferry_hub::config::load_file(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        errors.contains("storage.conditional_put") && errors.contains("not supported"),
        "{errors}"
    );
    // Not even with maintenance off: no commit could land.
    let off = format!("{text}[compaction]\nenabled = false\n[retention]\nenabled = false\n");
    std::fs::write(&path, off).unwrap();
    assert!(ferry_hub::config::load_file(&path).is_err());
}

/// Counts writes answered 204 and 503; every 503 must carry `Retry-After`
/// and a message naming each of `reasons`; any other status fails.
async fn accepted_and_retried(answers: Vec<reqwest::Response>, reasons: &[&str]) -> (i64, i64) {
    let (mut ok, mut refused) = (0, 0);
    for r in answers {
        match r.status() {
            StatusCode::NO_CONTENT => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.headers().get("retry-after").is_some());
                let v: Value = r.json().await.unwrap();
                let message = v["message"].as_str().unwrap();
                for reason in reasons {
                    assert!(message.contains(reason), "{v}");
                }
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    (ok, refused)
}
