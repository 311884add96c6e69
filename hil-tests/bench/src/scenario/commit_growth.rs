//! Commit growth: what the files a table already holds cost a commit.
//! Baseline, same hub, same run: the same commit when the table holds 100
//! files.
//!
//! A table `grow.m` gets one row in each of 100 days (100 files, one per
//! day partition), and a commit of 10,000 line-protocol rows into another
//! day is timed (HTTP request to answer, which comes after the Delta
//! commit). Then bodies of one row per day add 100 files per commit until
//! the table holds 20,000 active files (`--quick`: 2,000; compaction off),
//! and the same commit is timed again.
//!
//! The log's length is the other thing a table accumulates: it keeps 30
//! days of commits. A second table `grow.log` gets the same timed commits
//! and `count(*)` queries while its log is young, then 10,000 one-row
//! commits (`--quick`: 500) and a compaction of their one-row files, then
//! the same commits and queries again. The
//! note also times object_store's own `LocalFileSystem` listing that
//! `_delta_log` from its last version: what every listing of the log (one
//! per query among them) cost before `local_log.rs`.

use std::path::Path;
use std::time::Instant;

use crate::procs::{Hub, HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

const T0: u64 = 1_700_000_000_000_000_000;
const DAY_NS: u64 = 86_400_000_000_000;
const DAYS: u64 = 100;
const ROWS: u64 = 10_000;

/// One row in each of the 100 days: 100 new files in one commit.
fn spread(round: u64) -> String {
    (0..DAYS)
        .map(|d| format!("m,site=s0 v={round} {}\n", T0 + d * DAY_NS + round))
        .collect()
}

/// `n` commits of 10,000 rows into day 200 of `grow.<m>`, ms each.
fn time_commits(hub: &Hub, m: &str, first: u64, n: u64) -> Vec<f64> {
    (first..first + n)
        .map(|k| {
            let body: String = (0..ROWS)
                .map(|i| {
                    format!(
                        "{m},site=s{} v={i} {}\n",
                        i % 10,
                        T0 + 200 * DAY_NS + k * ROWS + i
                    )
                })
                .collect();
            let t = Instant::now();
            hub.post_lp("grow", body.as_bytes());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// Data files under `dir` (every one is active: compaction is off).
fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "_delta_log") {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &Path) -> Section {
    let files: u64 = if scale.quick { 2_000 } else { 20_000 };
    let samples: u64 = if scale.quick { 5 } else { 20 };
    let mut section = Section::new(
        "commit-growth",
        &format!("Commit growth: a 10,000-row commit into a table of {files} files"),
    );
    let mut hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let table = dir.join("tables").join("grow").join("m");
    hub.post_lp("grow", spread(0).as_bytes());
    let small_files = parquet_files(&table);
    let small = time_commits(&hub, "m", 0, samples);

    let started = Instant::now();
    let mut rounds: u64 = 0;
    while (parquet_files(&table) as u64) < files {
        for _ in 0..10 {
            rounds += 1;
            hub.post_lp("grow", spread(rounds).as_bytes());
        }
    }
    let grow_s = started.elapsed().as_secs_f64();
    let large_files = parquet_files(&table);
    let large = time_commits(&hub, "m", samples, samples);
    let rows = hub.count("grow.m");
    assert_eq!(
        rows,
        DAYS * (rounds + 1) + 2 * samples * ROWS,
        "every row is in the table once"
    );

    section.compare(Comparison::new(
        format!("commit of {ROWS} rows, table of {large_files} files"),
        Unit::Ms,
        &large,
        format!("the same commit, table of {small_files} files"),
        &small,
    ));
    section.note(format!(
        "p99 {:.1} ms with {large_files} files, {:.1} ms with {small_files} ({samples} commits each, line protocol over \
         HTTP, each answered after its Delta commit); growing the table took {grow_s:.1} s ({rounds} commits of {DAYS} \
         files, {:.0} ms each)",
        percentile(&large, 0.99),
        percentile(&small, 0.99),
        grow_s * 1000.0 / rounds as f64,
    ));
    log_growth(&mut section, &hub, dir, scale, samples);
    hub.stop();
    section
}

/// `n` timed `count(*)` queries of `grow.log`, ms each.
fn time_queries(hub: &Hub, n: u64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            hub.count("grow.log");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// ms for `LocalFileSystem` (object_store) to list `log` from its last
/// version: what each listing cost before `local_log.rs`; the entries.
fn plain_listing(log: &Path) -> (f64, usize) {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path as StorePath;

    let entries = std::fs::read_dir(log).map_or(0, Iterator::count);
    let store = LocalFileSystem::new_with_prefix(log).expect("the log directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let offset = StorePath::from(format!("{:020}", entries));
    let runs = 5;
    let t = Instant::now();
    for _ in 0..runs {
        let listed: Vec<_> = rt
            .block_on(store.list_with_offset(None, &offset).try_collect())
            .expect("a listing");
        std::hint::black_box(listed);
    }
    (
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(runs),
        entries,
    )
}

/// The same commits and queries into `grow.log` with a young log and with
/// a long one.
fn log_growth(section: &mut Section, hub: &Hub, dir: &Path, scale: &Scale, samples: u64) {
    let commits: u64 = if scale.quick { 500 } else { 10_000 };
    let log = dir
        .join("tables")
        .join("grow")
        .join("log")
        .join("_delta_log");
    let young = time_commits(hub, "log", 0, samples);
    let young_files = std::fs::read_dir(&log).map_or(0, Iterator::count);
    let young_data = parquet_files(&dir.join("tables").join("grow").join("log"));
    let young_q = time_queries(hub, samples);
    let started = Instant::now();
    for k in 0..commits {
        let line = format!("log,site=s0 v={k} {}\n", T0 + 300 * DAY_NS + k);
        hub.post_lp("grow", line.as_bytes());
    }
    let grow_s = started.elapsed().as_secs_f64();
    // One file per commit: compact them, so that what differs from the
    // young table is the log, not the files.
    let compacted = hub.compact();
    let (removed, added) = (&compacted["files_removed"], &compacted["files_added"]);
    let long = time_commits(hub, "log", samples, samples);
    let long_q = time_queries(hub, samples);
    let (listing_ms, long_files) = plain_listing(&log);
    assert_eq!(
        hub.count("grow.log"),
        2 * samples * ROWS + commits,
        "every row is in the table once"
    );
    section.compare(Comparison::new(
        format!("commit of {ROWS} rows, log of {long_files} files"),
        Unit::Ms,
        &long,
        format!("the same commit, log of {young_files} files"),
        &young,
    ));
    section.compare(Comparison::new(
        format!("count(*) of that table, log of {long_files} files"),
        Unit::Ms,
        &long_q,
        format!("the same query, log of {young_files} files"),
        &young_q,
    ));
    section.note(format!(
        "the long log: {commits} one-row commits took {grow_s:.1} s ({:.2} ms each), then a compaction replaced {removed} \
         files (of both tables) with {added} (the young table had {young_data}); object_store's LocalFileSystem \
         lists that _delta_log from its last version in {listing_ms:.1} ms (what every log listing of the table, one per \
         query among them, cost before local_log.rs)",
        grow_s * 1000.0 / commits as f64,
    ));
}
