//! Line protocol throughput: Ferry's zero-copy parser against InfluxData's
//! `influxdb_line_protocol` on the same telegraf-like body, plus Ferry's
//! parse into owned readings and its writer.
//!
//! Each benchmark runs twice: once in bytes/s (`lp_bytes`) and once in
//! lines/s (`lp_lines`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_protocols::Precision;
use ferry_protocols::lp;

const LINES: usize = 10_000;

/// A small xorshift generator: deterministic bodies without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pct(&mut self) -> f64 {
        (self.below(10_000) as f64) / 100.0
    }
}

/// `LINES` lines in the shape telegraf writes: cpu, mem, disk, net (with
/// escaped tag values), system (with a string field), and a few booleans.
fn telegraf_body() -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut body = String::new();
    let mut ts: i64 = 1_700_000_000_000_000_000;
    for i in 0..LINES {
        let host = format!("server{:02}", rng.below(50));
        let region = ["us-west", "us-east", "eu-central", "ap-south"][rng.below(4) as usize];
        ts += 1_000_000 + rng.below(1_000) as i64;
        let line = match i % 10 {
            0..=4 => format!(
                "cpu,host={host},region={region},cpu=cpu{} usage_user={},usage_system={},usage_idle={},count={}i {ts}",
                rng.below(8),
                rng.pct(),
                rng.pct(),
                rng.pct(),
                rng.below(1_000),
            ),
            5 => format!(
                "mem,host={host},region={region} active={}i,available={}i,available_percent={},used_percent={},buffered=0i {ts}",
                rng.below(1 << 34),
                rng.below(1 << 34),
                rng.pct(),
                rng.pct(),
            ),
            6 => format!(
                "disk,device=sda{},fstype=ext4,host={host},mode=rw,path=/var/lib/data free={}u,inodes_used={}u,used_percent={} {ts}",
                rng.below(4),
                rng.below(1 << 40),
                rng.below(1 << 20),
                rng.pct(),
            ),
            7 => format!(
                "net,host={host},interface=Local\\ Area\\ Connection\\ {},vendor=Acme\\,\\ Inc. bytes_recv={}i,bytes_sent={}i,err_in=0i,drop_in=0i {ts}",
                rng.below(4),
                rng.below(1 << 40),
                rng.below(1 << 40),
            ),
            8 => format!(
                "system,host={host},region={region} load1={},load5={},n_cpus=8i,uptime={}u,uptime_format=\"{} days, {:2}:{:02}\" {ts}",
                rng.pct() / 10.0,
                rng.pct() / 10.0,
                rng.below(1 << 24),
                rng.below(400),
                rng.below(24),
                rng.below(60),
            ),
            _ => format!(
                "service,host={host},name=ferry-agent running={},healthy={},restarts={}i,message=\"ok: \\\"all good\\\"\" {ts}",
                ["t", "true", "TRUE"][rng.below(3) as usize],
                ["f", "false", "True"][rng.below(3) as usize],
                rng.below(5),
            ),
        };
        body.push_str(&line);
        body.push('\n');
    }
    body
}

fn benches(c: &mut Criterion) {
    let body = telegraf_body();
    let bytes = body.as_bytes();

    // Both parsers must accept every line, or the comparison means nothing.
    let ferry_ok = lp::parse_lines(bytes).filter(Result::is_ok).count();
    let influx_ok = influxdb_line_protocol::parse_lines(&body)
        .filter(Result::is_ok)
        .count();
    assert_eq!((ferry_ok, influx_ok), (LINES, LINES));
    let readings = lp::parse(bytes, Precision::Ns, 0).readings;
    assert_eq!(readings.len(), LINES);
    let mut written = String::with_capacity(body.len() * 2);
    lp::write_readings(&readings, Precision::Ns, &mut written).expect("writable");
    eprintln!(
        "body: {LINES} lines, {} bytes ({:.1} bytes/line); writer output: {} bytes",
        body.len(),
        body.len() as f64 / LINES as f64,
        written.len()
    );

    for (group_name, unit) in [
        ("lp_bytes", Throughput::Bytes(body.len() as u64)),
        ("lp_lines", Throughput::Elements(LINES as u64)),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(unit);
        group.bench_function("ferry_zero_copy", |b| {
            b.iter(|| {
                for line in lp::parse_lines(black_box(bytes)) {
                    let _ = black_box(line);
                }
            })
        });
        group.bench_function("influxdata_parse_lines", |b| {
            b.iter(|| {
                for line in influxdb_line_protocol::parse_lines(black_box(&body)) {
                    let _ = black_box(line);
                }
            })
        });
        group.bench_function("ferry_owned_readings", |b| {
            b.iter(|| black_box(lp::parse(black_box(bytes), Precision::Ns, 0)))
        });
        if group_name == "lp_bytes" {
            // Bytes written, not bytes parsed.
            group.throughput(Throughput::Bytes(written.len() as u64));
        }
        let mut out = String::with_capacity(written.len());
        group.bench_function("ferry_writer", |b| {
            b.iter(|| {
                out.clear();
                lp::write_readings(black_box(&readings), Precision::Ns, &mut out)
                    .expect("writable");
                black_box(out.len())
            })
        });
        group.finish();
    }
}

criterion_group!(line_protocol, benches);
criterion_main!(line_protocol);
