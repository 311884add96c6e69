//! `hub_bench ingest`: end-to-end ingest into a real hub, every answer
//! after the durable Delta commit, against the floor of the same work done
//! in-process (parse or decode, one zstd Parquet file, fsync).

use std::fs::File;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::read_segment;
use ferry_protocols::{Measurement, Precision, lp};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use crate::common::{
    Args, Dataset, Hub, HubOptions, count, du, fresh_addr, human, percentile, post_lp,
    post_segment, rss_kib, secs, segment, start_hub,
};

const DATABASE: &str = "ingest";

/// One measured case.
struct Case {
    name: String,
    kind: &'static str,
    writers: usize,
    rows: u64,
    seconds: f64,
    latencies_ms: Vec<f64>,
    baseline: &'static str,
}

impl Case {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// Posts `bodies` (one queue per writer, each posted in order) with one
/// thread per writer; returns the wall time and every request's latency.
fn run_writers<F>(queues: Vec<Vec<(u64, Vec<u8>)>>, post: F) -> (f64, Vec<f64>)
where
    F: Fn(usize, u64, &[u8]) + Sync,
{
    let latencies = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, queue) in queues.iter().enumerate() {
            let post = &post;
            let latencies = &latencies;
            s.spawn(move || {
                let mut mine = Vec::with_capacity(queue.len());
                for (seq, body) in queue {
                    let t = Instant::now();
                    post(w, *seq, body);
                    mine.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                latencies.lock().expect("latencies").extend(mine);
            });
        }
    });
    let seconds = secs(start);
    (seconds, latencies.into_inner().expect("latencies"))
}

/// Splits `n` bodies round-robin over `writers` queues; sequence numbers
/// count from 1 in each queue.
fn deal<T>(items: Vec<T>, writers: usize) -> Vec<Vec<(u64, T)>> {
    let mut queues: Vec<Vec<(u64, T)>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        let q = &mut queues[i % writers];
        let seq = q.len() as u64 + 1;
        q.push((seq, item));
    }
    queues
}

fn zstd_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Baseline: parse every body with `ferry_protocols` (as the hub does:
/// owned readings, one `ReadingBatch` per body, sorted record batch) and
/// write all rows as one zstd Parquet file, then fsync it.
fn baseline_lp(bodies: &[Vec<u8>], dir: &std::path::Path) -> (u64, f64) {
    let path = dir.join("baseline-lp.parquet");
    let m = Measurement::new("baseline").expect("measurement");
    let start = Instant::now();
    let file = File::create(&path).expect("create");
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0u64;
    let mut file = Some(file);
    for body in bodies {
        let parsed = lp::parse(body, Precision::Ns, 0);
        assert!(parsed.is_clean(), "{:?}", parsed.errors.first());
        let batch = ReadingBatch::from_readings(m.clone(), &parsed.readings)
            .expect("batch")
            .to_record_batch()
            .expect("record batch");
        rows += batch.num_rows() as u64;
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                file.take().expect("file"),
                batch.schema(),
                Some(zstd_props()),
            )
            .expect("writer")
        });
        w.write(&batch).expect("write");
    }
    let file = writer.expect("rows").into_inner().expect("close");
    file.sync_all().expect("fsync");
    (rows, secs(start))
}

/// Baseline: decode and validate every segment (`read_segment`, as the hub
/// does) and write all rows as one zstd Parquet file, then fsync it.
fn baseline_segments(segments: &[Vec<u8>], dir: &std::path::Path) -> (u64, f64) {
    let path = dir.join("baseline-seg.parquet");
    let start = Instant::now();
    let mut file = Some(File::create(&path).expect("create"));
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0u64;
    for bytes in segments {
        let seg = read_segment(Bytes::from(bytes.clone())).expect("valid segment");
        for batch in &seg.batches {
            rows += batch.num_rows() as u64;
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(
                    file.take().expect("file"),
                    batch.schema(),
                    Some(zstd_props()),
                )
                .expect("writer")
            });
            w.write(batch).expect("write");
        }
    }
    let file = writer.expect("rows").into_inner().expect("close");
    file.sync_all().expect("fsync");
    (rows, secs(start))
}

