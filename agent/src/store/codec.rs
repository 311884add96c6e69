//! The `readings.body` encoding: a reading's tags and fields.
//!
//! Little-endian, varint = unsigned LEB128, zigzag for signed values.
//!
//! ```text
//! body   := varint(n_tags) tag* varint(n_fields) field*
//! tag    := str(key) str(value)
//! field  := str(key) type value
//! str    := varint(len) utf8-bytes
//! type   := 0x01 f64  -> 8 bytes, the IEEE-754 bits (NaN payloads kept)
//!         | 0x02 i64  -> zigzag varint
//!         | 0x03 u64  -> varint
//!         | 0x04 bool false (no value) | 0x05 bool true (no value)
//!         | 0x06 str  -> str
//! ```
//!
//! Keys are written in map order (sorted) and validated again on decode, so
//! a corrupt body yields an error, never a panic or an invalid name. The
//! measurement and time live in their own columns. The encoding is smaller
//! than MessagePack or line protocol for typical sensor readings (no field
//! names repeated as map headers, no decimal floats) and round-trips exactly.

use ferry_protocols::{FieldKey, FieldValue, Fields, Measurement, Reading, TagKey, Tags};

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt reading body at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

const T_F64: u8 = 1;
const T_I64: u8 = 2;
const T_U64: u8 = 3;
const T_FALSE: u8 = 4;
const T_TRUE: u8 = 5;
const T_STR: u8 = 6;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros()).div_ceil(7) as usize
}

fn str_len(s: &str) -> usize {
    varint_len(s.len() as u64) + s.len()
}

/// How many bytes [`encode_body`] writes for `reading`, so that the body is
/// allocated once at its size.
pub fn encoded_len(reading: &Reading) -> usize {
    let tags: usize = reading
        .tags
        .iter()
        .map(|(k, v)| str_len(k.as_str()) + str_len(v))
        .sum();
    let fields: usize = reading
        .fields
        .iter()
        .map(|(k, v)| {
            str_len(k.as_str())
                + 1
                + match v {
                    FieldValue::F64(_) => 8,
                    FieldValue::I64(i) => varint_len(zigzag(*i)),
                    FieldValue::U64(u) => varint_len(*u),
                    FieldValue::Bool(_) => 0,
                    FieldValue::Str(s) => str_len(s),
                }
        })
        .sum();
    varint_len(reading.tags.len() as u64) + tags + varint_len(reading.fields.len() as u64) + fields
}

/// Encodes `reading`'s tags and fields, appending to `out`.
pub fn encode_body(reading: &Reading, out: &mut Vec<u8>) {
    put_varint(out, reading.tags.len() as u64);
    for (k, v) in &reading.tags {
        put_str(out, k.as_str());
        put_str(out, v);
    }
    put_varint(out, reading.fields.len() as u64);
    for (k, v) in &reading.fields {
        put_str(out, k.as_str());
        match v {
            FieldValue::F64(f) => {
                out.push(T_F64);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            FieldValue::I64(i) => {
                out.push(T_I64);
                put_varint(out, zigzag(*i));
            }
            FieldValue::U64(u) => {
                out.push(T_U64);
                put_varint(out, *u);
            }
            FieldValue::Bool(false) => out.push(T_FALSE),
            FieldValue::Bool(true) => out.push(T_TRUE),
            FieldValue::Str(s) => {
                out.push(T_STR);
                put_str(out, s);
            }
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(self.err("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or(self.err("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| self.err("length overflow"))?;
        let s = self.bytes(n)?;
        std::str::from_utf8(s).map_err(|_| self.err("invalid UTF-8"))
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        // Every entry takes at least two bytes: reject absurd counts early.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(self.err("count larger than the body"));
        }
        usize::try_from(n).map_err(|_| self.err("count overflow"))
    }
}

/// Decodes a body written by [`encode_body`] into a reading.
pub fn decode_body(
    measurement: Measurement,
    time_ns: i64,
    body: &[u8],
) -> Result<Reading, DecodeError> {
    let mut c = Cursor { buf: body, pos: 0 };
    let mut tags = Tags::new();
    for _ in 0..c.count()? {
        let k = TagKey::new(c.str()?).map_err(|_| c.err("invalid tag key"))?;
        let v = c.str()?.to_owned();
        tags.insert(k, v);
    }
    let mut fields = Fields::new();
    for _ in 0..c.count()? {
        let k = FieldKey::new(c.str()?).map_err(|_| c.err("invalid field key"))?;
        let v = match c.byte()? {
            T_F64 => {
                let b = c.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                FieldValue::F64(f64::from_bits(u64::from_le_bytes(a)))
            }
            T_I64 => {
                let z = c.varint()?;
                FieldValue::I64(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            T_U64 => FieldValue::U64(c.varint()?),
            T_FALSE => FieldValue::Bool(false),
            T_TRUE => FieldValue::Bool(true),
            T_STR => FieldValue::Str(c.str()?.to_owned()),
            _ => return Err(c.err("unknown field type")),
        };
        fields.insert(k, v);
    }
    if c.pos != body.len() {
        return Err(c.err("trailing bytes"));
    }
    Ok(Reading {
        measurement,
        tags,
        fields,
        time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
            any::<i64>().prop_map(FieldValue::I64),
            any::<u64>().prop_map(FieldValue::U64),
            any::<bool>().prop_map(FieldValue::Bool),
            ".{0,20}".prop_map(FieldValue::Str),
        ]
    }

    fn bits(r: &Reading) -> Vec<(String, String)> {
        r.fields
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    FieldValue::F64(f) => format!("f{}", f.to_bits()),
                    other => format!("{other:?}"),
                };
                (k.to_string(), s)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips_exactly(
            tags in proptest::collection::btree_map("[a-z]{1,8}", ".{0,12}", 0..4),
            fields in proptest::collection::btree_map("[A-Z]{1,8}", value(), 1..6),
            time in any::<i64>(),
        ) {
            let m = Measurement::new("m").expect("valid");
            let mut r = Reading::new(m.clone(), time);
            for (k, v) in tags { r = r.with_tag(TagKey::new(k).expect("valid"), v); }
            for (k, v) in fields { r = r.with_field(FieldKey::new(k).expect("valid"), v); }
            let mut body = Vec::new();
            encode_body(&r, &mut body);
            prop_assert_eq!(body.len(), encoded_len(&r));
            let back = decode_body(m, time, &body).expect("decodes");
            prop_assert_eq!(&back.tags, &r.tags);
            prop_assert_eq!(bits(&back), bits(&r));
            prop_assert_eq!(back.time_ns, r.time_ns);
        }

        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_body(Measurement::new("m").expect("valid"), 0, &body);
        }
    }

    #[test]
    fn i64_and_u64_stay_distinct() {
        let m = Measurement::new("m").expect("valid");
        let r = Reading::new(m.clone(), 1)
            .with_field(FieldKey::new("a").expect("valid"), FieldValue::I64(5))
            .with_field(FieldKey::new("b").expect("valid"), FieldValue::U64(5))
            .with_field(
                FieldKey::new("c").expect("valid"),
                FieldValue::I64(i64::MIN),
            );
        let mut body = Vec::new();
        encode_body(&r, &mut body);
        assert_eq!(body.len(), encoded_len(&r));
        assert_eq!(decode_body(m, 1, &body).expect("decodes"), r);
    }
}
