use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::*;
use crate::auth::{Role, token};
use crate::meta::{Meta, MetaError, NewToken, TokenChange, TokenLookup};

struct Lake {
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
}

impl Lake {
    fn new() -> Lake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lake")).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("lake")).unwrap());
        Lake { dir, store }
    }

    async fn hub(&self, name: &str, read_only: bool) -> Result<Meta> {
        let meta = Meta::open(&self.dir.path().join(format!("{name}.db")))
            .await
            .unwrap();
        attach(
            &meta,
            LogPlace {
                store: Arc::clone(&self.store),
                root: Path::from(""),
                hub: name.to_owned(),
                read_only,
                snapshot_every: 3,
            },
        )
        .await?;
        Ok(meta)
    }

    fn entries(&self) -> usize {
        let dir = self.dir.path().join("lake/_ferry/meta/log");
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }
}

fn new_token(name: &str, secret: &str) -> NewToken {
    NewToken {
        name: name.to_owned(),
        role: Role::Write,
        hash: token::hash(secret),
        agents: None,
        description: None,
        expires_at_ms: None,
        roles: Vec::new(),
    }
}

async fn create(meta: &Meta, name: &str, secret: &str) -> Result<i64> {
    match meta.insert_token(new_token(name, secret)).await? {
        TokenChange::Done(rec) => Ok(rec.id),
        other => panic!("{other:?}"),
    }
}

fn valid(lookup: &TokenLookup) -> bool {
    matches!(lookup, TokenLookup::Valid { .. })
}

#[tokio::test]
async fn a_token_made_on_one_hub_works_on_another_and_its_revocation_too() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    let b = lake.hub("b", false).await.unwrap();
    let id = create(&a, "gw-1", "secret-1").await.unwrap();
    assert_eq!(lake.entries(), 1);
    assert!(!valid(
        &b.find_token(token::hash("secret-1")).await.unwrap()
    ));
    let changed = catch_up(&b).await.unwrap();
    assert!(changed.contains("tokens"), "{changed:?}");
    assert!(valid(&b.find_token(token::hash("secret-1")).await.unwrap()));
    // Reads and `last_used` are local: no entry.
    b.list_tokens().await.unwrap();
    assert_eq!(lake.entries(), 1);
    // A revocation on B reaches A, with the same id.
    assert!(matches!(
        b.revoke_token(id).await.unwrap(),
        TokenChange::Done(_)
    ));
    assert_eq!(lake.entries(), 2);
    catch_up(&a).await.unwrap();
    assert!(matches!(
        a.find_token(token::hash("secret-1")).await.unwrap(),
        TokenLookup::Inactive(_)
    ));
    assert_eq!(a.shared().unwrap().version(), 2);
    assert_eq!(b.shared().unwrap().version(), 2);
}

#[tokio::test]
async fn a_change_that_loses_the_race_is_rolled_back_and_can_be_retried() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    let b = lake.hub("b", false).await.unwrap();
    let a_id = create(&a, "from-a", "secret-a").await.unwrap();
    // B has not seen version 1: its change loses.
    let lost = create(&b, "from-b", "secret-b").await;
    assert!(matches!(lost, Err(MetaError::Conflict)), "{lost:?}");
    assert!(!valid(
        &b.find_token(token::hash("secret-b")).await.unwrap()
    ));
    // ... and B caught up on the way.
    assert!(valid(&b.find_token(token::hash("secret-a")).await.unwrap()));
    let b_id = create(&b, "from-b", "secret-b").await.unwrap();
    assert_ne!(a_id, b_id);
    catch_up(&a).await.unwrap();
    let names = |m: Vec<crate::meta::TokenRecord>| {
        m.into_iter().map(|t| (t.id, t.name)).collect::<Vec<_>>()
    };
    assert_eq!(
        names(a.list_tokens().await.unwrap()),
        names(b.list_tokens().await.unwrap())
    );
    assert_eq!(lake.entries(), 2);
}

#[tokio::test]
async fn joining_keeps_a_lone_hubs_tokens_and_refuses_a_second_history() {
    let lake = Lake::new();
    // A hub that ran alone before the lake was shared.
    let path = lake.dir.path().join("alone.db");
    {
        let meta = Meta::open(&path).await.unwrap();
        create(&meta, "old", "secret-old").await.unwrap();
        meta.close().await.unwrap();
    }
    let meta = Meta::open(&path).await.unwrap();
    attach(
        &meta,
        LogPlace {
            store: Arc::clone(&lake.store),
            root: Path::from(""),
            hub: "alone".to_owned(),
            read_only: false,
            snapshot_every: SNAPSHOT_EVERY,
        },
    )
    .await
    .unwrap();
    assert_eq!(lake.entries(), 1);
    // A fresh hub gets its tokens.
    let fresh = lake.hub("fresh", false).await.unwrap();
    assert!(valid(
        &fresh.find_token(token::hash("secret-old")).await.unwrap()
    ));
    // Another hub with tokens of its own may not join.
    let other = lake.dir.path().join("other.db");
    {
        let meta = Meta::open(&other).await.unwrap();
        create(&meta, "mine", "secret-mine").await.unwrap();
        meta.close().await.unwrap();
    }
    let meta = Meta::open(&other).await.unwrap();
    let joined = attach(
        &meta,
        LogPlace {
            store: Arc::clone(&lake.store),
            root: Path::from(""),
            hub: "other".to_owned(),
            read_only: false,
            snapshot_every: SNAPSHOT_EVERY,
        },
    )
    .await;
    assert!(
        matches!(joined, Err(MetaError::Diverged(1, _))),
        "{joined:?}"
    );
}

