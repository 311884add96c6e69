//! Encryption at rest: an encrypted hub answers exactly as a plain one fed
//! the same writes, nothing in its store is plaintext, keys rotate (old
//! objects stay readable, new ones use the new key), the re-encryption job
//! leaves every object under the active key so the old key can go, and a
//! hub refuses a store whose encryption does not match its config.

use std::path::Path;
use std::time::Duration;

use ferry_hub::server::Hub;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestHub, config, start, start_with};

const SECRET: &str = "secret-plant-omega";

fn lp(day: u32, from: u32, n: u32) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "boiler,site=north,unit=u{} temp={}.5,pressure={}i,note=\"{SECRET}-{i}\" {}\n",
                i % 7,
                i % 90,
                1_000 + i,
                1_764_115_200_000_000_000i64
                    + i64::from(day) * 86_400_000_000_000
                    + i64::from(i) * 1_000_000_000
            )
        })
        .collect()
}

async fn write_both(plain: &TestHub, sealed: &TestHub, body: &str) {
    for hub in [plain, sealed] {
        let r = hub.write_lp("plant", body).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

const QUERIES: &[&str] = &[
    "SELECT * FROM plant.boiler ORDER BY time, unit",
    "SELECT unit, count(*) AS n, avg(temp) AS t, max(pressure) AS p FROM plant.boiler GROUP BY unit ORDER BY unit",
    "SELECT note FROM plant.boiler WHERE pressure BETWEEN 1010 AND 1020 ORDER BY note",
];

async fn same_answers(plain: &TestHub, sealed: &TestHub) {
    for sql in QUERIES {
        let (s1, a) = plain.sql(sql).await;
        let (s2, b) = sealed.sql(sql).await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{sql}: {a} {b}");
        assert_eq!(a["data"], b["data"], "{sql}");
        assert!(!a["data"].as_array().unwrap().is_empty(), "{sql}");
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The key id of every object in the store (the marker excluded); panics
/// on a file that is not encrypted or holds plaintext.
fn key_ids(tables: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for f in files(tables) {
        let bytes = std::fs::read(&f).unwrap();
        if f.file_name().unwrap() == "_ferry_encryption.json" {
            continue;
        }
        assert_eq!(&bytes[..8], b"FERRYENC", "{} is not encrypted", f.display());
        for plain in [SECRET.as_bytes(), b"pressure", b"boiler", b"PAR1"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{} holds {:?} in plaintext",
                f.display(),
                String::from_utf8_lossy(plain)
            );
        }
        ids.push(String::from_utf8(bytes[10..10 + usize::from(bytes[9])].to_vec()).unwrap());
    }
    assert!(ids.len() >= 4, "{ids:?}");
    ids
}

async fn keys(hub: &TestHub) -> Value {
    hub.admin_get("/api/v1/admin/keys").await
}

async fn reencrypt_and_wait(hub: &TestHub) -> Value {
    let r = hub
        .post("/api/v1/admin/keys/reencrypt", &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for _ in 0..200 {
        let state = keys(hub).await["reencryption"].clone();
        if state["running"] == false {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the re-encryption job did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_hub_answers_like_a_plain_one_through_rotation() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("hub.keys");
    let encrypted = |c: &mut ferry_hub::config::HubConfig| {
        c.encryption.enabled = true;
        c.encryption.key_file = Some(key_file.clone());
    };
    let plain = start().await;
    let mut sealed = start_with(encrypted).await;
    let tables = sealed.dir.path().join("tables");
    // The key file was created, one key, private.
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    write_both(&plain, &sealed, &lp(0, 0, 300)).await;
    write_both(&plain, &sealed, &lp(1, 300, 300)).await;
    same_answers(&plain, &sealed).await;
    let first = keys(&sealed).await;
    let k1 = first["active"].as_str().unwrap().to_owned();
    assert!(key_ids(&tables).iter().all(|id| *id == k1));
    // The API shows ids and fingerprints, never a key.
    let secret_hex = text.lines().last().unwrap().split(':').nth(1).unwrap();
    assert!(!first.to_string().contains(secret_hex));
    assert_eq!(first["keys"][0]["fingerprint"].as_str().unwrap().len(), 16);

    // Only an admin manages keys.
    let (_, reader) = sealed.token("read").await;
    for (method, path) in [
        ("GET", "/api/v1/admin/keys"),
        ("POST", "/api/v1/admin/keys/rotate"),
        ("POST", "/api/v1/admin/keys/reencrypt"),
    ] {
        let r = if method == "GET" {
            sealed.get(path, &reader)
        } else {
            sealed.post(path, &reader)
        };
        assert_eq!(
            r.send().await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }

    // Rotation: the hub appends a new key; new objects use it.
    let rotated = sealed.admin_post("/api/v1/admin/keys/rotate").await;
    assert_eq!(rotated["previous"], k1.as_str(), "{rotated}");
    assert_eq!(rotated["generated"], true);
    let k2 = rotated["active"].as_str().unwrap().to_owned();
    assert_ne!(k1, k2);
    write_both(&plain, &sealed, &lp(2, 600, 300)).await;
    same_answers(&plain, &sealed).await;
    let ids = key_ids(&tables);
    assert!(ids.contains(&k1) && ids.contains(&k2), "{ids:?}");
    // Compaction reads old-key files and writes new-key ones.
    let r = sealed
        .post("/api/v1/compaction/run", &sealed.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    same_answers(&plain, &sealed).await;

    // Re-encryption leaves nothing under the old key; run again, nothing to do.
    let job = reencrypt_and_wait(&sealed).await;
    assert_eq!(job["failed"], 0, "{job}");
    assert!(job["resealed"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(job["objects_by_key"].as_object().unwrap().len(), 1, "{job}");
    assert!(key_ids(&tables).iter().all(|id| *id == k2));
    let again = reencrypt_and_wait(&sealed).await;
    assert_eq!(again["resealed"], 0, "{again}");
    same_answers(&plain, &sealed).await;

    // Each action is one audit entry.
    let log = sealed
        .admin_get("/api/v1/admin/audit-log?event_type=keys.*&limit=100")
        .await;
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "success")
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "keys.rotate").count(),
        1,
        "{log}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "keys.reencrypt").count(),
        2,
        "{log}"
    );

    // The old key can go; a restart reads everything with the new one.
    let text = std::fs::read_to_string(&key_file).unwrap();
    let only_new: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{k1}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&key_file, only_new).unwrap();
    sealed.restart_with(encrypted).await;
    same_answers(&plain, &sealed).await;

    // Without [encryption] the hub refuses the store, and says why.
    sealed.hub.take().unwrap().shutdown().await.unwrap();
    let err = Hub::start(config(sealed.dir.path(), |_| {}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is encrypted"), "{err}");
    // A key file that lacks the store's key is refused at start, naming it.
    let other = key_dir.path().join("other.keys");
    std::fs::write(
        &other,
        "stranger:3333333333333333333333333333333333333333333333333333333333333333\n",
    )
    .unwrap();
    let err = Hub::start(config(sealed.dir.path(), |c| {
        c.encryption.enabled = true;
        c.encryption.key_file = Some(other.clone());
    }))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("{k2:?}")), "{err}");
    // So is a key file that went missing: the hub does not seal new data
    // under a key it just made up, and leaves no such file behind.
    let missing = key_dir.path().join("missing.keys");
    let err = Hub::start(config(sealed.dir.path(), |c| {
        c.encryption.enabled = true;
        c.encryption.key_file = Some(missing.clone());
    }))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("restore the key file"), "{err}");
    assert!(!missing.exists());
    plain.stop().await;
    sealed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_is_refused_for_a_store_with_plaintext_tables() {
    let mut hub = start().await;
    let r = hub.write_lp("plant", &lp(0, 0, 10)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Off: the key routes say so.
    assert_eq!(keys(&hub).await, json!({"enabled": false, "keys": []}));
    let r = hub
        .post("/api/v1/admin/keys/rotate", &hub.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    hub.hub.take().unwrap().shutdown().await.unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let err = Hub::start(config(hub.dir.path(), |c| {
        c.encryption.enabled = true;
        c.encryption.key_file = Some(key_dir.path().join("k"));
    }))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("written without encryption"), "{err}");
    // Nothing was written into the plaintext store.
    assert!(
        !hub.dir
            .path()
            .join("tables/_ferry_encryption.json")
            .exists()
    );
}
