//! Which tables exist: the store's listing and the hub's memory of it.
//!
//! Listing the store costs a request per database and per table, so it is
//! done when the hub starts and by each maintenance pass, never per query.
//! In between, the list is kept true by the hub's own commits: a write
//! that commits to a table the list does not hold adds it (tables are never
//! dropped). A query that *names* a table does not need the list at all
//! (see [`catalog`](super::catalog)): the table is looked up by its path.
//! Only what lists every table (`SHOW`, `information_schema`) reads it,
//! and where other hubs write the same store (`multi_writer`) the list is
//! re-read when it is older than `tables.listing_staleness`.

use std::collections::BTreeSet;
use std::time::Instant;

use deltalake::ObjectStore;
use ferry_protocols::{DatabaseName, Measurement};

use super::config::{decode_segment, encode_segment};
use super::error::TableError;
use super::name::TableName;
use super::service::Tables;
use super::writer::open_table;

/// The tables the hub knows of, and when the store was last listed.
#[derive(Debug)]
pub(super) struct Known {
    names: BTreeSet<TableName>,
    listed: Instant,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            names: BTreeSet::new(),
            listed: Instant::now(),
        }
    }
}

/// The name a store directory stands for, if it is one Ferry writes.
fn decoded<T, E>(
    dir: &object_store::path::Path,
    new: impl Fn(String) -> Result<T, E>,
) -> Option<T> {
    dir.filename()
        .and_then(decode_segment)
        .and_then(|s| new(s).ok())
}

impl Tables {
    /// Every table in the store: `<root>/<database>/<measurement>/_delta_log`.
    /// Lists the store (one request per database and per table) and
    /// remembers the answer for [`Tables::known`].
    pub async fn list(&self) -> Result<Vec<TableName>, TableError> {
        let storage = &self.inner.storage;
        let root = &storage.root;
        let store = open_table(storage, root)
            .map_err(|e| TableError::storage("<root>", e))?
            .object_store();
        let storage_err = |e: deltalake::ObjectStoreError| {
            TableError::storage("<root>", deltalake::DeltaTableError::from(e))
        };
        let started = Instant::now();
        let mut out = Vec::new();
        let databases = store.list_with_delimiter(None).await.map_err(storage_err)?;
        for db_path in databases.common_prefixes {
            let Some(database) = decoded(&db_path, DatabaseName::new) else {
                continue;
            };
            let measurements = store
                .list_with_delimiter(Some(&db_path))
                .await
                .map_err(storage_err)?;
            for m_path in measurements.common_prefixes {
                let Some(measurement) = decoded(&m_path, Measurement::new) else {
                    continue;
                };
                let inside = store
                    .list_with_delimiter(Some(&m_path))
                    .await
                    .map_err(storage_err)?;
                if inside
                    .common_prefixes
                    .iter()
                    .any(|p| p.filename() == Some("_delta_log"))
                {
                    out.push(TableName::new(database.clone(), measurement));
                }
            }
        }
        out.sort();
        if let Ok(mut known) = self.inner.known.write() {
            // Tables committed while the listing ran stay known.
            known.names.extend(out.iter().cloned());
            known.listed = started;
        }
        Ok(out)
    }

    /// The tables the hub knows of, sorted: the last listing of the store
    /// plus every table this hub has committed to since. With
    /// `multi_writer`, a list older than `tables.listing_staleness` is
    /// listed again first (other hubs create tables too).
    pub async fn known(&self) -> Result<Vec<TableName>, TableError> {
        self.refresh_known().await?;
        Ok(self.known_where(|_| true))
    }

    /// With `multi_writer`, lists the store again if the known tables are
    /// older than `tables.listing_staleness`; otherwise nothing.
    pub(super) async fn refresh_known(&self) -> Result<(), TableError> {
        let stale = self.others_write()
            && self.inner.known.read().map_or(true, |k| {
                k.listed.elapsed() > self.inner.config.listing_staleness
            });
        if stale {
            self.list().await?;
        }
        Ok(())
    }

    /// Whether other hubs write the store: `multi_writer`, or this hub is
    /// a read replica.
    pub(super) fn others_write(&self) -> bool {
        self.inner.storage.multi_writer || self.inner.follow.get().is_some()
    }

    /// The known tables that `keep` accepts, sorted (no store access).
    pub(super) fn known_where(&self, keep: impl Fn(&TableName) -> bool) -> Vec<TableName> {
        self.inner
            .known
            .read()
            .map(|k| k.names.iter().filter(|t| keep(t)).cloned().collect())
            .unwrap_or_default()
    }

    /// The known databases, sorted (no store access).
    pub(crate) fn known_databases(&self) -> Vec<DatabaseName> {
        let Ok(known) = self.inner.known.read() else {
            return Vec::new();
        };
        let mut out: Vec<DatabaseName> = known.names.iter().map(|t| t.database.clone()).collect();
        out.dedup();
        out
    }

    /// Whether `table` is known (no store access).
    pub(super) fn is_known(&self, table: &TableName) -> bool {
        self.inner
            .known
            .read()
            .is_ok_and(|k| k.names.contains(table))
    }

    /// Notes that `table` exists (a commit to it succeeded).
    pub(super) fn remember(&self, table: &TableName) {
        if !self.is_known(table)
            && let Ok(mut known) = self.inner.known.write()
        {
            known.names.insert(table.clone());
        }
    }

    /// `tables.max_per_database`: a write to a table this hub has not
    /// written since it started looks at its database's directory once (one
    /// listing of that database, not of the lake); a new table beyond the
    /// limit is refused before anything is created.
    pub(super) async fn check_table_count(&self, table: &TableName) -> Result<(), TableError> {
        let storage = &self.inner.storage;
        let store = open_table(storage, &storage.root)
            .map_err(|e| TableError::storage("<root>", e))?
            .object_store();
        let db = encode_segment(table.database.as_str());
        let own = encode_segment(table.measurement.as_str());
        let prefix = object_store::path::Path::from(db.as_str());
        let listed = store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| TableError::storage(table, deltalake::DeltaTableError::from(e)))?;
        let names: Vec<&str> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .collect();
        let limit = self.inner.config.max_per_database.get();
        if !names.contains(&own.as_str()) && names.len() >= limit {
            return Err(TableError::InvalidData(format!(
                "database {:?} already holds {} tables; tables.max_per_database is {limit}, so table {:?} is not created",
                table.database.as_str(),
                names.len(),
                table.measurement.as_str()
            )));
        }
        Ok(())
    }
}
