//! Shared metadata: the same tokens, roles, quotas, retention policies,
//! continuous queries, last-value caches and alert rules on every hub of a
//! lake.
//!
//! # The log
//!
//! Each hub keeps its own SQLite file; what they share is an append-only
//! log in the lake's store, `_ferry/meta/log/<version>.json` (20 digits).
//! Entry `n` holds the row changes of one committed change of metadata,
//! made against the state after entry `n - 1`. Entries are created with a
//! conditional put (create if absent), the same primitive as the Delta
//! log's commits, so two hubs can never both write version `n`.
//!
//! # Writing
//!
//! With the log on, every [`Meta`](super::Meta) call runs inside a
//! savepoint. Temporary triggers record the rows it changed in the
//! [`SHARED`] tables (only their shared columns: a token's `last_used_ms`
//! or an alert's evaluation state stay local). No change: the savepoint is
//! released, nothing else happens, so reads and local bookkeeping cost a
//! savepoint and one indexed read. A change: the hub writes entry
//! `applied + 1`, then releases the savepoint. If another hub took that
//! version first, the change is rolled back, this hub applies the entries
//! it missed, and the caller gets [`MetaError::Conflict`] (503 with
//! `Retry-After: 1` at the API): nothing is half-applied anywhere. The
//! store gets 5 s ([`STORE_TIMEOUT`]) while the connection is held; past
//! that the change is rolled back (503) and, should the entry land after
//! all, applied when the hub next follows the log.
//!
//! # Following
//!
//! [`follow`] reads entries past the hub's version every `interval`
//! (half of `replica.max_staleness`), applies each in one SQLite transaction
//! together with the new version (`settings` key `shared_meta.version`),
//! and tells the hub which tables changed so that it reloads what it keeps
//! in memory (quotas, last-value caches). A token created on one hub is
//! accepted by the others within `replica.max_staleness`.
//!
//! # Joining
//!
//! A hub with empty shared tables starts from the newest snapshot
//! (`_ferry/meta/snapshot/`, one every [`SNAPSHOT_EVERY`] versions) and
//! replays the entries after it.
//!
//! A hub whose metadata has never followed the log ([`attach`]): if the log
//! is empty, its shared rows become entry 1 (a lake that grows from one hub
//! to several keeps its tokens); if the log is not empty and the hub has
//! shared rows of its own, it refuses to start rather than merge two
//! histories. A reader never writes the log.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Meta, MetaError, Result};

#[path = "shared_snapshot.rs"]
mod snapshot;
#[path = "shared_sql.rs"]
mod sql;
pub use snapshot::SNAPSHOT_EVERY;
use sql::{
    applied, apply, apply_change, image, install_triggers, read_columns, rollback, set_applied,
    take_changes,
};

/// The shared tables and the columns an update of which is shared. Every
/// column of a new row is shared; updates of other columns stay local.
pub const SHARED: &[(&str, &[&str])] = &[
    (
        "tokens",
        &[
            "name",
            "role",
            "hash",
            "agents",
            "description",
            "expires_at_ms",
            "revoked_at_ms",
            "rotated_at_ms",
            "previous_hash",
            "previous_valid_until_ms",
        ],
    ),
    (
        "roles",
        &[
            "name",
            "description",
            "grants",
            "created_at_ms",
            "updated_at_ms",
        ],
    ),
    ("token_roles", &["token_id", "role_id"]),
    (
        "quotas",
        &[
            "scope",
            "key",
            "rows_per_second",
            "bytes_per_second",
            "max_bytes",
            "updated_at_ms",
        ],
    ),
    (
        "retention",
        &[
            "name",
            "database",
            "measurement",
            "days",
            "buffer_days",
            "is_active",
            "created_at_ms",
            "updated_at_ms",
        ],
    ),
    (
        "continuous_queries",
        &[
            "name",
            "description",
            "database",
            "source_measurement",
            "destination_measurement",
            "query",
            "interval_ms",
            "interval",
            "tag_columns",
            "lookback_windows",
            "start_ms",
            "retention_days",
            "delete_source_after_days",
            "is_active",
            "created_at_ms",
            "updated_at_ms",
        ],
    ),
    (
        "last_caches",
        &[
            "name",
            "database",
            "measurement",
            "key_columns",
            "value_columns",
            "count",
            "ttl_ms",
            "created_at_ms",
        ],
    ),
    (
        "alert_rules",
        &[
            "name",
            "kind",
            "query",
            "database",
            "op",
            "threshold",
            "interval_ms",
            "webhook_url",
            "created_by",
            "created_at_ms",
        ],
    ),
];

