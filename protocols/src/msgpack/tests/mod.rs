//! Tests: hand-written bodies (`decode.rs`) and encoder round trips
//! (`roundtrip.rs`), sharing a tiny MessagePack builder.

mod decode;
mod roundtrip;

use super::*;
use crate::name::{FieldKey, Measurement, TagKey};
use crate::reading::{FieldValue, Reading};

pub(super) const DEFAULT: i64 = 42;

/// A tiny MessagePack value builder for hand-written test bodies.
#[derive(Clone)]
pub(super) enum V {
    Nil,
    B(bool),
    I(i64),
    U(u64),
    F(f64),
    F32(f32),
    S(&'static str),
    Bin(&'static [u8]),
    Ts(i64, u32),
    A(Vec<V>),
    M(Vec<(V, V)>),
}

pub(super) fn m(pairs: &[(&'static str, V)]) -> V {
    V::M(pairs.iter().map(|(k, v)| (V::S(k), v.clone())).collect())
}

pub(super) fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, v);
    out
}

fn put(out: &mut Vec<u8>, v: &V) {
    use rmp::encode as e;
    match v {
        V::Nil => e::write_nil(out).unwrap(),
        V::B(b) => e::write_bool(out, *b).unwrap(),
        V::I(i) => drop(e::write_sint(out, *i).unwrap()),
        V::U(u) => drop(e::write_uint(out, *u).unwrap()),
        V::F(f) => e::write_f64(out, *f).unwrap(),
        V::F32(f) => e::write_f32(out, *f).unwrap(),
        V::S(s) => e::write_str(out, s).unwrap(),
        V::Bin(b) => e::write_bin(out, b).unwrap(),
        V::Ts(secs, nanos) => {
            e::write_ext_meta(out, 12, -1).unwrap();
            out.extend(nanos.to_be_bytes());
            out.extend(secs.to_be_bytes());
        }
        V::A(items) => {
            e::write_array_len(out, items.len() as u32).unwrap();
            items.iter().for_each(|i| put(out, i));
        }
        V::M(pairs) => {
            e::write_map_len(out, pairs.len() as u32).unwrap();
            for (k, v) in pairs {
                put(out, k);
                put(out, v);
            }
        }
    }
}

pub(super) fn ok(v: &V) -> Decoded {
    decode(&enc(v), DEFAULT).unwrap()
}

pub(super) fn reading(measurement: &str, time_ns: i64) -> Reading {
    Reading::new(Measurement::new(measurement).unwrap(), time_ns)
}

pub(super) fn tag(r: Reading, k: &str, v: &str) -> Reading {
    r.with_tag(TagKey::new(k).unwrap(), v)
}

pub(super) fn field(r: Reading, k: &str, v: FieldValue) -> Reading {
    r.with_field(FieldKey::new(k).unwrap(), v)
}

pub(super) const MS: i64 = 1_700_000_000_000;
pub(super) const NS: i64 = MS * 1_000_000;

pub(super) fn row_cpu(t: V) -> V {
    m(&[
        ("m", V::S("cpu")),
        ("t", t),
        ("tags", m(&[("host", V::S("a"))])),
        ("fields", m(&[("usage", V::F(1.5))])),
    ])
}
