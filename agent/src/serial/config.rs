//! `[[serial.ports]]` and `[[modbus_tcp]]`: which devices the agent polls or
//! listens to, and how their bytes become readings.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use ferry_protocols::lines::{LineDecoder, LineSpec};
use ferry_protocols::{DatabaseName, FieldKey, Measurement, Tags};
use serde::{Deserialize, Serialize};

/// `[serial]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    #[serde(default)]
    pub ports: Vec<PortConfig>,
}

/// What a serial port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    /// The device prints one reading per line (`[serial.ports.lines]`).
    Lines,
    /// A Modbus RTU bus that the agent polls (`[[serial.ports.slaves]]`).
    ModbusRtu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// One `[[serial.ports]]` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The port's name in status, metrics and logs.
    pub name: String,
    /// The device, e.g. `/dev/ttyUSB0` or `/dev/serial/by-id/...`.
    pub path: PathBuf,
    pub mode: PortMode,
    /// The database its readings go to.
    pub database: DatabaseName,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default)]
    pub flow_control: FlowControl,
    /// First delay before reopening a missing or failed port; doubles up to
    /// `reopen_max`.
    #[serde(default = "default_reopen_min", with = "humantime_serde")]
    pub reopen_min: Duration,
    #[serde(default = "default_reopen_max", with = "humantime_serde")]
    pub reopen_max: Duration,
    /// lines: the decoder.
    #[serde(default)]
    pub lines: Option<LineSpec>,
    /// lines: longer lines are counted and skipped.
    #[serde(default = "default_max_line")]
    pub max_line: ByteSize,
    /// modbus-rtu: how long to wait for a response (on RTU, on top of the frame's own
    /// transmission time at the configured baud rate).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Least gap between the end of one exchange and the next request. RTU
    /// always keeps at least the 3.5-character inter-frame silence.
    #[serde(default = "default_pacing", with = "humantime_serde")]
    pub pacing: Duration,
    /// Consecutive failed polls after which a slave counts as dead.
    #[serde(default = "default_dead_after")]
    pub dead_after: u32,
    /// How often a dead slave is retried (instead of its poll interval), so
    /// that its timeouts do not eat the bus.
    #[serde(default = "default_dead_retry", with = "humantime_serde")]
    pub dead_retry: Duration,
    /// modbus-rtu: the slaves on this bus and their register maps.
    #[serde(default)]
    pub slaves: Vec<SlaveConfig>,
}

/// How a Modbus bus (RTU or TCP) is polled; see the keys of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    pub timeout: Duration,
    pub pacing: Duration,
    pub dead_after: u32,
    pub dead_retry: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: default_timeout(),
            pacing: default_pacing(),
            dead_after: default_dead_after(),
            dead_retry: default_dead_retry(),
        }
    }
}

/// One `[[modbus_tcp]]` block: a Modbus TCP device (or gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpConfig {
    pub name: String,
    /// `host:port`, e.g. `10.0.0.5:502`.
    pub address: String,
    pub database: DatabaseName,
    #[serde(default = "default_reopen_min", with = "humantime_serde")]
    pub reopen_min: Duration,
    #[serde(default = "default_reopen_max", with = "humantime_serde")]
    pub reopen_max: Duration,
    /// How long to wait for a response (on RTU, on top of the frame's own
    /// transmission time at the configured baud rate).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Least gap between the end of one exchange and the next request. RTU
    /// always keeps at least the 3.5-character inter-frame silence.
    #[serde(default = "default_pacing", with = "humantime_serde")]
    pub pacing: Duration,
    /// Consecutive failed polls after which a slave counts as dead.
    #[serde(default = "default_dead_after")]
    pub dead_after: u32,
    /// How often a dead slave is retried (instead of its poll interval), so
    /// that its timeouts do not eat the bus.
    #[serde(default = "default_dead_retry", with = "humantime_serde")]
    pub dead_retry: Duration,
    pub slaves: Vec<SlaveConfig>,
}

/// One slave (unit) on a bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaveConfig {
    /// The slave (unit) id, 1..=247 (0..=255 on TCP).
    pub id: u8,
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The measurement of its registers, unless a register names its own.
    pub measurement: Measurement,
    #[serde(default)]
    pub tags: Tags,
    pub registers: Vec<RegisterConfig>,
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Holding,
    Input,
    Coil,
    Discrete,
}

