//! Encoders for the row and columnar formats, used by tests, benchmarks and
//! the bench client. What they write decodes back to equal readings, with one
//! normalisation [`super::decode`] applies anyway: a `U64` value that fits in
//! i64 comes back as `I64`.
//!
//! Times are written as integer nanoseconds when Arc's inference reads them
//! as nanoseconds (every time after 1970-04-26), else as an integer in the
//! unit inference picks, else as the MessagePack timestamp extension (which
//! Ferry reads and Arc does not).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rmp::encode::{self, ByteBuf, RmpWrite};

use crate::name::{Measurement, TIME_COLUMN};
use crate::reading::{FieldValue, Reading};
use crate::time::Precision;

use super::value::TIMESTAMP_EXT;

/// Readings that the columnar form cannot carry faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "measurement {measurement:?}: {name:?} is both a tag and a field; \
         a columnar record cannot hold both"
    )]
    NameCollision { measurement: String, name: String },
    #[error(
        "measurement {measurement:?}: field {field:?} mixes integers and floats; \
         columnar decoding would turn the integers into floats"
    )]
    MixedNumbers { measurement: String, field: String },
}

/// Encodes readings as a top-level array of row records
/// `{"m", "t", "tags", "fields"}` (`tags` omitted when empty).
pub fn encode_rows(readings: &[Reading]) -> Vec<u8> {
    let mut w = Writer::default();
    w.array(readings.len());
    for r in readings {
        w.map(if r.tags.is_empty() { 3 } else { 4 });
        w.str("m");
        w.str(r.measurement.as_str());
        w.str("t");
        w.time(r.time_ns);
        if !r.tags.is_empty() {
            w.str("tags");
            w.map(r.tags.len());
            for (k, v) in &r.tags {
                w.str(k.as_str());
                w.str(v);
            }
        }
        w.str("fields");
        w.map(r.fields.len());
        for (k, v) in &r.fields {
            w.str(k.as_str());
            w.field(v);
        }
    }
    w.0.into_vec()
}

/// Encodes readings as columnar records, one per measurement in order of
/// first appearance, each `{"m", "columns", "tag_keys"}`; a single
/// measurement is a bare map, several are a top-level array (as Telegraf
/// sends). Absent tags and fields are `nil` cells.
pub fn encode_columnar(readings: &[Reading]) -> Result<Vec<u8>, EncodeError> {
    let mut order: Vec<(&Measurement, Vec<&Reading>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for r in readings {
        let i = *index.entry(r.measurement.as_str()).or_insert_with(|| {
            order.push((&r.measurement, Vec::new()));
            order.len() - 1
        });
        if let Some((_, group)) = order.get_mut(i) {
            group.push(r);
        }
    }
    let mut w = Writer::default();
    if order.len() != 1 {
        w.array(order.len());
    }
    for (measurement, group) in &order {
        write_group(&mut w, measurement, group)?;
    }
    Ok(w.0.into_vec())
}

fn write_group(
    w: &mut Writer,
    measurement: &Measurement,
    rows: &[&Reading],
) -> Result<(), EncodeError> {
    let tag_names: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.tags.keys().map(|k| k.as_str()))
        .collect();
    // Per field: (has an integer, has a float).
    let mut field_names: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for r in rows {
        for (k, v) in &r.fields {
            let kinds = field_names.entry(k.as_str()).or_default();
            kinds.0 |= matches!(v, FieldValue::I64(_) | FieldValue::U64(_));
            kinds.1 |= matches!(v, FieldValue::F64(_));
        }
    }
    for (&name, &(int, float)) in &field_names {
        if tag_names.contains(name) {
            return Err(EncodeError::NameCollision {
                measurement: measurement.to_string(),
                name: name.to_owned(),
            });
        }
        if int && float {
            return Err(EncodeError::MixedNumbers {
                measurement: measurement.to_string(),
                field: name.to_owned(),
            });
        }
    }

    w.map(if tag_names.is_empty() { 2 } else { 3 });
    w.str("m");
    w.str(measurement.as_str());
    w.str("columns");
    w.map(1 + tag_names.len() + field_names.len());
    w.str(TIME_COLUMN);
    w.array(rows.len());
    let all_ns = rows
        .iter()
        .all(|r| Precision::infer(r.time_ns) == Precision::Ns);
    for r in rows {
        if all_ns {
            w.int(r.time_ns);
        } else {
            w.timestamp(r.time_ns);
        }
    }
    for &name in &tag_names {
        w.str(name);
        w.array(rows.len());
        for r in rows {
            match r.tags.get(name) {
                Some(v) => w.str(v),
                None => w.nil(),
            }
        }
    }
    for &name in field_names.keys() {
        w.str(name);
        w.array(rows.len());
        for r in rows {
            match r.fields.get(name) {
                Some(v) => w.field(v),
                None => w.nil(),
            }
        }
    }
    if !tag_names.is_empty() {
        w.str("tag_keys");
        w.array(tag_names.len());
        for &name in &tag_names {
            w.str(name);
        }
    }
    Ok(())
}

/// A MessagePack writer that cannot fail (it writes to memory).
#[derive(Default)]
struct Writer(ByteBuf);

fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("a MessagePack length is at most u32::MAX")
}

impl Writer {
    fn array(&mut self, len: usize) {
        let Ok(_) = encode::write_array_len(&mut self.0, len32(len));
    }

    fn map(&mut self, len: usize) {
        let Ok(_) = encode::write_map_len(&mut self.0, len32(len));
    }

    fn str(&mut self, s: &str) {
        let Ok(()) = encode::write_str_len(&mut self.0, len32(s.len())).map(|_| ());
        let Ok(()) = self.0.write_bytes(s.as_bytes());
    }

    fn nil(&mut self) {
        let Ok(()) = encode::write_nil(&mut self.0);
    }

    fn int(&mut self, v: i64) {
        let Ok(_) = encode::write_sint(&mut self.0, v);
    }

    fn field(&mut self, v: &FieldValue) {
        match v {
            FieldValue::F64(f) => {
                let Ok(()) = encode::write_f64(&mut self.0, *f);
            }
            FieldValue::I64(i) => self.int(*i),
            FieldValue::U64(u) => {
                let Ok(_) = encode::write_uint(&mut self.0, *u);
            }
            FieldValue::Bool(b) => {
                let Ok(()) = encode::write_bool(&mut self.0, *b);
            }
            FieldValue::Str(s) => self.str(s),
        }
    }

    /// A time that decodes back exactly (see the module docs).
    fn time(&mut self, t_ns: i64) {
        for unit in [Precision::Ns, Precision::S, Precision::Ms, Precision::Us] {
            let per = unit.nanos_per_unit();
            if t_ns % per == 0 && Precision::infer(t_ns / per) == unit {
                return self.int(t_ns / per);
            }
        }
        self.timestamp(t_ns);
    }

    /// The 96-bit timestamp extension: u32 nanoseconds, i64 seconds.
    fn timestamp(&mut self, t_ns: i64) {
        let secs = t_ns.div_euclid(1_000_000_000);
        let nanos = t_ns.rem_euclid(1_000_000_000) as u32;
        let Ok(_) = encode::write_ext_meta(&mut self.0, 12, TIMESTAMP_EXT);
        let Ok(()) = self.0.write_bytes(&nanos.to_be_bytes());
        let Ok(()) = self.0.write_bytes(&secs.to_be_bytes());
    }
}
