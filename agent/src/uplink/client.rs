//! One upload: POST a segment, classify the answer.

use std::time::Duration;

use bytes::Bytes;
use ferry_protocols::AgentId;
use ferry_protocols::api::{self, ErrorBody, SegmentAck, headers};
use ferry_protocols::segment::encode_batch;

use super::batch::BatchRefused;

use super::config::UplinkConfig;

/// A segment waiting to be uploaded.
#[derive(Debug, Clone)]
pub struct PendingSegment {
    pub seq: u64,
    /// `database.measurement`, for logs.
    pub table: String,
    pub rows: u64,
    pub file: Bytes,
}

/// What the agent tells the hub about its backlog with each upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub readings: u64,
    pub bytes: u64,
}

/// Why an upload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The hub rejected the segment itself; retrying cannot help.
    #[error("hub rejected the segment ({status}): {message}")]
    Permanent { status: u16, message: String },
    /// Anything else: the network, the hub's health, auth. Retry, on the
    /// next hub of `uplink.hub_urls` if there is one.
    #[error("{0}")]
    Transient(String),
    /// The hub limits this agent (429: a quota or a rate): retry after its
    /// `Retry-After`, on the same hub (the next would apply the same limit).
    #[error("{0}")]
    Throttled(String),
}

/// Could not build the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("uplink.ca_file: {0}")]
    Ca(String),
    #[error("uplink: {0}")]
    Build(#[from] reqwest::Error),
}

/// One hub's upload URLs.
#[derive(Debug, Clone)]
struct Hub {
    /// The configured base URL.
    base: String,
    /// `POST /api/v1/segments`.
    url: String,
    /// `POST /api/v1/segments/batch`.
    batch_url: String,
}

/// Talks to the hub in use, one of `uplink.hub_urls`.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    hubs: Vec<Hub>,
    /// The hub in use (an index into `hubs`) and since when.
    current: usize,
    since: std::time::Instant,
    failback_after: Duration,
    token: Option<String>,
    agent_id: AgentId,
    /// The `Retry-After` of the hub's last 429 or 503, until taken.
    retry_after: std::sync::Arc<std::sync::Mutex<Option<Duration>>>,
}

/// The longest `Retry-After` the agent honours (a hub asking for more is
/// asked again after this).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl HubClient {
    /// The `Retry-After` of the hub's last refusal (429 or 503), once.
    pub fn take_retry_after(&self) -> Option<Duration> {
        self.retry_after.lock().ok().and_then(|mut r| r.take())
    }

    pub fn new(
        config: &UplinkConfig,
        token: Option<String>,
        agent_id: AgentId,
    ) -> Result<Self, ClientError> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| ClientError::Ca(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
            builder = builder.tls_certs_only(certs);
        }
        let hubs = config
            .hubs()
            .into_iter()
            .map(|base| {
                let trimmed = base.trim_end_matches('/');
                Hub {
                    url: format!("{trimmed}{}", api::SEGMENTS_PATH),
                    batch_url: format!("{trimmed}{}", api::SEGMENT_BATCH_PATH),
                    base,
                }
            })
            .collect();
        Ok(HubClient {
            http: builder.build()?,
            hubs,
            current: 0,
            since: std::time::Instant::now(),
            failback_after: config.failback_after,
            token,
            agent_id,
            retry_after: Default::default(),
        })
    }

    /// The base URL of the hub in use.
    pub fn hub(&self) -> &str {
        &self.hub_in_use().base
    }

    /// How many hubs `uplink.hub_urls` lists (1 for `hub_url`).
    pub fn hub_count(&self) -> usize {
        self.hubs.len()
    }

    fn hub_in_use(&self) -> &Hub {
        // `hubs` is never empty (`UplinkConfig::hubs`), `current` < len.
        &self.hubs[self.current.min(self.hubs.len().saturating_sub(1))]
    }

    /// Moves to the next hub of the list (after the last, the first).
    pub fn fail_over(&mut self) {
        self.current = (self.current + 1) % self.hubs.len().max(1);
        self.since = std::time::Instant::now();
    }

    /// On another hub than the first for `uplink.failback_after`: go back
    /// to the first (true when it did). If the first is still down, the
    /// next failure moves on again.
    pub fn fail_back_if_due(&mut self) -> bool {
        if self.current == 0 || self.since.elapsed() < self.failback_after {
            return false;
        }
        self.current = 0;
        self.since = std::time::Instant::now();
        true
    }

    /// Uploads one segment and waits for the hub's acknowledgement.
    pub async fn upload(
        &self,
        segment: &PendingSegment,
        backlog: Backlog,
    ) -> Result<SegmentAck, UploadError> {
        let request = self
            .request(&self.hub_in_use().url, api::SEGMENT_CONTENT_TYPE, backlog)
            .header(headers::SEGMENT_SEQ, segment.seq.to_string())
            .body(segment.file.clone());
        let (status, body) = self.send(request).await?;
        classify(status, &body, &self.agent_id, segment.seq)
    }

    /// Uploads several segments in one request (see
    /// [`ferry_protocols::api`]): one answer per segment, in order.
    pub async fn upload_batch(
        &self,
        segments: &[PendingSegment],
        backlog: Backlog,
    ) -> Result<Vec<Result<SegmentAck, UploadError>>, BatchRefused> {
        let body = encode_batch(segments.iter().map(|s| s.file.as_ref()));
        let request = self
            .request(
                &self.hub_in_use().batch_url,
                api::SEGMENT_BATCH_CONTENT_TYPE,
                backlog,
            )
            .body(body);
        let (status, body) = self.send(request).await.map_err(BatchRefused::Failed)?;
        super::batch::classify_batch(status, &body, &self.agent_id, segments)
    }

    /// A POST with the agent's headers and token.
    fn request(&self, url: &str, content_type: &str, backlog: Backlog) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(headers::AGENT_ID, self.agent_id.as_str())
            .header(headers::BACKLOG_READINGS, backlog.readings.to_string())
            .header(headers::BACKLOG_BYTES, backlog.bytes.to_string())
            .header(headers::AGENT_VERSION, env!("CARGO_PKG_VERSION"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }
}

