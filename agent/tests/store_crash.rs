//! Crash test: a child process appends durable readings and prints each
//! acknowledged one; the parent kills it with SIGKILL at a random moment,
//! reopens the buffer and checks that every acknowledged reading is there
//! exactly once and that the database passes `integrity_check`.
//!
//! The child is this test binary, re-executed with `FERRY_STORE_CRASH_CHILD`
//! set, running only `crash_child`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_agent::ingest::{Durability, Incoming};
use ferry_agent::store::codec::decode_body;
use ferry_agent::store::{StoreConfig, StoreHandle, SystemClock};
use ferry_protocols::{DatabaseName, FieldKey, FieldValue, Measurement, Reading};

const CHILD_ENV: &str = "FERRY_STORE_CRASH_CHILD";
const BASE_ENV: &str = "FERRY_STORE_CRASH_BASE";

fn reading(n: u64) -> Incoming {
    Incoming {
        database: DatabaseName::new("db").expect("valid"),
        reading: Reading::new(Measurement::new("crash").expect("valid"), n as i64)
            .with_tag("sensor".parse().expect("valid"), format!("s{}", n % 7))
            .with_field(FieldKey::new("n").expect("valid"), FieldValue::U64(n)),
    }
}

/// The child: appends forever from 8 concurrent tasks, in batches of 1..=20.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: u64 = std::env::var(BASE_ENV)
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let store = StoreHandle::open(
            Path::new(&path),
            StoreConfig::default(),
            None,
            Arc::new(SystemClock),
        )
        .await
        .expect("opens");
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = base + t * 10_000_000;
                loop {
                    let size = 1 + n % 20;
                    let batch: Vec<Incoming> = (n..n + size).map(reading).collect();
                    if store.append(batch, Durability::Durable).await.is_ok() {
                        let mut out = std::io::stdout().lock();
                        for k in n..n + size {
                            let _ = writeln!(out, "ACK {k}");
                        }
                        let _ = out.flush();
                    }
                    n += size;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn stored(path: &Path) -> BTreeMap<u64, u32> {
    let conn = rusqlite::Connection::open(path).expect("opens");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("checks");
    assert_eq!(ok, "ok");
    let mut stmt = conn
        .prepare("SELECT time_ns, body FROM readings")
        .expect("prepares");
    let mut out = BTreeMap::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .expect("queries");
    for row in rows {
        let (t, body) = row.expect("row");
        let r = decode_body(Measurement::new("crash").expect("valid"), t, &body).expect("decodes");
        let Some(FieldValue::U64(n)) = r.fields.get("n") else {
            panic!("no n")
        };
        *out.entry(*n).or_insert(0) += 1;
    }
    out
}

#[test]
fn acknowledged_readings_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let exe = std::env::current_exe().expect("own path");
    let mut acked_total = Vec::new();
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env(BASE_ENV, (round * 100_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line
                    .strip_prefix("ACK ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    acked.push(n);
                }
            }
            acked
        });
        // Wait for the first acknowledgements, then a random moment.
        let kill_after = Duration::from_millis(150 + rand::random::<u64>() % 600);
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let acked = reader.join().expect("reader");
        eprintln!("round {round}: {} acknowledged before SIGKILL", acked.len());
        acked_total.extend(acked);

        let present = stored(&path);
        for n in &acked_total {
            assert_eq!(
                present.get(n),
                Some(&1),
                "acknowledged reading {n} is not there exactly once"
            );
        }
        assert!(present.values().all(|c| *c == 1), "a reading is duplicated");
    }
    assert!(
        acked_total.len() > 100,
        "the child acknowledged too little to prove anything"
    );

    // The store itself reopens the crashed buffer cleanly.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = StoreHandle::open(&path, StoreConfig::default(), None, Arc::new(SystemClock))
            .await
            .expect("reopens");
        let status = store.status().await.expect("status");
        assert_eq!(status.backlog_readings as usize, stored(&path).len());
        assert!(store.integrity_check().await.expect("checks"));
        store.shutdown().await.expect("shuts down");
    });
}
