//! Per-port and per-slave state for `ferry-agent status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub const CONNECTED: &str = "ferry_agent_serial_connected";
pub const READINGS_TOTAL: &str = "ferry_agent_serial_readings_total";
pub const REJECTED_TOTAL: &str = "ferry_agent_serial_rejected_total";
pub const ERRORS_TOTAL: &str = "ferry_agent_serial_errors_total";
pub const MODBUS_POLLS_TOTAL: &str = "ferry_agent_modbus_polls_total";
pub const MODBUS_ERRORS_TOTAL: &str = "ferry_agent_modbus_errors_total";
pub const MODBUS_SLAVE_UP: &str = "ferry_agent_modbus_slave_up";

/// Every source's state, shared between the pollers and the status page.
#[derive(Debug, Clone, Default)]
pub struct SerialStatus(Arc<Mutex<BTreeMap<String, PortStatus>>>);

/// One port or Modbus TCP device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PortStatus {
    /// `lines`, `modbus-rtu` or `modbus-tcp`.
    pub kind: &'static str,
    /// The device path or `host:port`.
    pub path: String,
    pub connected: bool,
    /// Successful opens (1 + reconnects).
    pub opens: u64,
    pub last_error: Option<String>,
    /// Readings committed to the buffer.
    pub readings: u64,
    /// Readings the buffer refused (full under `reject_new`, disk error).
    pub rejected: u64,
    /// Line-mode errors by kind: decode, encoding, overlong, partial.
    pub errors: BTreeMap<&'static str, u64>,
    pub last_reading_ms: Option<i64>,
    pub slaves: BTreeMap<u8, SlaveStatus>,
}

/// One Modbus slave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlaveStatus {
    pub alive: bool,
    pub polls: u64,
    /// Requests by outcome: ok, timeout, crc, exception, protocol, io.
    pub requests: BTreeMap<&'static str, u64>,
    /// Values that could not be turned into a field (e.g. a NaN float).
    pub bad_values: u64,
    pub last_error: Option<String>,
    pub last_value_ms: Option<i64>,
    /// `field → unit` for the mapped registers that name one.
    pub units: BTreeMap<String, String>,
}

impl SerialStatus {
    /// The status document (`"serial"` in `/api/v1/status`).
    pub fn snapshot(&self) -> BTreeMap<String, PortStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PortStatus>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a source and returns its handle.
    pub fn port(&self, name: &str, kind: &'static str, path: String) -> PortHandle {
        self.lock().insert(
            name.to_owned(),
            PortStatus {
                kind,
                path,
                ..PortStatus::default()
            },
        );
        metrics::gauge!(CONNECTED, "port" => name.to_owned()).set(0.0);
        PortHandle {
            name: name.to_owned(),
            status: self.clone(),
        }
    }
}

/// What a poller updates.
#[derive(Debug, Clone)]
pub struct PortHandle {
    name: String,
    status: SerialStatus,
}

fn now_ms() -> i64 {
    crate::route::system_now_ns() / 1_000_000
}

impl PortHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn with<R>(&self, f: impl FnOnce(&mut PortStatus) -> R) -> R {
        let mut all = self.status.lock();
        f(all.entry(self.name.clone()).or_default())
    }

    pub fn connected(&self) {
        self.with(|p| {
            p.connected = true;
            p.opens += 1;
        });
        metrics::gauge!(CONNECTED, "port" => self.name.clone()).set(1.0);
    }

    /// The port is closed or could not be opened.
    pub fn disconnected(&self, error: String) {
        self.with(|p| {
            p.connected = false;
            p.last_error = Some(error);
        });
        metrics::gauge!(CONNECTED, "port" => self.name.clone()).set(0.0);
    }

    pub fn stored(&self, n: usize, time_ns: i64) {
        self.with(|p| {
            p.readings += n as u64;
            p.last_reading_ms = Some(time_ns / 1_000_000);
        });
        metrics::counter!(READINGS_TOTAL, "port" => self.name.clone()).increment(n as u64);
    }

    pub fn rejected(&self, n: usize, why: String) {
        self.with(|p| {
            p.rejected += n as u64;
            p.last_error = Some(why);
        });
        metrics::counter!(REJECTED_TOTAL, "port" => self.name.clone()).increment(n as u64);
    }

    /// A line-mode error (decode, encoding, overlong, partial).
    pub fn line_error(&self, kind: &'static str, message: Option<String>) {
        self.with(|p| {
            *p.errors.entry(kind).or_default() += 1;
            if let Some(m) = message {
                p.last_error = Some(m);
            }
        });
        metrics::counter!(ERRORS_TOTAL, "port" => self.name.clone(), "kind" => kind).increment(1);
    }

    /// Declares a slave (at start, so that status lists it before its first poll).
    pub fn slave(&self, id: u8, units: BTreeMap<String, String>) {
        self.with(|p| {
            p.slaves.insert(
                id,
                SlaveStatus {
                    alive: true,
                    units,
                    ..SlaveStatus::default()
                },
            );
        });
        metrics::gauge!(MODBUS_SLAVE_UP, "port" => self.name.clone(), "slave" => id.to_string())
            .set(1.0);
    }

    /// One finished poll of a slave.
    pub fn polled(&self, id: u8, values: bool) {
        self.with(|p| {
            let s = p.slaves.entry(id).or_default();
            s.polls += 1;
            if values {
                s.last_value_ms = Some(now_ms());
            }
        });
        metrics::counter!(MODBUS_POLLS_TOTAL, "port" => self.name.clone(), "slave" => id.to_string())
            .increment(1);
    }

    /// One request's outcome: `ok`, or an error kind with its message.
    pub fn request(&self, id: u8, outcome: &'static str, error: Option<String>) {
        self.with(|p| {
            let s = p.slaves.entry(id).or_default();
            *s.requests.entry(outcome).or_default() += 1;
            if error.is_some() {
                s.last_error = error;
            }
        });
        if outcome != "ok" {
            metrics::counter!(MODBUS_ERRORS_TOTAL, "port" => self.name.clone(), "slave" => id.to_string(), "kind" => outcome)
                .increment(1);
        }
    }

    pub fn bad_value(&self, id: u8, message: String) {
        self.with(|p| {
            let s = p.slaves.entry(id).or_default();
            s.bad_values += 1;
            s.last_error = Some(message);
        });
        metrics::counter!(MODBUS_ERRORS_TOTAL, "port" => self.name.clone(), "slave" => id.to_string(), "kind" => "bad_value")
            .increment(1);
    }

    pub fn alive(&self, id: u8, alive: bool) {
        self.with(|p| p.slaves.entry(id).or_default().alive = alive);
        metrics::gauge!(MODBUS_SLAVE_UP, "port" => self.name.clone(), "slave" => id.to_string())
            .set(if alive { 1.0 } else { 0.0 });
    }
}