impl HubClient {
    /// Sends a request; the status and body of the answer. An answer with
    /// `Retry-After` (seconds: a 429, a 503, or a batch answer some of whose
    /// segments a quota refused) leaves it for [`Self::take_retry_after`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Bytes), UploadError> {
        let response = request
            .send()
            .await
            .map_err(|e| UploadError::Transient(describe(&e)))?;
        let status = response.status().as_u16();
        // A 429 or 503, or a batch answer refusing some segments for a quota.
        let after = retry_after(response.headers());
        if let Ok(mut slot) = self.retry_after.lock() {
            *slot = after;
        }
        let body = response.bytes().await.map_err(|e| {
            UploadError::Transient(format!("reading the hub's answer: {}", describe(&e)))
        })?;
        Ok((status, body))
    }
}

/// `Retry-After` in seconds (the hub never sends an HTTP date), capped at
/// [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Turns the hub's answer into an acknowledgement or an error.
pub(crate) fn classify(
    status: u16,
    body: &[u8],
    agent_id: &AgentId,
    seq: u64,
) -> Result<SegmentAck, UploadError> {
    if status == 200 {
        let ack: SegmentAck = serde_json::from_slice(body).map_err(|e| {
            UploadError::Transient(format!("hub answered 200 with an unreadable body: {e}"))
        })?;
        if ack.agent_id != *agent_id || ack.sequence != seq {
            return Err(UploadError::Transient(format!(
                "hub acknowledged {}#{} for an upload of {agent_id}#{seq}",
                ack.agent_id, ack.sequence
            )));
        }
        return Ok(ack);
    }
    Err(classify_error(
        status,
        serde_json::from_slice(body).ok(),
        body,
    ))
}

