//! Modbus polling, shared by RTU (over a serial port) and TCP.
//!
//! One task owns a bus and sends one request at a time. Each slave has its
//! own poll interval; the task always serves the slave that is due first.
//! A slave's registers are read with as few requests as its map allows
//! ([`map::plan`]). Between exchanges the bus stays silent for at least
//! `pacing`, and on RTU for at least the 3.5-character inter-frame gap.
//!
//! Failures are counted per slave and by kind: `timeout` (no answer),
//! `crc` (bytes arrived but never made a valid frame), `exception` (the
//! slave refused the request), `protocol` (an answer to another request).
//! A slave whose polls fail `dead_after` times in a row is marked dead and
//! retried only every `dead_retry`, so a dead device costs the bus one
//! timeout per `dead_retry` instead of one per poll. A timeout ends that
//! slave's poll at once; the other slaves are never held up by more than one
//! timeout. I/O errors (the port vanished, the TCP connection broke) end the
//! session, and the caller reopens the transport with backoff.

pub mod map;
pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_protocols::{DatabaseName, Reading, Tags};
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{Slave, SlaveContext};
use tokio_util::sync::CancellationToken;

use self::map::ReadPlan;
use self::wire::RxCounter;
use super::config::{PollSettings, SlaveConfig, Table};
use super::status::PortHandle;
use super::{Ended, store};
use crate::ingest::Incoming;
use crate::route::Buffer;

/// Timing of a bus.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub poll: PollSettings,
    /// Inter-frame silence (RTU), zero on TCP.
    pub silence: Duration,
    /// Time one character takes on the wire (RTU), zero on TCP.
    pub char_time: Duration,
}

impl Timing {
    /// RTU timing at `baud` with `char_bits` bits per character. Above
    /// 19200 baud the spec fixes the gap at 1.75 ms.
    pub fn rtu(poll: PollSettings, baud: u32, char_bits: u32) -> Self {
        let char_time = Duration::from_secs_f64(f64::from(char_bits) / f64::from(baud.max(1)));
        let silence = if baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            char_time.mul_f64(3.5)
        };
        Timing {
            poll,
            silence,
            char_time,
        }
    }

    pub fn tcp(poll: PollSettings) -> Self {
        Timing {
            poll,
            silence: Duration::ZERO,
            char_time: Duration::ZERO,
        }
    }

    /// How long to wait for the answer to `plan`: the timeout plus the time
    /// the request and the longest answer take on the wire.
    fn deadline(&self, plan: &ReadPlan) -> Duration {
        let answer = match plan.table {
            Table::Coil | Table::Discrete => 5 + u32::from(plan.count).div_ceil(8),
            Table::Holding | Table::Input => 5 + 2 * u32::from(plan.count),
        };
        self.poll.timeout + self.char_time * (8 + answer)
    }

    fn gap(&self) -> Duration {
        self.poll.pacing.max(self.silence)
    }
}

/// One slave's schedule and health.
#[derive(Debug)]
struct SlaveState {
    config: SlaveConfig,
    plans: Vec<ReadPlan>,
    due: Instant,
    failures: u32,
    dead: bool,
    last_time_ns: i64,
}

/// A bus's slaves and their state; survives reconnects.
#[derive(Debug)]
pub struct Bus {
    slaves: Vec<SlaveState>,
    database: DatabaseName,
    timing: Timing,
    /// TCP: a stale answer means the stream is out of step; reconnect.
    reconnect_on_protocol_error: bool,
}

/// What ended one request.
enum Outcome {
    Values(Vec<(usize, ferry_protocols::FieldValue)>),
    /// The slave refused the request (an exception): it is alive; the
    /// poll goes on.
    Refused,
    /// The answer was garbled or out of step; the poll goes on.
    Failed,
    /// No answer: the poll of this slave ends here.
    Silent,
}

