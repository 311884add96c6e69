//! The table conformance checks (write, dedupe sequential / concurrent /
//! after reopen, read back) against each real object store: moto (S3, with
//! atomic conditional put) and Azurite (Azure Blob). The local filesystem
//! runs the same checks in the unit tests.
//!
//! Each store runs in a child process of this test, and the checks run in a
//! re-executed copy of this test binary, so that environment variables the
//! Azure emulator needs are set for that process only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_hil_tests::{Peer, find_tool, free_port, require_tool, wait_for_port};

/// Runs the conformance checks in a child copy of this binary.
fn run_checks(storage_toml: &str, extra_env: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", "conformance_child", "--nocapture"])
        .env("FERRY_CONFORMANCE_STORAGE", storage_toml);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the checks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "conformance checks failed:\n{text}");
    assert!(
        text.contains("conformance: ok"),
        "the checks did not run:\n{text}"
    );
}

#[test]
#[ignore = "run by the backend tests in a child process"]
fn conformance_child() {
    let text = std::env::var("FERRY_CONFORMANCE_STORAGE").expect("FERRY_CONFORMANCE_STORAGE");
    let storage: ferry_hub::table::StorageConfig = toml::from_str(&text).expect("storage toml");
    let encryption = std::env::var("FERRY_CONFORMANCE_KEYS").ok().map(|keys| {
        std::sync::Arc::new(ferry_hub::encryption::Encryption::new(
            ferry_hub::encryption::Keyring::from_text(&keys).expect("keys"),
            &ferry_hub::encryption::EncryptionConfig::default(),
        ))
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        ferry_hub::table::conformance::run_with(&storage, encryption)
            .await
            .expect("conformance");
        if let Ok(keys) = std::env::var("FERRY_CONFORMANCE_KEYS") {
            reencrypt(&storage, &keys).await;
        }
    });
    println!("conformance: ok");
}

/// A rotation on this store: every object sealed again under a newer key
/// by conditional updates, and the tables read back with it.
async fn reencrypt(storage: &ferry_hub::table::StorageConfig, keys: &str) {
    let rotated = std::sync::Arc::new(ferry_hub::encryption::Encryption::new(
        ferry_hub::encryption::Keyring::from_text(&format!(
            "{keys}\nnewer:4444444444444444444444444444444444444444444444444444444444444444"
        ))
        .expect("keys"),
        &ferry_hub::encryption::EncryptionConfig::default(),
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tables = ferry_hub::table::Tables::open_with(
        storage,
        &ferry_hub::table::TableConfig::default(),
        Some(rotated),
        shutdown.clone(),
    )
    .await
    .expect("open with the newer key");
    let state = ferry_hub::encryption::reencrypt_to_end(&tables)
        .await
        .expect("re-encryption")
        .expect("the job ran");
    assert_eq!(state.failed, 0, "{state:?}");
    assert!(state.resealed > 3, "{state:?}");
    assert_eq!(
        state.objects_by_key.keys().collect::<Vec<_>>(),
        vec!["newer"],
        "{state:?}"
    );
    let listed = tables.list().await.expect("list the tables");
    assert!(!listed.is_empty());
    for table in listed {
        let sql = format!(
            "SELECT count(*) FROM {}.\"{}\"",
            table.database.as_str(),
            table.measurement.as_str()
        );
        let n = ferry_hub::table::conformance::query_i64(&tables, &sql)
            .await
            .expect("a table reads back under the newer key");
        assert!(n > 0, "{sql}");
    }
    shutdown.cancel();
    tables.wait_stopped().await;
}

fn http_put(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn s3_on_moto() {
    let Some(moto) = require_tool("moto_server", "pip install 'moto[server]'") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = Peer::spawn(
        "moto",
        Command::new(moto).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &dir.path().join("moto.log"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr, Duration::from_secs(30));
    let answer = http_put(addr, "/ferry");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {answer}"
    );
    let storage = format!(
        r#"
backend = "s3"
bucket = "ferry"
prefix = "lake"
endpoint = "http://{addr}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
allow_http = true
addressing = "path"
conditional_put = "etag"
"#
    );
    run_checks(&storage, &[]);
    // The same checks with `[encryption]` on, in a prefix of their own (a
    // store is encrypted from its first object or not at all).
    run_checks(
        &storage.replace("prefix = \"lake\"", "prefix = \"sealed\""),
        &[("FERRY_CONFORMANCE_KEYS", KEYS.to_owned())],
    );
}

/// Two master keys (the second active) for the encrypted runs.
const KEYS: &str = "old:1111111111111111111111111111111111111111111111111111111111111111\nnew:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn azure_on_azurite() {
    let Some(azurite) = require_tool("azurite-blob", "npm install -g azurite") else {
        return;
    };
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = Peer::spawn(
        "azurite",
        Command::new(azurite).args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.path().join("data").to_string_lossy(),
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]),
        &dir.path().join("azurite.log"),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hil-tests/scripts/azure_container.py");
    let out = Command::new(&python)
        .arg(script)
        .args([&port.to_string(), "ferry"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "create container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://127.0.0.1:{port}");
    let storage = format!(
        r#"
backend = "azure"
account = "devstoreaccount1"
container = "ferry"
prefix = "lake"
access_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
use_emulator = true
endpoint = "{url}"
"#
    );
    run_checks(&storage, &[("AZURITE_BLOB_STORAGE_URL", url.clone())]);
    run_checks(
        &storage.replace("prefix = \"lake\"", "prefix = \"sealed\""),
        &[
            ("AZURITE_BLOB_STORAGE_URL", url),
            ("FERRY_CONFORMANCE_KEYS", KEYS.to_owned()),
        ],
    );
}

fn python() -> std::path::PathBuf {
    for candidate in ["python"] {
        if let Some(p) = find_tool(candidate)
            && p.to_string_lossy().contains("venv")
        {
            return p;
        }
    }
    let venv = std::env::var("FERRY_VENV")
        .unwrap_or_else(|_| format!("{}/../.venv", env!("CARGO_MANIFEST_DIR")));
    Path::new(&venv).join("bin/python")
}
