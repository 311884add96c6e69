//! Bounds on what tables hold: `tables.idle_timeout` (idle tables give back
//! their writer and reader; writes around the moment a batcher goes idle are
//! neither lost nor committed twice), `tables.max_queued_bytes`, and a
//! catalog that loads only the tables a query names.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::conformance::{query_i64, sample_batch, segment_request};
use super::*;

const T0: i64 = 1_764_115_200_000_000_000; // 2025-11-26T00:00:00Z

async fn open(dir: &std::path::Path, idle_ms: u64) -> (Tables, CancellationToken) {
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.join("tables"),
        multi_writer: false,
    });
    let config = TableConfig {
        commit_interval: Duration::from_millis(10),
        idle_timeout: Duration::from_millis(idle_ms),
        ..TableConfig::default()
    };
    let shutdown = CancellationToken::new();
    let tables = Tables::open(&storage, &config, shutdown.clone())
        .await
        .unwrap();
    (tables, shutdown)
}

fn name(m: &str) -> TableName {
    format!("idle.{m}").parse().unwrap()
}

#[tokio::test]
async fn idle_tables_release_their_writer_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the writes and queries before the pause all fall
    // inside one idle period on a loaded CI machine.
    let (tables, shutdown) = open(dir.path(), 2_000).await;
    for m in ["a", "b", "c"] {
        let out = tables
            .write(segment_request(
                &name(m),
                "gw",
                1,
                sample_batch(m, "s", T0, 1, 5),
            ))
            .await
            .unwrap();
        assert!(
            matches!(out, WriteOutcome::Committed { rows: 5, .. }),
            "{out:?}"
        );
    }
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM idle.a").await,
        Ok(5)
    );
    assert_eq!(
        tables.held().await,
        (3, 1),
        "a query loads only what it names"
    );
    assert_eq!(
        query_i64(
            &tables,
            "SELECT (SELECT count(*) FROM idle.b) + (SELECT count(*) FROM idle.c)"
        )
        .await,
        Ok(10)
    );
    assert_eq!(tables.held().await, (3, 3));

    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(tables.held().await.0, 0, "idle batchers have ended");

    // The next write starts a new batcher that still knows the segment
    // already committed (exactly once across the release) ...
    let again = tables
        .write(segment_request(
            &name("a"),
            "gw",
            1,
            sample_batch("a", "s", T0, 1, 5),
        ))
        .await
        .unwrap();
    assert!(matches!(again, WriteOutcome::Duplicate { .. }), "{again:?}");
    let next = tables
        .write(segment_request(
            &name("a"),
            "gw",
            2,
            sample_batch("a", "s", T0 + 5, 1, 5),
        ))
        .await
        .unwrap();
    assert!(
        matches!(next, WriteOutcome::Committed { rows: 5, .. }),
        "{next:?}"
    );
    // ... and a query after the idle period drops the stale readers before
    // loading what it names again.
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM idle.a").await,
        Ok(10)
    );
    assert_eq!(tables.held().await.1, 1);
    shutdown.cancel();
    tables.wait_stopped().await;
}

/// Writes arriving while a batcher is going idle (its queue closing, its
/// last commit in flight) go to the next batcher, which waits for the old
/// one's lock: every segment lands once.
#[tokio::test]
async fn writes_at_the_idle_boundary_all_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, shutdown) = open(dir.path(), 30).await;
    let t = name("edge");
    let mut rows = 0;
    for seq in 1..=40u64 {
        // Pauses around the idle timeout, so some writes meet a live
        // batcher, some a closing one and some none.
        tokio::time::sleep(Duration::from_millis(20 + (seq * 7) % 25)).await;
        let start = T0 + i64::try_from(seq).unwrap() * 1_000;
        let request = segment_request(&t, "gw", seq, sample_batch("edge", "s", start, 1, 3));
        let out = tables.write(request).await.unwrap();
        assert!(
            matches!(out, WriteOutcome::Committed { rows: 3, .. }),
            "{seq}: {out:?}"
        );
        rows += 3;
    }
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM idle.edge").await,
        Ok(rows)
    );
    shutdown.cancel();
    tables.wait_stopped().await;
}

