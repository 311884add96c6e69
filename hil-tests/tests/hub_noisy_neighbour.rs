//! One client cannot hurt another (the hub as a shared service), against
//! the `ferry-hub` binary over real HTTP.
//!
//! A hostile read token sends four runaway queries at once (a 10^13-row
//! cross join, a distinct count and an `array_agg` over 3·10^8 rows, and a
//! sort of 3·10^8 rows). Each is answered 504 or a 4xx within
//! `query.timeout` + 1 s. Meanwhile a second client's small queries, line
//! protocol writes and segment uploads keep a median under 0.5 s and a
//! worst round under half the timeout (a stalled client would wait the
//! whole timeout), and every row they wrote is in the tables.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry_hil_tests::{Answer, free_port, request, spawn_hub, wait_until};
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::{SegmentHeader, SegmentSeq, write_segment};
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldValue, Measurement, Reading};
use serde_json::{Value, json};

const TIMEOUT_S: u64 = 4;

const RUNAWAY: [&str; 4] = [
    "SELECT count(*) FROM (SELECT a.value FROM generate_series(1, 100000000) a, generate_series(1, 100000) b)",
    "SELECT count(DISTINCT value) FROM generate_series(1, 300000000)",
    "SELECT array_length(array_agg(value)) FROM generate_series(1, 300000000)",
    "SELECT value FROM generate_series(1, 300000000) ORDER BY value DESC",
];

