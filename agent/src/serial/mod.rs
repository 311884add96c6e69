//! Serial and Modbus sources: `[[serial.ports]]` (line-printing devices and
//! Modbus RTU buses) and `[[modbus_tcp]]` (Modbus TCP devices).
//!
//! Each port or device gets one task that owns it. The port is opened
//! exclusively (TIOCEXCL); a missing, unplugged or failing port is reopened
//! with exponential backoff (`reopen_min` .. `reopen_max`), logged once per
//! change of state, and shown in `ferry-agent status` and `/metrics`. A port
//! never stops the agent.
//!
//! Readings take the durable path of MQTT QoS 1: they are committed to the
//! buffer before the source moves on. A serial device cannot be asked to
//! send again, so readings the buffer refuses (full under `reject_new`, disk
//! error) are counted as `rejected` and dropped.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | the config blocks and their validation |
//! | [`lines`] | line mode: framing, decoding, committing |
//! | [`modbus`] | Modbus polling (RTU and TCP), register maps |
//! | [`status`] | per-port and per-slave state and metrics |

pub mod config;
pub mod lines;
pub mod modbus;
pub mod status;

use std::time::Duration;

use ferry_protocols::lines::LineDecoder;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::{FlowControl, ModbusTcpConfig, Parity, PortConfig, PortMode, SerialConfig};
use self::lines::LineReader;
use self::modbus::{Bus, Timing, wire::Tap};
use self::status::{PortHandle, SerialStatus};
use crate::ingest::{Durability, Incoming, RejectReason};
use crate::route::Buffer;
use crate::supervise::{Liveness, fault, in_component};
use crate::uplink::Backoff;

/// Why a session with a port or device ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The agent is stopping.
    Stopped,
    /// The transport failed; reopen it.
    Lost(String),
}

/// Starts a task per port and per Modbus TCP device. They stop when `stop`
/// is cancelled, after committing what they have read.
///
/// Each source is a component `serial.<name>` in `liveness`: it waits on
/// its device, so it is idle (it cannot stall), but a task that ends while
/// the agent runs is reported as exited.
pub fn start<B: Buffer>(
    serial: &SerialConfig,
    modbus_tcp: &[ModbusTcpConfig],
    buffer: B,
    stop: CancellationToken,
    tracker: &TaskTracker,
    liveness: &Liveness,
) -> SerialStatus {
    let status = SerialStatus::default();
    for port in &serial.ports {
        let kind = match port.mode {
            PortMode::Lines => "lines",
            PortMode::ModbusRtu => "modbus-rtu",
        };
        let handle = status.port(&port.name, kind, port.path.display().to_string());
        let beat = liveness.register(format!("serial.{}", port.name), Duration::ZERO, false);
        beat.idle();
        let task = supervise_port(port.clone(), buffer.clone(), handle, stop.clone());
        tracker.spawn(in_component("serial", async move {
            task.await;
            drop(beat);
        }));
    }
    for device in modbus_tcp {
        let handle = status.port(&device.name, "modbus-tcp", device.address.clone());
        let beat = liveness.register(format!("serial.{}", device.name), Duration::ZERO, false);
        beat.idle();
        let task = supervise_tcp(device.clone(), buffer.clone(), handle, stop.clone());
        tracker.spawn(in_component("serial", async move {
            task.await;
            drop(beat);
        }));
    }
    status
}

/// Commits one batch. A refusal is counted, not retried.
pub(crate) async fn store<B: Buffer>(
    buffer: &B,
    readings: Vec<Incoming>,
    port: &PortHandle,
) -> Result<(), Ended> {
    fault::point("serial").await;
    let n = readings.len();
    let last = readings
        .iter()
        .map(|r| r.reading.time_ns)
        .max()
        .unwrap_or(0);
    let stored = match buffer.append(readings, Durability::Durable).await {
        Ok(commit) => commit.await,
        Err(reason) => Err(reason),
    };
    match stored {
        Ok(()) => {
            port.stored(n, last);
            Ok(())
        }
        Err(RejectReason::ShuttingDown) => {
            port.rejected(n, "the agent is shutting down".into());
            Err(Ended::Stopped)
        }
        Err(reason) => {
            let why = match reason {
                RejectReason::Full => "the buffer is full (when_full = reject_new)",
                _ => "the buffer could not be written",
            };
            tracing::warn!(
                port = port.name(),
                readings = n,
                why,
                "serial readings dropped"
            );
            port.rejected(n, format!("{n} readings dropped: {why}"));
            Ok(())
        }
    }
}

/// The agent's stamp for a serial reading: the wall clock, kept strictly
/// increasing per source across small regressions (two reads in the same
/// nanosecond, an NTP slew). A step back of a second or more is followed,
/// not papered over: pinning stamps at `last + 1` would squeeze hours of
/// readings into nanoseconds.
pub(crate) fn stamp_after(now_ns: i64, last_ns: i64) -> i64 {
    if now_ns > last_ns || last_ns - now_ns >= 1_000_000_000 {
        now_ns
    } else {
        last_ns + 1
    }
}

