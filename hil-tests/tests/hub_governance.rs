//! A real `ferry-hub` process with debug logging: tokens are rotated,
//! revoked and expired while an InfluxDB 1.x-style writer (what Telegraf
//! sends: `/write?u=&p=<token>` and Basic auth) uses them, and afterwards
//! neither the hub's log nor its audit log holds any secret that was
//! created or presented (the bootstrap token is printed once, on purpose).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use ferry_hil_tests::{free_port, http, spawn_hub};
use serde_json::Value;

fn admin_call(addr: SocketAddr, admin: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {admin}");
    let (status, text) = http(
        method,
        addr,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn secret_of(v: &Value) -> String {
    v["token"].as_str().expect("a secret").to_owned()
}

/// `POST /write?db=gov&u=telegraf&p=<token>`: the status.
fn write_with_p(addr: SocketAddr, token: &str) -> u16 {
    http(
        "POST",
        addr,
        &format!("/write?db=gov&u=telegraf&p={token}"),
        &[],
        b"cpu,host=a usage=1 1700000000000000000",
    )
    .0
}

/// `POST /write?db=gov` with Basic auth (user `telegraf`, password the token).
fn write_with_basic(addr: SocketAddr, token: &str) -> u16 {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{token}"));
    http(
        "POST",
        addr,
        "/write?db=gov",
        &[("Authorization", &format!("Basic {basic}"))],
        b"cpu,host=a usage=2 1700000000000000001",
    )
    .0
}

#[test]
fn secrets_stay_out_of_every_log_through_rotation_and_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n[metadata]\npath = \"{}\"\n[log]\nlevel = \"debug\"\n",
            dir.path().join("tables").display(),
            dir.path().join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let log = dir.path().join("hub.log");
    let (mut peer, admin) = spawn_hub(&config, addr, &log, true);
    let admin = admin.expect("bootstrap token");

    let (status, writer) = admin_call(
        addr,
        &admin,
        "POST",
        "/api/v1/auth/tokens",
        r#"{"name": "telegraf", "role": "write"}"#,
    );
    assert_eq!(status, 201, "{writer}");
    let (id, first) = (writer["id"].as_i64().expect("id"), secret_of(&writer));
    let (_, reader) = admin_call(
        addr,
        &admin,
        "POST",
        "/api/v1/auth/tokens",
        r#"{"name": "contractor", "role": "read", "expires_in": "1s"}"#,
    );
    let reader = secret_of(&reader);
    assert_eq!(write_with_p(addr, &first), 204);

    // Rotation: both secrets work during the grace period.
    let (status, rotated) = admin_call(
        addr,
        &admin,
        "POST",
        &format!("/api/v1/auth/tokens/{id}/rotate"),
        r#"{"grace": "2s"}"#,
    );
    assert_eq!(status, 200, "{rotated}");
    let second = secret_of(&rotated);
    assert_eq!(write_with_p(addr, &first), 204);
    assert_eq!(write_with_basic(addr, &second), 204);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(write_with_p(addr, &first), 401);
    assert_eq!(write_with_basic(addr, &second), 204);

    // Revocation stops the current secret at once.
    let (status, _) = admin_call(
        addr,
        &admin,
        "POST",
        &format!("/api/v1/auth/tokens/{id}/revoke"),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(write_with_basic(addr, &second), 401);
    assert_eq!(write_with_p(addr, &second), 401);

    // The expired reader, and secrets nobody issued.
    let query = |token: &str| {
        http(
            "POST",
            addr,
            "/api/v1/query",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"sql": "SELECT 1"}"#,
        )
        .0
    };
    assert_eq!(query(&reader), 401);
    let forged = format!("ferry_{}", "ab".repeat(32));
    assert_eq!(query(&forged), 401);
    assert_eq!(write_with_p(addr, &forged), 401);
    assert_eq!(write_with_basic(addr, "not-even-a-ferry-token"), 401);

    let (status, verify) = admin_call(addr, &admin, "GET", "/api/v1/admin/audit-log/verify", "");
    assert_eq!(status, 200);
    assert_eq!(verify["ok"], true, "{verify}");
    let (_, entries) = admin_call(
        addr,
        &admin,
        "GET",
        "/api/v1/admin/audit-log?limit=1000",
        "",
    );
    let audit = entries.to_string();
    let reasons: Vec<&str> = entries["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["detail"]["reason"].as_str())
        .collect();
    for reason in ["rotated", "revoked", "expired", "invalid"] {
        assert!(reasons.contains(&reason), "no {reason} failure in {audit}");
    }
    peer.kill();

    let text = std::fs::read_to_string(&log).expect("hub log");
    assert_eq!(
        text.matches(admin.as_str()).count(),
        1,
        "the bootstrap token must be printed exactly once"
    );
    for (what, secret) in [
        ("first writer secret", first.as_str()),
        ("rotated writer secret", second.as_str()),
        ("reader secret", reader.as_str()),
        ("forged secret", forged.as_str()),
        ("non-ferry password", "not-even-a-ferry-token"),
    ] {
        assert!(!text.contains(secret), "the hub log holds the {what}");
        assert!(!audit.contains(secret), "the audit log holds the {what}");
    }
    assert!(!audit.contains(admin.as_str()));
    // The log did run at debug level (the test would prove nothing at warn).
    assert!(text.contains("DEBUG"), "no debug lines in the hub log");
}
