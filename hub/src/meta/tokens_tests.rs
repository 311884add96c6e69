use super::*;
use crate::auth::token;

fn new(name: &str, role: Role, secret: &str) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        hash: token::hash(secret),
        agents: None,
        description: None,
        expires_at_ms: None,
        roles: Vec::new(),
    }
}

async fn insert(meta: &Meta, t: NewToken) -> TokenRecord {
    match meta.insert_token(t).await.unwrap() {
        TokenChange::Done(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn open() -> (tempfile::TempDir, Meta) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
    (dir, meta)
}

fn valid(l: &TokenLookup) -> Option<(i64, bool)> {
    match l {
        TokenLookup::Valid { record, previous } => Some((record.id, *previous)),
        _ => None,
    }
}

#[tokio::test]
async fn crud() {
    let (_dir, meta) = open().await;
    let secret = token::generate();
    let first = meta
        .insert_first_token(new("admin", Role::Admin, &secret))
        .await
        .unwrap()
        .unwrap();
    let again = meta
        .insert_first_token(new("admin2", Role::Admin, &token::generate()))
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(
        valid(&meta.find_token(token::hash(&secret)).await.unwrap()),
        Some((first.id, false))
    );
    assert_eq!(
        meta.find_token(token::hash("x")).await.unwrap(),
        TokenLookup::Unknown
    );
    assert_eq!(meta.list_tokens().await.unwrap().len(), 1);
    // The only admin token cannot go.
    assert_eq!(
        meta.delete_token(first.id).await.unwrap(),
        TokenChange::LastAdmin
    );
    let other = insert(&meta, new("admin2", Role::Admin, &token::generate())).await;
    assert!(matches!(
        meta.delete_token(first.id).await.unwrap(),
        TokenChange::Done(_)
    ));
    assert_eq!(
        meta.delete_token(first.id).await.unwrap(),
        TokenChange::NotFound
    );
    assert_eq!(meta.list_tokens().await.unwrap(), vec![other]);
}

#[tokio::test]
async fn last_used_is_recorded() {
    let (_dir, meta) = open().await;
    let secret = token::generate();
    let rec = insert(&meta, new("w", Role::Write, &secret)).await;
    assert_eq!(rec.last_used, None);
    let before = now_ms();
    meta.find_token(token::hash(&secret)).await.unwrap();
    let used = meta.get_token(rec.id).await.unwrap().unwrap().last_used;
    assert!(used.is_some_and(|u| u >= before), "{used:?}");
    // Within the resolution, a second use writes nothing.
    meta.find_token(token::hash(&secret)).await.unwrap();
    assert_eq!(
        meta.get_token(rec.id).await.unwrap().unwrap().last_used,
        used
    );
}

#[tokio::test]
async fn expiry_revocation_and_rotation() {
    let (_dir, meta) = open().await;
    let _admin = insert(&meta, new("admin", Role::Admin, &token::generate())).await;
    // Expired already.
    let old = token::generate();
    let mut t = new("old", Role::Read, &old);
    t.expires_at_ms = Some(now_ms() - 1);
    let rec = insert(&meta, t).await;
    assert_eq!(rec.status, TokenStatus::Expired);
    assert!(matches!(
        meta.find_token(token::hash(&old)).await.unwrap(),
        TokenLookup::Inactive(r) if r.status == TokenStatus::Expired
    ));
    assert!(matches!(
        meta.rotate_token(rec.id, token::hash("n"), now_ms())
            .await
            .unwrap(),
        TokenChange::Inactive(_)
    ));

    // Rotation with a grace period: both secrets work, the old one only
    // until the grace ends.
    let s1 = token::generate();
    let rec = insert(&meta, new("gw", Role::Write, &s1)).await;
    let s2 = token::generate();
    let TokenChange::Done(rotated) = meta
        .rotate_token(rec.id, token::hash(&s2), now_ms() + 60_000)
        .await
        .unwrap()
    else {
        panic!("not rotated")
    };
    assert!(rotated.rotated_at.is_some());
    assert_eq!(
        valid(&meta.find_token(token::hash(&s1)).await.unwrap()),
        Some((rec.id, true))
    );
    assert_eq!(
        valid(&meta.find_token(token::hash(&s2)).await.unwrap()),
        Some((rec.id, false))
    );
    // A second rotation with no grace: s2 stops at once, s1 is forgotten.
    let s3 = token::generate();
    meta.rotate_token(rec.id, token::hash(&s3), 0)
        .await
        .unwrap();
    assert!(matches!(
        meta.find_token(token::hash(&s2)).await.unwrap(),
        TokenLookup::Rotated(_)
    ));
    assert_eq!(
        meta.find_token(token::hash(&s1)).await.unwrap(),
        TokenLookup::Unknown
    );
    // Revocation stops every secret of the token, and is idempotent.
    assert!(matches!(
        meta.revoke_token(rec.id).await.unwrap(),
        TokenChange::Done(r) if r.status == TokenStatus::Revoked
    ));
    assert!(matches!(
        meta.find_token(token::hash(&s3)).await.unwrap(),
        TokenLookup::Inactive(r) if r.status == TokenStatus::Revoked
    ));
    assert!(matches!(
        meta.revoke_token(rec.id).await.unwrap(),
        TokenChange::Done(_)
    ));
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_revoked() {
    let (_dir, meta) = open().await;
    let a = insert(&meta, new("a", Role::Admin, &token::generate())).await;
    let mut t = new("b", Role::Admin, &token::generate());
    t.expires_at_ms = Some(now_ms() - 1);
    let b = insert(&meta, t).await;
    // b is expired: a is the last active admin.
    assert_eq!(
        meta.revoke_token(a.id).await.unwrap(),
        TokenChange::LastAdmin
    );
    assert!(matches!(
        meta.revoke_token(b.id).await.unwrap(),
        TokenChange::Done(_)
    ));
    // An admin that will expire does not count: once it expired, nobody
    // could manage the hub.
    let mut t = new("c", Role::Admin, &token::generate());
    t.expires_at_ms = Some(now_ms() + 3_600_000);
    insert(&meta, t).await;
    assert_eq!(
        meta.delete_token(a.id).await.unwrap(),
        TokenChange::LastAdmin
    );
}

#[tokio::test]
async fn the_v10_rebuild_keeps_ids_of_deleted_tokens_unused() {
    let (_dir, meta) = open().await;
    for name in ["a", "b", "c"] {
        insert(&meta, new(name, Role::Read, &token::generate())).await;
    }
    meta.call(|c| {
        // As a version 9 store whose newest tokens were deleted, migrated
        // again by the version 10 rebuild.
        c.execute_batch(
            "DELETE FROM tokens WHERE id = 3;
             DROP TABLE token_roles; DROP TABLE roles;",
        )?;
        c.execute_batch(super::super::schema::migration(9))?;
        Ok(())
    })
    .await
    .unwrap();
    let next = insert(&meta, new("d", Role::Read, &token::generate())).await;
    assert_eq!(next.id, 4, "a new token must not take a deleted token's id");
}
