//! The maintenance lease: with several writer hubs on one lake, one of them
//! at a time runs scheduled compaction, retention, continuous queries and
//! alert rules.
//!
//! # In the store
//!
//! Under `_ferry/lease/maintenance/`:
//!
//! - `<epoch>.json` (20 digits), created with a conditional put (create if
//!   absent): the hub that holds the lease in that epoch. Two hubs cannot
//!   both create one epoch, so each epoch has one holder.
//! - `<epoch>.beat`: the holder's heartbeat, a counter it rewrites every
//!   `replica.lease_ttl / 3`; `released` when it stopped cleanly.
//!
//! # Taking over
//!
//! Every hub looks at the newest epoch every `lease_ttl / 3`. A hub that
//! sees the same heartbeat for a whole `lease_ttl` on its own clock (so
//! clocks need not agree), or `released`, creates the next epoch; the one
//! whose create succeeds holds the lease. A holder that cannot renew for
//! `2/3 lease_ttl` stops acting before anyone may take over. When it can
//! reach the store again and its epoch is still the newest, nobody took
//! over: it renews and acts again, rather than waiting out a whole
//! `lease_ttl` and racing the others for the next epoch (a slow store
//! would otherwise move the lease about).
//!
//! # Why this is enough
//!
//! The lease keeps two hubs from doing the same work, not the tables safe:
//! every commit of compaction, retention or a continuous query is a
//! conditional put on the table's log, so two hubs that both believe they
//! hold the lease for a moment conflict and one retries; nothing is lost
//! or doubled. Checkpoints are not under the lease: each writer writes
//! the checkpoints its own commits call for, and a checkpoint of a version
//! is the same whoever writes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Gauge: 1 while this hub holds the maintenance lease.
pub const HELD: &str = "ferry_hub_maintenance_lease_held";
/// Counter: epochs this hub took (the first included).
pub const TAKEN: &str = "ferry_hub_maintenance_lease_taken_total";

/// Whether this hub may run scheduled maintenance. Cheap to clone; a hub
/// alone on its tables always may.
#[derive(Debug, Clone)]
pub struct Lease {
    held: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            held: Arc::new(AtomicBool::new(true)),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Where the lease lives and who contends.
#[derive(Debug, Clone)]
pub struct LeasePlace {
    pub store: Arc<dyn ObjectStore>,
    /// The lake's root in `store`.
    pub root: Path,
    pub hub: String,
    pub ttl: Duration,
}

impl Lease {
    /// Whether this hub holds the lease now.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// The epoch this hub holds, if it does (0: none, or alone).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Stops holding the lease by default and contends for it until
    /// `stop`, when a held lease is released.
    pub fn contend(&self, place: LeasePlace, tracker: &TaskTracker, stop: CancellationToken) {
        self.held.store(false, Ordering::SeqCst);
        metrics::gauge!(HELD).set(0.0);
        let mut c = Contender::new(self, place);
        tracker.spawn(async move {
            let every = (c.place.ttl / 3).max(Duration::from_millis(50));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = c.round().await {
                    tracing::warn!(error = %e, "maintenance lease");
                }
                c.expire();
            }
            c.release().await;
        });
    }
}

struct Contender {
    lease: Lease,
    place: LeasePlace,
    dir: Path,
    /// The epoch this hub holds.
    mine: Option<u64>,
    /// The epoch this hub held until it could not renew in time.
    lapsed: Option<u64>,
    beats: u64,
    renewed: Instant,
    /// The newest epoch of another hub, its heartbeat, and since when this
    /// hub has seen that same heartbeat.
    seen: Option<(u64, Option<Bytes>, Instant)>,
}

impl Contender {
    fn new(lease: &Lease, place: LeasePlace) -> Contender {
        Contender {
            lease: lease.clone(),
            dir: place
                .root
                .clone()
                .join(crate::encryption::lake::HUB_STATE_DIR)
                .join("lease")
                .join("maintenance"),
            place,
            mine: None,
            lapsed: None,
            beats: 0,
            renewed: Instant::now(),
            seen: None,
        }
    }

    fn path(&self, epoch: u64, ext: &str) -> Path {
        self.dir.clone().join(format!("{epoch:020}.{ext}"))
    }

    async fn newest(&self) -> object_store::Result<Option<u64>> {
        let objects: Vec<_> = self.place.store.list(Some(&self.dir)).try_collect().await?;
        Ok(objects
            .iter()
            .filter_map(|o| o.location.filename()?.strip_suffix(".json")?.parse().ok())
            .max())
    }

