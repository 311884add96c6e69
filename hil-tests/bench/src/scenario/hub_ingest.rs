//! Hub ingest: line protocol (`POST /api/v1/write/line-protocol`) and
//! segments (`POST /api/v1/segments`) into a real hub, every answer after
//! the durable Delta commit, with 1 and 4 concurrent writers, at the hub's
//! default `commit_interval` (0 s: group commit) and at 1 s (the default
//! before group commit). Baseline, same rows, same
//! run: the floor of the work any ingest must do, in-process and on one
//! thread (parse or decode, one zstd Parquet file, fsync).

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::read_segment;
use ferry_protocols::{Measurement, Precision, lp};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::dataset::{Dataset, segment};
use crate::procs::{HubOptions, du, fresh_addr, rss_kib, start_hub, threads};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const DATABASE: &str = "ingest";
const WRITERS: [usize; 2] = [1, 4];

/// Posts each queue's bodies in order, one thread per queue; the wall time
/// and every request's latency (ms).
fn run_writers<F>(queues: &[Vec<(u64, Vec<u8>)>], post: F) -> (f64, Vec<f64>)
where
    F: Fn(usize, u64, &[u8]) + Sync,
{
    let latencies = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, queue) in queues.iter().enumerate() {
            let (post, latencies) = (&post, &latencies);
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
    let seconds = start.elapsed().as_secs_f64();
    (seconds, latencies.into_inner().expect("latencies"))
}

/// Deals items round-robin over `writers` queues; sequences count from 1.
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

/// Writes `batches` into one zstd Parquet file and fsyncs it; the rows.
fn write_parquet(path: &Path, batches: impl Iterator<Item = arrow_array::RecordBatch>) -> u64 {
    let mut file = Some(File::create(path).expect("create baseline file"));
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows() as u64;
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                file.take().expect("one file"),
                batch.schema(),
                Some(zstd_props()),
            )
            .expect("writer")
        });
        w.write(&batch).expect("write");
    }
    let file = writer.expect("rows").into_inner().expect("close");
    file.sync_all().expect("fsync");
    rows
}

/// Baseline rows/s: `lp::parse` + `ReadingBatch` + record batch (the hub's
/// handler), one Parquet file, fsync.
fn baseline_lp(bodies: &[Vec<u8>], dir: &Path) -> f64 {
    let m = Measurement::new("baseline").expect("measurement");
    let start = Instant::now();
    let rows = write_parquet(
        &dir.join("baseline-lp.parquet"),
        bodies.iter().map(|body| {
            let parsed = lp::parse(body, Precision::Ns, 0);
            assert!(parsed.is_clean(), "{:?}", parsed.errors.first());
            ReadingBatch::from_readings(m.clone(), &parsed.readings)
                .expect("batch")
                .to_record_batch()
                .expect("record batch")
        }),
    );
    rows as f64 / start.elapsed().as_secs_f64()
}

