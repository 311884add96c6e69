//! Deletes racing the table's other writers: a compaction that replaces
//! the files a planned delete would remove makes the delete commit nothing
//! and plan again; appends during a delete keep every row.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::conformance::{query_i64, sample_batch, segment_request};
use super::*;

const T0: i64 = 1_764_115_200_000_000_000; // 2025-11-26T00:00:00Z
const SEC: i64 = 1_000_000_000;

async fn open(dir: &std::path::Path) -> (Tables, CancellationToken) {
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.join("tables"),
        multi_writer: false,
    });
    let config = TableConfig {
        commit_interval: Duration::from_millis(10),
        ..TableConfig::default()
    };
    let shutdown = CancellationToken::new();
    let tables = Tables::open(&storage, &config, shutdown.clone())
        .await
        .unwrap();
    (tables, shutdown)
}

/// Three files of 10 rows each (sites s0, s1, s2), all on one day.
async fn three_files(tables: &Tables, table: &TableName) {
    for (seq, site) in ["s0", "s1", "s2"].iter().enumerate() {
        let start = T0 + i64::try_from(seq).unwrap() * 100 * SEC;
        tables
            .write(segment_request(
                table,
                "gw",
                seq as u64 + 1,
                sample_batch("m", site, start, SEC, 10),
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_delete_whose_files_were_compacted_meanwhile_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _shutdown) = open(dir.path()).await;
    let t: TableName = "del.m".parse().unwrap();
    three_files(&tables, &t).await;

    let plan = tables.plan_delete(&t, "site = 's1'", false).await.unwrap();
    assert_eq!(plan.report.deleted_count, 10);
    assert_eq!(plan.report.affected_files, 1);
    assert_eq!(
        plan.report.removed_files, 1,
        "every row of s1's file matches"
    );

    let policy = compact::CompactionPolicy {
        target_file_size: 64 << 20,
        min_files: 2,
        settle: Duration::ZERO,
    };
    let compacted = tables
        .compact(&t, &policy, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(compacted.files_removed, 3, "{compacted:?}");

    // The planned file is gone: committing the plan now would "remove" a
    // file no longer in the table and leave its rows in the compacted one.
    assert!(
        tables
            .apply_delete(&t, plan, "site = 's1'")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM del.m").await,
        Ok(30)
    );

    // Planned again, the delete rewrites the compacted file.
    let done = tables
        .delete_rows(&t, "site = 's1'", false, true, |_| Ok::<(), ()>(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.deleted_count, 10);
    assert_eq!(done.rewritten_files, 1, "{done:?}");
    assert!(done.version.is_some());
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM del.m").await,
        Ok(20)
    );
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM del.m WHERE site = 's1'").await,
        Ok(0)
    );
}

#[tokio::test]
async fn appends_during_a_delete_keep_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _shutdown) = open(dir.path()).await;
    let t: TableName = "del.live".parse().unwrap();
    three_files(&tables, &t).await;

    let writer = {
        let (tables, t) = (tables.clone(), t.clone());
        tokio::spawn(async move {
            let mut committed = 0;
            for seq in 10..60u64 {
                let start = T0 + i64::try_from(seq).unwrap() * 100 * SEC;
                tables
                    .write(segment_request(
                        &t,
                        "gw",
                        seq,
                        sample_batch("m", "live", start, SEC, 5),
                    ))
                    .await
                    .unwrap();
                committed += 5;
            }
            committed
        })
    };
    let mut deleted = 0;
    for site in ["s0", "s1", "s2"] {
        let report = tables
            .delete_rows(&t, &format!("site = '{site}'"), false, site != "s1", |_| {
                Ok::<(), ()>(())
            })
            .await
            .unwrap()
            .unwrap();
        deleted += report.deleted_count;
    }
    let committed = writer.await.unwrap();
    assert_eq!(deleted, 30);
    assert_eq!(
        query_i64(&tables, "SELECT count(*) FROM del.live").await,
        Ok(committed)
    );
    assert_eq!(
        query_i64(
            &tables,
            "SELECT count(*) FROM del.live WHERE site <> 'live'"
        )
        .await,
        Ok(0)
    );
}
