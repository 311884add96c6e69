//! The fleet seen from every hub of a lake.
//!
//! Each hub counts only the uploads it received ([`crate::meta::agents`]).
//! With several hubs on one lake, a writer also publishes its agents to
//! `_ferry/fleet/<hub id>.json` in the store every `replica.fleet_interval`
//! (when they changed), and every hub (readers too) merges the other hubs'
//! files into its own list: counts summed, first seen the earliest, last
//! seen and the last sequence the latest, the backlog, version and last
//! error from the hub that heard from the agent last. The hub id is random,
//! made once and kept in the hub's metadata (`settings` key `hub.id`), so
//! a restarted hub replaces its own file instead of adding one.
//!
//! The other hubs' files are read at most once per `fleet_interval`
//! (cached), so a busy fleet page costs the store a listing and one read
//! per hub per interval. The per-minute history
//! (`/api/v1/agents/{id}/history`) stays per hub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::meta::{AgentRecord, Meta};

/// Counter: fleet files this hub wrote.
pub const PUBLISHED: &str = "ferry_hub_fleet_published_total";
/// Counter: failures reading or writing the fleet files.
pub const ERRORS: &str = "ferry_hub_fleet_share_errors_total";

/// This hub's view of the other hubs' fleet files.
#[derive(Debug)]
pub struct FleetShare {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    me: String,
    interval: Duration,
    cache: Mutex<Option<(Instant, Vec<AgentRecord>)>>,
}

impl FleetShare {
    /// The fleet files under `root` in `store`; `me` is this hub's id.
    pub fn new(store: Arc<dyn ObjectStore>, root: &Path, me: String, interval: Duration) -> Self {
        FleetShare {
            store,
            dir: root
                .clone()
                .join(crate::encryption::lake::HUB_STATE_DIR)
                .join("fleet"),
            me,
            interval,
            cache: Mutex::new(None),
        }
    }

    fn mine(&self) -> Path {
        self.dir.clone().join(format!("{}.json", self.me))
    }

    /// The agents the other hubs published, merged (cached for an interval).
    pub async fn others(&self) -> Vec<AgentRecord> {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.as_ref()
            && at.elapsed() < self.interval
        {
            return list.clone();
        }
        let list = match self.read_others().await {
            Ok(l) => l,
            Err(e) => {
                metrics::counter!(ERRORS).increment(1);
                tracing::warn!(error = %e, "cannot read the other hubs' fleet files");
                cache.as_ref().map(|(_, l)| l.clone()).unwrap_or_default()
            }
        };
        *cache = Some((Instant::now(), list.clone()));
        list
    }

    async fn read_others(&self) -> Result<Vec<AgentRecord>, String> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let mine = self.mine();
        let mut lists = Vec::new();
        for o in objects.iter().filter(|o| o.location != mine) {
            let bytes = match self.store.get(&o.location).await {
                Ok(g) => g.bytes().await.map_err(|e| e.to_string())?,
                // Replaced between the listing and the read.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            };
            match serde_json::from_slice::<Vec<AgentRecord>>(&bytes) {
                Ok(list) => lists.push(list),
                Err(e) => {
                    metrics::counter!(ERRORS).increment(1);
                    tracing::warn!(file = %o.location, error = %e, "unreadable fleet file; skipped");
                }
            }
        }
        Ok(merge(lists))
    }