#[tokio::test]
async fn a_reader_follows_and_never_writes() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    let r = lake.hub("r", true).await.unwrap();
    create(&a, "gw", "secret").await.unwrap();
    catch_up(&r).await.unwrap();
    assert!(valid(&r.find_token(token::hash("secret")).await.unwrap()));
    let refused = create(&r, "nope", "secret-r").await;
    assert!(matches!(refused, Err(MetaError::ReadOnly)), "{refused:?}");
    assert!(!valid(
        &r.find_token(token::hash("secret-r")).await.unwrap()
    ));
    assert_eq!(lake.entries(), 1);
}

#[tokio::test]
async fn roles_and_quotas_follow_too() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    let b = lake.hub("b", false).await.unwrap();
    a.insert_role(crate::meta::roles::NewRole {
        name: "plant-readers".to_owned(),
        description: None,
        grants: Vec::new(),
    })
    .await
    .unwrap();
    a.set_quota(
        crate::meta::quotas::QuotaScope::Database,
        "plant".to_owned(),
        Some(crate::meta::quotas::QuotaLimits {
            rows_per_second: Some(10),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let changed = catch_up(&b).await.unwrap();
    assert!(
        changed.contains("roles") && changed.contains("quotas"),
        "{changed:?}"
    );
    assert_eq!(b.list_roles().await.unwrap()[0].name, "plant-readers");
    assert_eq!(b.quota_overrides().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_corrupt_entry_is_an_error_not_a_panic_and_is_not_skipped() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    for body in [
        &b"not json"[..],
        br#"{"version":1,"hub":"x","at_ms":0,"changes":[{"table":"sqlite_master","op":"delete","rowid":1}]}"#,
        br#"{"version":1,"hub":"x","at_ms":0,"changes":[{"table":"tokens","op":"upsert","rowid":1,"row":{"name; DROP TABLE tokens":"x"}}]}"#,
        br#"{"version":1,"hub":"x","at_ms":0,"changes":[{"table":"tokens","op":"upsert","rowid":1,"row":{"hash":"zz"}}]}"#,
        br#"{"version":7,"hub":"x","at_ms":0,"changes":[]}"#,
    ] {
        let path = Path::from("_ferry/meta/log/00000000000000000001.json");
        lake.store.put(&path, body.to_vec().into()).await.unwrap();
        let got = catch_up(&a).await;
        assert!(matches!(got, Err(MetaError::Corrupt(_))), "{got:?}");
        assert_eq!(a.shared().unwrap().version(), 0);
    }
    assert!(a.list_tokens().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_joining_hub_starts_from_the_newest_snapshot_with_the_same_ids_to_come() {
    let lake = Lake::new();
    let a = lake.hub("a", false).await.unwrap();
    for i in 0..5 {
        create(&a, &format!("t{i}"), &format!("secret-{i}"))
            .await
            .unwrap();
    }
    // Version 6: the newest token goes (its id must never come back).
    let last = a.list_tokens().await.unwrap().pop().unwrap();
    assert!(matches!(
        a.delete_token(last.id).await.unwrap(),
        TokenChange::Done(_)
    ));
    assert_eq!(a.shared().unwrap().version(), 6);
    // Snapshots at 3 and 6; without entries 1..=6 a fresh hub still joins.
    for v in 1..=6 {
        std::fs::remove_file(
            lake.dir
                .path()
                .join(format!("lake/_ferry/meta/log/{v:020}.json")),
        )
        .unwrap();
    }
    let fresh = lake.hub("fresh", false).await.unwrap();
    assert_eq!(fresh.shared().unwrap().version(), 6);
    let ids = |m: Vec<crate::meta::TokenRecord>| {
        m.into_iter().map(|t| (t.id, t.name)).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(fresh.list_tokens().await.unwrap()),
        ids(a.list_tokens().await.unwrap())
    );
    // The next id on the fresh hub is the one A would give.
    let id = create(&fresh, "after", "secret-after").await.unwrap();
    assert_eq!(id, last.id + 1);
    catch_up(&a).await.unwrap();
    assert!(valid(
        &a.find_token(token::hash("secret-after")).await.unwrap()
    ));
}
