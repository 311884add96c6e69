//! A TSBS-IoT-style data set, generated in Rust: trucks with the tags
//! `name`, `fleet`, `driver`, `model` and `device_version`, and two
//! measurements every 10 s:
//!
//! - `readings`: `latitude`, `longitude`, `elevation`, `velocity`,
//!   `heading`, `grade`, `fuel_consumption` (f64);
//! - `diagnostics`: `fuel_state`, `current_load` (f64) and `status` (i64).
//!
//! Like TSBS, about 2 % of the points of each measurement are missing, and
//! 1 % arrive late: they are shipped in the next segment (chunk) instead of
//! their own, so the table receives out-of-order data. Values are pure
//! functions of (truck, step) (a hash, no state), so any chunk can be built
//! on its own, by any writer, and the data set is the same on every run.
//!
//! Behaviour the queries look for: trucks rest in 10-minute blocks (velocity
//! below 1), some trucks almost never (long driving sessions); fuel drains
//! over 12 h and refills; each 10-minute block has a load between 0 and the
//! model's capacity; about one block in 40 is a breakdown (`status` 1–4).

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray,
};
use arrow_schema::SchemaRef;
use ferry_protocols::batch::canonical_schema;
use ferry_protocols::{FieldKey, FieldType, TagKey};

use crate::dataset::T0_NS;

pub const DATABASE: &str = "iot";
pub const FLEETS: [&str; 5] = ["East", "West", "North", "South", "Central"];
pub const DRIVERS: [&str; 10] = [
    "Albert", "Derek", "Trish", "Seth", "Rodney", "Andy", "Zack", "Eleanor", "Ivan", "Mia",
];
/// Model, load capacity, fuel capacity, nominal fuel consumption.
pub const MODELS: [(&str, f64, f64, f64); 3] = [
    ("F-150", 2000.0, 200.0, 15.0),
    ("G-2000", 5000.0, 300.0, 19.0),
    ("H-2", 1500.0, 150.0, 12.0),
];
pub const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];
/// Steps of 10 s in a 10-minute block.
const BLOCK: usize = 60;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Readings,
    Diagnostics,
}

