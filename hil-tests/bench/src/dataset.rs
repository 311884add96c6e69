//! The simple IoT data set of the ingest and drain scenarios (taken over
//! from the old `hub_bench`): `devices` devices, one reading each every
//! 10 s, as sorted Arrow batches, as segments and as line protocol.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Float64Array, RecordBatch, TimestampNanosecondArray};
use ferry_protocols::batch::canonical_schema;
use ferry_protocols::segment::{SegmentHeader, SegmentSeq, write_segment};
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldType, Measurement, TagKey};

/// 2026-01-01T00:00:00Z in ns.
pub const T0_NS: i64 = 1_767_225_600_000_000_000;
/// Seconds between two readings of one device.
pub const STEP_S: i64 = 10;
const MODELS: [&str; 4] = ["m-alpha", "m-bravo", "m-charlie", "m-delta"];
/// The IoT data set: `devices` devices, one reading each every 10 s.
/// Row `(step, d)`: time `T0 + step·10 s + (d mod 10) s`; tags `device`
/// (`dev-0000`…), `fleet` (`fleet-00` for devices 0–99, …), `model` (4);
/// fields `battery`, `humidity`, `speed` (integer values 0–120),
/// `temperature`, all f64 with two decimals at most.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub devices: usize,
    pub steps: usize,
}

#[derive(Debug)]
pub struct Row {
    pub time_ns: i64,
    pub device: usize,
    pub temperature: f64,
    pub humidity: f64,
    pub battery: f64,
    pub speed: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Dataset {
    pub fn rows(&self) -> u64 {
        (self.devices * self.steps) as u64
    }

    pub fn device(d: usize) -> String {
        format!("dev-{d:04}")
    }

    pub fn fleet(d: usize) -> String {
        format!("fleet-{:02}", d / 100)
    }

    pub fn model(d: usize) -> &'static str {
        MODELS[d % MODELS.len()]
    }

    pub fn row(step: usize, d: usize) -> Row {
        let s = step as f64;
        let df = d as f64;
        Row {
            time_ns: T0_NS + (step as i64 * STEP_S + (d % 10) as i64) * 1_000_000_000,
            device: d,
            temperature: round2(20.0 + 8.0 * (s / 360.0 + df).sin() + (d % 7) as f64 * 0.5),
            humidity: round2(55.0 + 25.0 * (s / 500.0 + df * 0.3).cos()),
            battery: round2(100.0 - (s * 0.01 + df) % 95.0),
            speed: ((step * 7 + d * 13) % 121) as f64,
        }
    }

    /// Steps `[first, first + n)` of every device, as one batch in segment
    /// order (device, then time), with the canonical schema.
    pub fn batch(&self, first: usize, n: usize) -> RecordBatch {
        let n = n.min(self.steps.saturating_sub(first));
        let mut rows = Vec::with_capacity(n * self.devices);
        for d in 0..self.devices {
            for step in first..first + n {
                rows.push(Dataset::row(step, d));
            }
        }
        to_batch(&rows)
    }

    /// The same rows as line protocol (measurement `m`, ns timestamps), in
    /// time order (step, then device), as a client would send them.
    pub fn line_protocol(&self, m: &str, first: usize, n: usize) -> Vec<u8> {
        use std::fmt::Write as _;
        let n = n.min(self.steps.saturating_sub(first));
        let mut out = String::with_capacity(n * self.devices * 130);
        for step in first..first + n {
            for d in 0..self.devices {
                let r = Dataset::row(step, d);
                let _ = writeln!(
                    out,
                    "{m},device={},fleet={},model={} battery={},humidity={},speed={},temperature={} {}",
                    Dataset::device(d),
                    Dataset::fleet(d),
                    Dataset::model(d),
                    r.battery,
                    r.humidity,
                    r.speed,
                    r.temperature,
                    r.time_ns
                );
            }
        }
        out.into_bytes()
    }
}

pub fn schema() -> arrow_schema::SchemaRef {
    let tags: Vec<TagKey> = ["device", "fleet", "model"]
        .iter()
        .map(|t| TagKey::new(*t).expect("tag"))
        .collect();
    let fields: Vec<FieldKey> = ["battery", "humidity", "speed", "temperature"]
        .iter()
        .map(|f| FieldKey::new(*f).expect("field"))
        .collect();
    Arc::new(canonical_schema(
        tags.iter(),
        fields.iter().map(|f| (f, FieldType::F64)),
    ))
}

fn tag_array(values: impl Iterator<Item = String>) -> ArrayRef {
    let values: Vec<String> = values.collect();
    let array: DictionaryArray<Int32Type> = values.iter().map(String::as_str).collect();
    Arc::new(array)
}

/// Rows (already sorted by device, then time) as a canonical batch.
fn to_batch(rows: &[Row]) -> RecordBatch {
    let time = TimestampNanosecondArray::from(rows.iter().map(|r| r.time_ns).collect::<Vec<_>>())
        .with_timezone("UTC");
    let f = |get: fn(&Row) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(get).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time),
        tag_array(rows.iter().map(|r| Dataset::device(r.device))),
        tag_array(rows.iter().map(|r| Dataset::fleet(r.device))),
        tag_array(rows.iter().map(|r| Dataset::model(r.device).to_owned())),
        f(|r| r.battery),
        f(|r| r.humidity),
        f(|r| r.speed),
        f(|r| r.temperature),
    ];
    RecordBatch::try_new(schema(), columns).expect("batch")
}

/// A segment of `batch` from `agent` with sequence `seq`.
pub fn segment(
    agent: &str,
    seq: u64,
    database: &str,
    measurement: &str,
    batch: &RecordBatch,
) -> Vec<u8> {
    let rows = batch.num_rows() as u64;
    let header = SegmentHeader {
        agent_id: AgentId::new(agent).expect("agent id"),
        sequence: SegmentSeq(seq),
        first_reading_id: seq * 10_000_000,
        last_reading_id: seq * 10_000_000 + rows.saturating_sub(1),
        database: DatabaseName::new(database).expect("database"),
        measurement: Measurement::new(measurement).expect("measurement"),
    };
    write_segment(&header, batch).expect("write segment")
}