/// How long a change waits for the store while it holds the metadata
/// connection: every token check waits behind it, so a store that hangs
/// must not hold the hub longer than this.
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `settings` key of the last log version applied.
const VERSION_KEY: &str = "shared_meta.version";
/// Counter: entries this hub wrote to the shared log.
pub const WRITTEN: &str = "ferry_hub_shared_meta_written_total";
/// Counter: entries this hub applied from other hubs.
pub const APPLIED: &str = "ferry_hub_shared_meta_applied_total";
/// Counter: changes rolled back because another hub wrote first.
pub const CONFLICTS: &str = "ferry_hub_shared_meta_conflicts_total";
/// Gauge: the last log version this hub has applied.
pub const VERSION: &str = "ferry_hub_shared_meta_version";

/// One row change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub table: String,
    /// `upsert` or `delete`.
    pub op: String,
    pub rowid: i64,
    /// The shared columns (blobs as hex); empty for a delete.
    #[serde(default)]
    pub row: Map<String, Value>,
}

/// One log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub version: u64,
    /// The hub that wrote it (`server.listen` host and the process id).
    pub hub: String,
    pub at_ms: i64,
    pub changes: Vec<Change>,
}

/// A column of a shared table.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    blob: bool,
}

/// The log as one hub sees it.
#[derive(Debug)]
pub struct SharedLog {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    hub: String,
    read_only: bool,
    handle: tokio::runtime::Handle,
    applied: AtomicU64,
    columns: Vec<(String, Vec<Column>)>,
    snapshot_every: u64,
}

impl SharedLog {
    fn path(&self, version: u64) -> Path {
        self.dir.clone().join(format!("{version:020}.json"))
    }

    /// The last version applied (as of the last call).
    pub fn version(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    fn columns(&self, table: &str) -> Result<&[Column]> {
        self.columns
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, c)| c.as_slice())
            .ok_or_else(|| MetaError::Corrupt(format!("shared log names unknown table {table:?}")))
    }

    async fn fetch(&self, version: u64) -> Result<Option<Entry>> {
        let got = match self.store.get(&self.path(version)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(MetaError::Shared(e.to_string())),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| MetaError::Shared(e.to_string()))?;
        let entry: Entry = serde_json::from_slice(&bytes)
            .map_err(|e| MetaError::Corrupt(format!("shared log version {version}: {e}")))?;
        if entry.version != version {
            return Err(MetaError::Corrupt(format!(
                "shared log file {version} says version {}",
                entry.version
            )));
        }
        Ok(Some(entry))
    }

    /// Creates entry `version`; `Ok(false)` if another hub has it.
    async fn put(&self, version: u64, changes: Vec<Change>) -> Result<bool> {
        let entry = Entry {
            version,
            hub: self.hub.clone(),
            at_ms: super::now_ms(),
            changes,
        };
        let body = serde_json::to_vec(&entry).map_err(|e| MetaError::Shared(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &self.path(version),
                PutPayload::from(Bytes::from(body)),
                opts,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(MetaError::Shared(e.to_string())),
        }
    }

    /// Runs `f` inside a savepoint and publishes what it changed (see the
    /// module docs). Runs on the blocking pool with the connection locked.
    pub(super) fn run<T>(
        &self,
        c: &mut Connection,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        c.execute_batch("SAVEPOINT ferry_shared")?;
        let out = f(c);
        let changes = match take_changes(c, self) {
            Ok(ch) => ch,
            Err(e) => {
                rollback(c);
                return Err(e);
            }
        };
        if out.is_err() || changes.is_empty() {
            if out.is_err() {
                rollback(c);
            } else {
                c.execute_batch("RELEASE ferry_shared")?;
            }
            return out;
        }
        if self.read_only {
            rollback(c);
            return Err(MetaError::ReadOnly);
        }
        let version = applied(c)? + 1;
        let put = self
            .handle
            .block_on(tokio::time::timeout(
                STORE_TIMEOUT,
                self.put(version, changes),
            ))
            .unwrap_or_else(|_| {
                // The entry may still land: then the hub applies it when it
                // next follows the log, as any other hub's.
                Err(MetaError::Shared(format!(
                    "the store did not answer within {STORE_TIMEOUT:?}"
                )))
            });
        match put {
            Ok(true) => {
                set_applied(c, version)?;
                let snap = if version % self.snapshot_every == 0 {
                    Some(snapshot::take(c, self, version))
                } else {
                    None
                };
                c.execute_batch("RELEASE ferry_shared")?;
                self.applied.store(version, Ordering::SeqCst);
                metrics::counter!(WRITTEN).increment(1);
                metrics::gauge!(VERSION).set(version as f64);
                // A snapshot that fails only costs a joining hub more reads.
                match snap.map(|s| s.and_then(|s| self.handle.block_on(snapshot::put(self, &s)))) {
                    Some(Err(e)) => {
                        tracing::warn!(version, error = %e, "cannot write the shared metadata snapshot")
                    }
                    Some(Ok(())) => tracing::info!(version, "wrote a shared metadata snapshot"),
                    None => {}
                }
                out
            }
            Ok(false) => {
                rollback(c);
                metrics::counter!(CONFLICTS).increment(1);
                let next = |c: &Connection| -> Result<Option<Entry>> {
                    let v = applied(c)? + 1;
                    self.handle
                        .block_on(tokio::time::timeout(STORE_TIMEOUT, self.fetch(v)))
                        .unwrap_or_else(|_| {
                            Err(MetaError::Shared(format!(
                                "the store did not answer within {STORE_TIMEOUT:?}"
                            )))
                        })
                };
                while let Some(entry) = next(c)? {
                    apply(c, self, &entry)?;
                }
                Err(MetaError::Conflict)
            }
            Err(e) => {
                rollback(c);
                Err(e)
            }
        }
    }
}

