//! Store throughput: durable appends through `StoreHandle` (group commit)
//! versus raw rusqlite batched inserts of the same rows into the same table
//! with the same pragmas, and segment cutting.
//!
//! `cargo bench -p ferry-agent --bench store -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_agent::ingest::{Durability, Incoming};
use ferry_agent::segmenter::Segmenter;
use ferry_agent::store::codec::encode_body;
use ferry_agent::store::{SegmentConfig, StoreConfig, StoreHandle, SystemClock};
use ferry_protocols::{DatabaseName, FieldKey, FieldValue, Measurement, Reading};
use rusqlite::{Connection, params};

const ROWS: usize = 2000;

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

fn config() -> StoreConfig {
    StoreConfig {
        max_bytes: bytesize::ByteSize::gib(4),
        ..StoreConfig::default()
    }
}

fn store_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(StoreHandle::open(
            &dir.path().join("bench.db"),
            config(),
            None,
            Arc::new(SystemClock),
        ))
        .expect("opens");
    let mut group = c.benchmark_group("durable_append");
    group.throughput(Throughput::Elements(ROWS as u64));
    for per_append in [1usize, 100] {
        group.bench_function(
            format!("store_{}x{per_append}_concurrent", ROWS / per_append),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let batches: Vec<Vec<Incoming>> = (0..ROWS / per_append)
                            .map(|i| {
                                (0..per_append)
                                    .map(|j| reading((i * per_append + j) as u64))
                                    .collect()
                            })
                            .collect();
                        let start = Instant::now();
                        rt.block_on(async {
                            let tasks: Vec<_> = batches
                                .into_iter()
                                .map(|batch| {
                                    let store = store.clone();
                                    tokio::spawn(async move {
                                        store.append(batch, Durability::Durable).await
                                    })
                                })
                                .collect();
                            for t in tasks {
                                t.await.expect("joins").expect("stored");
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                });
            },
        );
    }

    // The baseline: the same rows, encoded the same way, into the same table
    // with the same pragmas; one transaction per `per_txn` rows.
    let raw = Connection::open(dir.path().join("raw.db")).expect("opens");
    raw.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, grp INTEGER NOT NULL,
           durable INTEGER NOT NULL, received_ns INTEGER NOT NULL, time_ns INTEGER NOT NULL,
           size INTEGER NOT NULL, body BLOB NOT NULL);
         CREATE INDEX readings_by_group ON readings (grp, id);
         CREATE INDEX readings_best_effort ON readings (id) WHERE durable = 0;",
    )
    .expect("creates");
    let mut raw = raw;
    for per_txn in [ROWS, 100] {
        group.bench_function(format!("raw_sqlite_{per_txn}_per_txn"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rows: Vec<Incoming> = (0..ROWS as u64).map(reading).collect();
                    let start = Instant::now();
                    for chunk in rows.chunks(per_txn) {
                        let tx = raw.transaction().expect("begins");
                        {
                            let mut stmt = tx
                                .prepare_cached(
                                    "INSERT INTO readings (grp, durable, received_ns, time_ns, size, body)
                                     VALUES (?1, 1, ?2, ?3, ?4, ?5)",
                                )
                                .expect("prepares");
                            for r in chunk {
                                let mut body = Vec::with_capacity(64);
                                encode_body(&r.reading, &mut body);
                                stmt.execute(params![1, 0, r.reading.time_ns, body.len() as i64 + 48, body])
                                    .expect("inserts");
                            }
                        }
                        tx.commit().expect("commits");
                    }
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
    rt.block_on(store.shutdown()).expect("shuts down");
}

fn segment_cut(c: &mut Criterion) {
    const CUT_ROWS: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(StoreHandle::open(
            &dir.path().join("cut.db"),
            config(),
            None,
            Arc::new(SystemClock),
        ))
        .expect("opens");
    let segmenter = Segmenter::new(store.clone(), SegmentConfig::default());
    let mut group = c.benchmark_group("segment_cut");
    group.throughput(Throughput::Elements(CUT_ROWS as u64));
    group.bench_function("cut_10000_rows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    for chunk in 0..(CUT_ROWS / 1000) as u64 {
                        let rows: Vec<Incoming> =
                            (0..1000).map(|n| reading(chunk * 1000 + n)).collect();
                        store
                            .append(rows, Durability::Durable)
                            .await
                            .expect("stored");
                    }
                });
                let start = Instant::now();
                let report = rt.block_on(segmenter.flush()).expect("cuts");
                total += start.elapsed();
                assert_eq!(report.rows, CUT_ROWS as u64);
                // Keep the table small: acknowledge what was cut.
                rt.block_on(async {
                    while let Some(p) = store.next_pending_segment().await.expect("reads") {
                        store.ack_segment(p.seq).await.expect("acks");
                    }
                });
            }
            total
        });
    });
    group.finish();
    rt.block_on(store.shutdown()).expect("shuts down");
}

criterion_group!(benches, store_append, segment_cut);
criterion_main!(benches);
