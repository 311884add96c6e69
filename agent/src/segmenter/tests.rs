//! Segmenter tests against a real store.

use std::time::Duration;

use bytesize::ByteSize;
use ferry_protocols::segment::{SegmentSeq, read_segment};
use ferry_protocols::{FieldKey, FieldValue, Measurement, Reading};

use super::*;
use crate::ingest::{Durability, Incoming};
use crate::store::tests::{T0, buffered_ns, open, reading, segment_ns, test_config};
use crate::store::{ManualClock, SegmentConfig};

fn config(max_rows: usize) -> SegmentConfig {
    SegmentConfig {
        max_rows,
        max_bytes: ByteSize::mib(4),
        max_age: Duration::from_secs(5),
        ..SegmentConfig::default()
    }
}

#[tokio::test]
async fn cuts_by_rows_and_by_age_on_the_store_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(100));

    let rows: Vec<Incoming> = (0..250).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    let report = segmenter.cut_due().await.expect("cuts");
    // Two full segments; the 50 left are young.
    assert_eq!((report.segments, report.rows), (2, 200));
    assert_eq!(buffered_ns(&path).len(), 50);

    clock.advance(Duration::from_secs(4));
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(segmenter.cut_due().await.expect("cuts").rows, 50);
    assert!(buffered_ns(&path).is_empty());

    let segments = segment_ns(&path);
    assert_eq!(segments.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    let all: Vec<u64> = segments.iter().flat_map(|s| s.2.clone()).collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..250).collect::<Vec<_>>());

    let pending = store
        .next_pending_segment()
        .await
        .expect("reads")
        .expect("pending");
    let segment = read_segment(pending.file.clone()).expect("valid");
    assert_eq!(segment.meta.header.sequence, SegmentSeq(1));
    assert_eq!(segment.meta.header.agent_id, *store.agent_id());
    assert_eq!(segment.meta.header.first_reading_id, 1);
    assert_eq!(segment.meta.header.last_reading_id, 100);
    assert_eq!(segment.meta.row_count, 100);
    assert_eq!(pending.database.as_str(), "db");
    assert_eq!(pending.measurement.as_str(), "m");
    // Readings come back exactly.
    let back = segment.readings().expect("readings");
    let mut expected: Vec<Reading> = (0..100).map(|n| reading("m", n).reading).collect();
    expected.sort_by_key(|r| r.time_ns);
    assert_eq!(back, expected);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_type_conflict_goes_into_the_next_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(1000));
    let mut rows: Vec<Incoming> = (0..3).map(|n| reading("m", n)).collect();
    let mut odd = reading("m", 3);
    odd.reading.fields.insert(
        FieldKey::new("v").expect("valid"),
        FieldValue::Str("three".into()),
    );
    rows.push(odd);
    rows.push(reading("m", 4));
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    let report = segmenter.flush().await.expect("cuts");
    assert_eq!((report.segments, report.rows), (3, 5));
    let segments = segment_ns(&path);
    let ns: Vec<Vec<u64>> = segments.into_iter().map(|s| s.2).collect();
    assert_eq!(ns, vec![vec![0, 1, 2], vec![3], vec![4]]);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn an_unsegmentable_reading_becomes_a_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(1000));
    let empty = Incoming {
        database: reading("m", 0).database,
        reading: Reading::new(Measurement::new("m").expect("valid"), T0),
    };
    store
        .append(
            vec![reading("m", 1), empty, reading("m", 2)],
            Durability::Durable,
        )
        .await
        .expect("stored");
    let report = segmenter.flush().await.expect("cuts");
    assert_eq!(
        report,
        CutReport {
            segments: 2,
            rows: 2,
            unsegmentable: 1
        }
    );
    let status = store.status().await.expect("status");
    assert_eq!(status.dead_letters, 1);
    assert_eq!(status.drops.get("unsegmentable"), Some(&1));
    assert_eq!(status.backlog_readings, 0);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_reading_wider_than_max_columns_becomes_a_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let mut cfg = config(1000);
    cfg.max_columns = 16;
    let segmenter = Segmenter::new(store.clone(), cfg);
    let mut wide = reading("m", 3);
    for i in 0..2_000 {
        wide.reading = wide.reading.with_field(
            ferry_protocols::FieldKey::new(format!("f{i}")).expect("valid"),
            ferry_protocols::FieldValue::F64(1.0),
        );
    }
    store
        .append(
            vec![reading("m", 1), wide, reading("m", 2)],
            Durability::Durable,
        )
        .await
        .expect("stored");
    let report = segmenter.flush().await.expect("cuts");
    assert_eq!((report.rows, report.unsegmentable), (2, 1));
    let status = store.status().await.expect("status");
    assert_eq!(status.drops.get("unsegmentable"), Some(&1));
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_large_backlog_is_cut_one_bounded_segment_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(
        store.clone(),
        SegmentConfig {
            max_rows: 10_000,
            max_bytes: ByteSize::kib(8),
            max_age: Duration::from_secs(5),
            ..SegmentConfig::default()
        },
    );
    for chunk in 0..5u64 {
        let rows: Vec<Incoming> = (0..1000)
            .map(|n| reading(if n % 2 == 0 { "a" } else { "b" }, chunk * 1000 + n))
            .collect();
        store
            .append(rows, Durability::Durable)
            .await
            .expect("stored");
    }
    let report = segmenter.flush().await.expect("cuts");
    assert_eq!(report.rows, 5000);
    let segments = segment_ns(&path);
    assert!(
        segments.len() > 10,
        "bounded by max_bytes: {}",
        segments.len()
    );
    // Bodies are ~20 bytes: no segment holds more than 8 KiB of them.
    assert!(segments.iter().all(|s| s.2.len() <= 8 * 1024 / 15));
    assert!(segments.windows(2).all(|w| w[0].0 < w[1].0));
    let status = store.status().await.expect("status");
    assert_eq!(status.pending_segment_rows, 5000);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn run_cuts_on_its_own_and_flushes_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Segmenter::new(store.clone(), config(10)).run(shutdown.clone()));
    let rows: Vec<Incoming> = (0..25).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.status().await.expect("status").pending_segments < 2 {
        assert!(std::time::Instant::now() < deadline, "never cut");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    task.await.expect("joins").expect("flushes");
    let status = store.status().await.expect("status");
    assert_eq!((status.pending_segments, status.backlog_readings), (3, 0));
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_pass_that_cuts_wakes_the_uplink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let uplink = Arc::new(Notify::new());
    let segmenter = Segmenter::new(store.clone(), config(10)).notify_cuts(uplink.clone());
    let woken = || tokio::time::timeout(Duration::from_millis(200), uplink.notified());

    store
        .append(vec![reading("m", 1)], Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, 0);
    assert!(woken().await.is_err(), "no segment, no wake-up");

    let rows: Vec<Incoming> = (2..12).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, 1);
    woken().await.expect("a cut wakes the uplink");
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_clock_stepping_back_does_not_hold_readings_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(1000));
    let rows: Vec<Incoming> = (0..10).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    // An NTP step of one hour back: the readings were received "in the
    // future". Waiting for max_age on this clock would take an hour.
    clock.set(T0 - 3_600_000_000_000);
    assert_eq!(segmenter.cut_due().await.expect("cuts").rows, 10);
    // Readings received after the step age normally on the new clock.
    let rows: Vec<Incoming> = (10..15).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, 0);
    clock.advance(Duration::from_secs(5));
    assert_eq!(segmenter.cut_due().await.expect("cuts").rows, 5);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn behind_the_uplink_readings_wait_for_a_full_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(10));
    let backlog = crate::store::BACKLOG_SEGMENTS;
    // The hub is unreachable: full segments pile up.
    let rows: Vec<Incoming> = (0..10 * backlog).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, backlog);
    // Old but few readings: not cut into a tiny segment while behind...
    let rows: Vec<Incoming> = (0..3).map(|n| reading("m", 1000 + n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    clock.advance(Duration::from_secs(60));
    assert_eq!(segmenter.cut_due().await.expect("cuts").segments, 0);
    // ...but a full segment's worth still is.
    let rows: Vec<Incoming> = (3..10).map(|n| reading("m", 1000 + n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(segmenter.cut_due().await.expect("cuts").rows, 10);
    // The uplink catches up: age cuts again.
    for seq in 1..=backlog + 1 {
        store.ack_segment(SegmentSeq(seq)).await.expect("acked");
    }
    store
        .append(vec![reading("m", 2000)], Durability::Durable)
        .await
        .expect("stored");
    clock.advance(Duration::from_secs(5));
    assert_eq!(segmenter.cut_due().await.expect("cuts").rows, 1);
    store.shutdown().await.expect("shuts down");
}

#[tokio::test]
async fn a_cut_holds_what_its_read_saw_and_fails_stale_when_those_readings_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(1000));
    let limits = segmenter.limits();
    let append = |from: u64, n: u64| {
        let store = store.clone();
        async move {
            let rows: Vec<Incoming> = (from..from + n).map(|i| reading("m", i)).collect();
            store
                .append(rows, Durability::Durable)
                .await
                .expect("stored");
        }
    };
    // One reader for every plan, as a pass uses it: each read must see
    // what was committed since the last.
    let reader = std::sync::Arc::new(std::sync::Mutex::new(store.open_reader().expect("reader")));
    let planned = |due: DueGroup| {
        let agent_id = store.agent_id().clone();
        let reader = reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = reader.lock().expect("lock");
            plan(&due, &mut reader, limits, &agent_id, 64)
        })
    };
    let cut_of = |plan: Result<Plan, StoreError>| match plan.expect("planned") {
        Plan::Segment(cut) => cut,
        Plan::Poison { .. } => panic!("no poison here"),
    };

    // Readings committed after the read stay buffered for the next cut.
    append(0, 100).await;
    let due = store
        .load_due(limits, true)
        .await
        .expect("loads")
        .expect("due");
    let cut = cut_of(planned(due).await.expect("joins"));
    append(100, 50).await;
    assert_eq!(cut.rows, 100);
    store.commit_segment(cut).await.expect("commits");
    assert_eq!(buffered_ns(&path).len(), 50);

    // A reading of the cut deleted between the read and the commit: the
    // commit fails as stale and changes nothing.
    let due = store
        .load_due(limits, true)
        .await
        .expect("loads")
        .expect("due");
    assert_eq!(due.first_id, 101);
    let cut = cut_of(planned(due.clone()).await.expect("joins"));
    assert_eq!((cut.first_id, cut.last_id, cut.rows), (101, 150, 50));
    store
        .exec("DELETE FROM readings WHERE id = 120")
        .await
        .expect("deletes");
    assert!(matches!(
        store.commit_segment(cut).await,
        Err(StoreError::Stale)
    ));
    assert_eq!(buffered_ns(&path).len(), 49);
    assert_eq!(segment_ns(&path).len(), 1);

    // Every reading gone before the read: the plan is stale, not empty.
    store
        .exec("DELETE FROM readings WHERE grp = 1")
        .await
        .expect("deletes");
    assert!(matches!(
        planned(due).await.expect("joins"),
        Err(StoreError::Stale)
    ));
    // The writer's accounting still counts them: finding the group empty,
    // it resynchronises instead of offering it again.
    assert!(store.load_due(limits, true).await.expect("loads").is_none());
    store.shutdown().await.expect("shuts down");
}