    /// Writes this hub's agents every interval, when they changed, until
    /// `stop` (and once more then).
    pub fn publish(self: &Arc<Self>, meta: Meta, tracker: &TaskTracker, stop: CancellationToken) {
        let this = Arc::clone(self);
        tracker.spawn(async move {
            let mut last: Option<Vec<u8>> = None;
            let mut tick = tokio::time::interval(this.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                match meta.list_agents().await {
                    Ok(agents) if !agents.is_empty() => {
                        let body = serde_json::to_vec(&agents).unwrap_or_default();
                        if last.as_ref() != Some(&body) {
                            match this
                                .store
                                .put(&this.mine(), PutPayload::from(body.clone()))
                                .await
                            {
                                Ok(_) => {
                                    metrics::counter!(PUBLISHED).increment(1);
                                    last = Some(body);
                                }
                                Err(e) => {
                                    metrics::counter!(ERRORS).increment(1);
                                    tracing::warn!(error = %e, "cannot publish this hub's fleet");
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot list the agents"),
                }
                if stopping {
                    break;
                }
            }
        });
    }
}

/// This hub's id among the hubs of the lake: made once, kept in `settings`.
pub async fn hub_id(meta: &Meta) -> Result<String, crate::meta::MetaError> {
    if let Some(id) = meta.get_setting("hub.id").await? {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    meta.set_setting("hub.id", &id).await?;
    Ok(id)
}

/// One record per agent from several hubs' lists.
pub fn merge(lists: Vec<Vec<AgentRecord>>) -> Vec<AgentRecord> {
    let mut by_id: BTreeMap<String, AgentRecord> = BTreeMap::new();
    for rec in lists.into_iter().flatten() {
        match by_id.get_mut(&rec.id) {
            None => {
                by_id.insert(rec.id.clone(), rec);
            }
            Some(have) => {
                let newer = rec.last_seen > have.last_seen;
                let mut out = if newer { rec.clone() } else { have.clone() };
                out.first_seen = have.first_seen.clone().min(rec.first_seen.clone());
                out.last_sequence = have.last_sequence.max(rec.last_sequence);
                out.segments_received = have.segments_received + rec.segments_received;
                out.rows_received = have.rows_received + rec.rows_received;
                out.uploads_failed = have.uploads_failed + rec.uploads_failed;
                if out.last_error_at < have.last_error_at {
                    out.last_error = have.last_error.clone();
                    out.last_error_at = have.last_error_at.clone();
                }
                if out.last_error_at < rec.last_error_at {
                    out.last_error = rec.last_error.clone();
                    out.last_error_at = rec.last_error_at.clone();
                }
                *have = out;
            }
        }
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, first: &str, last: &str, rows: u64, version: &str) -> AgentRecord {
        AgentRecord {
            id: id.to_owned(),
            first_seen: first.to_owned(),
            last_seen: last.to_owned(),
            last_sequence: Some(rows),
            segments_received: 1,
            rows_received: rows,
            backlog_readings: Some(rows),
            backlog_bytes: None,
            version: Some(version.to_owned()),
            uploads_failed: 0,
            last_error: None,
            last_error_at: None,
        }
    }

    #[test]
    fn counts_add_up_and_the_latest_report_wins() {
        let a = vec![
            rec(
                "gw-1",
                "2026-01-01T00:00:00.000Z",
                "2026-01-02T00:00:00.000Z",
                10,
                "1.0",
            ),
            rec(
                "gw-2",
                "2026-01-01T00:00:00.000Z",
                "2026-01-01T00:00:00.000Z",
                1,
                "1.0",
            ),
        ];
        let mut b1 = rec(
            "gw-1",
            "2025-12-31T00:00:00.000Z",
            "2026-01-03T00:00:00.000Z",
            5,
            "1.1",
        );
        b1.last_error = Some("refused".to_owned());
        b1.last_error_at = Some("2026-01-03T00:00:00.000Z".to_owned());
        let merged = merge(vec![a, vec![b1]]);
        assert_eq!(merged.len(), 2);
        let g = &merged[0];
        assert_eq!(g.id, "gw-1");
        assert_eq!(g.first_seen, "2025-12-31T00:00:00.000Z");
        assert_eq!(g.last_seen, "2026-01-03T00:00:00.000Z");
        assert_eq!(g.rows_received, 15);
        assert_eq!(g.segments_received, 2);
        assert_eq!(g.last_sequence, Some(10));
        assert_eq!(g.version.as_deref(), Some("1.1"));
        assert_eq!(g.backlog_readings, Some(5));
        assert_eq!(g.last_error.as_deref(), Some("refused"));
    }
}
