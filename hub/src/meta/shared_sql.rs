//! The SQLite side of the shared metadata log: the temporary triggers that
//! record a change's rows, reading them back as [`Change`]s, applying an
//! entry's changes, and a whole-table image for a log's first entry.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value};

use super::{
    APPLIED, Change, Column, Entry, MetaError, Result, SHARED, SharedLog, VERSION, VERSION_KEY,
};

pub(super) fn rollback(c: &Connection) {
    if let Err(e) = c.execute_batch("ROLLBACK TO ferry_shared; RELEASE ferry_shared;") {
        tracing::error!(error = %e, "cannot roll back a metadata change");
    }
}

pub(super) fn applied(c: &Connection) -> Result<u64> {
    let v: Option<String> = c
        .query_row(
            "SELECT value FROM settings WHERE key = ?1",
            [VERSION_KEY],
            |r| r.get(0),
        )
        .optional()?;
    match v {
        None => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| MetaError::Corrupt(format!("{VERSION_KEY} = {s:?}"))),
    }
}

pub(super) fn set_applied(c: &Connection, version: u64) -> Result<()> {
    c.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![VERSION_KEY, version.to_string()],
    )?;
    Ok(())
}

/// The changes the triggers recorded since the last call, oldest first;
/// clears them.
pub(super) fn take_changes(c: &Connection, log: &SharedLog) -> Result<Vec<Change>> {
    let mut stmt =
        c.prepare_cached("SELECT tbl, op, rid, row FROM temp.ferry_changes ORDER BY seq")?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    c.execute("DELETE FROM temp.ferry_changes", [])?;
    let mut out = Vec::with_capacity(raw.len());
    for (table, op, rowid, row) in raw {
        log.columns(&table)?;
        let row = match row {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| MetaError::Corrupt(format!("recorded change: {e}")))?,
            None => Map::new(),
        };
        out.push(Change {
            table,
            op,
            rowid,
            row,
        });
    }
    Ok(out)
}

/// Applies `entry` if it is the next version; ignores it if already
/// applied. One transaction.
pub(super) fn apply(c: &mut Connection, log: &SharedLog, entry: &Entry) -> Result<bool> {
    let tx = c.savepoint()?;
    let current = applied(&tx)?;
    if entry.version <= current {
        return Ok(false);
    }
    if entry.version != current + 1 {
        return Err(MetaError::Corrupt(format!(
            "shared log version {} follows {current}",
            entry.version
        )));
    }
    for ch in &entry.changes {
        apply_change(&tx, log, ch)?;
    }
    tx.execute("DELETE FROM temp.ferry_changes", [])?;
    set_applied(&tx, entry.version)?;
    tx.commit()?;
    log.applied.store(entry.version, Ordering::SeqCst);
    metrics::counter!(APPLIED).increment(1);
    metrics::gauge!(VERSION).set(entry.version as f64);
    Ok(true)
}

