//! Helpers for the `ferry-agent` binary: logging, signals, `status`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Structured logs to stderr; `RUST_LOG` overrides `log.level`.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sends `state` (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) to systemd's
/// notification socket if the agent runs under `Type=notify`; a no-op
/// otherwise. Abstract sockets (`@...`) are not supported; systemd uses a
/// path.
pub fn notify(state: &str) {
    #[cfg(unix)]
    if let Ok(path) = std::env::var("NOTIFY_SOCKET") {
        use std::os::unix::net::UnixDatagram;
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.send_to(state.as_bytes(), path);
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// How often to send `WATCHDOG=1`: half of systemd's `WatchdogSec`
/// (`WATCHDOG_USEC`), if it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// `ferry-agent status`: GET /api/v1/status from the local HTTP server and
/// render it.
pub fn status(addr: &str, json: bool) -> Result<String, String> {
    let body = http_get(addr, "/api/v1/status")?;
    let doc: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("unreadable status: {e}"))?;
    if json {
        return Ok(format!("{doc:#}\n"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(render_status(&doc, now))
}

/// A Unix-milliseconds timestamp as an age from `now_ms`: `3 s ago`,
/// `4 min ago`, `2 h ago`, `5 d ago`; `never` without one. A time ahead of
/// this machine's clock says so (the agent's and this clock disagree).
fn ago(v: &serde_json::Value, now_ms: i64) -> String {
    let Some(at) = v.as_i64() else {
        return "never".to_owned();
    };
    let ms = now_ms.saturating_sub(at);
    if ms < 0 {
        return format!("{} s ahead of this clock", (-ms + 999) / 1000);
    }
    let s = ms / 1000;
    match s {
        0..=89 => format!("{s} s ago"),
        90..=5_399 => format!("{} min ago", (s + 30) / 60),
        5_400..=172_799 => format!("{} h ago", (s + 1_800) / 3_600),
        _ => format!("{} d ago", (s + 43_200) / 86_400),
    }
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .map_err(|e| format!("cannot reach the agent at {addr}: {e} (is it running?)"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "agent answered: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_owned())
}

fn render_status(doc: &serde_json::Value, now_ms: i64) -> String {
    let get = |path: &[&str]| -> String {
        let mut v = doc;
        for p in path {
            v = &v[p];
        }
        match v {
            serde_json::Value::Null => "-".into(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28}{v}\n"));
    line("agent", get(&["agent_id"]));
    line("version", get(&["version"]));
    line("health", render_health(&doc["health"]));
    let exit = &doc["health"]["last_exit"];
    if !exit.is_null() {
        let parts: Vec<String> = ["kind", "component", "at", "message", "location"]
            .iter()
            .filter_map(|k| exit[*k].as_str().map(str::to_owned))
            .collect();
        line("previous run ended", parts.join(", "));
    }
    line("broker connections", get(&["broker", "connections"]));
    line("backlog readings", get(&["buffer", "backlog_readings"]));
    line("backlog bytes", get(&["buffer", "backlog_bytes"]));
    line("pending segments", get(&["buffer", "pending_segments"]));
    line(
        "quarantined segments",
        get(&["buffer", "quarantined_segments"]),
    );
    line("oldest unsent age", get(&["buffer", "oldest_unsent_age"]));
    line("dead letters", get(&["buffer", "dead_letters"]));
    line("drops by reason", get(&["buffer", "drops"]));
    line(
        "last upload",
        ago(&doc["uplink"]["last_success_ms"], now_ms),
    );
    line("last acked segment", get(&["uplink", "last_acked_seq"]));
    line("hub", get(&["uplink", "hub"]));
    line("hub failovers", get(&["uplink", "failovers"]));
    line("uplink error", get(&["uplink", "last_error"]));
    line(
        "consecutive failures",
        get(&["uplink", "consecutive_failures"]),
    );
    if let Some(ports) = doc["serial"].as_object() {
        for (name, p) in ports {
            render_port(&mut out, name, p, now_ms);
        }
    }
    out
}

/// `ok`, or `UNHEALTHY` with each faulty part; and the restart counters.
fn render_health(health: &serde_json::Value) -> String {
    if health.is_null() {
        return "-".into();
    }
    let faulty: Vec<String> = health["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"] == "stalled" || c["state"] == "exited")
        .map(|c| {
            let note = c["note"]
                .as_str()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            format!(
                "{} {}{note}",
                c["name"].as_str().unwrap_or("?"),
                c["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let r = &health["restarts"];
    let counts = format!(
        "(starts {}, unclean exits {}, panics {}, stalls {})",
        r["starts"], r["unclean_exits"], r["panics"], r["stalls"]
    );
    if faulty.is_empty() {
        format!("ok {counts}")
    } else {
        format!("UNHEALTHY: {} {counts}", faulty.join("; "))
    }
}

/// One serial port or Modbus TCP device, and its slaves.
fn render_port(out: &mut String, name: &str, p: &serde_json::Value, now_ms: i64) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let state = if p["connected"].as_bool() == Some(true) {
        "connected"
    } else {
        "disconnected"
    };
    out.push_str(&format!(
        "{:<28}{} {} {state}, readings {}, rejected {}, errors {}, last reading {}\n",
        format!("port {name}"),
        text(&p["kind"]),
        text(&p["path"]),
        text(&p["readings"]),
        text(&p["rejected"]),
        text(&p["errors"]),
        ago(&p["last_reading_ms"], now_ms),
    ));
    if p["connected"].as_bool() != Some(true) || !p["last_error"].is_null() {
        out.push_str(&format!(
            "{:<28}{}\n",
            "  last error",
            text(&p["last_error"])
        ));
    }
    if let Some(slaves) = p["slaves"].as_object() {
        for (id, s) in slaves {
            let alive = if s["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "dead"
            };
            out.push_str(&format!(
                "{:<28}{alive}, polls {}, requests {}, last value {}\n",
                format!("  slave {id}"),
                text(&s["polls"]),
                text(&s["requests"]),
                ago(&s["last_value_ms"], now_ms),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ago, render_status};

    #[test]
    fn status_lists_each_serial_port_and_slave() {
        let doc = serde_json::json!({
            "agent_id": "gw",
            "serial": {
                "meters": {
                    "kind": "modbus-rtu", "path": "/dev/ttyUSB1", "connected": true,
                    "readings": 12, "rejected": 0, "errors": {}, "last_reading_ms": 5,
                    "last_error": null,
                    "slaves": { "3": { "alive": false, "polls": 9,
                                       "requests": { "timeout": 4 }, "last_value_ms": null } }
                },
                "weather": {
                    "kind": "lines", "path": "/dev/ttyUSB0", "connected": false,
                    "readings": 0, "rejected": 0, "errors": { "decode": 2 },
                    "last_error": "No such file or directory", "slaves": {}
                }
            }
        });
        let text = render_status(&doc, 3_005);
        assert!(
            text.contains(
                "port meters                 modbus-rtu /dev/ttyUSB1 connected, readings 12"
            ),
            "{text}"
        );
        assert!(text.contains("last reading 3 s ago"), "{text}");
        assert!(text.contains("last value never"), "{text}");
        assert!(
            text.contains("  slave 3                   dead, polls 9, requests {\"timeout\":4}"),
            "{text}"
        );
        assert!(
            text.contains("port weather                lines /dev/ttyUSB0 disconnected"),
            "{text}"
        );
        assert!(
            text.contains("  last error                No such file or directory"),
            "{text}"
        );
        assert!(!text.contains("meters\n  last error"), "{text}");
    }

    #[test]
    fn status_shows_faulty_parts_and_how_the_last_run_ended() {
        let doc = serde_json::json!({
            "agent_id": "gw",
            "health": {
                "status": "unhealthy",
                "components": [
                    { "name": "store", "state": "ok" },
                    { "name": "broker.mqtt-v5", "state": "stalled", "note": "no answer within 5s" }
                ],
                "restarts": { "starts": 3, "unclean_exits": 2, "panics": 1, "stalls": 1 },
                "last_exit": { "kind": "panic", "component": "uplink", "at": "2026-12-03T10:00:00Z" }
            }
        });
        let text = render_status(&doc, 0);
        assert!(
            text.contains("health                      UNHEALTHY: broker.mqtt-v5 stalled: no answer within 5s (starts 3, unclean exits 2, panics 1, stalls 1)"),
            "{text}"
        );
        assert!(
            text.contains("previous run ended          panic, uplink, 2026-12-03T10:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn times_are_ages() {
        let now = 10_000_000_000;
        let at = |ms_ago: i64| serde_json::json!(now - ms_ago);
        assert_eq!(ago(&at(3_400), now), "3 s ago");
        assert_eq!(ago(&at(89_000), now), "89 s ago");
        assert_eq!(ago(&at(4 * 60_000), now), "4 min ago");
        assert_eq!(ago(&at(2 * 3_600_000), now), "2 h ago");
        assert_eq!(ago(&at(5 * 86_400_000), now), "5 d ago");
        assert_eq!(ago(&serde_json::Value::Null, now), "never");
        assert_eq!(ago(&at(-2_500), now), "3 s ahead of this clock");
    }
}
