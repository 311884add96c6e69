//! Authentication, roles and token management.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{error, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_need_no_token() {
    let hub = start().await;
    for path in ["/health", "/ready", "/metrics"] {
        let r = hub.client.get(hub.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
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
        metrics.contains("ferry_hub_http_requests_total"),
        "{metrics}"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_401() {
    let hub = start().await;
    let body = json!({"sql": "SELECT 1"});
    let r = hub
        .client
        .post(hub.url("/api/v1/query"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = hub
        .post("/api/v1/query", "ferry_wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = hub
        .client
        .post(hub.url("/api/v1/query"))
        .header("authorization", "Digest abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Token scheme and the admin token work.
    let r = hub
        .client
        .post(hub.url("/api/v1/query"))
        .header("authorization", format!("Token {}", hub.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced() {
    let hub = start().await;
    let (_, read) = hub.token("read").await;
    let (_, write) = hub.token("write").await;

    let r = hub
        .post("/api/v1/write/line-protocol?db=plant", &read)
        .body("m v=1 1")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;

    let r = hub
        .post("/api/v1/write/line-protocol?db=plant", &write)
        .body("m v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // write does not imply read.
    let r = hub
        .post("/api/v1/query", &write)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = hub
        .post("/api/v1/query", &read)
        .json(&json!({"sql": "SELECT count(*) FROM plant.m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Only admins manage tokens.
    let r = hub.get("/api/v1/auth/tokens", &read).send().await.unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_v1_credentials() {
    let hub = start().await;
    let (_, write) = hub.token("write").await;
    // ?u=&p=
    let r = hub
        .client
        .post(hub.url(&format!("/write?db=plant&u=agent&p={write}")))
        .body("m v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Basic with the token as password.
    let r = hub
        .client
        .post(hub.url("/write?db=plant"))
        .basic_auth("agent", Some(&write))
        .body("m v=2 2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // ?p= is only read on /write.
    let r = hub
        .client
        .post(hub.url(&format!("/api/v1/write/line-protocol?db=plant&p={write}")))
        .body("m v=3 3")
        .send()
        .await
        .unwrap();
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(hub.count("plant.m").await, 2);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_crud() {
    let hub = start().await;
    let (id, secret) = hub.token("read").await;
    assert!(secret.starts_with("ferry_"));

    let list: Value = hub
        .get("/api/v1/auth/tokens", &hub.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().any(|t| t["id"] == id && t["role"] == "read"));
    // The secret is never listed.
    assert!(!list.to_string().contains(&secret));
    assert!(tokens.iter().all(|t| t.get("token").is_none()));

    let r = hub
        .post("/api/v1/auth/tokens", &hub.admin)
        .json(&json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/auth/tokens/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/auth/tokens/{id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::NOT_FOUND, "not_found").await;
    // The deleted token no longer works.
    let r = hub
        .post("/api/v1/query", &secret)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The last admin token cannot be deleted.
    let admin_id = tokens
        .iter()
        .find(|t| t["role"] == "admin")
        .map(|t| t["id"].as_i64().unwrap())
        .unwrap();
    let r = hub
        .client
        .delete(hub.url(&format!("/api/v1/auth/tokens/{admin_id}")))
        .bearer_auth(&hub.admin)
        .send()
        .await
        .unwrap();
    error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    hub.stop().await;
}

/// The same token on two hubs (each has its own metadata store): the
/// secret one hub drew is given to the other, and works there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_given_its_secret_on_another_hub() {
    let one = start().await;
    let two = start().await;
    let (_, secret) = one.token("write").await;
    let create = |hub: &crate::support::TestHub, body: Value| {
        hub.post("/api/v1/auth/tokens", &hub.admin)
            .json(&body)
            .send()
    };
    let r = create(
        &two,
        json!({"name": "gw", "role": "write", "secret": secret}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["token"], secret.as_str());
    let r = two
        .post("/api/v1/write/line-protocol?db=plant", &secret)
        .body("m v=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the given secret writes on the second hub"
    );
    let r = create(
        &two,
        json!({"name": "again", "role": "read", "secret": secret}),
    )
    .await
    .unwrap();
    error(r, StatusCode::CONFLICT, "conflict").await;
    let r = create(
        &one,
        json!({"name": "again", "role": "read", "secret": one.admin}),
    )
    .await
    .unwrap();
    error(r, StatusCode::CONFLICT, "conflict").await;
    for bad in [
        "secret",
        "ferry_",
        &secret[..secret.len() - 2],
        &secret.to_uppercase(),
    ] {
        let r = create(&two, json!({"name": "x", "role": "read", "secret": bad}))
            .await
            .unwrap();
        let body = error(r, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("64 lowercase hex"),
            "{body}"
        );
    }
    // Only an admin creates tokens, with or without a secret.
    let r = two
        .post("/api/v1/auth/tokens", &secret)
        .json(&json!({"name": "x", "role": "admin", "secret": one.admin}))
        .send()
        .await
        .unwrap();
    error(r, StatusCode::FORBIDDEN, "forbidden").await;
    one.stop().await;
    two.stop().await;
}