/// Cuts run on a thread of their own (named, so it shows in `top -H`),
/// the same one for every job it is given; a panic there is an error for
/// the segmenter to log and retry, not a hang, and that thread answers no
/// more jobs.
#[tokio::test]
async fn cuts_run_on_a_thread_of_their_own_and_a_panic_there_is_an_error() {
    let mut thread = CutThread::start().expect("starts");
    let name = thread
        .run(|| std::thread::current().name().map(str::to_owned))
        .await
        .expect("ran");
    assert_eq!(name.as_deref(), Some("ferry-cut"));
    let runtime = std::thread::current().id();
    let first = thread
        .run(|| std::thread::current().id())
        .await
        .expect("ran");
    let second = thread
        .run(|| std::thread::current().id())
        .await
        .expect("ran");
    assert_ne!(first, runtime);
    assert_eq!(first, second, "one thread for the jobs of a spell");

    let panicked = tokio::time::timeout(
        Duration::from_secs(10),
        thread.run(|| -> u32 { panic!("a cut that panics") }),
    )
    .await
    .expect("answers, does not hang");
    assert!(
        matches!(panicked, Err(StoreError::Io { .. })),
        "{panicked:?}"
    );
    let after = tokio::time::timeout(Duration::from_secs(10), thread.run(|| 1))
        .await
        .expect("answers, does not hang");
    assert!(matches!(after, Err(StoreError::Io { .. })), "{after:?}");
    let mut fresh = CutThread::start().expect("starts");
    assert_eq!(fresh.run(|| 2).await.expect("ran"), 2);
}