/// Baseline rows/s: `read_segment` (validation, checksum), one Parquet file, fsync.
fn baseline_segments(segments: &[Vec<u8>], dir: &Path) -> f64 {
    let start = Instant::now();
    let rows = write_parquet(
        &dir.join("baseline-seg.parquet"),
        segments.iter().flat_map(|bytes| {
            read_segment(Bytes::from(bytes.clone()))
                .expect("valid segment")
                .batches
        }),
    );
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The bodies are built once with a placeholder measurement and renamed per
/// case so each case writes its own table.
fn rename(body: &[u8], m: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("utf-8");
    let mut out = String::with_capacity(body.len() + 1024);
    for line in text.lines() {
        out.push_str(m);
        out.push_str(line.strip_prefix("PLACEHOLDER").unwrap_or(line));
        out.push('\n');
    }
    out.into_bytes()
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new(
        "hub-ingest",
        "Hub ingest: line protocol and segments, HTTP → committed",
    );
    let (devices, lp_lines, seg_rows, large) = (
        scale.ingest_devices,
        scale.ingest_lp_lines,
        scale.ingest_segment_rows,
        scale.ingest_lp_lines_large,
    );
    s.intro = format!(
        "A release hub (fs tables, auth on), {devices} devices, 4 float fields and 3 tags per row (133 B per LP line). \
         Line protocol in bodies of {lp_lines} lines (and {large_total} rows in bodies of {large} lines, 4 writers, \
         at the default `commit_interval`); segments of {seg_rows} rows (the agent's default `segment.max_rows`), \
         one agent id per writer. Each writer keeps one request in flight; every answer comes after the durable Delta commit, \
         and each case's `count(*)` is checked. Bodies and segments are encoded before the clock starts. {} run(s). \
         Baseline (same rows, same run, one thread, in-process): the same LP bodies through `lp::parse` + `ReadingBatch` + \
         `to_record_batch` (what the hub's handler does), and the same segments through `read_segment`, each written as one \
         zstd Parquet file and fsynced: the floor of the work, without Delta, HTTP or partitioning.",
        scale.runs,
        large_total = scale.ingest_rows_large,
    );
    let mut details = Vec::new();
    for (interval, rows_wanted) in [
        ("0s", scale.ingest_rows_fast_commit),
        ("1s", scale.ingest_rows_default_commit),
    ] {
        let data = Dataset {
            devices,
            steps: (rows_wanted as usize).div_ceil(devices),
        };
        let rows = data.rows();
        let lp_steps = (lp_lines / devices).max(1);
        let lp_bodies: Vec<Vec<u8>> = (0..data.steps)
            .step_by(lp_steps)
            .map(|st| data.line_protocol("PLACEHOLDER", st, lp_steps))
            .collect();
        // The large bodies only at the default interval: the figure the
        // issue asks for (4 writers, 10,000 lines).
        let large_steps = (large / devices).max(1);
        let large_data = Dataset {
            devices,
            steps: (scale.ingest_rows_large as usize).div_ceil(devices),
        };
        let large_rows = large_data.rows();
        let large_bodies: Vec<Vec<u8>> = if interval == "0s" {
            (0..large_data.steps)
                .step_by(large_steps)
                .map(|st| large_data.line_protocol("PLACEHOLDER", st, large_steps))
                .collect()
        } else {
            Vec::new()
        };
        let (mut large_rates, mut large_p50s) = (Vec::new(), Vec::new());
        let seg_steps = (seg_rows / devices).max(1);
        let batches: Vec<_> = (0..data.steps)
            .step_by(seg_steps)
            .map(|st| data.batch(st, seg_steps))
            .collect();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let (mut base_lp, mut base_seg) = (Vec::new(), Vec::new());
        let (mut hub_rss, mut hub_threads) = (0, 0);
        let mut table_bytes = 0;
        for run in 0..scale.runs {
            let rdir = dir.join(format!("ingest-{interval}-{run}"));
            std::fs::create_dir_all(&rdir).expect("run dir");
            let hub = start_hub(
                &rdir,
                fresh_addr(),
                &HubOptions {
                    commit_interval: interval.to_owned(),
                    compaction: false,
                    ..HubOptions::default()
                },
            );
            let mut all_segments = Vec::new();
            for (wi, &writers) in WRITERS.iter().enumerate() {
                let m = format!("lp_w{writers}");
                let bodies: Vec<Vec<u8>> = lp_bodies.iter().map(|b| rename(b, &m)).collect();
                let (secs, lat) = run_writers(&deal(bodies, writers), |_, _, body| {
                    hub.post_lp(DATABASE, body)
                });
                assert_eq!(
                    hub.count(&format!("{DATABASE}.{m}")),
                    rows,
                    "{m}: rows in the table"
                );
                rates[wi].push(rows as f64 / secs);
                p50s[wi].push(percentile(&lat, 0.5));
                eprintln!(
                    "  {interval} run {}: LP {writers} writer(s): {:.0} rows/s",
                    run + 1,
                    rows as f64 / secs
                );
            }
            if !large_bodies.is_empty() {
                let m = "lp_large_w4";
                let bodies: Vec<Vec<u8>> = large_bodies.iter().map(|b| rename(b, m)).collect();
                let (secs, lat) =
                    run_writers(&deal(bodies, 4), |_, _, body| hub.post_lp(DATABASE, body));
                assert_eq!(
                    hub.count(&format!("{DATABASE}.{m}")),
                    large_rows,
                    "{m}: rows in the table"
                );
                large_rates.push(large_rows as f64 / secs);
                large_p50s.push(percentile(&lat, 0.5));
                eprintln!(
                    "  {interval} run {}: LP {large}-line bodies, 4 writers: {:.0} rows/s",
                    run + 1,
                    large_rows as f64 / secs
                );
            }
            for (wi, &writers) in WRITERS.iter().enumerate() {
                let m = format!("seg_w{writers}");
                let agent = |w: usize| format!("bench-seg-w{writers}-{w}");
                let queues: Vec<Vec<(u64, Vec<u8>)>> = deal(batches.clone(), writers)
                    .into_iter()
                    .enumerate()
                    .map(|(w, q)| {
                        q.into_iter()
                            .map(|(seq, b)| (seq, segment(&agent(w), seq, DATABASE, &m, &b)))
                            .collect()
                    })
                    .collect();
                if all_segments.is_empty() {
                    all_segments = queues.iter().flatten().map(|(_, b)| b.clone()).collect();
                }
                let (secs, lat) = run_writers(&queues, |w, seq, body| {
                    hub.post_segment(&agent(w), seq, body)
                });
                assert_eq!(
                    hub.count(&format!("{DATABASE}.{m}")),
                    rows,
                    "{m}: rows in the table"
                );
                rates[2 + wi].push(rows as f64 / secs);
                p50s[2 + wi].push(percentile(&lat, 0.5));
                eprintln!(
                    "  {interval} run {}: segments {writers} writer(s): {:.0} rows/s",
                    run + 1,
                    rows as f64 / secs
                );
            }
            hub_rss = rss_kib(hub.peer.id());
            hub_threads = threads(hub.peer.id());
            table_bytes = du(&rdir.join("tables"));
            drop(hub);
            let lp_base: Vec<Vec<u8>> = lp_bodies.iter().map(|b| rename(b, "baseline")).collect();
            base_lp.push(baseline_lp(&lp_base, &rdir));
            base_seg.push(baseline_segments(&all_segments, &rdir));
            let _ = std::fs::remove_dir_all(&rdir);
        }
        let unit = Unit::Rate("row");
        let lp_floor = "LP parse + Parquet + fsync, 1 thread";
        let seg_floor = "segment decode + Parquet + fsync, 1 thread";
        for (wi, writers) in WRITERS.iter().enumerate() {
            s.compare(Comparison::new(
                format!("`commit_interval = {interval}`: LP, {writers} writer(s)"),
                unit,
                &rates[wi],
                lp_floor,
                &base_lp,
            ));
        }
        if !large_rates.is_empty() {
            s.compare(Comparison::new(
                format!("`commit_interval = {interval}`: LP, 4 writers, {large}-line bodies"),
                unit,
                &large_rates,
                lp_floor,
                &base_lp,
            ));
        }
        for (wi, writers) in WRITERS.iter().enumerate() {
            s.compare(Comparison::new(
                format!("`commit_interval = {interval}`: segments, {writers} writer(s)"),
                unit,
                &rates[2 + wi],
                seg_floor,
                &base_seg,
            ));
        }
        let p50 = |i: usize| crate::stats::Stats::of(&p50s[i]).median;
        s.note(format!(
            "`commit_interval = {interval}`, {rows} rows per case: request p50 LP {:.0} / {:.0} ms, segments {:.0} / {:.0} ms \
             (1 / 4 writers); tables {:.1} MB; hub RSS after the run {:.0} MiB, {hub_threads} threads.",
            p50(0),
            p50(1),
            p50(2),
            p50(3),
            table_bytes as f64 / 1e6,
            hub_rss as f64 / 1024.0
        ));
        details.push(json!({
            "commit_interval": interval, "rows_per_case": rows,
            "lp_w1": rates[0], "lp_w4": rates[1], "seg_w1": rates[2], "seg_w4": rates[3],
            "lp_large_w4": large_rates, "lp_large_p50_ms": large_p50s,
            "p50_ms": {"lp_w1": p50s[0], "lp_w4": p50s[1], "seg_w1": p50s[2], "seg_w4": p50s[3]},
            "baseline_lp": base_lp, "baseline_segments": base_seg,
            "table_bytes": table_bytes, "hub_rss_kib": hub_rss, "hub_threads": hub_threads,
        }));
    }
    s.note(
        "\nAt the default `commit_interval = 0s` (group commit) a write commits as soon as the table's previous commit has \
         finished, with everything queued meanwhile. At `1s`, a write smaller than `tables.early_commit_rows` (10,000) waits \
         up to a second for company, so a writer with one such request in flight gets about one request per second. A \
         segment of 10,000 rows commits at once, with what is queued behind it. The ratio against the single-threaded floor is that window plus HTTP, the Delta commit and \
         partitioning.",
    );
    s.details = json!({"cases": details});
    s
}
