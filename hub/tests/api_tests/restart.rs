//! A hub restarted on the same directories keeps its data and tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_tokens() {
    let mut hub = start().await;
    let (_, read) = hub.token("read").await;
    let r = hub
        .write_lp("plant", "boiler temp=1 1\nboiler temp=2 2\n")
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    hub.restart().await;

    // The bootstrap admin token and the created token still work.
    assert_eq!(hub.count("plant.boiler").await, 2);
    let r = hub
        .post("/api/v1/query", &read)
        .json(&json!({"sql": "SELECT count(*) FROM plant.boiler"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = hub.write_lp("plant", "boiler temp=3 3\n").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(hub.count("plant.boiler").await, 3);
    hub.stop().await;
}