/// The error for a non-200 answer: `parsed` is its Ferry error body, if it
/// has one, `body` the raw bytes.
pub(crate) fn classify_error(status: u16, parsed: Option<ErrorBody>, body: &[u8]) -> UploadError {
    let message = match &parsed {
        Some(e) => format!("{:?}: {}", e.error, e.message),
        None => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    };
    let permanent = match &parsed {
        Some(e) => e.error.is_permanent(),
        // Without a Ferry error body, only statuses that mean "this request
        // can never succeed" are permanent.
        None => matches!(status, 400 | 413 | 415 | 422),
    };
    if permanent {
        UploadError::Permanent { status, message }
    } else if status == 429 {
        UploadError::Throttled(format!("hub answered {status}: {message}"))
    } else {
        UploadError::Transient(format!("hub answered {status}: {message}"))
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocols::api::{AckStatus, ErrorCode};

    fn id() -> AgentId {
        AgentId::new("gw-1").unwrap()
    }

    fn client(hubs: &[&str], failback_after: Duration) -> HubClient {
        let config = UplinkConfig {
            hub_urls: hubs.iter().map(|h| (*h).to_owned()).collect(),
            failback_after,
            ..UplinkConfig::default()
        };
        HubClient::new(&config, None, id()).unwrap()
    }

    #[test]
    fn fail_over_goes_round_the_list_and_back_to_the_first() {
        let mut c = client(&["http://a:1/", "http://b:2", "http://c:3"], Duration::ZERO);
        assert_eq!(c.hub_count(), 3);
        assert_eq!(c.hub(), "http://a:1/");
        assert_eq!(c.hub_in_use().url, "http://a:1/api/v1/segments");
        assert!(!c.fail_back_if_due(), "already on the first");
        c.fail_over();
        assert_eq!(c.hub(), "http://b:2");
        assert_eq!(c.hub_in_use().batch_url, "http://b:2/api/v1/segments/batch");
        c.fail_over();
        c.fail_over();
        assert_eq!(c.hub(), "http://a:1/", "after the last, the first");
        c.fail_over();
        assert!(c.fail_back_if_due(), "failback_after 0: at once");
        assert_eq!(c.hub(), "http://a:1/");

        let mut c = client(&["http://a:1", "http://b:2"], Duration::from_secs(3600));
        c.fail_over();
        assert!(!c.fail_back_if_due(), "not before failback_after");
        assert_eq!(c.hub(), "http://b:2");

        let one = HubClient::new(&UplinkConfig::default(), None, id()).unwrap();
        assert_eq!(one.hub(), "http://127.0.0.1:8000");
        assert_eq!(one.hub_count(), 1);
    }

    #[test]
    fn a_429_is_throttled_not_a_reason_to_move() {
        let quota = serde_json::to_vec(&ErrorBody::new(ErrorCode::QuotaExceeded, "x")).unwrap();
        assert!(matches!(
            classify(429, &quota, &id(), 3),
            Err(UploadError::Throttled(_))
        ));
        assert!(matches!(
            classify(429, b"", &id(), 3),
            Err(UploadError::Throttled(_))
        ));
    }

    #[test]
    fn retry_after_is_seconds_capped_at_an_hour() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn classification() {
        let ack = SegmentAck {
            agent_id: id(),
            sequence: 3,
            status: AckStatus::Committed,
            rows: 10,
            table: "a.b".into(),
            table_version: Some(4),
        };
        let body = serde_json::to_vec(&ack).unwrap();
        assert_eq!(classify(200, &body, &id(), 3), Ok(ack));
        assert!(matches!(
            classify(200, &body, &id(), 4),
            Err(UploadError::Transient(_))
        ));
        assert!(matches!(
            classify(200, b"nope", &id(), 3),
            Err(UploadError::Transient(_))
        ));

        let schema = serde_json::to_vec(&ErrorBody::new(ErrorCode::SchemaConflict, "x")).unwrap();
        assert!(matches!(
            classify(409, &schema, &id(), 3),
            Err(UploadError::Permanent { status: 409, .. })
        ));
        let auth = serde_json::to_vec(&ErrorBody::new(ErrorCode::Unauthorized, "x")).unwrap();
        assert!(matches!(
            classify(401, &auth, &id(), 3),
            Err(UploadError::Transient(_))
        ));
        assert!(matches!(
            classify(503, b"", &id(), 3),
            Err(UploadError::Transient(_))
        ));
        assert!(matches!(
            classify(502, b"<html>", &id(), 3),
            Err(UploadError::Transient(_))
        ));
        assert!(matches!(
            classify(413, b"too big", &id(), 3),
            Err(UploadError::Permanent { .. })
        ));
    }
}
