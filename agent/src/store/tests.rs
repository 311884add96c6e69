//! Unit tests of the buffer through its public handle.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use ferry_protocols::segment::{SegmentSeq, read_segment};
use ferry_protocols::{DatabaseName, FieldKey, FieldValue, Measurement, Reading};
use rusqlite::Connection;

use super::*;
use crate::ingest::{Durability, Incoming, RejectReason};
use crate::segmenter::Segmenter;

pub(crate) const T0: i64 = 1_700_000_000_000_000_000;

/// A reading of `measurement` whose field `n` identifies it.
pub(crate) fn reading(measurement: &str, n: u64) -> Incoming {
    Incoming {
        database: DatabaseName::new("db").expect("valid"),
        reading: Reading::new(Measurement::new(measurement).expect("valid"), T0 + n as i64)
            .with_field(FieldKey::new("n").expect("valid"), FieldValue::U64(n))
            .with_field(
                FieldKey::new("v").expect("valid"),
                FieldValue::F64(n as f64 * 0.5),
            ),
    }
}

pub(crate) fn test_config() -> StoreConfig {
    StoreConfig {
        commit_interval: Duration::from_millis(1),
        integrity_check: IntegrityCheck::Full,
        ..StoreConfig::default()
    }
}

pub(crate) async fn open(path: &Path, config: &StoreConfig, clock: &ManualClock) -> StoreHandle {
    StoreHandle::open(path, config.clone(), None, Arc::new(clock.clone()))
        .await
        .expect("opens")
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("buffer.db")
}

/// Field `n` of every reading in `readings`, read with a separate connection.
pub(crate) fn buffered_ns(path: &Path) -> Vec<u64> {
    let conn = Connection::open(path).expect("opens");
    let mut stmt = conn
        .prepare("SELECT r.time_ns, r.body FROM readings r ORDER BY r.id")
        .expect("prepares");
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .expect("queries");
    rows.map(|r| {
        let (t, body) = r.expect("row");
        let reading =
            codec::decode_body(Measurement::new("x").expect("valid"), t, &body).expect("decodes");
        match reading.fields.get("n") {
            Some(FieldValue::U64(n)) => *n,
            other => panic!("no n: {other:?}"),
        }
    })
    .collect()
}

/// `(seq, state, field n of every row)` of every segment.
pub(crate) fn segment_ns(path: &Path) -> Vec<(u64, String, Vec<u64>)> {
    let conn = Connection::open(path).expect("opens");
    let mut stmt = conn
        .prepare("SELECT seq, state, file FROM segments ORDER BY seq")
        .expect("prepares");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .expect("queries");
    rows.map(|r| {
        let (seq, state, file) = r.expect("row");
        let segment = read_segment(bytes::Bytes::from(file)).expect("a valid segment");
        assert_eq!(segment.meta.header.sequence.0, seq as u64);
        let ns = segment
            .readings()
            .expect("readings")
            .iter()
            .map(|r| match r.fields.get("n") {
                Some(FieldValue::U64(n)) => *n,
                other => panic!("no n: {other:?}"),
            })
            .collect();
        (seq as u64, state, ns)
    })
    .collect()
}

#[tokio::test]
async fn durable_append_is_committed_when_it_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let appended = store
        .append(vec![reading("m", 1), reading("m", 2)], Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(appended.rows, 2);
    assert_eq!(appended.first_id, Some(1));
    // Another connection sees them: they are committed.
    assert_eq!(buffered_ns(&path), vec![1, 2]);
    store.shutdown().await.expect("shuts down");
}

