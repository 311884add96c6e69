//! Register maps: which requests read a slave's registers, and how the words
//! that come back become field values.

use ferry_protocols::FieldValue;

use crate::serial::config::{Order, RegisterConfig, RegisterType, SlaveConfig, Table};

/// Most registers one read may ask for (Modbus: 125), and most coils (2000).
const MAX_REGISTERS: u16 = 125;
const MAX_BITS: u16 = 2000;

/// One read request and the registers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indexes into the slave's `registers`.
    pub registers: Vec<usize>,
}

/// Groups a slave's registers into as few reads as possible: contiguous or
/// overlapping addresses of one table share a request, up to the protocol's
/// size limit. Gaps are never read (a device may refuse unmapped addresses).
pub fn plan(slave: &SlaveConfig) -> Vec<ReadPlan> {
    let mut order: Vec<usize> = (0..slave.registers.len()).collect();
    order.sort_by_key(|&i| (slave.registers[i].table, slave.registers[i].address));
    let mut plans: Vec<ReadPlan> = Vec::new();
    for i in order {
        let reg = &slave.registers[i];
        let words = reg.kind.words();
        let end = u32::from(reg.address) + u32::from(words);
        let limit = match reg.table {
            Table::Coil | Table::Discrete => MAX_BITS,
            Table::Holding | Table::Input => MAX_REGISTERS,
        };
        if let Some(last) = plans.last_mut()
            && last.table == reg.table
            && reg.address <= last.start.saturating_add(last.count)
            && end - u32::from(last.start) <= u32::from(limit)
        {
            let new_count = (end - u32::from(last.start)) as u16;
            last.count = last.count.max(new_count);
            last.registers.push(i);
            continue;
        }
        plans.push(ReadPlan {
            table: reg.table,
            start: reg.address,
            count: words,
            registers: vec![i],
        });
    }
    plans
}

/// Decodes one register's value from the words (or bits) its request read.
/// `offset` is the register's position in the response.
pub fn decode_words(
    reg: &RegisterConfig,
    words: &[u16],
    offset: usize,
) -> Result<FieldValue, String> {
    let n = usize::from(reg.kind.words());
    let raw = words.get(offset..offset + n).ok_or_else(|| {
        format!(
            "short response: {} words, needed {}",
            words.len(),
            offset + n
        )
    })?;
    // Put the words in big-endian order, then each word's bytes.
    let mut ordered: Vec<u16> = raw.to_vec();
    if reg.word_order == Order::Little {
        ordered.reverse();
    }
    let mut bytes = [0u8; 8];
    for (i, w) in ordered.iter().enumerate() {
        let [hi, lo] = w.to_be_bytes();
        let (a, b) = match reg.byte_order {
            Order::Big => (hi, lo),
            Order::Little => (lo, hi),
        };
        bytes[2 * i] = a;
        bytes[2 * i + 1] = b;
    }
    let b2 = [bytes[0], bytes[1]];
    let b4 = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let value = match reg.kind {
        RegisterType::U16 => Number::Int(i128::from(u16::from_be_bytes(b2))),
        RegisterType::I16 => Number::Int(i128::from(i16::from_be_bytes(b2))),
        RegisterType::U32 => Number::Int(i128::from(u32::from_be_bytes(b4))),
        RegisterType::I32 => Number::Int(i128::from(i32::from_be_bytes(b4))),
        RegisterType::U64 => Number::Int(i128::from(u64::from_be_bytes(bytes))),
        RegisterType::I64 => Number::Int(i128::from(i64::from_be_bytes(bytes))),
        RegisterType::F32 => Number::Float(f64::from(f32::from_be_bytes(b4))),
        RegisterType::F64 => Number::Float(f64::from_be_bytes(bytes)),
        RegisterType::Bool => {
            // A bit field: the bit of the word as the device sent it.
            let bit = reg.bit.unwrap_or(0);
            return Ok(FieldValue::Bool(raw[0] >> bit & 1 == 1));
        }
    };
    finish(reg, value)
}

/// Decodes a coil or discrete input.
pub fn decode_bits(bits: &[bool], offset: usize) -> Result<FieldValue, String> {
    bits.get(offset)
        .map(|b| FieldValue::Bool(*b))
        .ok_or_else(|| format!("short response: {} bits", bits.len()))
}

enum Number {
    Int(i128),
    Float(f64),
}

/// Applies scale and offset, and picks the field's type: integers stay
/// integers (u64 only for u64 registers) unless scaled; floats are f64.
fn finish(reg: &RegisterConfig, value: Number) -> Result<FieldValue, String> {
    let scaled = reg.scale.is_some() || reg.offset.is_some();
    let as_f64 = |v: f64| {
        let v = v * reg.scale.unwrap_or(1.0) + reg.offset.unwrap_or(0.0);
        if v.is_finite() {
            Ok(FieldValue::F64(v))
        } else {
            Err(format!("{}: value is not finite ({v})", reg.field))
        }
    };
    match value {
        Number::Float(v) => as_f64(v),
        Number::Int(v) if scaled => as_f64(v as f64),
        Number::Int(v) if reg.kind == RegisterType::U64 => Ok(FieldValue::U64(v as u64)),
        Number::Int(v) => Ok(FieldValue::I64(v as i64)),
    }
}