fn open(cfg: &PortConfig) -> Result<tokio_serial::SerialStream, tokio_serial::Error> {
    let path = cfg.path.to_string_lossy();
    let data_bits = match cfg.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let stop_bits = match cfg.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    let parity = match cfg.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let flow = match cfg.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    };
    // serialport opens ports exclusively (TIOCEXCL) by default.
    tokio_serial::new(path, cfg.baud)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .flow_control(flow)
        .timeout(Duration::from_secs(1))
        .open_native_async()
}

/// What a port's task keeps across reopens.
enum PortState {
    Lines(LineReader),
    Rtu(Bus),
}

async fn supervise_port<B: Buffer>(
    cfg: PortConfig,
    buffer: B,
    port: PortHandle,
    stop: CancellationToken,
) {
    let mut state = match cfg.mode {
        PortMode::Lines => {
            // Validated at load; an invalid spec cannot reach here.
            let Some(Ok(decoder)) = cfg.lines.as_ref().map(LineDecoder::new) else {
                port.disconnected("invalid lines spec".into());
                return;
            };
            PortState::Lines(LineReader::new(
                decoder,
                cfg.database.clone(),
                cfg.max_line.as_u64() as usize,
            ))
        }
        PortMode::ModbusRtu => {
            let timing = Timing::rtu(cfg.poll(), cfg.baud, cfg.char_bits());
            PortState::Rtu(Bus::new(
                &cfg.slaves,
                cfg.database.clone(),
                timing,
                false,
                &port,
            ))
        }
    };
    let mut backoff = Backoff::new(cfg.reopen_min, cfg.reopen_max);
    let mut problem: Option<String> = None;
    loop {
        match open(&cfg) {
            Ok(mut stream) => {
                backoff.reset();
                port.connected();
                tracing::info!(port = port.name(), path = %cfg.path.display(), "serial port open");
                let ended = match &mut state {
                    PortState::Lines(reader) => {
                        reader.run(&mut stream, &buffer, &port, &stop).await
                    }
                    PortState::Rtu(bus) => {
                        let (tap, rx) = Tap::new(stream);
                        let mut ctx = tokio_modbus::client::rtu::attach(tap);
                        bus.run(&mut ctx, Some(&rx), &buffer, &port, &stop).await
                    }
                };
                match ended {
                    Ended::Stopped => return,
                    Ended::Lost(error) => {
                        tracing::warn!(port = port.name(), %error, "serial port lost; reopening");
                        port.disconnected(error.clone());
                        problem = Some(error);
                    }
                }
            }
            Err(e) => {
                let error = e.to_string();
                if problem.as_deref() != Some(error.as_str()) {
                    tracing::warn!(port = port.name(), path = %cfg.path.display(), %error, "cannot open serial port; retrying");
                }
                port.disconnected(error.clone());
                problem = Some(error);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn connect_tcp(cfg: &ModbusTcpConfig) -> Result<tokio::net::TcpStream, String> {
    let connect = tokio::net::TcpStream::connect(cfg.address.as_str());
    let stream = tokio::time::timeout(cfg.timeout.max(Duration::from_secs(1)), connect)
        .await
        .map_err(|_| format!("connect to {} timed out", cfg.address))?
        .map_err(|e| format!("connect to {}: {e}", cfg.address))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn supervise_tcp<B: Buffer>(
    cfg: ModbusTcpConfig,
    buffer: B,
    port: PortHandle,
    stop: CancellationToken,
) {
    let mut bus = Bus::new(
        &cfg.slaves,
        cfg.database.clone(),
        Timing::tcp(cfg.poll()),
        true,
        &port,
    );
    let mut backoff = Backoff::new(cfg.reopen_min, cfg.reopen_max);
    let mut problem: Option<String> = None;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = connect_tcp(&cfg) => c,
        };
        match connected {
            Ok(stream) => {
                backoff.reset();
                port.connected();
                tracing::info!(device = port.name(), address = %cfg.address, "modbus tcp connected");
                let mut ctx = tokio_modbus::client::tcp::attach(stream);
                match bus.run(&mut ctx, None, &buffer, &port, &stop).await {
                    Ended::Stopped => return,
                    Ended::Lost(error) => {
                        tracing::warn!(device = port.name(), %error, "modbus tcp connection lost; reconnecting");
                        port.disconnected(error.clone());
                        problem = Some(error);
                    }
                }
            }
            Err(error) => {
                if problem.as_deref() != Some(error.as_str()) {
                    tracing::warn!(device = port.name(), %error, "cannot reach modbus tcp device; retrying");
                }
                port.disconnected(error.clone());
                problem = Some(error);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests;