impl Bus {
    pub fn new(
        slaves: &[SlaveConfig],
        database: DatabaseName,
        timing: Timing,
        tcp: bool,
        port: &PortHandle,
    ) -> Self {
        let now = Instant::now();
        let slaves = slaves
            .iter()
            .map(|s| {
                let units = s
                    .registers
                    .iter()
                    .filter_map(|r| Some((r.field.to_string(), r.unit.clone()?)))
                    .collect();
                port.slave(s.id, units);
                SlaveState {
                    plans: map::plan(s),
                    config: s.clone(),
                    due: now,
                    failures: 0,
                    dead: false,
                    last_time_ns: 0,
                }
            })
            .collect();
        Bus {
            slaves,
            database,
            timing,
            reconnect_on_protocol_error: tcp,
        }
    }

    /// Polls until `stop` or until the transport fails.
    pub async fn run<B: Buffer>(
        &mut self,
        ctx: &mut Context,
        rx: Option<&RxCounter>,
        buffer: &B,
        port: &PortHandle,
        stop: &CancellationToken,
    ) -> Ended {
        let mut quiet_until = Instant::now();
        loop {
            let Some(next) = self
                .slaves
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.due)
                .map(|(i, _)| i)
            else {
                stop.cancelled().await;
                return Ended::Stopped;
            };
            let due = self.slaves[next].due.max(quiet_until);
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                _ = tokio::time::sleep_until(due) => {}
            }
            let started = Instant::now();
            let result = self.poll_slave(next, ctx, rx, port, &mut quiet_until).await;
            // Keep the slave's cadence, but never catch up in a burst; a
            // dead slave waits `dead_retry` from now.
            let slave = &mut self.slaves[next];
            slave.due = if slave.dead {
                started + self.timing.poll.dead_retry
            } else {
                (slave.due + slave.config.poll_interval).max(started)
            };
            match result {
                Err(ended) => return ended,
                Ok(readings) if readings.is_empty() => {}
                Ok(readings) => {
                    if let Err(e) = store(buffer, readings, port).await {
                        return e;
                    }
                }
            }
        }
    }

    /// Reads every register of one slave; returns its readings.
    async fn poll_slave(
        &mut self,
        index: usize,
        ctx: &mut Context,
        rx: Option<&RxCounter>,
        port: &PortHandle,
        quiet_until: &mut Instant,
    ) -> Result<Vec<Incoming>, Ended> {
        let timing = self.timing;
        let reconnect_on_protocol_error = self.reconnect_on_protocol_error;
        let slave = &mut self.slaves[index];
        let id = slave.config.id;
        ctx.set_slave(Slave(id));
        let now_ns = crate::route::system_now_ns();
        let time_ns = crate::serial::stamp_after(now_ns, slave.last_time_ns);
        let mut values = Vec::new();
        let mut answered = false;
        for plan in &slave.plans {
            tokio::time::sleep_until(*quiet_until).await;
            let before = rx.map(RxCounter::get);
            let call = read(ctx, plan);
            let outcome = match tokio::time::timeout(timing.deadline(plan), call).await {
                Ok(Ok(Ok(Response::Words(words)))) => {
                    port.request(id, "ok", None);
                    Outcome::Values(decode(&slave.config, plan, Data::Words(&words), id, port))
                }
                Ok(Ok(Ok(Response::Bits(bits)))) => {
                    port.request(id, "ok", None);
                    Outcome::Values(decode(&slave.config, plan, Data::Bits(&bits), id, port))
                }
                Ok(Ok(Err(exception))) => {
                    port.request(
                        id,
                        "exception",
                        Some(format!(
                            "{:?} {}+{}: {exception}",
                            plan.table, plan.start, plan.count
                        )),
                    );
                    Outcome::Refused
                }
                Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                    port.request(id, "protocol", Some(e.to_string()));
                    if reconnect_on_protocol_error {
                        *quiet_until = Instant::now() + timing.gap();
                        return Err(Ended::Lost(format!("slave {id}: {e}")));
                    }
                    Outcome::Failed
                }
                Ok(Err(tokio_modbus::Error::Transport(e))) => {
                    return Err(Ended::Lost(format!("slave {id}: {e}")));
                }
                Err(_elapsed) => {
                    let heard = match (rx, before) {
                        (Some(rx), Some(before)) => rx.get() > before,
                        _ => false,
                    };
                    if heard {
                        port.request(
                            id,
                            "crc",
                            Some(format!("slave {id}: garbled answer (bad CRC or framing)")),
                        );
                        Outcome::Failed
                    } else {
                        port.request(
                            id,
                            "timeout",
                            Some(format!(
                                "slave {id}: no answer within {:?}",
                                timing.deadline(plan)
                            )),
                        );
                        Outcome::Silent
                    }
                }
            };
            *quiet_until = Instant::now() + timing.gap();
            match outcome {
                Outcome::Values(v) => {
                    answered = true;
                    values.extend(v);
                }
                Outcome::Refused => answered = true,
                Outcome::Failed => {}
                Outcome::Silent => break,
            }
        }
        let got_values = !values.is_empty();
        port.polled(id, got_values);
        if answered {
            slave.failures = 0;
            if slave.dead {
                slave.dead = false;
                port.alive(id, true);
                tracing::info!(port = port.name(), slave = id, "modbus slave answers again");
            }
        } else {
            slave.failures = slave.failures.saturating_add(1);
            if !slave.dead && slave.failures >= timing.poll.dead_after {
                slave.dead = true;
                port.alive(id, false);
                tracing::warn!(
                    port = port.name(),
                    slave = id,
                    failures = slave.failures,
                    retry = ?timing.poll.dead_retry,
                    "modbus slave is not answering; marking it dead"
                );
            }
        }
        if !got_values {
            return Ok(Vec::new());
        }
        slave.last_time_ns = time_ns;
        Ok(group(&slave.config, &self.database, values, time_ns))
    }
}

