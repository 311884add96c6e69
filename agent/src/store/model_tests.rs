//! A model test: random interleavings of appends, cuts, acks, quarantines,
//! reopens and budget pressure, checked against a simple in-memory model.
//!
//! The invariant, checked after every step: every reading the store took
//! (a durable append that resolved `Ok`, or a best-effort append) is in
//! exactly one place: the `readings` table, one pending or quarantined
//! segment, or an acknowledged segment; or it was dropped, and the drop
//! counters add up to exactly the readings that are missing. Nothing
//! appears twice, nothing appears that was not taken, and segment
//! sequences strictly increase.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytesize::ByteSize;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{FieldKey, FieldValue};
use proptest::prelude::*;

use super::tests::{T0, buffered_ns, open, reading, segment_ns};
use super::*;
use crate::ingest::{Durability, Incoming, RejectReason};
use crate::segmenter::Segmenter;

#[derive(Debug, Clone)]
enum Op {
    Append {
        durable: bool,
        rows: u8,
        measurement: u8,
        conflict: bool,
    },
    Cut {
        force: bool,
    },
    Ack,
    Quarantine,
    Advance {
        secs: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 1..40u8, 0..3u8, prop::bool::weighted(0.1)).prop_map(|(durable, rows, measurement, conflict)| Op::Append { durable, rows, measurement, conflict }),
        2 => any::<bool>().prop_map(|force| Op::Cut { force }),
        2 => Just(Op::Ack),
        1 => Just(Op::Quarantine),
        1 => (0..8u8).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Reopen),
    ]
}

/// Reasons that count lost readings (not dead letters, not refusals).
const LOSSES: [&str; 5] = [
    "qos0_full",
    "qos0_storage_error",
    "oldest_full",
    "quarantined_full",
    "unsegmentable",
];

#[derive(Default)]
struct Model {
    /// Every reading the store took, by its `n`.
    taken: BTreeSet<u64>,
    /// Readings in segments the hub acknowledged.
    acked: BTreeSet<u64>,
    max_seq: u64,
    next_n: u64,
}

async fn check(
    path: &std::path::Path,
    store: &StoreHandle,
    model: &mut Model,
) -> Result<(), TestCaseError> {
    let status = store
        .status()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        status.used_bytes <= status.max_bytes + 4096,
        "over budget: {status:?}"
    );
    let mut seen = BTreeMap::new();
    for n in buffered_ns(path) {
        *seen.entry(n).or_insert(0u32) += 1;
    }
    for (seq, _state, ns) in segment_ns(path) {
        if seq > model.max_seq {
            model.max_seq = seq;
        }
        for n in ns {
            *seen.entry(n).or_insert(0u32) += 1;
        }
    }
    for n in &model.acked {
        *seen.entry(*n).or_insert(0u32) += 1;
    }
    for (n, count) in &seen {
        prop_assert_eq!(*count, 1, "reading {} is in {} places", n, count);
        prop_assert!(model.taken.contains(n), "reading {} was never taken", n);
    }
    let missing = model.taken.len() - seen.len();
    let counted: u64 = LOSSES.iter().filter_map(|r| status.drops.get(*r)).sum();
    prop_assert_eq!(
        missing as u64,
        counted,
        "missing readings vs drop counters {:?}",
        status.drops
    );
    Ok(())
}

async fn run(ops: Vec<Op>, when_full: WhenFull) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buffer.db");
    let clock = ManualClock::new(T0);
    let config = StoreConfig {
        max_bytes: ByteSize::kib(24),
        when_full,
        commit_interval: Duration::from_millis(1),
        qos0_max_delay: Duration::from_secs(2),
        integrity_check: IntegrityCheck::Quick,
        ..StoreConfig::default()
    };
    let segment = SegmentConfig {
        max_rows: 50,
        max_bytes: ByteSize::kib(4),
        max_age: Duration::from_secs(5),
        ..SegmentConfig::default()
    };
    let mut store = open(&path, &config, &clock).await;
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                durable,
                rows,
                measurement,
                conflict,
            } => {
                let batch: Vec<Incoming> = (0..rows)
                    .map(|i| {
                        model.next_n += 1;
                        let mut r = reading(["a", "b", "c"][measurement as usize], model.next_n);
                        if conflict && i == 0 {
                            r.reading
                                .fields
                                .insert(FieldKey::new("v").expect("valid"), FieldValue::I64(1));
                        }
                        r
                    })
                    .collect();
                let ns: Vec<u64> = (model.next_n + 1 - u64::from(rows)..=model.next_n).collect();
                let durability = if durable {
                    Durability::Durable
                } else {
                    Durability::BestEffort
                };
                match store.append(batch, durability).await {
                    Ok(_) => model.taken.extend(ns),
                    Err(RejectReason::Full) => {
                        prop_assert!(durable && when_full == WhenFull::RejectNew)
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("append: {other:?}"))),
                }
            }
            Op::Cut { force } => {
                let segmenter = Segmenter::new(store.clone(), segment.clone());
                let r = if force {
                    segmenter.flush().await
                } else {
                    segmenter.cut_due().await
                };
                r.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Ack => {
                if let Some(p) = store
                    .next_pending_segment()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                {
                    let segment =
                        ferry_protocols::segment::read_segment(p.file.clone()).expect("valid");
                    let ns: Vec<u64> = segment
                        .readings()
                        .expect("readings")
                        .iter()
                        .filter_map(|r| match r.fields.get("n") {
                            Some(FieldValue::U64(n)) => Some(*n),
                            _ => None,
                        })
                        .collect();
                    prop_assert!(store.ack_segment(p.seq).await.expect("acks"));
                    model.acked.extend(ns);
                }
            }
            Op::Quarantine => {
                if let Some(p) = store.next_pending_segment().await.expect("reads") {
                    prop_assert!(
                        store
                            .quarantine_segment(p.seq, "model")
                            .await
                            .expect("quarantines")
                    );
                }
            }
            Op::Advance { secs } => {
                clock.advance(Duration::from_secs(u64::from(secs)));
                store.tick().await.expect("ticks");
            }
            Op::Reopen => {
                store.shutdown().await.expect("shuts down");
                store = open(&path, &config, &clock).await;
            }
        }
        let before = model.max_seq;
        check(&path, &store, &mut model).await?;
        let next = store.status().await.expect("status").next_sequence;
        prop_assert!(next > model.max_seq.max(before) || model.max_seq == 0);
        let pending = store.next_pending_segment().await.expect("reads");
        if let Some(p) = pending {
            prop_assert!(p.seq <= SegmentSeq(model.max_seq));
        }
    }
    store.shutdown().await.expect("shuts down");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn model_drop_oldest(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops, WhenFull::DropOldest))?;
    }

    #[test]
    fn model_reject_new(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops, WhenFull::RejectNew))?;
    }
}