    async fn beat(&mut self, epoch: u64, body: Bytes) -> object_store::Result<()> {
        self.place
            .store
            .put(&self.path(epoch, "beat"), PutPayload::from(body))
            .await?;
        Ok(())
    }

    async fn round(&mut self) -> object_store::Result<()> {
        let newest = self.newest().await?;
        if let (Some(mine), Some(n)) = (self.mine, newest)
            && mine == n
        {
            self.beats += 1;
            self.beat(mine, Bytes::from(self.beats.to_string())).await?;
            self.renewed = Instant::now();
            return Ok(());
        }
        // Epochs only grow: a lapsed one that is still the newest is one
        // nobody took over.
        if let (None, Some(epoch)) = (self.mine, self.lapsed)
            && newest == Some(epoch)
        {
            self.beats += 1;
            let beat = Bytes::from(self.beats.to_string());
            self.beat(epoch, beat).await?;
            self.renewed = Instant::now();
            (self.mine, self.lapsed, self.seen) = (Some(epoch), None, None);
            self.set_held(true, epoch);
            tracing::info!(
                epoch,
                "renewed the maintenance lease late; nobody had taken it over"
            );
            return Ok(());
        }
        if self.mine.take().is_some() {
            tracing::warn!(
                newest = ?newest,
                "another hub took the maintenance lease; stopping scheduled maintenance"
            );
            self.set_held(false, 0);
        }
        let Some(n) = newest else {
            return self.take(1).await;
        };
        let beat = match self.place.store.get(&self.path(n, "beat")).await {
            Ok(got) => Some(got.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if beat.as_deref() == Some(b"released") {
            return self.take(n + 1).await;
        }
        match &self.seen {
            Some((epoch, b, since)) if *epoch == n && *b == beat => {
                if since.elapsed() >= self.place.ttl {
                    return self.take(n + 1).await;
                }
            }
            _ => self.seen = Some((n, beat, Instant::now())),
        }
        Ok(())
    }

    async fn take(&mut self, epoch: u64) -> object_store::Result<()> {
        let body = serde_json::json!({
            "hub": self.place.hub,
            "taken_at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        })
        .to_string();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .place
            .store
            .put_opts(&self.path(epoch, "json"), PutPayload::from(body), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        (self.mine, self.lapsed) = (Some(epoch), None);
        self.beats = 0;
        self.beat(epoch, Bytes::from_static(b"0")).await?;
        self.renewed = Instant::now();
        self.seen = None;
        self.set_held(true, epoch);
        metrics::counter!(TAKEN).increment(1);
        tracing::info!(epoch, hub = %self.place.hub, "took the maintenance lease");
        // Old epochs are history: keep a few for whoever looks.
        for old in epoch.saturating_sub(8)..epoch.saturating_sub(3) {
            for ext in ["json", "beat"] {
                let _ = self.place.store.delete(&self.path(old, ext)).await;
            }
        }
        Ok(())
    }

    /// A holder that could not renew for 2/3 of the ttl stops acting.
    fn expire(&mut self) {
        if self.mine.is_some() && self.renewed.elapsed() >= self.place.ttl * 2 / 3 {
            tracing::warn!("cannot renew the maintenance lease; stopping scheduled maintenance");
            self.lapsed = self.mine.take();
            self.set_held(false, 0);
        }
    }

    fn set_held(&self, held: bool, epoch: u64) {
        self.lease.held.store(held, Ordering::SeqCst);
        self.lease.epoch.store(epoch, Ordering::SeqCst);
        metrics::gauge!(HELD).set(if held { 1.0 } else { 0.0 });
    }

    /// On a clean stop: marks the epoch this hub holds `released`, so that
    /// another hub takes over at its next round rather than after a ttl.
    /// So too an epoch that lapsed and that nobody has taken over since
    /// (still the newest): it is this hub's to hand on.
    async fn release(&mut self) {
        let epoch = match (self.mine.take(), self.lapsed.take()) {
            (Some(epoch), _) => epoch,
            (None, Some(epoch)) if matches!(self.newest().await, Ok(Some(n)) if n == epoch) => {
                epoch
            }
            _ => return,
        };
        self.set_held(false, 0);
        match self.beat(epoch, Bytes::from_static(b"released")).await {
            Ok(()) => tracing::info!(epoch, "released the maintenance lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the maintenance lease"),
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