pub(super) fn apply_change(c: &Connection, log: &SharedLog, ch: &Change) -> Result<()> {
    let columns = log.columns(&ch.table)?;
    let table = &ch.table;
    match ch.op.as_str() {
        "delete" => {
            c.execute(
                &format!("DELETE FROM \"{table}\" WHERE rowid = ?1"),
                [ch.rowid],
            )?;
        }
        "upsert" => {
            let mut names = Vec::new();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            for (name, value) in &ch.row {
                let col = columns.iter().find(|c| &c.name == name).ok_or_else(|| {
                    MetaError::Corrupt(format!("shared log names unknown column {table}.{name}"))
                })?;
                names.push(name.as_str());
                values.push(to_sql(value, col.blob).map_err(|e| {
                    MetaError::Corrupt(format!("shared log value of {table}.{name}: {e}"))
                })?);
            }
            let set = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("\"{n}\" = ?{}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let mut args = vec![rusqlite::types::Value::Integer(ch.rowid)];
            args.extend(values);
            let updated = if names.is_empty() {
                c.query_row(
                    &format!("SELECT count(*) FROM \"{table}\" WHERE rowid = ?1"),
                    [ch.rowid],
                    |r| r.get::<_, i64>(0),
                )? as usize
            } else {
                c.execute(
                    &format!("UPDATE \"{table}\" SET {set} WHERE rowid = ?1"),
                    params_from_iter(args.iter()),
                )?
            };
            if updated == 0 {
                let cols = std::iter::once("rowid".to_owned())
                    .chain(names.iter().map(|n| format!("\"{n}\"")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let marks = (1..=args.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                c.execute(
                    &format!("INSERT INTO \"{table}\" ({cols}) VALUES ({marks})"),
                    params_from_iter(args.iter()),
                )?;
            }
        }
        other => {
            return Err(MetaError::Corrupt(format!(
                "shared log change of unknown kind {other:?}"
            )));
        }
    }
    Ok(())
}

pub(super) fn to_sql(v: &Value, blob: bool) -> std::result::Result<rusqlite::types::Value, String> {
    use rusqlite::types::Value as V;
    Ok(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => V::Integer(i),
            (None, Some(f)) => V::Real(f),
            _ => return Err(format!("number {n} out of range")),
        },
        Value::String(s) if blob => V::Blob(hex::decode(s).map_err(|e| e.to_string())?),
        Value::String(s) => V::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => return Err("not a column value".to_owned()),
    })
}

/// The columns of every shared table, from the file's own schema.
pub(super) fn read_columns(c: &Connection) -> Result<Vec<(String, Vec<Column>)>> {
    let mut out = Vec::new();
    for (table, _) in SHARED {
        let mut stmt = c.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
        let cols = stmt
            .query_map([], |r| {
                let name: String = r.get(1)?;
                let ty: String = r.get(2)?;
                Ok(Column {
                    name,
                    blob: ty.eq_ignore_ascii_case("BLOB"),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if cols.is_empty() {
            return Err(MetaError::Corrupt(format!("no table {table}")));
        }
        out.push(((*table).to_owned(), cols));
    }
    Ok(out)
}

pub(super) fn json_of(prefix: &str, cols: &[&Column]) -> String {
    let args = cols
        .iter()
        .map(|c| {
            let v = if c.blob {
                format!(
                    "CASE WHEN {prefix}.\"{n}\" IS NULL THEN NULL ELSE hex({prefix}.\"{n}\") END",
                    n = c.name
                )
            } else {
                format!("{prefix}.\"{}\"", c.name)
            };
            format!("'{}', {v}", c.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("json_object({args})")
}

/// The temporary change table and triggers (this connection only; the
/// file's schema is unchanged).
pub(super) fn install_triggers(c: &Connection, columns: &[(String, Vec<Column>)]) -> Result<()> {
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS ferry_changes (
             seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL,
             rid INTEGER NOT NULL, row TEXT);",
    )?;
    for ((table, shared), (_, cols)) in SHARED.iter().zip(columns) {
        let all: Vec<&Column> = cols.iter().collect();
        let some: Vec<&Column> = cols
            .iter()
            .filter(|c| shared.contains(&c.name.as_str()))
            .collect();
        let of = some
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        c.execute_batch(&format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS ferry_{table}_ins AFTER INSERT ON main.\"{table}\" BEGIN
               INSERT INTO ferry_changes (tbl, op, rid, row) VALUES ('{table}', 'upsert', NEW.rowid, {ins});
             END;
             CREATE TEMP TRIGGER IF NOT EXISTS ferry_{table}_upd AFTER UPDATE OF {of} ON main.\"{table}\" BEGIN
               INSERT INTO ferry_changes (tbl, op, rid, row) VALUES ('{table}', 'upsert', NEW.rowid, {upd});
             END;
             CREATE TEMP TRIGGER IF NOT EXISTS ferry_{table}_del AFTER DELETE ON main.\"{table}\" BEGIN
               INSERT INTO ferry_changes (tbl, op, rid, row) VALUES ('{table}', 'delete', OLD.rowid, NULL);
             END;",
            ins = json_of("NEW", &all),
            upd = json_of("NEW", &some),
        ))?;
    }
    Ok(())
}

/// Every shared row, as upserts (the first entry of a log started by a hub
/// that already has metadata).
pub(super) fn image(c: &Connection, columns: &[(String, Vec<Column>)]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    for (table, cols) in columns {
        let all: Vec<&Column> = cols.iter().collect();
        let mut stmt = c.prepare(&format!(
            "SELECT t.rowid, {} FROM main.\"{table}\" AS t ORDER BY t.rowid",
            json_of("t", &all)
        ))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (rowid, json) in rows {
            let row = serde_json::from_str(&json)
                .map_err(|e| MetaError::Corrupt(format!("{table} row {rowid}: {e}")))?;
            out.push(Change {
                table: table.clone(),
                op: "upsert".to_owned(),
                rowid,
                row,
            });
        }
    }
    Ok(out)
}
