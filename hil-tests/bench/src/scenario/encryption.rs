//! Encryption at rest: what it costs, and the two ways to do it.
//!
//! - **The hub, end to end.** Two hubs of the same build, one with
//!   `[encryption]` on: the same line protocol written to both (runs
//!   alternating between them), then compacted, then the same queries.
//!   The ratio is the hub's cost of its store layer.
//! - **The formats, in process.** One Parquet file (zstd, as the hub writes
//!   them) written and read plain, with Parquet modular encryption (footer
//!   and every column under one AES-GCM key), and plain then sealed by the
//!   hub's store layer (`ferry_hub::encryption::seal_object`): the two
//!   designs decision 0017 chose between, on the same bytes.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
#[cfg(feature = "pme")]
use parquet::encryption::decrypt::FileDecryptionProperties;
#[cfg(feature = "pme")]
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::procs::{Hub, HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

const QUERIES: &[(&str, &str)] = &[
    ("count", "SELECT count(*) FROM enc.m"),
    (
        "group by device",
        "SELECT device, avg(temp), max(load) FROM enc.m GROUP BY device ORDER BY device",
    ),
    (
        "one device, a time range",
        "SELECT time, temp FROM enc.m WHERE device = 'd00042' AND time >= '2025-11-26T06:00:00Z' AND time < '2025-11-26T12:00:00Z' ORDER BY time",
    ),
];
const QUERY_REPEATS: usize = 10;
const BODY_LINES: usize = 50_000;

fn lines(from: usize, n: usize, devices: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            let t = 1_764_115_200_000_000_000i64 + i as i64 * 100_000_000;
            format!(
                "m,device=d{:05},site=s{} temp={}.5,load={}i,state=\"run-{}\" {t}\n",
                i % devices,
                i % 13,
                i % 97,
                i % 1_000,
                i % 5
            )
        })
        .collect()
}

fn ingest(hub: &Hub, body_lines: &[String]) -> f64 {
    let started = Instant::now();
    for chunk in body_lines.chunks(BODY_LINES) {
        hub.post_lp("enc", chunk.concat().as_bytes());
    }
    body_lines.len() as f64 / started.elapsed().as_secs_f64()
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &std::path::Path) -> Section {
    let rows = if scale.quick { 100_000 } else { 2_000_000 };
    let mut section = Section::new(
        "encryption",
        "Encryption at rest: the hub with [encryption] on against off, and the two designs",
    );
    let plain_dir = dir.join("plain");
    let sealed_dir = dir.join("sealed");
    for d in [&plain_dir, &sealed_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let plain = start_hub(&plain_dir, fresh_addr(), &HubOptions::default());
    let sealed = start_hub(
        &sealed_dir,
        fresh_addr(),
        &HubOptions {
            encryption: true,
            ..HubOptions::default()
        },
    );
    let mut plain_rate = Vec::new();
    let mut sealed_rate = Vec::new();
    let per_run = rows / scale.runs;
    for run in 0..scale.runs {
        let body = lines(run * per_run, per_run, 1_000);
        // Alternate which hub goes first, so neither always gets the warm cache.
        if run % 2 == 0 {
            plain_rate.push(ingest(&plain, &body));
            sealed_rate.push(ingest(&sealed, &body));
        } else {
            sealed_rate.push(ingest(&sealed, &body));
            plain_rate.push(ingest(&plain, &body));
        }
    }
    section.compare(Comparison::new(
        format!("line protocol ingest, {BODY_LINES}-line bodies, encrypted"),
        Unit::Rate("rows"),
        &sealed_rate,
        "the same hub, encryption off",
        &plain_rate,
    ));
    plain.compact();
    sealed.compact();
    for (name, sql) in QUERIES {
        let a = plain.query(sql).expect("query");
        let b = sealed.query(sql).expect("query");
        assert_eq!(
            a["data"], b["data"],
            "{name}: the encrypted hub answers differently"
        );
        let mut p = Vec::new();
        let mut s = Vec::new();
        for i in 0..QUERY_REPEATS * scale.runs {
            let order: [(&Hub, &mut Vec<f64>); 2] = if i % 2 == 0 {
                [(&plain, &mut p), (&sealed, &mut s)]
            } else {
                [(&sealed, &mut s), (&plain, &mut p)]
            };
            for (hub, into) in order {
                let t = Instant::now();
                hub.query(sql).expect("query");
                into.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        section.compare(Comparison::new(
            format!("query: {name}, encrypted"),
            Unit::Ms,
            &s,
            "encryption off",
            &p,
        ));
    }
    drop(plain);
    drop(sealed);
    formats(scale, rows, &mut section);
    if !cfg!(feature = "pme") {
        section.note(
            "Parquet modular encryption not measured: this ferry-bench was built without \
             `--features pme`.",
        );
    }
    section.intro = format!(
        "Two hubs of this build, fs tables, one with `[encryption]` on (AES-256-GCM store layer, \
         key file): {rows} rows of `enc.m` (1,000 devices, 2 tags, 3 fields) written to both as \
         line protocol in {BODY_LINES}-line bodies, runs alternating which hub goes first; then \
         both compacted and {QUERY_REPEATS} × runs repetitions of each query, alternating, timed \
         at the client (answers checked equal). Then one Parquet file of the same rows (zstd 1) \
         written and read in process: plain; with Parquet modular encryption (AES-GCM, footer and \
         columns under one key); and plain sealed by the hub's store layer."
    );
    section.details = json!({"rows": rows, "runs": scale.runs});
    section
}

fn batch(rows: usize) -> RecordBatch {
    let devices: Vec<String> = (0..rows).map(|i| format!("d{:05}", i % 1_000)).collect();
    RecordBatch::try_from_iter([
        (
            "time",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| 1_764_115_200_000_000 + i as i64 * 100_000),
            )) as ArrayRef,
        ),
        ("device", Arc::new(StringArray::from(devices)) as ArrayRef),
        (
            "temp",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i % 97) as f64 + 0.5),
            )) as ArrayRef,
        ),
        (
            "load",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i % 1_000) as i64),
            )) as ArrayRef,
        ),
    ])
    .expect("batch")
}

