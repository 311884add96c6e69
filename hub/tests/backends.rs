//! The table conformance checks (write, dedupe sequential / concurrent /
//! after reopen, read back) against each real object store: moto (S3, with
//! atomic conditional put) and Azurite (Azure Blob). The local filesystem
//! runs the same checks in the unit tests.
//!
//! Each store runs in a child process of this test, and the checks run in a
//! re-executed copy of this test binary, so that environment variables the
//! Azure emulator needs are set for that process only.

use std::process::Command;

use ferry_hil_tests::stores;

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

#[test]
fn s3_on_moto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::moto(dir.path(), "ferry") else {
        return;
    };
    run_checks(&store.storage, &[]);
    // The same checks with `[encryption]` on, in a prefix of their own (a
    // store is encrypted from its first object or not at all).
    run_checks(
        &store
            .storage
            .replace("prefix = \"lake\"", "prefix = \"sealed\""),
        &[("FERRY_CONFORMANCE_KEYS", KEYS.to_owned())],
    );
}

/// Two master keys (the second active) for the encrypted runs.
const KEYS: &str = "old:1111111111111111111111111111111111111111111111111111111111111111\nnew:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn azure_on_azurite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::azurite(dir.path(), "ferry") else {
        return;
    };
    let env: Vec<(&str, String)> = store
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    run_checks(&store.storage, &env);
    let mut sealed = env.clone();
    sealed.push(("FERRY_CONFORMANCE_KEYS", KEYS.to_owned()));
    run_checks(
        &store
            .storage
            .replace("prefix = \"lake\"", "prefix = \"sealed\""),
        &sealed,
    );
}
