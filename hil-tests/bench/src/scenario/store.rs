//! Store: the agent's durable buffer (`StoreHandle`: group commit, WAL,
//! `synchronous = FULL`) against raw rusqlite batched inserts of the same
//! rows, encoded the same way, into the same table with the same pragmas,
//! in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ferry_agent::ingest::{Durability, Incoming};
use ferry_agent::store::codec::encode_body;
use ferry_agent::store::{StoreConfig, StoreHandle, SystemClock};
use ferry_protocols::{DatabaseName, FieldKey, FieldValue, Measurement, Reading};
use rusqlite::{Connection, params};
use serde_json::json;

use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

fn reading(n: u64) -> Incoming {
    Incoming {
        database: DatabaseName::new("plant").expect("valid"),
        reading: Reading::new(
            Measurement::new("temperature").expect("valid"),
            1_700_000_000_000_000_000 + n as i64,
        )
        .with_tag("sensor".parse().expect("valid"), format!("s{}", n % 16))
        .with_tag("site".parse().expect("valid"), "north")
        .with_field(
            FieldKey::new("value").expect("valid"),
            FieldValue::F64(20.0 + (n % 100) as f64 * 0.1),
        )
        .with_field(FieldKey::new("seq").expect("valid"), FieldValue::U64(n)),
    }
}

/// Rows/s of `rows` readings appended durably by `rows / per_append`
/// concurrent tasks, each appending `per_append` readings.
fn agent_store(
    rt: &tokio::runtime::Runtime,
    store: &StoreHandle,
    rows: usize,
    per_append: usize,
    first: u64,
) -> f64 {
    let batches: Vec<Vec<Incoming>> = (0..rows / per_append)
        .map(|i| {
            (0..per_append)
                .map(|j| reading(first + (i * per_append + j) as u64))
                .collect()
        })
        .collect();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let store = store.clone();
                tokio::spawn(async move { store.append(batch, Durability::Durable).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("append task").expect("stored");
        }
    });
    rows as f64 / start.elapsed().as_secs_f64()
}

fn raw_db(path: &Path) -> Connection {
    let raw = Connection::open(path).expect("open raw SQLite");
    raw.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, grp INTEGER NOT NULL,
           durable INTEGER NOT NULL, received_ns INTEGER NOT NULL, time_ns INTEGER NOT NULL,
           size INTEGER NOT NULL, body BLOB NOT NULL);
         CREATE INDEX readings_by_group ON readings (grp, id);
         CREATE INDEX readings_best_effort ON readings (id) WHERE durable = 0;",
    )
    .expect("create the raw table");
    raw
}

/// Rows/s of raw rusqlite inserts, `per_txn` rows per committed transaction.
fn raw_sqlite(raw: &mut Connection, rows: usize, per_txn: usize, first: u64) -> f64 {
    let input: Vec<Incoming> = (0..rows as u64).map(|n| reading(first + n)).collect();
    let start = Instant::now();
    for chunk in input.chunks(per_txn) {
        let tx = raw.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO readings (grp, durable, received_ns, time_ns, size, body) VALUES (?1, 1, ?2, ?3, ?4, ?5)",
                )
                .expect("prepare");
            for r in chunk {
                let mut body = Vec::with_capacity(64);
                encode_body(&r.reading, &mut body);
                stmt.execute(params![
                    1,
                    0,
                    r.reading.time_ns,
                    body.len() as i64 + 48,
                    body
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new("store", "Store: the agent's SQLite buffer vs raw SQLite");
    let rows = scale.store_rows;
    s.intro = format!(
        "{rows} readings per case (2 tags, 2 fields, the agent's body encoding), {} run(s), in-process. \
         Ferry: `StoreHandle::append(…, Durable)` from concurrent tokio tasks, as the broker calls it, each append resolving \
         after its group commit is fsynced (WAL, `synchronous = FULL`, the default `commit_interval` and `max_batch` (2000)). \
         Baseline: raw rusqlite inserts of the same encoded rows into the same table and indexes with the same pragmas, \
         one committed transaction per 2,000 rows (the store's `max_batch`) or per 100 rows.",
        scale.runs
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The default budget (1 GiB) holds every run's rows.
    let config = StoreConfig::default();
    let store = rt
        .block_on(StoreHandle::open(
            &dir.join("buffer.db"),
            config,
            None,
            Arc::new(SystemClock),
        ))
        .expect("open the agent's store");
    let mut raw = raw_db(&dir.join("raw.db"));
    let (mut one, mut hundred, mut raw_big, mut raw_small) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut next = 0u64;
    for _ in 0..scale.runs {
        one.push(agent_store(&rt, &store, rows, 1, next));
        hundred.push(agent_store(&rt, &store, rows, 100, next + rows as u64));
        raw_big.push(raw_sqlite(&mut raw, rows, 2000, next));
        raw_small.push(raw_sqlite(&mut raw, rows, 100, next + rows as u64));
        next += 2 * rows as u64;
    }
    rt.block_on(store.shutdown()).expect("store shutdown");
    let unit = Unit::Rate("row");
    s.compare(Comparison::new(
        "durable appends of 1 reading (broker-like)",
        unit,
        &one,
        "raw SQLite, 2,000 rows/txn",
        &raw_big,
    ));
    s.compare(Comparison::new(
        "durable appends of 100 readings",
        unit,
        &hundred,
        "raw SQLite, 2,000 rows/txn",
        &raw_big,
    ));
    s.compare(Comparison::new(
        "durable appends of 100 readings",
        unit,
        &hundred,
        "raw SQLite, 100 rows/txn",
        &raw_small,
    ));
    s.details = json!({"rows_per_case": rows, "agent_1_per_append": one, "agent_100_per_append": hundred,
        "raw_2000_per_txn": raw_big, "raw_100_per_txn": raw_small});
    s
}
