//! Replicas: what several hubs on one lake cost, against one hub doing the
//! same in the same run. Two writers (`multi_writer`, the shared metadata
//! log, the maintenance lease) and a reader (`max_staleness = 1s`) over one
//! table directory, auth on.
//!
//! - Query: `SELECT count(*), avg(v) FROM rep.t` over 200,000 rows
//!   (`--quick`: 20,000), median latency on the reader against the same
//!   query on the writer that wrote them.
//! - Freshness: a row acknowledged by writer A, the time until the reader's
//!   answer has it, against the time until writer A's own answer has it.
//! - Tokens: a token created on writer A, the time until writer B and the
//!   reader accept it, against the time until A accepts it.
//! - Ingest: line-protocol rows/s into writer A with the shared metadata
//!   log and lease on, against a hub alone on its tables (the same body,
//!   the same count, the same run).
//! - Each freshness and token sample starts after a pause that varies
//!   (0–997 ms), so that the samples spread over the followers' polling
//!   interval instead of locking onto its phase.
//! - Lease: the time from `kill -9` of the holder to the other writer
//!   holding it (`lease_ttl = 1s`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_hil_tests::shared_hubs::{Lake, Role};
use ferry_hil_tests::{free_port, http, query};

use crate::procs::{HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const T0: u64 = 1_700_000_000_000_000_000;

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

fn post_lp(hub: SocketAddr, token: &str, body: &[u8]) {
    let (status, text) = http(
        "POST",
        hub,
        "/api/v1/write/line-protocol?db=rep",
        &[("Authorization", &auth(token))],
        body,
    );
    assert!(status < 300, "write: {status} {text}");
}

fn rows(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("t,site=s{} v={i} {}\n", i % 10, T0 + i as u64))
        .collect()
}

