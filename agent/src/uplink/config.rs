//! `[uplink]`: where segments go and how hard to try.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[uplink]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// The hub's base URL, `http://` or `https://`.
    #[serde(default = "default_hub_url")]
    pub hub_url: String,
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

fn default_hub_url() -> String {
    "http://127.0.0.1:8000".into()
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
            hub_url: default_hub_url(),
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
        if !(self.hub_url.starts_with("http://") || self.hub_url.starts_with("https://")) {
            errors.push(format!(
                "uplink.hub_url: {:?} must start with http:// or https://",
                self.hub_url
            ));
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
