use super::*;

fn entry(event: &str, at_ms: i64) -> NewAuditEntry {
    NewAuditEntry {
        at_ms,
        event_type: event.to_owned(),
        actor: "admin".to_owned(),
        actor_token_id: Some(1),
        source: Some("127.0.0.1".to_owned()),
        target: Some("token 7".to_owned()),
        database: None,
        outcome: "success".to_owned(),
        status: Some(201),
        count: 1,
        detail: Some(r#"{"role":"read"}"#.to_owned()),
    }
}

async fn open() -> (tempfile::TempDir, Meta) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
    (dir, meta)
}

async fn tamper(meta: &Meta, sql: &'static str) {
    meta.call(move |c| Ok(c.execute_batch(sql)?)).await.unwrap();
}

#[tokio::test]
async fn an_intact_chain_verifies_and_filters_work() {
    let (_dir, meta) = open().await;
    let empty = meta.verify_audit_chain().await.unwrap();
    assert!(empty.ok);
    assert_eq!(empty.entries_checked, 0);
    let mut db = entry("data.delete", 2_000);
    db.database = Some("plant".to_owned());
    let ids = meta
        .append_audit(vec![
            entry("token.create", 1_000),
            db,
            entry("token.revoke", 3_000),
        ])
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2, 3]);
    let report = meta.verify_audit_chain().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, 3);
    assert_eq!(report.anchor.as_deref(), Some(&*"0".repeat(64)));

    let all = |f: AuditFilter| {
        let meta = meta.clone();
        async move {
            meta.audit_entries(AuditFilter { limit: 100, ..f })
                .await
                .unwrap()
        }
    };
    let (rows, total) = all(AuditFilter::default()).await;
    assert_eq!(total, 3);
    assert_eq!(rows.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2, 1]);
    let (rows, _) = all(AuditFilter {
        event_type: Some("token.*".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(rows.len(), 2);
    let (rows, _) = all(AuditFilter {
        database: Some("plant".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].detail, Some(serde_json::json!({"role": "read"})));
    let (rows, total) = all(AuditFilter {
        since_ms: Some(2_000),
        until_ms: Some(3_000),
        ..Default::default()
    })
    .await;
    assert_eq!((rows.len(), total), (1, 1));
    let (rows, total) = meta
        .audit_entries(AuditFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((rows[0].id, total), (2, 3));
}

#[tokio::test]
async fn a_changed_entry_is_found() {
    let (_dir, meta) = open().await;
    meta.append_audit(vec![entry("a", 1), entry("b", 2), entry("c", 3)])
        .await
        .unwrap();
    tamper(
        &meta,
        "UPDATE audit_log SET actor = 'someone else' WHERE id = 2",
    )
    .await;
    let report = meta.verify_audit_chain().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.broken_at, Some(2));
    assert!(report.problem.unwrap().contains("do not hash"));
}

#[tokio::test]
async fn a_removed_or_rechained_entry_is_found() {
    let (_dir, meta) = open().await;
    meta.append_audit(vec![entry("a", 1), entry("b", 2), entry("c", 3)])
        .await
        .unwrap();
    tamper(&meta, "DELETE FROM audit_log WHERE id = 2").await;
    let report = meta.verify_audit_chain().await.unwrap();
    assert_eq!(report.broken_at, Some(3));
    assert!(report.problem.unwrap().contains("missing"));

    // Removing the first entry is found too (no prune accounts for it).
    let (_dir2, meta) = open().await;
    meta.append_audit(vec![entry("a", 1), entry("b", 2)])
        .await
        .unwrap();
    tamper(&meta, "DELETE FROM audit_log WHERE id = 1").await;
    let report = meta.verify_audit_chain().await.unwrap();
    assert_eq!(report.broken_at, Some(2));
}

#[tokio::test]
async fn pruning_keeps_the_chain_verifiable() {
    let (_dir, meta) = open().await;
    meta.append_audit(vec![
        entry("a", 1_000),
        entry("b", 2_000),
        entry("c", 5_000),
    ])
    .await
    .unwrap();
    assert_eq!(meta.prune_audit(500).await.unwrap(), None);
    assert_eq!(meta.prune_audit(3_000).await.unwrap(), Some(2));
    let report = meta.verify_audit_chain().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.first_id, Some(3));
    assert_eq!(report.entries_checked, 2);
    let (rows, _) = meta
        .audit_entries(AuditFilter {
            event_type: Some("audit.prune".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows[0].detail.as_ref().unwrap()["deleted"], 2);
}