/// How a register's words hold a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterType {
    #[default]
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// A coil or discrete input, or one `bit` of a register.
    Bool,
}

/// Order of the words of a multi-word value, or of the bytes in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Most significant first (the Modbus convention).
    #[default]
    Big,
    Little,
}

/// One `[[...slaves.registers]]` entry: one field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The field it becomes.
    pub field: FieldKey,
    pub table: Table,
    /// The protocol address (0-based; register 40001 is holding address 0).
    pub address: u16,
    #[serde(default, rename = "type")]
    pub kind: RegisterType,
    #[serde(default)]
    pub word_order: Order,
    #[serde(default)]
    pub byte_order: Order,
    /// `value * scale + offset`; either one makes the field an f64.
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub offset: Option<f64>,
    /// A bit field: bit 0..=15 of one register, as a bool.
    #[serde(default)]
    pub bit: Option<u8>,
    /// The unit, shown in status (e.g. `V`, `kWh`, `°C`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Overrides the slave's measurement for this field.
    #[serde(default)]
    pub measurement: Option<Measurement>,
    /// Added to (and overriding) the slave's tags for this field.
    #[serde(default)]
    pub tags: Tags,
}

impl RegisterType {
    /// 16-bit registers the value spans (1 for bools).
    pub fn words(self) -> u16 {
        match self {
            RegisterType::U16 | RegisterType::I16 | RegisterType::Bool => 1,
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 => 2,
            RegisterType::U64 | RegisterType::I64 | RegisterType::F64 => 4,
        }
    }
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_reopen_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reopen_max() -> Duration {
    Duration::from_secs(30)
}
fn default_max_line() -> ByteSize {
    ByteSize::kib(4)
}
fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_pacing() -> Duration {
    Duration::from_millis(5)
}
fn default_dead_after() -> u32 {
    3
}
fn default_dead_retry() -> Duration {
    Duration::from_secs(10)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

impl SerialConfig {
    /// Every problem, with its key path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            let at = format!("serial.ports[{i}]");
            if !names.insert(port.name.as_str()) {
                errors.push(format!("{at}.name: {:?} is used twice", port.name));
            }
            if !paths.insert(port.path.as_path()) {
                errors.push(format!("{at}.path: {} is used twice", port.path.display()));
            }
            port.validate(&at, errors);
        }
    }
}

impl PortConfig {
    fn validate(&self, at: &str, errors: &mut Vec<String>) {
        if self.name.trim().is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        }
        if self.baud == 0 {
            errors.push(format!("{at}.baud: must be greater than 0"));
        }
        if !(5..=8).contains(&self.data_bits) {
            errors.push(format!("{at}.data_bits: must be 5, 6, 7 or 8"));
        }
        if !(1..=2).contains(&self.stop_bits) {
            errors.push(format!("{at}.stop_bits: must be 1 or 2"));
        }
        check_reopen(at, self.reopen_min, self.reopen_max, errors);
        match self.mode {
            PortMode::Lines => {
                match &self.lines {
                    None => errors.push(format!(
                        "{at}.lines: required for mode \"lines\" (the decoder)"
                    )),
                    Some(spec) => {
                        if let Err(e) = LineDecoder::new(spec) {
                            errors.extend(e.into_iter().map(|e| format!("{at}.lines.{e}")));
                        }
                    }
                }
                if self.max_line.as_u64() == 0 || self.max_line.as_u64() > 1 << 20 {
                    errors.push(format!("{at}.max_line: must be between 1 B and 1 MiB"));
                }
                if !self.slaves.is_empty() {
                    errors.push(format!("{at}.slaves: only for mode \"modbus-rtu\""));
                }
            }
            PortMode::ModbusRtu => {
                if self.lines.is_some() {
                    errors.push(format!("{at}.lines: only for mode \"lines\""));
                }
                if self.flow_control != FlowControl::None {
                    errors.push(format!(
                        "{at}.flow_control: Modbus RTU uses none (timing is the framing)"
                    ));
                }
                validate_slaves(at, &self.poll(), &self.slaves, 1..=247, errors);
            }
        }
    }

    pub fn poll(&self) -> PollSettings {
        PollSettings {
            timeout: self.timeout,
            pacing: self.pacing,
            dead_after: self.dead_after,
            dead_retry: self.dead_retry,
        }
    }

    /// One character on the wire, in bits (start + data + parity + stop).
    pub fn char_bits(&self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }
}

