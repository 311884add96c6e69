use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::*;

const TTL: Duration = Duration::from_millis(300);

fn place(store: &Arc<dyn ObjectStore>, hub: &str) -> LeasePlace {
    LeasePlace {
        store: Arc::clone(store),
        root: Path::from("lake"),
        hub: hub.to_owned(),
        ttl: TTL,
    }
}

/// A store in a new temporary directory (kept while the guard lives).
fn lake() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    (dir, store)
}

/// What [`Contender::expire`] sees after renewals late by 2/3 of the ttl.
fn lapse(c: &mut Contender) {
    c.renewed = Instant::now() - TTL * 2 / 3;
    c.expire();
}

fn contender(store: &Arc<dyn ObjectStore>, hub: &str) -> (Lease, Contender) {
    let lease = Lease::default();
    lease.held.store(false, Ordering::SeqCst);
    let c = Contender::new(&lease, place(store, hub));
    (lease, c)
}

/// Hubs "a" and "b", each after one round: A took epoch 1, B saw it.
async fn a_then_b(store: &Arc<dyn ObjectStore>) -> ((Lease, Contender), (Lease, Contender)) {
    let (a, mut ca) = contender(store, "a");
    let (b, mut cb) = contender(store, "b");
    ca.round().await.unwrap();
    cb.round().await.unwrap();
    ((a, ca), (b, cb))
}

#[tokio::test]
async fn one_holder_a_dead_one_is_replaced_after_the_ttl_and_a_released_one_at_once() {
    let (_dir, store) = lake();
    let ((a, mut ca), (b, mut cb)) = a_then_b(&store).await;
    assert!(a.held() && !b.held());
    assert_eq!(a.epoch(), 1);
    // A renews: B sees the heartbeat move and waits.
    tokio::time::sleep(TTL).await;
    ca.round().await.unwrap();
    cb.round().await.unwrap();
    assert!(a.held() && !b.held());
    // A dies (no more rounds): B takes epoch 2 after a whole ttl.
    cb.round().await.unwrap();
    assert!(!b.held(), "not before the ttl");
    tokio::time::sleep(TTL).await;
    cb.round().await.unwrap();
    assert!(b.held());
    assert_eq!(b.epoch(), 2);
    // A comes back: it sees epoch 2 and stops.
    ca.round().await.unwrap();
    assert!(!a.held());
    // B releases on a clean stop: A takes over at once.
    cb.release().await;
    assert!(!b.held());
    ca.round().await.unwrap();
    assert!(a.held());
    assert_eq!(a.epoch(), 3);
}

#[tokio::test]
async fn a_holder_that_cannot_renew_stops_before_anyone_may_take_over() {
    let (_dir, store) = lake();
    let (a, mut ca) = contender(&store, "a");
    ca.round().await.unwrap();
    assert!(a.held());
    lapse(&mut ca);
    assert!(!a.held());
}

#[tokio::test]
async fn a_late_holder_renews_unless_another_took_over_meanwhile() {
    let (_dir, store) = lake();
    let ((a, mut ca), (b, mut cb)) = a_then_b(&store).await;
    // A renews late, before a whole ttl without a heartbeat: it stopped
    // acting, and it takes its own epoch up again; B keeps waiting.
    lapse(&mut ca);
    assert!(!a.held());
    ca.round().await.unwrap();
    assert!(a.held(), "A renews its epoch");
    assert_eq!(a.epoch(), 1);
    tokio::time::sleep(TTL).await;
    cb.round().await.unwrap();
    assert!(!b.held(), "B saw the heartbeat move");
    // A lapses again, and this time B takes over first: A stays out.
    lapse(&mut ca);
    tokio::time::sleep(TTL).await;
    cb.round().await.unwrap();
    assert!(b.held());
    assert_eq!(b.epoch(), 2);
    ca.round().await.unwrap();
    assert!(
        !a.held(),
        "A does not renew an epoch that is no longer the newest"
    );
}

#[tokio::test]
async fn a_lapsed_holder_that_stops_hands_its_epoch_on_unless_another_took_over() {
    let (_dir, store) = lake();
    let ((a, mut ca), (b, mut cb)) = a_then_b(&store).await;
    // A lapses and stops cleanly before it could renew: B takes over at
    // its next round, not a ttl later.
    lapse(&mut ca);
    ca.release().await;
    cb.round().await.unwrap();
    assert!(b.held(), "B takes the released epoch at once");
    assert_eq!(b.epoch(), 2);
    // B lapses in turn, and C takes epoch 3 after a ttl of B's silence.
    // B then stops: its epoch 2 is history, which B leaves alone.
    lapse(&mut cb);
    let (c, mut cc) = contender(&store, "c");
    cc.round().await.unwrap();
    tokio::time::sleep(TTL).await;
    cc.round().await.unwrap();
    assert_eq!(c.epoch(), 3);
    cb.release().await;
    let beat = |epoch| {
        let store = Arc::clone(&store);
        let path = cc.path(epoch, "beat");
        async move { store.get(&path).await.unwrap().bytes().await.unwrap() }
    };
    assert_ne!(&beat(2).await[..], b"released");
    assert_ne!(&beat(3).await[..], b"released");
    cc.round().await.unwrap();
    assert!(c.held() && !b.held() && !a.held());
}

#[tokio::test]
async fn two_hubs_contending_in_tasks_agree_on_one_holder() {
    let (_dir, store) = lake();
    let tracker = TaskTracker::new();
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (a, b) = (Lease::default(), Lease::default());
    a.contend(place(&store, "a"), &tracker, stop_a.clone());
    b.contend(place(&store, "b"), &tracker, stop_b.clone());
    tokio::time::sleep(TTL).await;
    assert!(
        a.held() ^ b.held(),
        "exactly one holds: {} {}",
        a.held(),
        b.held()
    );
    let (holder, stop, other) = if a.held() {
        (&a, stop_a, &b)
    } else {
        (&b, stop_b, &a)
    };
    stop.cancel();
    let t = Instant::now();
    while !other.held() {
        assert!(
            t.elapsed() < TTL * 2,
            "the other hub took over after a clean stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!holder.held());
    tracker.close();
}
