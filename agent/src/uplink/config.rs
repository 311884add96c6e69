//! `[uplink]`: where segments go and how hard to try.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[uplink]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// The hub's base URL, `http://` or `https://` (default
    /// `http://127.0.0.1:8000`). Set this or `hub_urls`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// Several hubs sharing the same tables, in order of preference: the
    /// agent uploads to the first that answers, moves to the next when one
    /// is down or answers 5xx, 401 or 403, and tries the first again after
    /// `failback_after`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hub_urls: Vec<String>,
    /// On another hub than the first of `hub_urls`, how long before the
    /// agent tries the first again.
    #[serde(default = "default_failback_after", with = "humantime_serde")]
    pub failback_after: Duration,
    /// The agent's token (role `write`). Prefer `token_file` or the
    /// `FERRY_UPLINK_TOKEN` environment variable in production.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (trailing whitespace is ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A PEM file with the CA(s) to trust for the hub, instead of the
    /// system's roots (for a private CA or a self-signed hub).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one upload, connect to acknowledgement.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// First retry delay after a failed upload.
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest retry delay.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Average upload bandwidth cap in bytes per second, for metered or
    /// cellular links; 0 means no cap.
    #[serde(default)]
    pub max_bytes_per_second: bytesize::ByteSize,
    /// Most segments in one upload while a backlog drains (one request and
    /// one commit per table for all of them); 1 sends one segment per
    /// request. A hub without batch uploads gets one at a time.
    #[serde(default = "default_batch_segments")]
    pub batch_segments: usize,
    /// Most bytes of segments in one batch upload (a bigger segment goes
    /// alone); keep it below the hub's `server.max_body`.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: bytesize::ByteSize,
}

/// The hub an agent uploads to when neither `hub_url` nor `hub_urls` is set.
const DEFAULT_HUB_URL: &str = "http://127.0.0.1:8000";
/// Most entries in `uplink.hub_urls`.
const MAX_HUB_URLS: usize = 16;

fn default_failback_after() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_batch_segments() -> usize {
    16
}
fn default_batch_max_bytes() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(16)
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            hub_url: None,
            hub_urls: Vec::new(),
            failback_after: default_failback_after(),
            token: None,
            token_file: None,
            ca_file: None,
            timeout: default_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            max_bytes_per_second: bytesize::ByteSize(0),
            batch_segments: default_batch_segments(),
            batch_max_bytes: default_batch_max_bytes(),
        }
    }
}

impl UplinkConfig {
    /// Reports every problem with its key path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let key = if self.hub_urls.is_empty() {
            "uplink.hub_url"
        } else {
            "uplink.hub_urls"
        };
        if self.hub_url.is_some() && !self.hub_urls.is_empty() {
            errors.push("uplink.hub_urls: set either hub_url or hub_urls, not both".into());
        }
        if self.hub_urls.len() > MAX_HUB_URLS {
            errors.push(format!(
                "uplink.hub_urls: {} hubs, at most {MAX_HUB_URLS}",
                self.hub_urls.len()
            ));
        }
        let hubs = self.hubs();
        for (i, url) in hubs.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(format!(
                    "{key}: {url:?} must start with http:// or https://"
                ));
            } else if reqwest::Url::parse(url).is_err() {
                errors.push(format!("{key}: {url:?} is not a URL"));
            }
            let base = url.trim_end_matches('/');
            if hubs[..i].iter().any(|u| u.trim_end_matches('/') == base) {
                errors.push(format!("{key}: {url:?} is listed twice"));
            }
        }
        if self.failback_after.is_zero() {
            errors.push("uplink.failback_after: must be greater than 0".into());
        }
        if self.token.is_some() && self.token_file.is_some() {
            errors.push("uplink.token_file: set either token or token_file, not both".into());
        }
        if let Some(path) = &self.token_file
            && !path.is_file()
        {
            errors.push(format!(
                "uplink.token_file: {} is not a file",
                path.display()
            ));
        }
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            errors.push(format!("uplink.ca_file: {} is not a file", path.display()));
        }
        if self.timeout.is_zero() {
            errors.push("uplink.timeout: must be greater than 0".into());
        }
        if self.backoff_initial.is_zero() {
            errors.push("uplink.backoff_initial: must be greater than 0".into());
        }
        if self.backoff_max < self.backoff_initial {
            errors.push("uplink.backoff_max: must be at least backoff_initial".into());
        }
        if self.batch_segments == 0 {
            errors.push("uplink.batch_segments: must be at least 1".into());
        }
    }

    /// The hubs to upload to, in order of preference: `hub_urls`, or
    /// `hub_url`, or the default.
    pub fn hubs(&self) -> Vec<String> {
        if !self.hub_urls.is_empty() {
            return self.hub_urls.clone();
        }
        vec![
            self.hub_url
                .clone()
                .unwrap_or_else(|| DEFAULT_HUB_URL.to_owned()),
        ]
    }

    /// The token, from `token`, `token_file` or `FERRY_UPLINK_TOKEN`.
    pub fn resolve_token(&self) -> std::io::Result<Option<String>> {
        if let Ok(t) = std::env::var("FERRY_UPLINK_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(Some(t.trim().to_owned()));
        }
        if let Some(path) = &self.token_file {
            return Ok(Some(std::fs::read_to_string(path)?.trim().to_owned()));
        }
        Ok(self.token.clone())
    }
}
