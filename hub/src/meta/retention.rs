//! Retention policies: how many days of data to keep, per database or per
//! measurement. The maintenance task enforces them (see
//! [`crate::maintenance`]); the API edits them (`/api/v1/retention`).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Meta, Result, format_ms, now_ms};

/// One policy. `measurement: None` covers every measurement of the
/// database that has no policy of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub database: String,
    pub measurement: Option<String>,
    pub days: u32,
    /// RFC 3339.
    pub updated_at: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetentionPolicy> {
    let measurement: String = r.get(1)?;
    let days: i64 = r.get(2)?;
    Ok(RetentionPolicy {
        database: r.get(0)?,
        measurement: (!measurement.is_empty()).then_some(measurement),
        days: u32::try_from(days).unwrap_or(u32::MAX),
        updated_at: format_ms(r.get(3)?),
    })
}

impl Meta {
    /// Every policy, by database then measurement (database-wide first).
    pub async fn list_retention(&self) -> Result<Vec<RetentionPolicy>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT database, measurement, days, updated_at_ms FROM retention
                 ORDER BY database, measurement",
            )?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Creates or replaces the policy of `database` (and `measurement`).
    pub async fn set_retention(
        &self,
        database: &str,
        measurement: Option<&str>,
        days: u32,
    ) -> Result<RetentionPolicy> {
        let database = database.to_owned();
        let measurement = measurement.unwrap_or_default().to_owned();
        self.call(move |c| {
            c.execute(
                "INSERT INTO retention (database, measurement, days, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (database, measurement)
                 DO UPDATE SET days = excluded.days, updated_at_ms = excluded.updated_at_ms",
                params![database, measurement, i64::from(days), now_ms()],
            )?;
            Ok(c.query_row(
                "SELECT database, measurement, days, updated_at_ms FROM retention
                 WHERE database = ?1 AND measurement = ?2",
                params![database, measurement],
                row,
            )?)
        })
        .await
    }

    /// Deletes a policy; the deleted one, or `None` if there was none.
    pub async fn delete_retention(
        &self,
        database: &str,
        measurement: Option<&str>,
    ) -> Result<Option<RetentionPolicy>> {
        let database = database.to_owned();
        let measurement = measurement.unwrap_or_default().to_owned();
        self.call(move |c| {
            let found = c
                .query_row(
                    "SELECT database, measurement, days, updated_at_ms FROM retention
                     WHERE database = ?1 AND measurement = ?2",
                    params![database, measurement],
                    row,
                )
                .optional()?;
            c.execute(
                "DELETE FROM retention WHERE database = ?1 AND measurement = ?2",
                params![database, measurement],
            )?;
            Ok(found)
        })
        .await
    }
}

/// The days to keep for `database.measurement`: its own policy, else its
/// database's, else `default_days` (0 = keep forever → `None`).
pub fn days_for(
    policies: &[RetentionPolicy],
    database: &str,
    measurement: &str,
    default_days: u32,
) -> Option<u32> {
    let own = policies
        .iter()
        .find(|p| p.database == database && p.measurement.as_deref() == Some(measurement));
    let db = policies
        .iter()
        .find(|p| p.database == database && p.measurement.is_none());
    own.or(db)
        .map(|p| p.days)
        .or((default_days > 0).then_some(default_days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policies_round_trip_and_resolve_most_specific_first() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        meta.set_retention("plant", None, 30).await.unwrap();
        meta.set_retention("plant", Some("vibration"), 3)
            .await
            .unwrap();
        let updated = meta.set_retention("plant", None, 60).await.unwrap();
        assert_eq!(updated.days, 60);
        let all = meta.list_retention().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(days_for(&all, "plant", "vibration", 0), Some(3));
        assert_eq!(days_for(&all, "plant", "temperature", 0), Some(60));
        assert_eq!(days_for(&all, "other", "x", 0), None);
        assert_eq!(days_for(&all, "other", "x", 7), Some(7));
        let gone = meta
            .delete_retention("plant", Some("vibration"))
            .await
            .unwrap();
        assert_eq!(gone.map(|p| p.days), Some(3));
        assert_eq!(
            meta.delete_retention("plant", Some("vibration"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            days_for(
                &meta.list_retention().await.unwrap(),
                "plant",
                "vibration",
                0
            ),
            Some(60)
        );
    }
}