fn call(hub: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> Answer {
    let auth = format!("Bearer {token}");
    request(
        method,
        hub,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
        Duration::from_secs(60),
    )
}

fn token(hub: SocketAddr, admin: &str, spec: Value) -> String {
    let a = call(
        hub,
        "POST",
        "/api/v1/auth/tokens",
        admin,
        spec.to_string().as_bytes(),
    );
    assert_eq!(a.status, 201, "create token: {}", a.text());
    a.json()["token"].as_str().expect("token").to_owned()
}

fn query(hub: SocketAddr, token: &str, sql: &str) -> Answer {
    let body = json!({ "sql": sql, "database": "plant" }).to_string();
    call(hub, "POST", "/api/v1/query", token, body.as_bytes())
}

fn segment(agent: &str, seq: u64, rows: usize) -> Vec<u8> {
    let m = Measurement::new("boiler").expect("name");
    let readings: Vec<Reading> = (0..rows)
        .map(|i| {
            Reading::new(
                m.clone(),
                1_700_000_000_000_000_000 + (seq * 1000 + i as u64) as i64,
            )
            .with_field(
                FieldKey::new("temp").expect("name"),
                FieldValue::F64(i as f64),
            )
        })
        .collect();
    let batch = ReadingBatch::from_readings(m.clone(), &readings)
        .expect("batch")
        .to_record_batch()
        .expect("record batch");
    let header = SegmentHeader {
        agent_id: AgentId::new(agent).expect("id"),
        sequence: SegmentSeq(seq),
        first_reading_id: seq * 1000,
        last_reading_id: seq * 1000 + rows as u64 - 1,
        database: DatabaseName::new("plant").expect("name"),
        measurement: m,
    };
    write_segment(&header, &batch).expect("segment")
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn p99(v: Vec<f64>) -> f64 {
    quantile(v, 0.99)
}

fn median(v: Vec<f64>) -> f64 {
    quantile(v, 0.5)
}

fn start(dir: &Path) -> (ferry_hil_tests::Peer, SocketAddr, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n\
             [auth]\nenabled = true\n[query]\ntimeout = \"{TIMEOUT_S}s\"\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let (peer, admin) = spawn_hub(&config, addr, &dir.join("hub.log"), true);
    (peer, addr, admin.expect("bootstrap token"))
}

#[test]
fn runaway_queries_do_not_hurt_a_second_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_hub, hub, admin) = start(dir.path());
    let hostile = token(hub, &admin, json!({"name": "hostile", "role": "read"}));
    let reader = token(hub, &admin, json!({"name": "dashboard", "role": "read"}));
    let writer = token(hub, &admin, json!({"name": "telegraf", "role": "write"}));
    let gateway = token(
        hub,
        &admin,
        json!({"name": "gw-1", "role": "write", "agents": "gw-1"}),
    );
    let a = call(
        hub,
        "POST",
        "/write?db=plant",
        &writer,
        b"lp,site=a v=0 1700000000000000000",
    );
    assert_eq!(a.status, 204, "{}", a.text());

    let done = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = RUNAWAY
        .iter()
        .map(|sql| {
            let hostile = hostile.clone();
            thread::spawn(move || {
                let t = Instant::now();
                let a = query(hub, &hostile, sql);
                let retry = a.header("retry-after").is_some();
                (sql, a.status, retry, a.text(), t.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    let victim = {
        let done = done.clone();
        let reader = reader.clone();
        thread::spawn(move || {
            let (mut q, mut w, mut s) = (Vec::new(), Vec::new(), Vec::new());
            let mut i = 1u64;
            while !done.load(Ordering::SeqCst) {
                let t = Instant::now();
                let a = query(hub, &reader, "SELECT count(*) AS n FROM lp");
                assert_eq!(a.status, 200, "small query: {}", a.text());
                q.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let body = format!("lp,site=a v={i} {}", 1_700_000_000_000_000_000u64 + i);
                let a = call(hub, "POST", "/write?db=plant", &writer, body.as_bytes());
                assert_eq!(a.status, 204, "line protocol write: {}", a.text());
                w.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let auth = format!("Bearer {gateway}");
                let a = request(
                    "POST",
                    hub,
                    "/api/v1/segments",
                    &[
                        ("Authorization", auth.as_str()),
                        ("x-ferry-agent-id", "gw-1"),
                        ("Content-Type", "application/vnd.ferry.segment+parquet"),
                    ],
                    &segment("gw-1", i, 100),
                    Duration::from_secs(60),
                );
                assert_eq!(a.status, 200, "segment upload: {}", a.text());
                s.push(t.elapsed().as_secs_f64());
                i += 1;
            }
            (q, w, s, i - 1)
        })
    };

    for attacker in attackers {
        let (sql, status, retry, text, elapsed) = attacker.join().expect("attacker");
        eprintln!("runaway: {status} after {elapsed:?}: {sql}: {text}");
        // 504 when it ran out of time; 503 + Retry-After when it waited for
        // one of its token's slots (query.max_per_token) all that time.
        assert!(
            status == 504 || (400..500).contains(&status) || (status == 503 && retry),
            "{sql}: answered {status}: {text}"
        );
        assert!(
            elapsed <= Duration::from_secs(TIMEOUT_S + 1),
            "{sql}: answered after {elapsed:?}, past query.timeout + 1 s"
        );
    }
    // The victim keeps going a little after the last runaway answer.
    thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::SeqCst);
    let (q, w, s, segments) = victim.join().expect("victim");
    let (pq, pw, ps) = (p99(q.clone()), p99(w.clone()), p99(s.clone()));
    eprintln!(
        "second client, {} rounds: p99 small query {pq:.3} s, line protocol {pw:.3} s, segment {ps:.3} s",
        q.len()
    );
    assert!(q.len() >= 5, "only {} rounds in the window", q.len());
    // A client stalled behind the runaways would wait for them, that is for
    // query.timeout (4 s). Sharing two cores with four runaway queries costs
    // the second client some time, most at the moment the runaways are
    // aborted and give back their memory (0.5 s here, 1.3 s once on a
    // loaded CI runner), so the bound on the worst round is half the
    // timeout and the typical round must stay fast.
    let worst = TIMEOUT_S as f64 / 2.0;
    for (what, p, m) in [
        ("small query", pq, median(q.clone())),
        ("line protocol write", pw, median(w.clone())),
        ("segment upload", ps, median(s.clone())),
    ] {
        assert!(
            p < worst,
            "{what}: p99 {p:.3} s while runaway queries ran (a stall waits {TIMEOUT_S} s)"
        );
        assert!(m < 0.5, "{what}: median {m:.3} s while runaway queries ran");
    }

    // Every acknowledged row is there, once.
    let mut rows = Value::Null;
    wait_until("the second client's rows", Duration::from_secs(20), || {
        let a = query(
            hub,
            &reader,
            "SELECT (SELECT count(*) FROM lp) AS l, (SELECT count(*) FROM boiler) AS b",
        );
        rows = a.json()["data"][0].clone();
        a.status == 200
    });
    assert_eq!(rows[0].as_u64(), Some(q.len() as u64 + 1), "{rows}");
    assert_eq!(rows[1].as_u64(), Some(segments * 100), "{rows}");

    // The hub is idle again: the aborted queries gave their slots back.
    let a = query(hub, &hostile, "SELECT 1");
    assert_eq!(a.status, 200, "{}", a.text());
}
