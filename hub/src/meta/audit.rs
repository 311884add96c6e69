//! The audit log's storage: a hash chain in SQLite.
//!
//! Each entry's `hash` is SHA-256 of the previous entry's hash followed by
//! the entry's own fields as a JSON array ([`chain_hash`]); the first
//! entry's previous hash is 32 zero bytes. Changing, inserting or removing
//! an entry in the middle breaks the chain at that entry, and
//! [`Meta::verify_audit_chain`] names it. Retention removes a prefix of the
//! chain; the `audit.prune` entry it writes records the hash the first kept
//! entry chains to (`anchor`), so a verified log still starts from a known
//! point. Removing the newest entries is not detectable from the log
//! alone: keep the head hash the verification reports somewhere else.

use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Meta, MetaError, Result, format_ms, now_ms};

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    pub event_type: String,
    pub actor: String,
    pub actor_token_id: Option<i64>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub database: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub status: Option<u16>,
    /// Failures coalesced into this entry (1 for an action).
    pub count: i64,
    /// JSON text.
    pub detail: Option<String>,
}

/// A stored entry, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    pub event_type: String,
    pub actor: String,
    pub actor_token_id: Option<i64>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub database: Option<String>,
    pub outcome: String,
    pub status: Option<u16>,
    pub count: i64,
    pub detail: Option<serde_json::Value>,
    /// Hex.
    pub prev_hash: String,
    /// Hex.
    pub hash: String,
}

/// What `GET /api/v1/admin/audit-log` filters on.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact, or a prefix when it ends in `*` (`token.*`).
    pub event_type: Option<String>,
    pub actor: Option<String>,
    pub database: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub ok: bool,
    pub entries_checked: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The hash the first kept entry chains to (zeros for a log never
    /// pruned), hex.
    pub anchor: Option<String>,
    /// The newest entry's hash, hex: record it elsewhere to detect a
    /// truncated tail later.
    pub head_hash: Option<String>,
    /// The first entry that does not verify, and why.
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
}

/// The fields an entry's hash covers, in order.
pub(crate) fn chain_hash(prev: &[u8; 32], id: i64, e: &NewAuditEntry) -> [u8; 32] {
    let fields = serde_json::json!([
        id,
        e.at_ms,
        e.event_type,
        e.actor,
        e.actor_token_id,
        e.source,
        e.target,
        e.database,
        e.outcome,
        e.status,
        e.count,
        e.detail,
    ]);
    let mut h = Sha256::new();
    h.update(prev);
    h.update(fields.to_string().as_bytes());
    h.finalize().into()
}

const COLUMNS: &str = "id, at_ms, event_type, actor, actor_token_id, source, target, database, \
                       outcome, status, count, detail, prev_hash, hash";

/// A row: its id, its fields, and the two hashes.
type Raw = (i64, NewAuditEntry, Vec<u8>, Vec<u8>);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        NewAuditEntry {
            at_ms: r.get(1)?,
            event_type: r.get(2)?,
            actor: r.get(3)?,
            actor_token_id: r.get(4)?,
            source: r.get(5)?,
            target: r.get(6)?,
            database: r.get(7)?,
            outcome: r.get(8)?,
            status: r.get(9)?,
            count: r.get(10)?,
            detail: r.get(11)?,
        },
        r.get(12)?,
        r.get(13)?,
    ))
}

fn to_entry((id, e, prev, hash): Raw) -> AuditEntry {
    AuditEntry {
        id,
        time: format_ms(e.at_ms),
        detail: e
            .detail
            .as_deref()
            .map(|d| serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.to_owned()))),
        event_type: e.event_type,
        actor: e.actor,
        actor_token_id: e.actor_token_id,
        source: e.source,
        target: e.target,
        database: e.database,
        outcome: e.outcome,
        status: e.status,
        count: e.count,
        prev_hash: hex::encode(prev),
        hash: hex::encode(hash),
    }
}