fn properties() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
}

fn write(batch: &RecordBatch, props: WriterProperties) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
    out
}

fn read(bytes: Vec<u8>, options: ArrowReaderOptions) -> usize {
    ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(bytes), options)
        .expect("reader")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch").num_rows())
        .sum()
}

/// Parquet modular encryption: footer and every column under one key.
#[cfg(feature = "pme")]
mod pme {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    pub(super) fn write(batch: &RecordBatch) -> Vec<u8> {
        let props = properties()
            .with_file_encryption_properties(
                FileEncryptionProperties::builder(KEY.to_vec())
                    .build()
                    .expect("encryption properties"),
            )
            .build();
        super::write(batch, props)
    }

    pub(super) fn read(bytes: Vec<u8>) -> usize {
        let options = ArrowReaderOptions::new().with_file_decryption_properties(
            FileDecryptionProperties::builder(KEY.to_vec())
                .build()
                .expect("decryption properties"),
        );
        super::read(bytes, options)
    }
}

fn formats(scale: &Scale, rows: usize, section: &mut Section) {
    let batch = batch(rows);
    let keys = ferry_hub::encryption::Keyring::from_text(
        "bench:0707070707070707070707070707070707070707070707070707070707070707",
    )
    .expect("keys");
    let (mut w_plain, mut w_layer) = (Vec::new(), Vec::new());
    let (mut r_plain, mut r_layer) = (Vec::new(), Vec::new());
    #[cfg_attr(not(feature = "pme"), allow(unused_mut))]
    let (mut w_pme, mut r_pme): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for _ in 0..scale.runs * 3 {
        let t = Instant::now();
        let plain = write(&batch, properties().build());
        w_plain.push(ms(t));
        let t = Instant::now();
        assert_eq!(read(plain.clone(), ArrowReaderOptions::new()), rows);
        r_plain.push(ms(t));

        #[cfg(feature = "pme")]
        {
            let t = Instant::now();
            let sealed = pme::write(&batch);
            w_pme.push(ms(t));
            assert!(
                !sealed.windows(6).any(|w| w == b"d00042"),
                "modular encryption left plaintext"
            );
            let t = Instant::now();
            assert_eq!(pme::read(sealed), rows);
            r_pme.push(ms(t));
        }

        let t = Instant::now();
        let sealed =
            ferry_hub::encryption::seal_object(&keys, &write(&batch, properties().build()));
        w_layer.push(ms(t));
        let t = Instant::now();
        let opened = ferry_hub::encryption::open_object(&keys, &sealed).expect("open");
        assert_eq!(read(opened, ArrowReaderOptions::new()), rows);
        r_layer.push(ms(t));
    }
    for (what, ferry, base) in [
        (
            "write one Parquet file, sealed by the store layer",
            &w_layer,
            &w_plain,
        ),
        (
            "write one Parquet file, modular encryption",
            &w_pme,
            &w_plain,
        ),
        ("read it back, store layer", &r_layer, &r_plain),
        ("read it back, modular encryption", &r_pme, &r_plain),
    ] {
        if ferry.is_empty() {
            continue;
        }
        section.compare(Comparison::new(
            format!("{what} ({rows} rows)"),
            Unit::Ms,
            ferry,
            "plain Parquet",
            base,
        ));
    }
}
