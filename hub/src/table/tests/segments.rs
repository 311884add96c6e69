//! Exactly-once and failure tests of the table writer: duplicate segments
//! and reopen, several segments of one agent in one commit, a failed `txn`
//! read, a panicking batcher.

use super::*;

#[tokio::test]
async fn duplicate_segments_commit_once_also_after_reopen() {
    let h = hub(20).await;
    let t = table("db.m");
    let seg = |seq, site| segment_request(&t, "gw-1", seq, sample_batch("m", site, T0, 1_000, 4));

    assert!(matches!(
        h.tables.write(seg(1, "a")).await.unwrap(),
        WriteOutcome::Committed { .. }
    ));
    assert_eq!(
        h.tables.write(seg(1, "a")).await.unwrap(),
        WriteOutcome::Duplicate { version: None }
    );
    // Concurrently: one commit, the others are duplicates.
    let results = futures_util::future::join_all((0..4).map(|_| h.tables.write(seg(2, "b")))).await;
    let committed = results
        .iter()
        .filter(|r| matches!(r, Ok(WriteOutcome::Committed { .. })))
        .count();
    let dups = results
        .iter()
        .filter(|r| matches!(r, Ok(WriteOutcome::Duplicate { .. })))
        .count();
    assert_eq!((committed, dups), (1, 3), "{results:?}");
    // Another agent's seq 1 is not a duplicate.
    let other = segment_request(&t, "gw-2", 1, sample_batch("m", "c", T0, 1_000, 4));
    assert!(matches!(
        h.tables.write(other).await.unwrap(),
        WriteOutcome::Committed { .. }
    ));

    let h = h.reopen().await;
    for seq in [1, 2] {
        assert!(matches!(
            h.tables.write(seg(seq, "z")).await.unwrap(),
            WriteOutcome::Duplicate { .. }
        ));
    }
    assert!(matches!(
        h.tables.write(seg(3, "d")).await.unwrap(),
        WriteOutcome::Committed { .. }
    ));
    assert_eq!(
        query_i64(&h.tables, "SELECT count(*) FROM db.m")
            .await
            .unwrap(),
        16
    );
}

#[tokio::test]
async fn two_segments_of_one_agent_in_one_batch_both_commit() {
    let h = hub(300).await;
    let t = table("db.m");
    let a = h.tables.write(segment_request(
        &t,
        "gw",
        6,
        sample_batch("m", "a", T0, 1, 2),
    ));
    let b = h.tables.write(segment_request(
        &t,
        "gw",
        5,
        sample_batch("m", "b", T0, 1, 3),
    ));
    let (a, b) = tokio::join!(a, b);
    let (WriteOutcome::Committed { version: va, .. }, WriteOutcome::Committed { version: vb, .. }) =
        (a.unwrap(), b.unwrap())
    else {
        panic!("both segments must commit");
    };
    assert_eq!(va, vb, "one commit");
    let h = h.reopen().await;
    for seq in [5, 6, 4] {
        assert!(matches!(
            h.tables
                .write(segment_request(
                    &t,
                    "gw",
                    seq,
                    sample_batch("m", "x", T0, 1, 1)
                ))
                .await
                .unwrap(),
            WriteOutcome::Duplicate { .. }
        ));
    }
}

/// A batch's segments of one agent: when the agent's `txn` cannot be read
/// for the first, the later ones must not commit either, or the first one's
/// retry (a lower sequence) would be answered as a duplicate and lost.
#[tokio::test]
async fn a_failed_txn_read_holds_back_the_agents_later_segments() {
    let h = hub(0).await;
    let t = table("db.txnfault");
    h.tables
        .write(write(&t, sample_batch("txnfault", "x", T0, 1, 1)))
        .await
        .unwrap();
    let group = |seqs: &[u64]| {
        seqs.iter()
            .map(|seq| segment_request(&t, "gw", *seq, sample_batch("txnfault", "a", T0, 1, 2)))
            .collect::<Vec<_>>()
    };
    crate::test_faults::arm(crate::test_faults::Fault::TxnRead, &t.to_string());
    let answers = h.tables.write_group(&t, group(&[1, 2])).await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Err(TableError::Storage { .. }))),
        "{answers:?}"
    );
    let answers = h.tables.write_group(&t, group(&[1, 2])).await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(WriteOutcome::Committed { .. }))),
        "{answers:?}"
    );
    let rows = sql(&h.tables, "SELECT count(*) AS n FROM db.txnfault").await;
    let n = rows[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(n, 1 + 2 * 2);
}

/// A batcher that panics fails the writes it held and had queued at once
/// (503 `WriterFailed`, never a hang); the next write starts a new batcher,
/// and other tables never notice.
#[tokio::test]
async fn a_panicking_batcher_answers_its_writes_and_is_replaced() {
    let hub = hub(200).await;
    let victim = TableName::new(
        DatabaseName::new("faults").unwrap(),
        Measurement::new("panic_batcher").unwrap(),
    );
    let other = TableName::new(
        DatabaseName::new("faults").unwrap(),
        Measurement::new("bystander").unwrap(),
    );
    crate::test_faults::arm(crate::test_faults::Fault::BatcherPanic, &victim.to_string());
    let writes: Vec<_> = (0..3)
        .map(|i| {
            let tables = hub.tables.clone();
            let request = segment_request(
                &victim,
                &format!("gw-{i}"),
                1,
                sample_batch("panic_batcher", "a", T0 + i, 1, 2),
            );
            tokio::spawn(async move { tables.write(request).await })
        })
        .collect();
    let bystander = hub.tables.write(segment_request(
        &other,
        "gw-x",
        1,
        sample_batch("bystander", "a", T0, 1, 2),
    ));
    let (bystander, answers) = tokio::join!(bystander, async {
        let mut out = Vec::new();
        for w in writes {
            out.push(tokio::time::timeout(Duration::from_secs(10), w).await);
        }
        out
    });
    assert!(
        bystander.is_ok(),
        "another table is unaffected: {bystander:?}"
    );
    // The writes the panicking batcher held or had queued fail; a write
    // that arrived after the panic (the table was idle, so the batcher
    // committed the first write at once) went to the new batcher.
    let mut failed = 0;
    for answer in answers {
        let answer = answer.expect("answered, not left waiting").expect("joined");
        match answer {
            Err(TableError::WriterFailed { .. }) => failed += 1,
            Ok(WriteOutcome::Committed { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(failed >= 1, "no write saw the batcher fail");
    // A new batcher takes the next write.
    let again = hub
        .tables
        .write(segment_request(
            &victim,
            "gw-0",
            1,
            sample_batch("panic_batcher", "a", T0, 1, 2),
        ))
        .await;
    assert!(again.is_ok(), "{again:?}");
    hub.shutdown.cancel();
    hub.tables.wait_stopped().await;
}