fn hash32(bytes: &[u8], id: i64) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| MetaError::Corrupt(format!("audit entry {id}: a hash is not 32 bytes")))
}

/// Appends `entries` in one transaction, each chained to the one before.
fn append(c: &mut Connection, entries: &[NewAuditEntry]) -> Result<Vec<i64>> {
    let tx = c.savepoint()?;
    let ids = append_in(&tx, entries)?;
    tx.commit()?;
    Ok(ids)
}

/// [`append`] inside the caller's transaction.
fn append_in(tx: &Connection, entries: &[NewAuditEntry]) -> Result<Vec<i64>> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut id, mut prev) = match last {
        Some((id, hash)) => (id, hash32(&hash, id)?),
        None => (0, [0; 32]),
    };
    let mut ids = Vec::with_capacity(entries.len());
    {
        let mut stmt = tx.prepare(&format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?;
        for e in entries {
            id += 1;
            let hash = chain_hash(&prev, id, e);
            stmt.execute(params![
                id,
                e.at_ms,
                e.event_type,
                e.actor,
                e.actor_token_id,
                e.source,
                e.target,
                e.database,
                e.outcome,
                e.status,
                e.count,
                e.detail,
                &prev[..],
                &hash[..],
            ])?;
            prev = hash;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Entries checked per call, so that a long verification lets token
/// lookups through between its batches.
const VERIFY_BATCH: i64 = 10_000;

impl Meta {
    /// Appends `entries` durably (one transaction), returning their ids.
    pub async fn append_audit(&self, entries: Vec<NewAuditEntry>) -> Result<Vec<i64>> {
        self.call(move |c| append(c, &entries)).await
    }

    /// Entries matching `filter`, newest first, and how many match in all.
    pub async fn audit_entries(&self, filter: AuditFilter) -> Result<(Vec<AuditEntry>, i64)> {
        self.call(move |c| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(t) = filter.event_type {
                match t.strip_suffix('*') {
                    Some(prefix) => {
                        clauses.push("substr(event_type, 1, length(?)) = ?".to_owned());
                        args.push(prefix.to_owned().into());
                        args.push(prefix.to_owned().into());
                    }
                    None => {
                        clauses.push("event_type = ?".to_owned());
                        args.push(t.into());
                    }
                }
            }
            for (column, value) in [("actor", filter.actor), ("database", filter.database)] {
                if let Some(v) = value {
                    clauses.push(format!("{column} = ?"));
                    args.push(v.into());
                }
            }
            if let Some(s) = filter.since_ms {
                clauses.push("at_ms >= ?".to_owned());
                args.push(s.into());
            }
            if let Some(u) = filter.until_ms {
                clauses.push("at_ms < ?".to_owned());
                args.push(u.into());
            }
            let filter_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let total: i64 = c.query_row(
                &format!("SELECT count(*) FROM audit_log {filter_sql}"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            args.push(i64::from(filter.limit).into());
            args.push(i64::from(filter.offset).into());
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM audit_log {filter_sql} ORDER BY id DESC LIMIT ? OFFSET ?"
            ))?;
            let rows = stmt.query_map(params_from_iter(args.iter()), raw)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(to_entry(row?));
            }
            Ok((out, total))
        })
        .await
    }

    /// Checks every entry's hash and link, oldest first.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        let mut report = ChainReport {
            ok: true,
            entries_checked: 0,
            first_id: None,
            last_id: None,
            anchor: None,
            head_hash: None,
            broken_at: None,
            problem: None,
        };
        let mut prev: Option<(i64, [u8; 32])> = None;
        loop {
            let after = prev.map_or(i64::MIN, |(id, _)| id);
            let batch: Vec<Raw> = self
                .call(move |c| {
                    let mut stmt = c.prepare(&format!(
                        "SELECT {COLUMNS} FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ))?;
                    let rows = stmt.query_map(params![after, VERIFY_BATCH], raw)?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })
                .await?;
            if batch.is_empty() {
                break;
            }
            for (id, e, prev_hash, hash) in batch {
                let prev_hash = hash32(&prev_hash, id)?;
                let hash = hash32(&hash, id)?;
                let problem = match prev {
                    None => {
                        report.first_id = Some(id);
                        report.anchor = Some(hex::encode(prev_hash));
                        self.check_anchor(id, &prev_hash).await?
                    }
                    Some((prev_id, _)) if id != prev_id + 1 => {
                        Some(format!("entries {} to {} are missing", prev_id + 1, id - 1))
                    }
                    Some((_, p)) if p != prev_hash => {
                        Some("its prev_hash is not the previous entry's hash".to_owned())
                    }
                    Some(_) => None,
                }
                .or_else(|| {
                    (chain_hash(&prev_hash, id, &e) != hash)
                        .then(|| "its fields do not hash to its stored hash".to_owned())
                });
                if let Some(problem) = problem {
                    report.ok = false;
                    report.broken_at = Some(id);
                    report.problem = Some(format!("entry {id}: {problem}"));
                    return Ok(report);
                }
                report.entries_checked += 1;
                report.last_id = Some(id);
                report.head_hash = Some(hex::encode(hash));
                prev = Some((id, hash));
            }
        }
        Ok(report)
    }

    /// The first kept entry must chain to zeros (nothing was ever pruned)
    /// or to the anchor a prune entry recorded for it.
    async fn check_anchor(&self, first_id: i64, prev_hash: &[u8; 32]) -> Result<Option<String>> {
        if first_id == 1 {
            return Ok((*prev_hash != [0; 32])
                .then(|| "the first entry does not chain to zeros".to_owned()));
        }
        let anchors: Vec<String> = self
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT detail FROM audit_log WHERE event_type = 'audit.prune' ORDER BY id DESC",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0))?;
                Ok(rows
                    .filter_map(|r| r.ok().flatten())
                    .collect::<Vec<String>>())
            })
            .await?;
        let want = hex::encode(prev_hash);
        let accounted = anchors.iter().any(|d| {
            serde_json::from_str::<serde_json::Value>(d).is_ok_and(|v| {
                v["through_id"].as_i64() == Some(first_id - 1)
                    && v["anchor"].as_str() == Some(want.as_str())
            })
        });
        Ok((!accounted).then(|| {
            format!(
                "entries 1 to {} are missing and no audit.prune entry accounts for them",
                first_id - 1
            )
        }))
    }

    /// Deletes the entries older than `cutoff_ms` (a prefix of the chain)
    /// and appends an `audit.prune` entry recording how many and the hash
    /// the first kept entry chains to. `None` when nothing was old enough.
    pub async fn prune_audit(&self, cutoff_ms: i64) -> Result<Option<u64>> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            // The leading run of entries older than the cutoff: ids, not
            // times, are the chain's order (a coalesced failure carries its
            // window's first time; a clock can step back).
            let through: Option<(i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT id, hash FROM audit_log WHERE id = coalesce(
                       (SELECT min(id) FROM audit_log WHERE at_ms >= ?1) - 1,
                       (SELECT max(id) FROM audit_log))",
                    [cutoff_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((through_id, anchor)) = through else {
                return Ok(None);
            };
            let deleted = tx.execute("DELETE FROM audit_log WHERE id <= ?1", [through_id])?;
            let detail = serde_json::json!({
                "deleted": deleted,
                "through_id": through_id,
                "anchor": hex::encode(anchor),
                "cutoff": format_ms(cutoff_ms),
            });
            append_in(
                &tx,
                &[NewAuditEntry {
                    at_ms: now_ms(),
                    event_type: "audit.prune".to_owned(),
                    actor: "ferry-hub".to_owned(),
                    actor_token_id: None,
                    source: None,
                    target: None,
                    database: None,
                    outcome: "success".to_owned(),
                    status: None,
                    count: 1,
                    detail: Some(detail.to_string()),
                }],
            )?;
            tx.commit()?;
            Ok(Some(u64::try_from(deleted).unwrap_or(0)))
        })
        .await
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