/// Group commit counts `commit_interval` from the last commit's start: a
/// lone append after a quiet spell commits at once, and the next commit
/// waits until the interval has passed.
#[tokio::test]
async fn commits_are_paced_from_the_last_commit_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let interval = Duration::from_millis(600);
    let config = StoreConfig {
        commit_interval: interval,
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    let durable = |n| store.append(vec![reading("m", n)], Durability::Durable);

    let started = std::time::Instant::now();
    durable(1).await.expect("stored");
    let first = started.elapsed();
    assert!(
        first < interval / 2,
        "the first append after a quiet spell commits at once, took {first:?}"
    );
    durable(2).await.expect("stored");
    assert!(
        started.elapsed() >= interval,
        "the second commit waits for the interval, came after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(interval).await;
    let quiet = std::time::Instant::now();
    durable(3).await.expect("stored");
    assert!(
        quiet.elapsed() < interval / 2,
        "after another quiet spell, at once again: {:?}",
        quiet.elapsed()
    );
    assert_eq!(buffered_ns(&path), vec![1, 2, 3]);
    store.shutdown().await.expect("shuts down");
}
#[tokio::test]
async fn best_effort_waits_for_qos0_max_delay_on_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        qos0_max_delay: Duration::from_secs(3600),
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    let appended = store
        .append(vec![reading("m", 7)], Durability::BestEffort)
        .await
        .expect("queued");
    assert_eq!(appended.first_id, None);
    store.tick().await.expect("ticks");
    assert!(buffered_ns(&path).is_empty(), "held in memory");
    clock.advance(Duration::from_secs(3601));
    store.tick().await.expect("ticks");
    assert_eq!(buffered_ns(&path), vec![7]);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn shutdown_flushes_everything_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        qos0_max_delay: Duration::from_secs(3600),
        commit_interval: Duration::from_secs(1),
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    store
        .append(vec![reading("m", 1)], Durability::BestEffort)
        .await
        .expect("queued");
    store
        .append(vec![reading("m", 3)], Durability::BestEffort)
        .await
        .expect("queued");
    // join! polls the append first: it is queued before the shutdown.
    let (durable, shutdown) = tokio::join!(
        store.append(vec![reading("m", 2)], Durability::Durable),
        store.shutdown()
    );
    shutdown.expect("shuts down");
    assert!(
        durable.is_ok(),
        "the durable append was committed: {durable:?}"
    );
    let mut ns = buffered_ns(&path);
    ns.sort_unstable();
    assert_eq!(ns, vec![1, 2, 3]);
    assert!(
        !path.with_extension("db-wal").exists()
            || std::fs::metadata(path.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
                == 0
    );
    assert_eq!(
        store
            .append(vec![reading("m", 4)], Durability::Durable)
            .await,
        Err(RejectReason::ShuttingDown)
    );
}

#[tokio::test]
async fn dropping_every_handle_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        qos0_max_delay: Duration::from_secs(3600),
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    store
        .append(vec![reading("m", 1)], Durability::BestEffort)
        .await
        .expect("queued");
    drop(store);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while buffered_ns(&path).is_empty() {
        assert!(std::time::Instant::now() < deadline, "not flushed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn drop_oldest_evicts_best_effort_then_oldest_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        max_bytes: ByteSize::kib(20),
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    for n in 0..100 {
        store
            .append(vec![reading("m", n)], Durability::BestEffort)
            .await
            .expect("queued");
    }
    store.sync().await.expect("syncs");
    let before = store.status().await.expect("status");
    assert_eq!(before.backlog_best_effort, before.backlog_readings);
    for n in 1000..1400 {
        store
            .append(vec![reading("m", n)], Durability::Durable)
            .await
            .expect("stored");
    }
    let status = store.status().await.expect("status");
    assert!(status.used_bytes <= status.max_bytes, "{status:?}");
    assert_eq!(status.backlog_best_effort, 0);
    assert_eq!(status.drops.get("qos0_full"), Some(&100));
    let oldest = status.drops.get("oldest_full").copied().unwrap_or(0);
    assert!(oldest > 0);
    let ns = buffered_ns(&path);
    assert_eq!(ns.len() as u64, 400 - oldest);
    assert_eq!(ns.last(), Some(&1399), "the newest are kept");
    assert!(ns.windows(2).all(|w| w[0] < w[1]));
    store.shutdown().await.expect("shuts down");

    // The counters survive a restart.
    let store = open(&path, &config, &clock).await;
    let again = store.status().await.expect("status");
    assert_eq!(again.drops, status.drops);
    assert_eq!(again.used_bytes, status.used_bytes);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn reject_new_refuses_durable_but_still_drops_best_effort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        max_bytes: ByteSize::kib(20),
        when_full: WhenFull::RejectNew,
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    for n in 0..50 {
        store
            .append(vec![reading("m", n)], Durability::BestEffort)
            .await
            .expect("queued");
    }
    let mut stored = 0u64;
    let mut rejected = 0u64;
    for n in 1000..1400 {
        match store
            .append(vec![reading("m", n)], Durability::Durable)
            .await
        {
            Ok(_) => stored += 1,
            Err(RejectReason::Full) => rejected += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(rejected > 0 && stored > 0);
    let status = store.status().await.expect("status");
    assert_eq!(status.backlog_best_effort, 0);
    assert_eq!(status.drops.get("qos0_full"), Some(&50));
    assert_eq!(status.drops.get("rejected_full"), Some(&rejected));
    assert_eq!(status.drops.get("oldest_full"), None);
    let ns = buffered_ns(&path);
    assert_eq!(ns.len() as u64, stored);
    assert_eq!(
        ns.first(),
        Some(&1000),
        "the oldest durable readings are kept"
    );
    // A best-effort reading never displaces a durable one.
    store
        .append(vec![reading("m", 5000)], Durability::BestEffort)
        .await
        .expect("queued");
    let after = store.status().await.expect("status");
    assert_eq!(after.backlog_readings, status.backlog_readings);
    assert_eq!(after.drops.get("qos0_full"), Some(&51));
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn dead_letters_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        dead_letter_max: 3,
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    for i in 0..5 {
        store
            .append_dead_letter(DeadLetter {
                topic: format!("t/{i}"),
                source: "client".into(),
                error: "bad json".into(),
                payload: bytes::Bytes::from_static(b"{"),
            })
            .await
            .expect("stored");
    }
    let status = store.status().await.expect("status");
    assert_eq!(status.dead_letters, 3);
    assert_eq!(status.drops.get("dead_letter_cap"), Some(&2));
    let conn = Connection::open(&path).expect("opens");
    let topics: Vec<String> = conn
        .prepare("SELECT topic FROM dead_letters ORDER BY id")
        .expect("prepares")
        .query_map([], |r| r.get(0))
        .expect("queries")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(topics, ["t/2", "t/3", "t/4"]);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn segments_ack_quarantine_and_sequences_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = test_config();
    let store = open(&path, &config, &clock).await;
    let segmenter = Segmenter::new(store.clone(), SegmentConfig::default());
    store
        .append(vec![reading("a", 1), reading("b", 2)], Durability::Durable)
        .await
        .expect("stored");
    let report = segmenter.flush().await.expect("cuts");
    assert_eq!((report.segments, report.rows), (2, 2));
    let first = store
        .next_pending_segment()
        .await
        .expect("reads")
        .expect("one pending");
    assert_eq!(first.seq, SegmentSeq(1));
    let second = store
        .next_pending_segment_after(first.seq)
        .await
        .expect("reads")
        .expect("two");
    assert_eq!(second.seq, SegmentSeq(2));
    assert!(
        store
            .quarantine_segment(first.seq, "hub said 422")
            .await
            .expect("quarantines")
    );
    assert_eq!(
        store
            .next_pending_segment()
            .await
            .expect("reads")
            .map(|s| s.seq),
        Some(SegmentSeq(2))
    );
    assert!(
        !store.ack_segment(first.seq).await.expect("acks"),
        "quarantined is not pending"
    );
    assert!(store.ack_segment(second.seq).await.expect("acks"));
    assert!(
        !store.ack_segment(second.seq).await.expect("acks"),
        "idempotent"
    );
    let status = store.status().await.expect("status");
    assert_eq!(
        (status.pending_segments, status.quarantined_segments),
        (0, 1)
    );
    assert_eq!(status.next_sequence, 3);
    store.shutdown().await.expect("shuts down");

    // Delete every segment behind the store's back: the sequence still moves on.
    Connection::open(&path)
        .expect("opens")
        .execute("DELETE FROM segments", [])
        .expect("deletes");
    let store = open(&path, &config, &clock).await;
    let segmenter = Segmenter::new(store.clone(), SegmentConfig::default());
    store
        .append(vec![reading("a", 3)], Durability::Durable)
        .await
        .expect("stored");
    segmenter.flush().await.expect("cuts");
    let next = store
        .next_pending_segment()
        .await
        .expect("reads")
        .expect("pending");
    assert_eq!(next.seq, SegmentSeq(3));
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    {
        let conn = Connection::open(&path).expect("opens");
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .expect("creates");
    }
    let err = StoreHandle::open(&path, test_config(), None, Arc::new(ManualClock::new(T0)))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 1
            }
        ),
        "{err}"
    );
    let conn = Connection::open(&path).expect("opens");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("reads");
    assert_eq!(v, 99);
}

#[tokio::test]
async fn a_corrupt_file_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let garbage = b"this is not a database, it is a shopping list; ".repeat(200);
    std::fs::write(&path, &garbage).expect("writes");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    store
        .append(vec![reading("m", 1)], Durability::Durable)
        .await
        .expect("stored");
    store.shutdown().await.expect("shuts down");
    let aside = dir
        .path()
        .join(format!("buffer.db.corrupt-{}", T0 / 1_000_000_000));
    assert_eq!(std::fs::read(&aside).expect("kept"), garbage);
    assert_eq!(buffered_ns(&path), vec![1]);
}