enum Response {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

enum Data<'a> {
    Words(&'a [u16]),
    Bits(&'a [bool]),
}

async fn read(ctx: &mut Context, plan: &ReadPlan) -> tokio_modbus::Result<Response> {
    Ok(match plan.table {
        Table::Holding => ctx
            .read_holding_registers(plan.start, plan.count)
            .await?
            .map(Response::Words),
        Table::Input => ctx
            .read_input_registers(plan.start, plan.count)
            .await?
            .map(Response::Words),
        Table::Coil => ctx
            .read_coils(plan.start, plan.count)
            .await?
            .map(Response::Bits),
        Table::Discrete => ctx
            .read_discrete_inputs(plan.start, plan.count)
            .await?
            .map(Response::Bits),
    })
}

/// Each register of `plan` from its response.
fn decode(
    slave: &SlaveConfig,
    plan: &ReadPlan,
    data: Data<'_>,
    id: u8,
    port: &PortHandle,
) -> Vec<(usize, ferry_protocols::FieldValue)> {
    let mut out = Vec::with_capacity(plan.registers.len());
    for &i in &plan.registers {
        let reg = &slave.registers[i];
        let offset = usize::from(reg.address - plan.start);
        let value = match data {
            Data::Words(words) => map::decode_words(reg, words, offset),
            Data::Bits(bits) => map::decode_bits(bits, offset),
        };
        match value {
            Ok(v) => out.push((i, v)),
            Err(e) => port.bad_value(id, e),
        }
    }
    out
}

/// Groups one poll's values into readings by measurement and tags.
fn group(
    slave: &SlaveConfig,
    database: &DatabaseName,
    values: Vec<(usize, ferry_protocols::FieldValue)>,
    time_ns: i64,
) -> Vec<Incoming> {
    let mut readings: BTreeMap<(String, Tags), Reading> = BTreeMap::new();
    for (i, value) in values {
        let reg = &slave.registers[i];
        let measurement = reg
            .measurement
            .clone()
            .unwrap_or_else(|| slave.measurement.clone());
        let mut tags = slave.tags.clone();
        tags.extend(reg.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        readings
            .entry((measurement.to_string(), tags.clone()))
            .or_insert_with(|| Reading {
                measurement,
                tags,
                fields: Default::default(),
                time_ns,
            })
            .fields
            .insert(reg.field.clone(), value);
    }
    readings
        .into_values()
        .map(|reading| Incoming {
            database: database.clone(),
            reading,
        })
        .collect()
}