impl ModbusTcpConfig {
    pub fn poll(&self) -> PollSettings {
        PollSettings {
            timeout: self.timeout,
            pacing: self.pacing,
            dead_after: self.dead_after,
            dead_retry: self.dead_retry,
        }
    }

    pub fn validate(&self, at: &str, errors: &mut Vec<String>) {
        if self.name.trim().is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        }
        if self
            .address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            errors.push(format!(
                "{at}.address: expected host:port, got {:?}",
                self.address
            ));
        }
        check_reopen(at, self.reopen_min, self.reopen_max, errors);
        validate_slaves(at, &self.poll(), &self.slaves, 0..=255, errors);
    }
}

fn check_reopen(at: &str, min: Duration, max: Duration, errors: &mut Vec<String>) {
    if min.is_zero() || max < min {
        errors.push(format!(
            "{at}.reopen_min/reopen_max: need 0 < reopen_min <= reopen_max"
        ));
    }
}

fn validate_slaves(
    at: &str,
    poll: &PollSettings,
    slaves: &[SlaveConfig],
    ids: std::ops::RangeInclusive<u8>,
    errors: &mut Vec<String>,
) {
    if poll.timeout.is_zero() {
        errors.push(format!("{at}.timeout: must be greater than 0"));
    }
    if poll.dead_after == 0 {
        errors.push(format!("{at}.dead_after: must be at least 1"));
    }
    if slaves.is_empty() {
        errors.push(format!("{at}.slaves: at least one slave is needed"));
    }
    let mut seen = BTreeSet::new();
    for (j, slave) in slaves.iter().enumerate() {
        let at = format!("{at}.slaves[{j}]");
        if !ids.contains(&slave.id) {
            errors.push(format!(
                "{at}.id: {} is outside {}..={}",
                slave.id,
                ids.start(),
                ids.end()
            ));
        }
        if !seen.insert(slave.id) {
            errors.push(format!("{at}.id: {} is used twice on this bus", slave.id));
        }
        if slave.poll_interval < Duration::from_millis(10) {
            errors.push(format!("{at}.poll_interval: must be at least 10ms"));
        }
        if slave.registers.is_empty() {
            errors.push(format!("{at}.registers: at least one register is needed"));
        }
        let mut fields = BTreeSet::new();
        for (k, reg) in slave.registers.iter().enumerate() {
            let at = format!("{at}.registers[{k}]");
            let measurement = reg.measurement.as_ref().unwrap_or(&slave.measurement);
            if !fields.insert((measurement.as_str(), reg.field.as_str(), reg.tags.clone())) {
                errors.push(format!(
                    "{at}.field: {:?} is mapped twice",
                    reg.field.as_str()
                ));
            }
            reg.validate(&at, errors);
        }
    }
}

impl RegisterConfig {
    fn validate(&self, at: &str, errors: &mut Vec<String>) {
        let bits_table = matches!(self.table, Table::Coil | Table::Discrete);
        if bits_table && self.kind != RegisterType::Bool {
            errors.push(format!("{at}.type: coils and discrete inputs are bool"));
        }
        if let Some(bit) = self.bit {
            if bit > 15 {
                errors.push(format!("{at}.bit: must be 0..=15"));
            }
            if bits_table || self.kind != RegisterType::Bool {
                errors.push(format!(
                    "{at}.bit: a bit field is type = \"bool\" on a holding or input register"
                ));
            }
        } else if !bits_table && self.kind == RegisterType::Bool {
            errors.push(format!(
                "{at}.bit: a bool from a register needs bit = 0..=15"
            ));
        }
        if self.kind == RegisterType::Bool && (self.scale.is_some() || self.offset.is_some()) {
            errors.push(format!("{at}.scale/offset: not for bool values"));
        }
        if self.scale.is_some_and(|s| !s.is_finite()) || self.offset.is_some_and(|o| !o.is_finite())
        {
            errors.push(format!("{at}.scale/offset: must be finite"));
        }
        if u32::from(self.address) + u32::from(self.kind.words()) > 65536 {
            errors.push(format!("{at}.address: the value runs past register 65535"));
        }
    }
}