/// Where the log lives and who writes it.
#[derive(Debug, Clone)]
pub struct LogPlace {
    pub store: Arc<dyn ObjectStore>,
    /// The lake's root in `store`.
    pub root: Path,
    /// Names this hub in the entries it writes.
    pub hub: String,
    /// A read replica: follows, never writes.
    pub read_only: bool,
    /// A snapshot every this many versions ([`SNAPSHOT_EVERY`]).
    pub snapshot_every: u64,
}

/// Turns the log on for `meta`: installs the triggers, joins the log (see
/// the module docs) and applies what the hub missed. Call once, before
/// serving.
pub async fn attach(meta: &Meta, place: LogPlace) -> Result<()> {
    let handle = tokio::runtime::Handle::current();
    let (columns, version, own_rows) = meta
        .call_local(|c| {
            let columns = read_columns(c)?;
            install_triggers(c, &columns)?;
            let version = applied(c)?;
            let own = if version == 0 {
                image(c, &columns)?
            } else {
                Vec::new()
            };
            Ok((columns, version, own))
        })
        .await?;
    let log = Arc::new(SharedLog {
        store: place.store,
        dir: place
            .root
            .join(crate::encryption::lake::HUB_STATE_DIR)
            .join("meta")
            .join("log"),
        hub: place.hub,
        read_only: place.read_only,
        handle,
        applied: AtomicU64::new(version),
        columns,
        snapshot_every: place.snapshot_every.max(1),
    });
    if version == 0 && !own_rows.is_empty() {
        let rows = own_rows.len();
        if log.fetch(1).await?.is_some() {
            return Err(MetaError::Diverged(rows, "the log already has entries"));
        }
        if log.read_only {
            return Err(MetaError::Diverged(
                rows,
                "the log is empty, and a read replica never writes it; start a writer with this file first",
            ));
        }
        if !log.put(1, own_rows).await? {
            return Err(MetaError::Diverged(
                rows,
                "another hub started the log at the same moment",
            ));
        }
        meta.call_local(|c| set_applied(c, 1)).await?;
        log.applied.store(1, Ordering::SeqCst);
        tracing::info!("started the lake's shared metadata log with this hub's metadata");
    }
    if version == 0
        && log.version() == 0
        && let Some(snap) = snapshot::newest(&log).await?
    {
        let l = Arc::clone(&log);
        meta.call_local(move |c| snapshot::load(c, &l, &snap))
            .await?;
    }
    meta.set_shared(Arc::clone(&log))?;
    catch_up(meta).await?;
    tracing::info!(
        version = log.version(),
        read_only = log.read_only,
        "following the shared metadata log"
    );
    Ok(())
}

/// Applies every entry past this hub's version; the tables that changed.
pub async fn catch_up(meta: &Meta) -> Result<BTreeSet<String>> {
    let Some(log) = meta.shared() else {
        return Ok(BTreeSet::new());
    };
    let mut changed = BTreeSet::new();
    loop {
        let next = log.version() + 1;
        let Some(entry) = log.fetch(next).await? else {
            break;
        };
        for ch in &entry.changes {
            changed.insert(ch.table.clone());
        }
        let l = Arc::clone(&log);
        meta.call_local(move |c| apply(c, &l, &entry)).await?;
    }
    Ok(changed)
}

/// Follows the log until `shutdown`, every `interval`; `on_change` gets the
/// tables each round changed.
pub async fn follow<F, Fut>(
    meta: Meta,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    on_change: F,
) where
    F: Fn(BTreeSet<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match catch_up(&meta).await {
            Ok(changed) if !changed.is_empty() => on_change(changed).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot follow the shared metadata log"),
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