/// The segmenter's loop keeps its cut thread (and reader) while passes cut,
/// and ends it with the first pass that finds nothing due, so an idle agent
/// holds none of a cut's memory.
#[tokio::test]
async fn the_cut_thread_lives_while_passes_cut_and_ends_with_the_first_idle_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let store = open(&path, &test_config(), &clock).await;
    let segmenter = Segmenter::new(store.clone(), config(100));
    let mut spell = None;

    let rows: Vec<Incoming> = (0..150).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    let report = segmenter.cut(false, &mut spell).await.expect("cuts");
    assert_eq!(report.segments, 1);
    let thread = spell.as_mut().expect("kept after a pass that cut");
    assert!(thread.reader.is_some(), "its reader is kept with it");
    let kept = thread
        .run(|| std::thread::current().id())
        .await
        .expect("ran");

    let rows: Vec<Incoming> = (150..250).map(|n| reading("m", n)).collect();
    store
        .append(rows, Durability::Durable)
        .await
        .expect("stored");
    assert_eq!(
        segmenter
            .cut(false, &mut spell)
            .await
            .expect("cuts")
            .segments,
        1
    );
    let again = spell
        .as_mut()
        .expect("still kept")
        .run(|| std::thread::current().id())
        .await
        .expect("ran");
    assert_eq!(kept, again, "the second pass cut on the same thread");

    // 50 young readings left: nothing due, and the thread goes.
    assert_eq!(
        segmenter
            .cut(false, &mut spell)
            .await
            .expect("cuts")
            .segments,
        0
    );
    assert!(spell.is_none(), "ended by a pass that cut nothing");
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        segmenter.cut(false, &mut spell).await.expect("cuts").rows,
        50
    );
    assert!(spell.is_some(), "a new spell starts with the next cut");
    store.shutdown().await.expect("shuts down");
}