#[tokio::test]
async fn a_corrupt_page_is_detected_and_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let many: Vec<Incoming> = (0..3000).map(|n| reading("m", n)).collect();
    store
        .append(many, Durability::Durable)
        .await
        .expect("stored");
    store.shutdown().await.expect("shuts down");
    // Scribble over a page in the middle of the file (not the header).
    let mut bytes = std::fs::read(&path).expect("reads");
    assert!(bytes.len() > 4096 * 8);
    for b in &mut bytes[4096 * 5..4096 * 5 + 2000] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("writes");
    let store = open(&path, &test_config(), &clock).await;
    let status = store.status().await.expect("status");
    assert_eq!(status.backlog_readings, 0, "a fresh buffer");
    assert!(store.integrity_check().await.expect("checks"));
    store.shutdown().await.expect("shuts down");
    let moved = std::fs::read_dir(dir.path())
        .expect("lists")
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("buffer.db.corrupt-")
        });
    assert!(moved);
}

#[tokio::test]
async fn a_full_or_read_only_disk_rejects_without_panicking_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    store
        .append(vec![reading("m", 0)], Durability::Durable)
        .await
        .expect("stored");

    // SQLITE_FULL: the file may not grow by a single page.
    let pages: i64 = Connection::open(&path)
        .expect("opens")
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("reads");
    store
        .exec(&format!("PRAGMA max_page_count = {pages}"))
        .await
        .expect("sets");
    let big: Vec<Incoming> = (1..2000).map(|n| reading("m", n)).collect();
    // The QoS 0 reading rides in the same (failing) commit.
    store
        .append(vec![reading("m", 1)], Durability::BestEffort)
        .await
        .expect("queued");
    assert_eq!(
        store.append(big.clone(), Durability::Durable).await,
        Err(RejectReason::StorageError)
    );
    let status = store.status().await.expect("status");
    assert!(status.storage_error.is_some(), "{status:?}");
    assert_eq!(status.backlog_readings, 1);
    assert!(store.sync().await.is_err());

    // SQLITE_READONLY.
    store
        .exec("PRAGMA max_page_count = 1000000; PRAGMA query_only = 1")
        .await
        .expect("sets");
    assert_eq!(
        store
            .append(vec![reading("m", 2)], Durability::Durable)
            .await,
        Err(RejectReason::StorageError)
    );

    // Recovery: the next commit works, and the lost QoS 0 reading was counted.
    store.exec("PRAGMA query_only = 0").await.expect("sets");
    store
        .append(big, Durability::Durable)
        .await
        .expect("stored again");
    let status = store.status().await.expect("status");
    assert_eq!(status.storage_error, None);
    assert_eq!(status.backlog_readings, 2000);
    assert_eq!(status.drops.get("qos0_storage_error"), Some(&1));
    assert!(store.integrity_check().await.expect("checks"));
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn overhead_estimate_tracks_the_file_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    for chunk in 0..20u64 {
        let rows: Vec<Incoming> = (0..1000)
            .map(|n| reading("temperature", chunk * 1000 + n))
            .collect();
        store
            .append(rows, Durability::Durable)
            .await
            .expect("stored");
    }
    let status = store.status().await.expect("status");
    store.shutdown().await.expect("shuts down");
    let conn = Connection::open(&path).expect("opens");
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("reads");
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .expect("reads");
    let real = (pages - free) as u64 * 4096;
    let ratio = status.used_bytes as f64 / real as f64;
    eprintln!(
        "accounted {} real {} ratio {ratio:.2}",
        status.used_bytes, real
    );
    assert!(
        (0.75..=1.35).contains(&ratio),
        "accounted {} vs real {real}",
        status.used_bytes
    );
}

