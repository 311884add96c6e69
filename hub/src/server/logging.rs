//! Structured logs on stderr, as text or JSON lines (`[log]`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "FERRY_LOG";

/// A dependency whose INFO lines are noise for operators.
const QUIET_TARGET: &str = "buoyant_kernel";

/// Installs the global subscriber. Does nothing if one is installed
/// already (tests).
pub fn init(config: &LogConfig) {
    let spec = std::env::var(LOG_ENV).ok();
    let filter = spec
        .as_deref()
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .or_else(|| EnvFilter::builder().parse(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Delta's kernel logs every snapshot load at INFO; keep it to warnings
    // unless the filter names it.
    let named = spec
        .as_deref()
        .unwrap_or(&config.level)
        .contains(QUIET_TARGET);
    let filter = match format!("{QUIET_TARGET}=warn").parse() {
        Ok(directive) if !named => filter.add_directive(directive),
        _ => filter,
    };
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
