//! Segment throughput: building a batch, writing and reading a segment,
//! against plain parquet-rs on the same data.
//!
//! `cargo bench -p ferry-protocols --bench segment -- --warm-up-time 1 --measurement-time 3`
//!
//! `segment/*` input: 100k readings, 5 tags (cardinalities 3 / 12 / 5 / 4 / 200),
//! 5 float fields and 1 int field, 10 s apart per device. "Raw size" is
//! 8 bytes of time + the tag value bytes + 8 bytes per field, per row.
//!
//! `cut/*` input: what one segment cut holds in `ferry-bench topics`:
//! 10,000 readings, each from a device of its own (`device` tag), with a
//! float field and a 73-byte string field.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::{SegmentHeader, SegmentSeq, read_segment, write_segment};
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldValue, Measurement, Reading, TagKey};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const ROWS: usize = 100_000;
const DEVICES: usize = 200;
const CUT_ROWS: usize = 10_000;

fn readings() -> Vec<Reading> {
    let m = Measurement::new("environment").unwrap();
    let tag = |s: &str| TagKey::new(s).unwrap();
    let field = |s: &str| FieldKey::new(s).unwrap();
    let (region, site, kind, firmware, device) = (
        tag("region"),
        tag("site"),
        tag("sensor_type"),
        tag("firmware"),
        tag("device_id"),
    );
    let floats = ["temperature", "humidity", "pressure", "voltage", "current"].map(field);
    let counter = field("counter");
    let t0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    (0..ROWS)
        .map(|i| {
            let d = i % DEVICES;
            let step = (i / DEVICES) as i64;
            let mut r = Reading::new(m.clone(), t0 + step * 10_000_000_000 + d as i64 * 7_000_000)
                .with_tag(region.clone(), ["eu-west", "us-east", "ap-south"][d % 3])
                .with_tag(site.clone(), format!("site-{:02}", d % 12))
                .with_tag(
                    kind.clone(),
                    ["bme280", "sht31", "ds18b20", "pt100", "ina219"][d % 5],
                )
                .with_tag(firmware.clone(), format!("1.{}.0", d % 4))
                .with_tag(device.clone(), format!("dev-{d:05}"));
            for (k, f) in floats.iter().enumerate() {
                let x = (step as f64 / 50.0 + d as f64 + k as f64).sin();
                let v = (20.0 + 10.0 * x + k as f64 * 100.0) * 100.0;
                r = r.with_field(f.clone(), FieldValue::F64(v.round() / 100.0));
            }
            r.with_field(counter.clone(), FieldValue::I64(step * 3 + d as i64))
        })
        .collect()
}

/// One cut of `ferry-bench topics`: a distinct device per reading.
fn cut_readings() -> Vec<Reading> {
    let m = Measurement::new("temp").unwrap();
    let (device, celsius, pad) = (
        TagKey::new("device").unwrap(),
        FieldKey::new("celsius").unwrap(),
        FieldKey::new("pad").unwrap(),
    );
    let t0: i64 = 1_767_225_600_000_000_000;
    (0..CUT_ROWS)
        .map(|i| {
            Reading::new(m.clone(), t0 + i as i64 * 1_000_000)
                .with_tag(device.clone(), format!("dev-{i}"))
                .with_field(celsius.clone(), FieldValue::F64(21.5))
                .with_field(pad.clone(), FieldValue::Str("x".repeat(73)))
        })
        .collect()
}

fn raw_size(rs: &[Reading]) -> u64 {
    rs.iter()
        .map(|r| 8 + r.tags.values().map(String::len).sum::<usize>() + 8 * r.fields.len())
        .sum::<usize>() as u64
}

fn header() -> SegmentHeader {
    SegmentHeader {
        agent_id: AgentId::new("gw-bench").unwrap(),
        sequence: SegmentSeq(1),
        first_reading_id: 1,
        last_reading_id: ROWS as u64,
        database: DatabaseName::new("bench").unwrap(),
        measurement: Measurement::new("environment").unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let rs = readings();
    let raw = raw_size(&rs);
    let m = Measurement::new("environment").unwrap();
    let rb = ReadingBatch::from_readings(m.clone(), &rs)
        .unwrap()
        .to_record_batch()
        .unwrap();
    let segment = write_segment(&header(), &rb).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let plain = {
        let mut w = ArrowWriter::try_new(Vec::new(), rb.schema(), Some(props.clone())).unwrap();
        w.write(&rb).unwrap();
        w.into_inner().unwrap()
    };
    println!(
        "input: {ROWS} rows, raw {:.2} MB ({} B/row); segment {:.3} MB (ratio {:.1}x); \
         plain ArrowWriter {:.3} MB (ratio {:.1}x)",
        raw as f64 / 1e6,
        raw / ROWS as u64,
        segment.len() as f64 / 1e6,
        raw as f64 / segment.len() as f64,
        plain.len() as f64 / 1e6,
        raw as f64 / plain.len() as f64,
    );

    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::ElementsAndBytes {
        elements: ROWS as u64,
        bytes: raw,
    });
    g.sample_size(10);
    g.bench_function("a_build_batch", |b| {
        b.iter(|| {
            let batch = ReadingBatch::from_readings(m.clone(), black_box(&rs)).unwrap();
            batch.to_record_batch().unwrap()
        })
    });
    g.bench_function("b_write_segment", |b| {
        b.iter(|| write_segment(&header(), black_box(&rb)).unwrap())
    });
    g.bench_function("c_baseline_arrow_writer", |b| {
        b.iter(|| {
            let mut w = ArrowWriter::try_new(Vec::new(), rb.schema(), Some(props.clone())).unwrap();
            w.write(black_box(&rb)).unwrap();
            w.into_inner().unwrap()
        })
    });
    let seg = Bytes::from(segment);
    g.bench_function("d_read_segment", |b| {
        b.iter(|| read_segment(black_box(seg.clone())).unwrap())
    });
    g.bench_function("d_baseline_parquet_reader", |b| {
        b.iter(|| {
            ParquetRecordBatchReaderBuilder::try_new(black_box(seg.clone()))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
    });
    g.finish();

    let cut = cut_readings();
    let m = Measurement::new("temp").unwrap();
    let mut g = c.benchmark_group("cut");
    g.throughput(Throughput::Elements(CUT_ROWS as u64));
    g.sample_size(20);
    g.bench_function("a_build_batch_distinct_devices", |b| {
        b.iter(|| {
            let batch = ReadingBatch::from_readings(m.clone(), black_box(&cut)).unwrap();
            batch.to_record_batch().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