/// The WAL is checkpointed by the checkpointer thread, not the writer, and
/// stays bounded: the writer checkpoints itself at 4 times
/// `store.wal_checkpoint` (decision 0026).
#[tokio::test]
async fn wal_checkpoints_run_off_the_writer_and_the_wal_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        wal_checkpoint: ByteSize::kib(64),
        ..test_config()
    };
    let store = open(&path, &config, &clock).await;
    let wal = dir.path().join("buffer.db-wal");
    let pad = "x".repeat(1000);
    // One commit of readings `first..first + n`, each with a 1 KB string.
    let append = |first: u64, n: u64| {
        let rows = (first..first + n)
            .map(|i| {
                let mut r = reading("m", i);
                r.reading = r.reading.with_field(
                    FieldKey::new("pad").expect("valid"),
                    FieldValue::Str(pad.clone()),
                );
                r
            })
            .collect();
        store.append(rows, Durability::Durable)
    };
    let mut largest = 0;
    for batch in 0..200u64 {
        append(batch * 10, 10).await.expect("stored");
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    let status = store.status().await.expect("status");
    assert!(
        status.wal_checkpoints_background > 0,
        "no background checkpoint in 200 commits of 10 KB: {status:?}"
    );
    // 4 x 64 KiB, one commit past it, and the WAL's frame headers: without
    // any checkpoint the 2 MB appended would all be in the WAL.
    assert!(
        largest <= 512 * 1024,
        "the WAL reached {largest} bytes; checkpoints by thread/writer: {}/{}",
        status.wal_checkpoints_background,
        status.wal_checkpoints_writer
    );
    // A commit that alone takes the WAL past 4 x 64 KiB is checkpointed by
    // the writer itself, at once.
    let before = status.wal_checkpoints_writer;
    for batch in 0..3u64 {
        // A commit in the last 64 KiB before 4 times wakes the thread to
        // catch up; while its checkpoint runs, the writer's own finds the
        // lock taken and waits for the next commit. Give it time to end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(10_000 + batch * 300, 300).await.expect("stored");
    }
    let after = store.status().await.expect("status").wal_checkpoints_writer;
    assert!(
        after >= before + 3,
        "commits of 300 KB were not checkpointed by the writer ({before} -> {after})"
    );
    assert_eq!(buffered_ns(&path).len(), 2900, "every reading is readable");
    store.shutdown().await.expect("closes");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "the final checkpoint truncates the WAL"
    );
}
