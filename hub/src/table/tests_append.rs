//! Tests of appends on the log-only snapshot (`append.rs`): statistics in
//! every `add`, checkpoints and compactions asked of maintenance, and
//! another writer taking the version first (exactly-once kept).

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
        for (name, wanted) in tables.requests().take() {
            assert_eq!(name, t);
            compactions += usize::from(wanted.compact);
            if wanted.checkpoint {
                assert_eq!(version, 100, "a checkpoint is asked at the interval");
            }
            assert_eq!(wanted.checkpoint, version == 100, "{wanted:?} at {version}");
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
    let committed = |r: Result<WriteOutcome, TableError>| match r {
        Ok(WriteOutcome::Committed { version, .. }) => version,
        other => panic!("{other:?}"),
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
