//! Tests of appends on the log-only snapshot (`append.rs`): statistics in
//! every `add`, checkpoints and compactions asked of maintenance, and
//! another writer taking the version first (exactly-once kept), and a gap
//! in the log listed again before it fails.

use std::path::Path;
use std::time::Duration;

use deltalake::arrow::array::Array;
use tokio_util::sync::CancellationToken;

use super::conformance::{query_i64, sample_batch, segment_request};
use super::writer::load_latest;
use super::*;

const T0: i64 = 1_764_115_200_000_000_000; // 2025-11-26T00:00:00Z

async fn open(dir: &Path) -> (Tables, StorageConfig, CancellationToken) {
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.join("tables"),
        multi_writer: false,
    });
    let shutdown = CancellationToken::new();
    let config = TableConfig {
        commit_interval: Duration::from_millis(1),
        ..TableConfig::default()
    };
    let tables = Tables::open(&storage, &config, shutdown.clone())
        .await
        .unwrap();
    (tables, storage, shutdown)
}

fn commit_json(dir: &Path, table: &str, version: u64) -> Vec<serde_json::Value> {
    let (db, m) = table.split_once('.').unwrap();
    let path = dir
        .join("tables")
        .join(db)
        .join(m)
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The version of a write that must have committed.
fn committed(r: Result<WriteOutcome, TableError>) -> i64 {
    match r {
        Ok(WriteOutcome::Committed { version, .. }) => version,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn appends_carry_statistics_and_skip_the_file_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, storage, _stop) = open(dir.path()).await;
    let t: TableName = "db.stats".parse().unwrap();
    for i in 0..3 {
        let batch = sample_batch("stats", "a", T0 + i * 1_000_000, 1_000, 10);
        tables
            .write(segment_request(&t, "gw-1", i as u64 + 1, batch))
            .await
            .unwrap();
    }
    // Versions 1 and 2 are appends through the kernel (version 0 created
    // the table through deltalake's writer).
    for version in [1, 2] {
        let actions = commit_json(dir.path(), "db.stats", version);
        let info = actions.iter().find_map(|a| a.get("commitInfo")).unwrap();
        assert!(
            info["engineInfo"]
                .as_str()
                .is_some_and(|e| e.starts_with("ferry-hub/")),
            "{info}"
        );
        let txn = actions.iter().find_map(|a| a.get("txn")).unwrap();
        assert_eq!(txn["appId"], "gw-1");
        assert_eq!(txn["version"], version + 1);
        let add = actions.iter().find_map(|a| a.get("add")).unwrap();
        let stats: serde_json::Value =
            serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
        assert_eq!(stats["numRecords"], 10, "{stats}");
        assert_eq!(stats["minValues"]["value"], 0.0, "{stats}");
        assert_eq!(stats["maxValues"]["value"], 9.0, "{stats}");
        assert_eq!(stats["nullCount"]["site"], 0, "{stats}");
        assert!(stats["minValues"]["time"].is_string(), "{stats}");
        assert_eq!(add["partitionValues"]["day"], "2025-11-26");
    }
    // delta-rs reads the statistics back for every file.
    let resolved = storage.resolve().unwrap();
    let table = load_latest(&resolved, &resolved.table_url(&t))
        .await
        .unwrap()
        .unwrap();
    let adds = table.snapshot().unwrap().add_actions_table(true).unwrap();
    assert_eq!(adds.num_rows(), 3);
    for column in [
        "min.value",
        "max.value",
        "min.time",
        "max.time",
        "null_count.site",
    ] {
        let c = adds
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no {column} in {:?}", adds.schema()));
        assert_eq!(c.null_count(), 0, "{column}");
    }
    // File skipping uses them: a filter outside every file's range.
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM db.stats WHERE value > 100")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM db.stats")
            .await
            .unwrap(),
        30
    );
}

