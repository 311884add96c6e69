//! Starting hubs and talking to them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_hub::config::HubConfig;
use ferry_hub::server::{Hub, RunningHub};
use ferry_hub::table::StorageConfig;
use ferry_hub::table::config::FsConfig;
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::{SegmentHeader, SegmentSeq, write_segment};
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldValue, Measurement, Reading, TagKey};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A running hub, its directory and an admin token.
pub(crate) struct TestHub {
    pub(crate) hub: Option<RunningHub>,
    pub(crate) dir: Arc<TempDir>,
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) client: Client,
}

pub(crate) fn config(dir: &Path, tweak: impl FnOnce(&mut HubConfig)) -> HubConfig {
    let mut c = HubConfig::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.shutdown_timeout = Duration::from_secs(10);
    c.storage = StorageConfig::Fs(FsConfig {
        path: dir.join("tables"),
        multi_writer: false,
    });
    c.metadata.path = dir.join("meta/hub.db");
    c.tables.commit_interval = Duration::from_millis(10);
    tweak(&mut c);
    c
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Starts a hub with default settings in a new directory.
pub(crate) async fn start() -> TestHub {
    start_with(|_| {}).await
}

/// Starts a hub in a new directory, with `tweak` applied to its config.
pub(crate) async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let hub = Hub::start(config(dir.path(), tweak)).await.unwrap();
    let admin = hub
        .bootstrap_token()
        .expect("a first start creates the admin token")
        .to_owned();
    TestHub {
        base: format!("http://{}", hub.local_addr()),
        hub: Some(hub),
        dir,
        admin,
        client: client(),
    }
}

impl TestHub {
    /// Stops the hub and starts a new one on the same directory.
    pub(crate) async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Stops the hub and starts a new one on the same directory, with
    /// `tweak` applied to its config.
    pub(crate) async fn restart_with(&mut self, tweak: impl FnOnce(&mut HubConfig)) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await.unwrap();
        }
        let hub = Hub::start(config(self.dir.path(), tweak)).await.unwrap();
        assert!(
            hub.bootstrap_token().is_none(),
            "a restart must not create a second admin token"
        );
        self.base = format!("http://{}", hub.local_addr());
        self.hub = Some(hub);
    }

    pub(crate) async fn stop(mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await.unwrap();
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(token)
    }

    pub(crate) fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(token)
    }

    /// `POST path` (no body) as admin; the JSON answer.
    pub(crate) async fn admin_post(&self, path: &str) -> Value {
        self.post(path, &self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET path` as admin; the JSON answer.
    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        self.get(path, &self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Creates a token with `role`; returns (id, secret).
    pub(crate) async fn token(&self, role: &str) -> (i64, String) {
        let r = self
            .post("/api/v1/auth/tokens", &self.admin)
            .json(&json!({"name": format!("test-{role}"), "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_i64().unwrap(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Writes line protocol to `db` with the admin token.
    pub(crate) async fn write_lp(&self, db: &str, body: &str) -> Response {
        self.post(&format!("/api/v1/write/line-protocol?db={db}"), &self.admin)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Runs SQL as admin; returns the status and the JSON body.
    pub(crate) async fn sql(&self, sql: &str) -> (StatusCode, Value) {
        let r = self
            .post("/api/v1/query", &self.admin)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// `SELECT count(*)` of a table, as admin.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let (status, v) = self
            .sql(&format!("SELECT count(*) AS n FROM {table}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["data"][0][0].as_i64().unwrap()
    }
}

/// The error body of a response, with its status checked.
pub(crate) async fn error(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], code, "{v}");
    v
}

/// A segment of `rows` readings of `plant.boiler` from `agent`.
pub(crate) fn segment(agent: &str, seq: u64, rows: usize) -> Vec<u8> {
    segment_of("boiler", agent, seq, rows)
}

/// A segment of `rows` readings of `plant.<measurement>` from `agent`.
pub(crate) fn segment_of(measurement: &str, agent: &str, seq: u64, rows: usize) -> Vec<u8> {
    let m = Measurement::new(measurement).unwrap();
    let readings: Vec<Reading> = (0..rows)
        .map(|i| {
            Reading::new(
                m.clone(),
                1_700_000_000_000_000_000 + i as i64 * 1_000_000_000,
            )
            .with_tag(TagKey::new("site").unwrap(), "north")
            .with_field(
                FieldKey::new("temp").unwrap(),
                FieldValue::F64(20.0 + i as f64),
            )
        })
        .collect();
    let batch = ReadingBatch::from_readings(m.clone(), &readings)
        .unwrap()
        .to_record_batch()
        .unwrap();
    let header = SegmentHeader {
        agent_id: AgentId::new(agent).unwrap(),
        sequence: SegmentSeq(seq),
        first_reading_id: seq.saturating_mul(100),
        last_reading_id: seq.saturating_mul(100).saturating_add(rows as u64),
        database: DatabaseName::new("plant").unwrap(),
        measurement: m,
    };
    write_segment(&header, &batch).unwrap()
}

/// `POST /api/v1/segments` as `agent` with `token`.
pub(crate) async fn upload(
    hub: &TestHub,
    token: &str,
    agent: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    hub.post("/api/v1/segments", token)
        .header("x-ferry-agent-id", agent)
        .header("x-ferry-backlog-readings", "42")
        .header("x-ferry-agent-version", "0.1.0")
        .header("content-type", "application/vnd.ferry.segment+parquet")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/segments/batch` of `segments` as `agent` with `token`.
pub(crate) async fn upload_batch(
    hub: &TestHub,
    token: &str,
    agent: &str,
    segments: &[Vec<u8>],
) -> reqwest::Response {
    let body = ferry_protocols::segment::encode_batch(segments.iter().map(Vec::as_slice));
    hub.post("/api/v1/segments/batch", token)
        .header("x-ferry-agent-id", agent)
        .header("content-type", "application/vnd.ferry.segment-batch")
        .body(body)
        .send()
        .await
        .unwrap()
}
