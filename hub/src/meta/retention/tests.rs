use super::*;

fn arc_policy(name: &str, db: &str, m: Option<&str>, days: u32, buffer: u32) -> NewPolicy {
    NewPolicy {
        name: name.to_owned(),
        database: db.to_owned(),
        measurement: m.map(str::to_owned),
        retention_days: days,
        buffer_days: buffer,
        is_active: true,
    }
}

#[tokio::test]
async fn policies_round_trip_and_resolve_most_specific_first() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
    meta.set_retention("plant", None, 30).await.unwrap();
    meta.set_retention("plant", Some("vibration"), 3)
        .await
        .unwrap();
    let updated = meta.set_retention("plant", None, 60).await.unwrap();
    assert_eq!(updated.days, 60);
    assert_eq!(updated.name, "plant");
    let all = meta.list_retention().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(days_for(&all, "plant", "vibration", 0), Some(3));
    assert_eq!(days_for(&all, "plant", "temperature", 0), Some(60));
    assert_eq!(days_for(&all, "other", "x", 0), None);
    assert_eq!(days_for(&all, "other", "x", 7), Some(7));
    let gone = meta
        .delete_retention("plant", Some("vibration"))
        .await
        .unwrap();
    assert_eq!(gone.map(|p| p.days), Some(3));
    assert_eq!(
        meta.delete_retention("plant", Some("vibration"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        days_for(
            &meta.list_retention().await.unwrap(),
            "plant",
            "vibration",
            0
        ),
        Some(60)
    );
}

#[tokio::test]
async fn arc_policies_have_ids_names_buffers_and_an_active_flag() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
    let p = meta
        .create_retention(arc_policy("short", "plant", Some("vib"), 7, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.retention_days, p.buffer_days, p.kept_days()), (7, 2, 9));
    assert!(p.is_active);
    // Name and scope are each unique.
    let dup_name = meta
        .create_retention(arc_policy("short", "plant", None, 30, 0))
        .await
        .unwrap();
    assert!(dup_name.is_err());
    let dup_scope = meta
        .create_retention(arc_policy("other", "plant", Some("vib"), 30, 0))
        .await
        .unwrap();
    assert!(dup_scope.unwrap_err().contains("plant.vib"));
    let db = meta
        .create_retention(arc_policy("plant-wide", "plant", None, 30, 0))
        .await
        .unwrap()
        .unwrap();

    let all = meta.list_retention().await.unwrap();
    assert_eq!(days_for(&all, "plant", "vib", 0), Some(9));
    // Inactive: as if it were not there.
    let off = meta
        .update_retention(
            p.id,
            PolicyChange {
                is_active: Some(false),
                ..PolicyChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!off.is_active);
    let all = meta.list_retention().await.unwrap();
    assert_eq!(days_for(&all, "plant", "vib", 0), Some(30));
    assert_eq!(policy_for(&all, "plant", "vib").map(|p| p.id), Some(db.id));
    // Moving a policy onto a taken scope is refused.
    let clash = meta
        .update_retention(
            p.id,
            PolicyChange {
                measurement: Some(None),
                ..PolicyChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(clash.is_err());
    assert!(
        meta.update_retention(999, PolicyChange::default())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        meta.retention_policy(p.id).await.unwrap().unwrap().name,
        "short"
    );
}

#[tokio::test]
async fn executions_are_recorded_newest_first_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
    let p = meta.set_retention("plant", None, 30).await.unwrap();
    let record = |i: u64, dry_run: bool| ExecutionRecord {
        policy_id: p.id,
        started_at_ms: 1_000 + i64::try_from(i).unwrap(),
        ok: true,
        dry_run,
        deleted_count: i,
        files_deleted: 1,
        cutoff_date: Some("2026-11-01".to_owned()),
        duration_ms: 1.5,
        error: None,
    };
    for i in 0..(EXECUTIONS_KEPT as u64 + 5) {
        meta.record_retention_execution(record(i, false))
            .await
            .unwrap();
    }
    meta.record_retention_execution(record(7, true))
        .await
        .unwrap();
    let newest = meta.retention_executions(p.id, 3).await.unwrap();
    assert!(newest[0].dry_run);
    assert_eq!(newest[1].deleted_count, EXECUTIONS_KEPT + 4);
    let all = meta.retention_executions(p.id, 100_000).await.unwrap();
    assert_eq!(all.len() as i64, EXECUTIONS_KEPT);
    // The policy shows its last real execution, not the dry run.
    let shown = meta.retention_policy(p.id).await.unwrap().unwrap();
    assert_eq!(shown.last_deleted_count, Some(EXECUTIONS_KEPT + 4));
    assert_eq!(shown.last_execution_status.as_deref(), Some("completed"));
    meta.delete_retention_by_id(p.id).await.unwrap().unwrap();
    assert!(
        meta.retention_executions(p.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