#[tokio::test]
async fn writers_ask_maintenance_for_checkpoints_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _storage, _stop) = open(dir.path()).await;
    tables.requests().set_compact_after(3);
    let t: TableName = "db.asks".parse().unwrap();
    let mut version = 0;
    let mut compactions = 0;
    for i in 0..101 {
        let batch = sample_batch("asks", "a", T0 + i * 1_000_000, 1_000, 2);
        match tables
            .write(segment_request(&t, "gw", i as u64 + 1, batch))
            .await
        {
            Ok(WriteOutcome::Committed { version: v, .. }) => version = v,
            other => panic!("{other:?}"),
        }
        // The two kinds are taken apart: taking the compaction asks
        // leaves the checkpoint ask for its own worker.
        for name in tables.requests().take_kind(Ask::Compact) {
            assert_eq!(name, t);
            compactions += 1;
        }
        for (name, wanted) in tables.requests().take() {
            assert_eq!(name, t);
            assert!(!wanted.compact, "{wanted:?}");
            assert!(wanted.checkpoint, "{wanted:?}");
            assert_eq!(version, 100, "a checkpoint is asked at the interval");
        }
    }
    assert_eq!(version, 100);
    // Versions 1..=100 are appends, one file each: an ask every 3 files.
    assert_eq!(compactions, 33);
    let log = dir.path().join("tables/db/asks/_delta_log");
    assert!(
        !log.join("_last_checkpoint").exists(),
        "appends write no checkpoint inline"
    );
    tables.checkpoint(&t).await.unwrap();
    assert!(log.join("_last_checkpoint").exists());
    assert!(log.join(format!("{:020}.checkpoint.parquet", 100)).exists());
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM db.asks")
            .await
            .unwrap(),
        202
    );
}

#[tokio::test]
async fn an_append_that_loses_its_version_tries_again_and_stays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two hubs on one store, neither told of the other (single writer):
    // each commits on a log the other has moved past.
    let (a, _storage, _stop_a) = open(dir.path()).await;
    let (b, _, _stop_b) = open(dir.path()).await;
    let t: TableName = "db.race".parse().unwrap();
    let seg = |agent: &str, seq: u64, rows| {
        segment_request(&t, agent, seq, sample_batch("race", agent, T0, 1_000, rows))
    };
    assert_eq!(committed(a.write(seg("gw-1", 1, 1)).await), 0);
    assert_eq!(committed(a.write(seg("gw-1", 2, 2)).await), 1);
    // b takes version 2 behind a's back.
    assert_eq!(committed(b.write(seg("gw-2", 1, 4)).await), 2);
    // a's append loses version 2 and lands on 3.
    assert_eq!(committed(a.write(seg("gw-1", 3, 8)).await), 3);
    // b commits gw-3's segment 1; a, not knowing, gets the same segment
    // (the agent retried against the other hub): it must not land twice.
    assert_eq!(committed(b.write(seg("gw-3", 1, 16)).await), 4);
    let again = a.write(seg("gw-3", 1, 16)).await;
    assert!(
        matches!(&again, Err(e @ TableError::Storage { .. }) if format!("{:?}", e).contains("committed by another writer")),
        "{again:?}"
    );
    // The agent's next retry is a duplicate, on either hub.
    assert!(matches!(
        a.write(seg("gw-3", 1, 16)).await.unwrap(),
        WriteOutcome::Duplicate { .. }
    ));
    assert!(matches!(
        a.write(seg("gw-2", 1, 4)).await.unwrap(),
        WriteOutcome::Duplicate { .. }
    ));
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM db.race").await.unwrap(),
        1 + 2 + 4 + 8 + 16
    );
}