/// Median of `n` timings of `sql` on `hub`, ms, after one untimed run.
fn time_query(hub: SocketAddr, token: &str, sql: &str, n: usize) -> Vec<f64> {
    query(hub, Some(token), sql).expect("query");
    (0..n)
        .map(|_| {
            let t = Instant::now();
            query(hub, Some(token), sql).expect("query");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// A pause of 0–997 ms that differs between samples, so that samples do
/// not lock onto the followers' polling phase (a loop that starts each
/// sample right after the last was seen always waits a whole interval).
fn stagger(i: usize) {
    std::thread::sleep(Duration::from_millis((i as u64 * 379) % 997));
}

/// Polls `ok` every 5 ms; the time it took, ms (fails past 10 s).
fn until(mut ok: impl FnMut() -> bool) -> f64 {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "not within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.elapsed().as_secs_f64() * 1000.0
}

fn max_v(hub: SocketAddr, token: &str) -> Option<i64> {
    query(hub, Some(token), "SELECT max(v) FROM rep.fresh")?["data"][0][0].as_i64()
}

fn accepts(hub: SocketAddr, token: &str) -> bool {
    http(
        "GET",
        hub,
        "/api/v1/auth/whoami",
        &[("Authorization", &auth(token))],
        b"",
    )
    .0 == 200
}

fn create_token(hub: SocketAddr, admin: &str, name: &str) -> String {
    let (status, body) = http(
        "POST",
        hub,
        "/api/v1/auth/tokens",
        &[
            ("Authorization", &auth(admin)),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"name": "{name}", "role": "read"}}"#).as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

fn holds_lease(hub: SocketAddr) -> bool {
    let (_, text) = http("GET", hub, "/metrics", &[], b"");
    text.contains("ferry_hub_maintenance_lease_held 1")
}

/// Rows/s of `bodies` line-protocol bodies of `per` rows into `hub`.
fn ingest(hub: SocketAddr, token: &str, bodies: usize, per: usize) -> f64 {
    let t = Instant::now();
    for b in 0..bodies {
        post_lp(hub, token, rows(1_000_000 + b * per, per).as_bytes());
    }
    (bodies * per) as f64 / t.elapsed().as_secs_f64()
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let total: usize = if scale.quick { 20_000 } else { 200_000 };
    let samples = if scale.quick { 5 } else { 30 };
    let mut section = Section::new(
        "replicas",
        "Replicas: two writers and a reader on one lake, against one hub",
    );
    let lake_dir = dir.join("lake");
    std::fs::create_dir_all(&lake_dir).expect("lake dir");
    let lake = Lake::fs(&lake_dir).with_auth();
    let [a, b, r] = [0; 3].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
    let mut hub_a = lake.launch("hub-a", a, Role::Writer, 0);
    let admin = lake.admin_token("hub-a", 0);
    let mut hub_b = lake.launch("hub-b", b, Role::Writer, 0);
    let _reader = lake.launch("reader", r, Role::Reader(Duration::from_secs(1)), 0);

    // Query cost on the reader against the writer.
    for chunk in 0..total / 10_000 {
        post_lp(a, &admin, rows(chunk * 10_000, 10_000).as_bytes());
    }
    let sql = "SELECT count(*), avg(v) FROM rep.t";
    until(|| {
        query(r, Some(&admin), sql).is_some_and(|v| v["data"][0][0].as_u64() >= Some(total as u64))
    });
    let on_writer = time_query(a, &admin, sql, samples);
    let on_reader = time_query(r, &admin, sql, samples);
    section.compare(Comparison::new(
        format!("`{sql}` over {total} rows on the reader"),
        Unit::Ms,
        &on_reader,
        "the same query on the writer",
        &on_writer,
    ));

    // Freshness: acknowledged by A, visible on the reader vs on A.
    let (mut lag_r, mut lag_a) = (Vec::new(), Vec::new());
    for i in 0..samples as i64 {
        stagger(i as usize);
        post_lp(a, &admin, format!("fresh v={i}i").as_bytes());
        let t = Instant::now();
        lag_a.push(until(|| max_v(a, &admin) == Some(i)));
        until(|| max_v(r, &admin) == Some(i));
        lag_r.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    section.compare(Comparison::new(
        "a row acknowledged by writer A, visible on the reader (max_staleness 1 s)",
        Unit::Ms,
        &lag_r,
        "visible on writer A",
        &lag_a,
    ));

    // Tokens: made on A, accepted by B and the reader vs by A.
    let (mut on_a, mut on_b, mut on_r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples.min(10) {
        stagger(i);
        let token = create_token(a, &admin, &format!("bench-{i}"));
        let t = Instant::now();
        on_a.push(until(|| accepts(a, &token)));
        let (mut b_done, mut r_done) = (None, None);
        until(|| {
            if b_done.is_none() && accepts(b, &token) {
                b_done = Some(t.elapsed().as_secs_f64() * 1000.0);
            }
            if r_done.is_none() && accepts(r, &token) {
                r_done = Some(t.elapsed().as_secs_f64() * 1000.0);
            }
            b_done.is_some() && r_done.is_some()
        });
        on_b.extend(b_done);
        on_r.extend(r_done);
    }
    section.compare(Comparison::new(
        "a token made on writer A, accepted by writer B (max_staleness 2 s)",
        Unit::Ms,
        &on_b,
        "accepted by writer A",
        &on_a,
    ));
    section.compare(Comparison::new(
        "a token made on writer A, accepted by the reader (max_staleness 1 s)",
        Unit::Ms,
        &on_r,
        "accepted by writer A",
        &on_a,
    ));

    // Ingest with the shared log and lease on, against a hub alone.
    let (bodies, per) = if scale.quick {
        (20, 1_000)
    } else {
        (100, 2_000)
    };
    let shared = ingest(a, &admin, bodies, per);
    let alone_dir = dir.join("alone");
    std::fs::create_dir_all(&alone_dir).expect("alone dir");
    let mut alone = start_hub(
        &alone_dir,
        fresh_addr(),
        &HubOptions {
            commit_interval: "50ms".to_owned(),
            ..HubOptions::default()
        },
    );
    let alone_token = alone.token.clone().expect("admin token");
    let single = ingest(alone.addr, &alone_token, bodies, per);
    alone.stop();
    section.compare(Comparison::new(
        format!("line protocol into writer A, {bodies} bodies of {per} rows, one client"),
        Unit::Rate("rows"),
        &[shared],
        "a hub alone on its tables",
        &[single],
    ));

    // Lease takeover.
    until(|| holds_lease(a) || holds_lease(b));
    let other = if holds_lease(a) {
        hub_a.kill();
        b
    } else {
        hub_b.kill();
        a
    };
    let takeover = until(|| holds_lease(other));
    section.note(format!(
        "maintenance lease: the other writer held it {takeover:.0} ms after kill -9 of the holder (lease_ttl 1 s; p50s: reader query {:.1} ms vs writer {:.1} ms)",
        percentile(&on_reader, 0.5),
        percentile(&on_writer, 0.5),
    ));
    section
}