impl Kind {
    pub fn measurement(self) -> &'static str {
        match self {
            Kind::Readings => "readings",
            Kind::Diagnostics => "diagnostics",
        }
    }

    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Readings => &[
                "latitude",
                "longitude",
                "elevation",
                "velocity",
                "heading",
                "grade",
                "fuel_consumption",
            ],
            Kind::Diagnostics => &["fuel_state", "current_load", "status"],
        }
    }

    fn salt(self) -> u64 {
        match self {
            Kind::Readings => 100,
            Kind::Diagnostics => 200,
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn h(t: usize, k: usize, salt: u64) -> u64 {
    mix(mix(t as u64 ^ (salt << 40)) ^ k as u64)
}

fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

/// The fleet.
#[derive(Debug, Clone, Copy)]
pub struct Trucks {
    pub trucks: usize,
    /// Steps of 10 s.
    pub steps: usize,
    /// Steps per chunk (one segment per measurement per chunk).
    pub chunk_steps: usize,
}

impl Trucks {
    pub fn name(t: usize) -> String {
        format!("truck_{t}")
    }
    pub fn fleet(t: usize) -> &'static str {
        FLEETS[t % FLEETS.len()]
    }
    pub fn driver(t: usize) -> &'static str {
        DRIVERS[(h(t, 0, 1) % DRIVERS.len() as u64) as usize]
    }
    pub fn model(t: usize) -> (&'static str, f64, f64, f64) {
        MODELS[(h(t, 0, 2) % MODELS.len() as u64) as usize]
    }
    pub fn version(t: usize) -> &'static str {
        VERSIONS[(h(t, 0, 3) % VERSIONS.len() as u64) as usize]
    }

    /// The time of truck `t`'s step `k` (each truck a few seconds apart).
    pub fn time_ns(t: usize, k: usize) -> i64 {
        T0_NS + (k as i64 * 10 + (t % 10) as i64) * 1_000_000_000
    }

    /// The first nanosecond after the data set.
    pub fn end_ns(&self) -> i64 {
        T0_NS + self.steps as i64 * 10_000_000_000
    }

    pub fn chunks(&self) -> usize {
        self.steps.div_ceil(self.chunk_steps)
    }

    fn missing(kind: Kind, t: usize, k: usize) -> bool {
        h(t, k, kind.salt() + 1) % 100 < 2
    }

    /// Late points travel in the next chunk (not from the last chunk).
    fn late(&self, kind: Kind, t: usize, k: usize) -> bool {
        h(t, k, kind.salt() + 2).is_multiple_of(100) && k / self.chunk_steps + 1 < self.chunks()
    }

    fn driving(t: usize, k: usize) -> bool {
        // Trucks 0, 5, 10, … rest in 2 % of their blocks, the others in up to 34 %.
        let rest_pct = 2 + (t % 5) as u64 * 8;
        h(t, k / BLOCK, 10) % 100 >= rest_pct
    }

    /// A float field's value.
    pub fn value(field: &str, t: usize, k: usize) -> f64 {
        let (_, load_cap, _, nominal) = Trucks::model(t);
        let kf = k as f64;
        let tf = t as f64;
        let r = |salt| h(t, k, salt);
        match field {
            "latitude" => round(
                -60.0 + (tf * 7.3) % 120.0 + 0.5 * (kf / 2000.0 + tf).sin(),
                5,
            ),
            "longitude" => round(
                -170.0 + (tf * 13.7) % 340.0 + 0.5 * (kf / 2100.0 + tf).cos(),
                5,
            ),
            "elevation" => round(300.0 + 200.0 * (kf / 900.0 + tf).sin(), 1),
            "velocity" => {
                if Trucks::driving(t, k) {
                    round(40.0 + (r(11) % 5000) as f64 / 100.0, 2)
                } else {
                    round((r(11) % 50) as f64 / 100.0, 2)
                }
            }
            "heading" => round((r(12) % 36000) as f64 / 100.0, 2),
            "grade" => round((r(13) % 1000) as f64 / 100.0, 2),
            "fuel_consumption" => round(nominal * (0.7 + (r(14) % 600) as f64 / 1000.0), 2),
            "fuel_state" => {
                let phase = ((k + t * 137) % 4320) as f64 / 4320.0;
                round(1.0 - 0.98 * phase, 3)
            }
            "current_load" => round(load_cap * (h(t, k / BLOCK, 15) % 1000) as f64 / 1000.0, 1),
            other => panic!("no field {other}"),
        }
    }

    /// `status`: 0, or 1–4 during a breakdown block.
    pub fn status(t: usize, k: usize) -> i64 {
        let b = h(t, k / BLOCK, 16);
        if b.is_multiple_of(40) {
            1 + (b / 40 % 4) as i64
        } else {
            0
        }
    }

    pub fn schema(kind: Kind) -> SchemaRef {
        let tags: Vec<TagKey> = ["name", "fleet", "driver", "model", "device_version"]
            .iter()
            .map(|t| TagKey::new(*t).expect("tag key"))
            .collect();
        let fields: Vec<(FieldKey, FieldType)> = kind
            .fields()
            .iter()
            .map(|f| {
                (
                    FieldKey::new(*f).expect("field key"),
                    if *f == "status" {
                        FieldType::I64
                    } else {
                        FieldType::F64
                    },
                )
            })
            .collect();
        Arc::new(canonical_schema(
            tags.iter(),
            fields.iter().map(|(k, t)| (k, *t)),
        ))
    }

    /// Trucks in the segment sort order (tags in key order: device_version,
    /// driver, fleet, model, name).
    pub fn sorted_trucks(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.trucks).collect();
        v.sort_by_cached_key(|&t| {
            (
                Trucks::version(t),
                Trucks::driver(t),
                Trucks::fleet(t),
                Trucks::model(t).0,
                Trucks::name(t),
            )
        });
        v
    }

    /// The points of chunk `c`: per truck (in `order`), the late points of
    /// the previous chunk, then this chunk's on-time points, in time order.
    fn points(&self, kind: Kind, c: usize, order: &[usize]) -> Vec<(usize, usize)> {
        let first = c * self.chunk_steps;
        let end = ((c + 1) * self.chunk_steps).min(self.steps);
        let prev = first.saturating_sub(self.chunk_steps);
        let mut out = Vec::with_capacity(order.len() * (end - first));
        for &t in order {
            if c > 0 {
                out.extend(
                    (prev..first)
                        .filter(|&k| !Trucks::missing(kind, t, k) && self.late(kind, t, k))
                        .map(|k| (t, k)),
                );
            }
            out.extend(
                (first..end)
                    .filter(|&k| !Trucks::missing(kind, t, k) && !self.late(kind, t, k))
                    .map(|k| (t, k)),
            );
        }
        out
    }

    /// Rows of a whole measurement.
    pub fn rows(&self, kind: Kind) -> u64 {
        (0..self.trucks)
            .map(|t| {
                (0..self.steps)
                    .filter(|&k| !Trucks::missing(kind, t, k))
                    .count() as u64
            })
            .sum()
    }

    /// Chunk `c` of a measurement as one sorted batch with the canonical schema.
    pub fn batch(&self, kind: Kind, c: usize, order: &[usize]) -> RecordBatch {
        let points = self.points(kind, c, order);
        let schema = Trucks::schema(kind);
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let p = &points;
                match f.name().as_str() {
                    "time" => Arc::new(
                        TimestampNanosecondArray::from(
                            p.iter()
                                .map(|&(t, k)| Trucks::time_ns(t, k))
                                .collect::<Vec<_>>(),
                        )
                        .with_timezone("UTC"),
                    ),
                    "name" => tag(p.iter().map(|&(t, _)| Trucks::name(t))),
                    "fleet" => tag(p.iter().map(|&(t, _)| Trucks::fleet(t).to_owned())),
                    "driver" => tag(p.iter().map(|&(t, _)| Trucks::driver(t).to_owned())),
                    "model" => tag(p.iter().map(|&(t, _)| Trucks::model(t).0.to_owned())),
                    "device_version" => tag(p.iter().map(|&(t, _)| Trucks::version(t).to_owned())),
                    "status" => Arc::new(Int64Array::from(
                        p.iter()
                            .map(|&(t, k)| Trucks::status(t, k))
                            .collect::<Vec<_>>(),
                    )),
                    field => Arc::new(Float64Array::from(
                        p.iter()
                            .map(|&(t, k)| Trucks::value(field, t, k))
                            .collect::<Vec<_>>(),
                    )),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("a truck batch")
    }
}

fn tag(values: impl Iterator<Item = String>) -> ArrayRef {
    let values: Vec<String> = values.collect();
    let array: DictionaryArray<Int32Type> = values.iter().map(String::as_str).collect();
    Arc::new(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_lands_in_exactly_one_chunk() {
        let d = Trucks {
            trucks: 7,
            steps: 1000,
            chunk_steps: 100,
        };
        let order = d.sorted_trucks();
        for kind in [Kind::Readings, Kind::Diagnostics] {
            let n: usize = (0..d.chunks())
                .map(|c| d.batch(kind, c, &order).num_rows())
                .sum();
            assert_eq!(n as u64, d.rows(kind));
            assert!(
                d.rows(kind) < 7000 && d.rows(kind) > 6700,
                "about 2 % missing"
            );
        }
    }
}