#[tokio::test]
async fn a_checkpoint_is_asked_when_another_writer_took_the_multiple() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _storage, _stop_a) = open(dir.path()).await;
    let (b, _, _stop_b) = open(dir.path()).await;
    let t: TableName = "db.crossed".parse().unwrap();
    let seg = |agent: &str, seq: u64| {
        segment_request(&t, agent, seq, sample_batch("crossed", agent, T0, 1_000, 1))
    };
    for seq in 1..=100 {
        committed(a.write(seg("gw-a", seq)).await);
    }
    assert!(a.requests().take_kind(Ask::Checkpoint).is_empty());
    // b takes version 100, the multiple of the interval.
    assert_eq!(committed(b.write(seg("gw-b", 1)).await), 100);
    // a loses 100, commits 101, and still asks: it crossed the multiple.
    assert_eq!(committed(a.write(seg("gw-a", 101)).await), 101);
    assert_eq!(a.requests().take_kind(Ask::Checkpoint), vec![t.clone()]);
}

#[tokio::test]
async fn the_writer_waits_while_a_compaction_holds_the_commit_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _storage, _stop) = open(dir.path()).await;
    let t: TableName = "db.gated".parse().unwrap();
    let seg = |seq: u64| {
        let batch = sample_batch("gated", "gw", T0 + seq as i64 * 1_000_000, 1_000, 2);
        segment_request(&t, "gw", seq, batch)
    };
    tables.write(seg(1)).await.unwrap();
    let gate = tables.commit_gate(&t).expect("the table has a writer");
    let held = gate.lock().await;
    let write = tokio::spawn({
        let (tables, request) = (tables.clone(), seg(2));
        async move { tables.write(request).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the append waits for the gate");
    drop(held);
    assert!(matches!(
        write.await.unwrap().unwrap(),
        WriteOutcome::Committed { version: 1, .. }
    ));
}

#[tokio::test]
async fn a_compaction_lands_on_a_table_written_without_a_pause() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (tables, _storage, _stop) = open(dir.path()).await;
    let t: TableName = "db.hot".parse().unwrap();
    let seg = move |seq: u64| {
        let batch = sample_batch("hot", "gw", T0 + seq as i64 * 1_000_000, 1_000, 2);
        segment_request(&t, "gw", seq, batch)
    };
    for seq in 1..=8 {
        tables.write(seg(seq)).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (tables, stop) = (tables.clone(), stop.clone());
        async move {
            let mut seq = 9;
            while !stop.load(Ordering::Relaxed) {
                match tables.write(seg(seq)).await {
                    Ok(WriteOutcome::Committed { .. }) => seq += 1,
                    other => panic!("{other:?}"),
                }
            }
            seq - 1
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let policy = compact::CompactionPolicy {
        target_file_size: 64 << 20,
        min_files: 2,
        settle: Duration::from_secs(3600),
    };
    let t: TableName = "db.hot".parse().unwrap();
    let report = tables
        .compact(&t, &policy, chrono::Utc::now())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let last = writer.await.unwrap();
    assert!(last > 8, "the writer kept committing");
    assert_eq!(report.partitions, 1, "{report:?}");
    assert!(report.files_removed >= 8, "{report:?}");
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM db.hot")
            .await
            .unwrap(),
        i64::try_from(last * 2).unwrap()
    );
}

#[tokio::test]
async fn a_real_gap_in_the_log_still_fails_a_checkpoint_after_listing_again() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _storage, _stop) = open(dir.path()).await;
    let t: TableName = "db.gap".parse().unwrap();
    for seq in 1..=4 {
        let batch = sample_batch("gap", "a", T0 + seq as i64 * 1_000_000, 100, 1);
        committed(tables.write(segment_request(&t, "gw-1", seq, batch)).await);
    }
    // Versions 0..=3; without version 2 the log has a gap 1 -> 3.
    let log = dir.path().join("tables/db/gap/_delta_log");
    std::fs::remove_file(log.join("00000000000000000002.json")).unwrap();
    let started = std::time::Instant::now();
    let err = tables.checkpoint(&t).await.unwrap_err().to_string();
    // The kernel's words for a gap are the ones the retry looks for.
    assert!(err.contains(super::append::LISTING_GAP), "{err}");
    // It listed again before giving up (10 + 20 + 30 + 40 ms apart).
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}