pub(crate) fn run(args: &Args) -> Value {
    let rows_wanted = args.num("rows", 1_000_000);
    let devices = args.num("devices", 1000) as usize;
    let lp_lines = args.num("lp-lines", 5000) as usize;
    let seg_rows = args.num("segment-rows", 10_000) as usize;
    let writer_counts: Vec<usize> = args
        .text("writers", "1,4")
        .split(',')
        .map(|w| w.trim().parse().expect("--writers 1,4"))
        .collect();
    let options = HubOptions {
        commit_interval: args.text("commit-interval", "1s"),
        ..HubOptions::default()
    };
    assert!(
        lp_lines.is_multiple_of(devices) && seg_rows.is_multiple_of(devices),
        "--lp-lines and --segment-rows must be multiples of --devices"
    );
    let data = Dataset {
        devices,
        steps: (rows_wanted as usize).div_ceil(devices),
    };
    let rows = data.rows();
    eprintln!(
        "ingest: {rows} rows ({devices} devices x {} steps), LP bodies of {lp_lines} lines, \
         segments of {seg_rows} rows, hub commit_interval {}",
        data.steps, options.commit_interval
    );

    // Everything is encoded before the clock starts.
    let t = Instant::now();
    let lp_steps = lp_lines / devices;
    let lp_bodies: Vec<Vec<u8>> = (0..data.steps)
        .step_by(lp_steps)
        .map(|s| data.line_protocol("PLACEHOLDER", s, lp_steps))
        .collect();
    let lp_bytes: usize = lp_bodies.iter().map(Vec::len).sum();
    let seg_steps = seg_rows / devices;
    let batches: Vec<_> = (0..data.steps)
        .step_by(seg_steps)
        .map(|s| data.batch(s, seg_steps))
        .collect();
    eprintln!(
        "  encoded {} LP bodies ({:.1} MB) and {} batches in {:.1} s",
        lp_bodies.len(),
        lp_bytes as f64 / 1e6,
        batches.len(),
        secs(t)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let hub: Hub = start_hub(dir.path(), fresh_addr(), &options);
    let mut cases: Vec<Case> = Vec::new();

    for &writers in &writer_counts {
        let m = format!("lp_w{writers}");
        let bodies: Vec<Vec<u8>> = lp_bodies
            .iter()
            .map(|b| replace_measurement(b, &m))
            .collect();
        let (seconds, latencies_ms) = run_writers(deal(bodies, writers), |_, _, body| {
            post_lp(&hub, DATABASE, body)
        });
        let n = count(&hub, &format!("{DATABASE}.{m}"));
        assert_eq!(n, rows, "{m}: rows in the table");
        cases.push(Case {
            name: format!("line protocol, {writers} writer(s), {lp_lines} lines/request"),
            kind: "lp",
            writers,
            rows,
            seconds,
            latencies_ms,
            baseline: "lp",
        });
        report_progress(cases.last());
    }
    let mut segment_bytes: Vec<Vec<u8>> = Vec::new();
    for &writers in &writer_counts {
        let m = format!("seg_w{writers}");
        let queues: Vec<Vec<(u64, Vec<u8>)>> = deal(batches.clone(), writers)
            .into_iter()
            .enumerate()
            .map(|(w, q)| {
                q.into_iter()
                    .map(|(seq, b)| (seq, segment(&agent(&m, w), seq, DATABASE, &m, &b)))
                    .collect()
            })
            .collect();
        if segment_bytes.is_empty() {
            segment_bytes = queues.iter().flatten().map(|(_, b)| b.clone()).collect();
        }
        let (seconds, latencies_ms) = run_writers(queues, |w, seq, body| {
            post_segment(&hub, &agent(&m, w), seq, body)
        });
        let n = count(&hub, &format!("{DATABASE}.{m}"));
        assert_eq!(n, rows, "{m}: rows in the table");
        cases.push(Case {
            name: format!("segments, {writers} writer(s), {seg_rows} rows/segment"),
            kind: "segment",
            writers,
            rows,
            seconds,
            latencies_ms,
            baseline: "segment",
        });
        report_progress(cases.last());
    }
    let hub_rss = rss_kib(hub.peer.id());
    let table_bytes = du(&dir.path().join("tables"));
    drop(hub);

    // Baselines, same rows, same machine, after the hub is gone.
    let lp_base_bodies: Vec<Vec<u8>> = lp_bodies
        .iter()
        .map(|b| replace_measurement(b, "baseline"))
        .collect();
    let (b_rows, b_secs) = baseline_lp(&lp_base_bodies, dir.path());
    assert_eq!(b_rows, rows);
    let lp_base = rows as f64 / b_secs;
    let (s_rows, s_secs) = baseline_segments(&segment_bytes, dir.path());
    assert_eq!(s_rows, rows);
    let seg_base = rows as f64 / s_secs;
    let seg_bytes: usize = segment_bytes.iter().map(Vec::len).sum();

    println!(
        "\n### Hub ingest ({rows} rows per case, hub commit_interval {})\n",
        options.commit_interval
    );
    println!("| case | rows/s | p50 request | p99 request | vs baseline |");
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: `lp::parse` + `ReadingBatch` + one zstd Parquet file + fsync | {} | — | — | 1× |",
        human(lp_base)
    );
    println!(
        "| baseline: `read_segment` + one zstd Parquet file + fsync | {} | — | — | 1× |",
        human(seg_base)
    );
    let mut out_cases = Vec::new();
    for c in &cases {
        let base = if c.baseline == "lp" {
            lp_base
        } else {
            seg_base
        };
        println!(
            "| hub: {} | {} | {:.0} ms | {:.0} ms | {:.3}× |",
            c.name,
            human(c.rate()),
            percentile(&c.latencies_ms, 0.5),
            percentile(&c.latencies_ms, 0.99),
            c.rate() / base
        );
        out_cases.push(json!({
            "name": c.name, "kind": c.kind, "writers": c.writers, "rows": c.rows,
            "seconds": c.seconds, "rows_per_s": c.rate(),
            "p50_ms": percentile(&c.latencies_ms, 0.5),
            "p99_ms": percentile(&c.latencies_ms, 0.99),
            "requests": c.latencies_ms.len(),
            "baseline_rows_per_s": base, "ratio_vs_baseline": c.rate() / base,
        }));
    }
    println!(
        "\nLP: {:.1} MB in {} bodies; segments: {:.1} MB; tables on disk {:.1} MB; hub RSS after the run {} KiB",
        lp_bytes as f64 / 1e6,
        lp_bodies.len(),
        seg_bytes as f64 / 1e6,
        table_bytes as f64 / 1e6,
        hub_rss.unwrap_or(0)
    );
    json!({
        "rows_per_case": rows, "devices": devices, "lp_lines_per_request": lp_lines,
        "segment_rows": seg_rows, "commit_interval": options.commit_interval,
        "lp_bytes": lp_bytes, "segment_bytes": seg_bytes, "table_bytes": table_bytes,
        "hub_rss_kib": hub_rss,
        "baselines": {
            "lp_parse_parquet_fsync": {"rows_per_s": lp_base, "seconds": b_secs},
            "segment_decode_parquet_fsync": {"rows_per_s": seg_base, "seconds": s_secs},
        },
        "cases": out_cases,
    })
}

fn agent(m: &str, w: usize) -> String {
    format!("bench-{}-w{w}", m.replace('_', "-"))
}

fn report_progress(c: Option<&Case>) {
    if let Some(c) = c {
        eprintln!(
            "  {}: {} rows/s ({} rows in {:.1} s)",
            c.name,
            human(c.rate()),
            c.rows,
            c.seconds
        );
    }
}

/// The bodies are built once with a placeholder measurement (same length
/// class) and renamed per case so each case writes its own table.
fn replace_measurement(body: &[u8], m: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("utf-8");
    let mut out = String::with_capacity(body.len());
    for line in text.lines() {
        out.push_str(m);
        out.push_str(line.strip_prefix("PLACEHOLDER").unwrap_or(line));
        out.push('\n');
    }
    out.into_bytes()
}
