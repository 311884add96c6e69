//! Structured logs on stderr, as text or JSON lines (`[log]`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "FERRY_LOG";

/// Installs the global subscriber. Does nothing if one is installed
/// already (tests).
pub fn init(config: &LogConfig) {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .or_else(|| EnvFilter::builder().parse(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already installed: keep the existing one.
    let _ = result;
}
