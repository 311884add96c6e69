//! Last-value cache definitions (see [`crate::lastcache`]).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms, now_ms};

/// One cache's definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastCacheDef {
    pub id: i64,
    pub name: String,
    pub database: String,
    pub measurement: String,
    /// One row set per distinct value of these columns.
    pub key_columns: Vec<String>,
    /// `None`: every column but the keys, `time` and `day`, new ones too.
    pub value_columns: Option<Vec<String>>,
    /// Rows kept per key (1-10).
    pub count: u8,
    #[serde(skip)]
    pub ttl_ms: i64,
    pub ttl_seconds: f64,
    pub created_at: String,
}

/// A new definition (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewLastCache {
    pub name: String,
    pub database: String,
    pub measurement: String,
    pub key_columns: Vec<String>,
    pub value_columns: Option<Vec<String>>,
    pub count: u8,
    pub ttl_ms: i64,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LastCacheDef> {
    let keys: String = r.get(4)?;
    let values: Option<String> = r.get(5)?;
    let ttl_ms: i64 = r.get(7)?;
    Ok(LastCacheDef {
        id: r.get(0)?,
        name: r.get(1)?,
        database: r.get(2)?,
        measurement: r.get(3)?,
        key_columns: serde_json::from_str(&keys).unwrap_or_default(),
        value_columns: values.and_then(|v| serde_json::from_str(&v).ok()),
        count: u8::try_from(r.get::<_, i64>(6)?).unwrap_or(1),
        ttl_ms,
        ttl_seconds: ttl_ms as f64 / 1000.0,
        created_at: format_ms(r.get(8)?),
    })
}

const SELECT: &str = "SELECT id, name, database, measurement, key_columns, value_columns, count,
    ttl_ms, created_at_ms FROM last_caches";

impl Meta {
    /// Every cache definition, by id.
    pub async fn list_last_caches(&self) -> Result<Vec<LastCacheDef>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("{SELECT} ORDER BY id"))?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Creates a definition; `Ok(Err(reason))` when the table already has
    /// a cache of that name.
    pub async fn create_last_cache(
        &self,
        new: NewLastCache,
    ) -> Result<std::result::Result<LastCacheDef, String>> {
        self.call(move |c| {
            let taken = c
                .query_row(
                    "SELECT 1 FROM last_caches WHERE database = ?1 AND measurement = ?2 AND name = ?3",
                    params![new.database, new.measurement, new.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if taken {
                return Ok(Err(format!(
                    "{}.{} already has a last-value cache named {:?}",
                    new.database, new.measurement, new.name
                )));
            }
            c.execute(
                "INSERT INTO last_caches (name, database, measurement, key_columns, value_columns,
                     count, ttl_ms, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.name,
                    new.database,
                    new.measurement,
                    serde_json::to_string(&new.key_columns).unwrap_or_default(),
                    new.value_columns
                        .as_ref()
                        .map(|v| serde_json::to_string(v).unwrap_or_default()),
                    i64::from(new.count),
                    new.ttl_ms,
                    now_ms()
                ],
            )?;
            let id = c.last_insert_rowid();
            Ok(c
                .query_row(&format!("{SELECT} WHERE id = ?1"), params![id], row)
                .optional()?
                .ok_or_else(|| format!("cache {id} vanished")))
        })
        .await
    }

    /// Deletes definition `id`; the deleted one, or `None`.
    pub async fn delete_last_cache(&self, id: i64) -> Result<Option<LastCacheDef>> {
        self.call(move |c| {
            let found = c
                .query_row(&format!("{SELECT} WHERE id = ?1"), params![id], row)
                .optional()?;
            c.execute("DELETE FROM last_caches WHERE id = ?1", params![id])?;
            Ok(found)
        })
        .await
    }
}