/// `tables.max_queued_bytes`: a table holding its limit in queued writes
/// answers more writes `QueueFull` (nothing taken), other tables are not
/// affected, and once the queue drains the table takes writes again.
#[tokio::test]
async fn a_full_table_queue_refuses_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().join("tables"),
        multi_writer: false,
    });
    let config = TableConfig {
        // Writes wait here long enough to pile up.
        commit_interval: Duration::from_millis(1500),
        max_queued_bytes: bytesize::ByteSize::kib(64),
        ..TableConfig::default()
    };
    let shutdown = CancellationToken::new();
    let tables = Tables::open(&storage, &config, shutdown.clone())
        .await
        .unwrap();
    let busy = name("busy");
    let batch = sample_batch("busy", "s", T0, 1, 1_000);
    assert!(
        batch.get_array_memory_size() > 8 * 1024,
        "a batch of some KiB"
    );
    let mut waiting = Vec::new();
    let mut refused = None;
    for seq in 1..=64u64 {
        let tables = tables.clone();
        let request = segment_request(&busy, "gw", seq, batch.clone());
        let w = tokio::spawn(async move { tables.write(request).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        if w.is_finished() {
            refused = Some((seq, w.await.unwrap()));
            break;
        }
        waiting.push(w);
    }
    let (seq, refused) = refused.expect("a write beyond 64 KiB queued is refused");
    assert!(seq > 1, "the first write is always taken");
    match refused {
        Err(e @ TableError::QueueFull { .. }) => {
            assert!(e.to_string().contains("tables.max_queued_bytes"), "{e}");
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    // Another table is not affected.
    let other = tables
        .write(segment_request(
            &name("calm"),
            "gw",
            1,
            sample_batch("calm", "s", T0, 1, 10),
        ))
        .await;
    assert!(other.is_ok(), "{other:?}");
    // Every queued write commits; then the table takes writes again.
    for w in waiting {
        let out = w.await.unwrap().unwrap();
        assert!(matches!(out, WriteOutcome::Committed { .. }), "{out:?}");
    }
    let again = tables
        .write(segment_request(&busy, "gw", seq, batch.clone()))
        .await
        .unwrap();
    assert!(matches!(again, WriteOutcome::Committed { .. }), "{again:?}");
    shutdown.cancel();
    tables.wait_stopped().await;
}

/// A query loads only the tables it names; a table another writer made is
/// found by name at once and listed after the next listing of the store;
/// another writer's commit to a cached table is seen by the next query;
/// the hub's own commits are listed at once; a missing table is an error
/// naming it.
#[tokio::test]
async fn the_catalog_resolves_what_a_query_names() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, shutdown) = open(dir.path(), 60_000).await;
    for m in ["a", "b", "c"] {
        tables
            .write(segment_request(
                &name(m),
                "gw",
                1,
                sample_batch(m, "s", T0, 1, 5),
            ))
            .await
            .unwrap();
    }
    let known = tables.known().await.unwrap();
    assert_eq!(known, vec![name("a"), name("b"), name("c")], "own commits");

    // Another writer on the same store (another program, another hub).
    let (other, other_shutdown) = open(dir.path(), 60_000).await;
    assert_eq!(
        query_i64(&other, "SELECT count(*) FROM idle.b").await,
        Ok(5)
    );
    assert_eq!(other.held().await, (0, 1), "only idle.b was loaded");
    // A commit by another writer reaches the next query of a hub that has
    // the table cached (on a local disk the cache is kept after one look
    // for the next commit file, so that look must see it).
    tables
        .write(segment_request(
            &name("b"),
            "gw",
            2,
            sample_batch("b", "s", T0, 1, 3),
        ))
        .await
        .unwrap();
    assert_eq!(
        query_i64(&other, "SELECT count(*) FROM idle.b").await,
        Ok(8),
        "the cached table was refreshed"
    );
    other
        .write(segment_request(
            &name("d"),
            "gw",
            1,
            sample_batch("d", "s", T0, 1, 7),
        ))
        .await
        .unwrap();
    assert!(other.known().await.unwrap().contains(&name("d")));
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM idle.d").await,
        Ok(7),
        "found by name before any listing"
    );
    assert!(!tables.known().await.unwrap().contains(&name("d")));
    tables.list().await.unwrap();
    assert!(tables.known().await.unwrap().contains(&name("d")));

    let missing = query_i64(&tables, "SELECT count(*) FROM idle.nope")
        .await
        .unwrap_err();
    assert!(missing.contains("nope"), "{missing}");
    for (t, s) in [(&tables, &shutdown), (&other, &other_shutdown)] {
        s.cancel();
        t.wait_stopped().await;
    }
}
