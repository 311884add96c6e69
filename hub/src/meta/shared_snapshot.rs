//! Snapshots of the shared metadata, so that joining a lake costs the same
//! however long its log has grown.
//!
//! The hub that writes version `n` with `n` a multiple of
//! [`SNAPSHOT_EVERY`] also writes `_ferry/meta/snapshot/<n>.json`: every
//! shared row as of `n`, and the tables' `AUTOINCREMENT` counters (so that
//! an id deleted before the snapshot is never handed out again). A hub
//! joining with empty shared tables loads the newest snapshot and replays
//! only the entries after it: at most `SNAPSHOT_EVERY - 1` reads, not one
//! per entry ever written. The entries stay in the log (a few hundred bytes
//! each); nothing depends on deleting them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{Change, SHARED, SharedLog, applied, apply_change, image, set_applied};
use crate::meta::{MetaError, Result};

/// A snapshot every this many versions.
pub const SNAPSHOT_EVERY: u64 = 500;

/// Every shared row at one version.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub version: u64,
    pub hub: String,
    pub at_ms: i64,
    /// `sqlite_sequence` of the shared tables.
    pub sequences: BTreeMap<String, i64>,
    pub rows: Vec<Change>,
}

fn dir(log: &SharedLog) -> Path {
    // `<root>/_ferry/meta/log` → `<root>/_ferry/meta/snapshot`.
    let mut parts: Vec<String> = log.dir.parts().map(|p| p.as_ref().to_owned()).collect();
    parts.pop();
    parts.push("snapshot".to_owned());
    Path::from_iter(parts)
}

/// The snapshot of the state `c` holds at `version` (inside the writer's
/// savepoint, so it includes the change of `version`).
pub(super) fn take(c: &Connection, log: &SharedLog, version: u64) -> Result<Snapshot> {
    let mut sequences = BTreeMap::new();
    let mut stmt = c.prepare("SELECT name, seq FROM sqlite_sequence")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (name, seq) in rows {
        if SHARED.iter().any(|(t, _)| *t == name) {
            sequences.insert(name, seq);
        }
    }
    Ok(Snapshot {
        version,
        hub: log.hub.clone(),
        at_ms: crate::meta::now_ms(),
        sequences,
        rows: image(c, &log.columns)?,
    })
}

/// Writes `snap` (a plain put: any two hubs write the same bytes for a
/// version but the hub name and time).
pub(super) async fn put(log: &SharedLog, snap: &Snapshot) -> Result<()> {
    let body = serde_json::to_vec(snap).map_err(|e| MetaError::Shared(e.to_string()))?;
    let path = dir(log).join(format!("{:020}.json", snap.version));
    log.store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| MetaError::Shared(e.to_string()))?;
    Ok(())
}

/// The newest snapshot, if any.
pub(super) async fn newest(log: &SharedLog) -> Result<Option<Snapshot>> {
    let listed: Vec<_> = log
        .store
        .list(Some(&dir(log)))
        .try_collect()
        .await
        .map_err(|e| MetaError::Shared(e.to_string()))?;
    let Some(newest) = listed
        .iter()
        .filter_map(|o| {
            let v: u64 = o.location.filename()?.strip_suffix(".json")?.parse().ok()?;
            Some((v, &o.location))
        })
        .max_by_key(|(v, _)| *v)
    else {
        return Ok(None);
    };
    let bytes = log
        .store
        .get(newest.1)
        .await
        .map_err(|e| MetaError::Shared(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| MetaError::Shared(e.to_string()))?;
    let snap: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| MetaError::Corrupt(format!("shared metadata snapshot {}: {e}", newest.0)))?;
    if snap.version != newest.0 {
        return Err(MetaError::Corrupt(format!(
            "shared metadata snapshot file {} says version {}",
            newest.0, snap.version
        )));
    }
    Ok(Some(snap))
}

/// Loads `snap` into empty shared tables (a hub that never followed the
/// log); one transaction.
pub(super) fn load(c: &mut Connection, log: &SharedLog, snap: &Snapshot) -> Result<()> {
    let tx = c.savepoint()?;
    if applied(&tx)? != 0 {
        return Err(MetaError::Shared(
            "a snapshot is only loaded by a hub that never followed the log".to_owned(),
        ));
    }
    for ch in &snap.rows {
        apply_change(&tx, log, ch)?;
    }
    for (table, seq) in &snap.sequences {
        log.columns(table)?;
        tx.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])?;
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
            rusqlite::params![table, seq],
        )?;
    }
    tx.execute("DELETE FROM temp.ferry_changes", [])?;
    set_applied(&tx, snap.version)?;
    tx.commit()?;
    log.applied.store(snap.version, Ordering::SeqCst);
    tracing::info!(
        version = snap.version,
        rows = snap.rows.len(),
        "loaded the shared metadata snapshot"
    );
    Ok(())
}
