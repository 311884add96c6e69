//! What queries see: a DataFusion catalog that resolves only the tables a
//! query names, and the cache of loaded tables behind it.
//!
//! The catalog is DataFusion's default one (`datafusion`), one schema per
//! database and one table per measurement. DataFusion asks it for each
//! table a statement references while planning; only those tables are
//! loaded (from the reader cache, brought up to date with one read of the
//! log's new entries; on a local disk, one `stat` of the next commit file
//! when there is none), so the cost of a query does not grow with the
//! tables in the lake. Listing every table (`SHOW TABLES`, `information_schema`)
//! uses the hub's list of known tables ([`listing`](super::listing)), not
//! the store.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SessionState;
use deltalake::datafusion::prelude::SessionContext;
use ferry_protocols::{DatabaseName, Measurement};
use tracing::debug;

use super::config::check_storage_form;
use super::error::TableError;
use super::local_log;
use super::name::TableName;
use super::scan::{LakeScan, ScanFiles};
use super::service::{Reader, Tables};
use super::writer::load_latest;
use crate::auth::{Grants, Permission};

/// What [`Tables::summary`] tells of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSummary {
    pub version: Option<u64>,
    /// Where the table is (`file:///…`, `s3://bucket/prefix/db/m/`).
    pub location: String,
    pub files: u64,
    pub bytes: u64,
    /// From the files' statistics.
    pub rows: u64,
}

impl Tables {
    /// Makes the tables the default catalog of `ctx`: schema `database`,
    /// table `measurement`, each loaded at its latest version when a
    /// statement names it. The list of databases and tables (for `SHOW` and
    /// `information_schema`) is read only when the statement asks for it.
    ///
    /// With `readable`, only the tables those grants allow `read` on are
    /// listed, and naming another is an error ([`NotReadable`]), whether it
    /// exists or not.
    pub async fn register_catalog(
        &self,
        ctx: &SessionContext,
        readable: Option<Arc<Grants>>,
    ) -> Result<(), TableError> {
        self.refresh_known().await?;
        let state = ctx.state();
        let catalog_name = state.config().options().catalog.default_catalog.clone();
        let catalog = LakeCatalog {
            tables: self.clone(),
            state: Arc::new(state),
            readable,
        };
        ctx.register_catalog(catalog_name, Arc::new(catalog));
        Ok(())
    }

    /// Files, bytes and rows of `name` at its latest version (through the
    /// reader cache); `None` if it has no log.
    pub async fn summary(&self, name: &TableName) -> Result<Option<TableSummary>, TableError> {
        let Some(reader) = self.latest(name, true).await? else {
            return Ok(None);
        };
        let snapshot = reader
            .table
            .snapshot()
            .map_err(|e| TableError::storage(name, e))?;
        let mut out = TableSummary {
            version: reader.table.version(),
            location: self.inner.storage.table_url(name),
            ..TableSummary::default()
        };
        for view in snapshot.log_data().iter() {
            out.files += 1;
            out.bytes += u64::try_from(view.size()).unwrap_or(0);
            out.rows += view
                .num_records()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
        }
        Ok(Some(out))
    }

    /// A fresh load of the table's latest version (not the reader cache);
    /// `None` if it has no log yet.
    pub(crate) async fn load(&self, name: &TableName) -> Result<Option<DeltaTable>, TableError> {
        let url = self.inner.storage.table_url(name);
        load_latest(&self.inner.storage, &url)
            .await
            .map_err(|e| TableError::storage(name, e))
    }

    /// The table at its latest version, from the reader cache brought up to
    /// date, with the files its scan reads (rebuilt when the version
    /// moved); `None` if it has no log. Cached tables unused for
    /// `tables.idle_timeout` are dropped.
    /// `views`: the session reads strings as views (`schema_force_view_types`).
    pub(super) async fn latest(
        &self,
        name: &TableName,
        views: bool,
    ) -> Result<Option<Reader>, TableError> {
        let label = name.to_string();
        let cached = self.inner.readers.lock().await.get(name).cloned();
        let now = std::time::Instant::now();
        let follow = self.inner.follow.get().copied();
        let mut reader = match cached {
            // A replica serves a table checked within replica.max_staleness
            // without reading the log again.
            Some(reader) if follow.is_some_and(|max| now.duration_since(reader.checked) < max) => {
                reader
            }
            Some(mut reader) if unchanged_on_disk(&reader.table) => {
                reader.checked = now;
                reader
            }
            Some(mut reader) => {
                reader
                    .table
                    .update_incremental(None)
                    .await
                    .map_err(|e| TableError::storage(&label, e))?;
                reader.checked = now;
                reader
            }
            None => match self.load(name).await? {
                Some(table) => Reader {
                    table,
                    scan: None,
                    used: now,
                    checked: now,
                },
                None => return Ok(None),
            },
        };
        if follow.is_some() {
            let age = now.duration_since(reader.checked);
            metrics::histogram!(super::metrics::REPLICA_SNAPSHOT_AGE).record(age.as_secs_f64());
            self.inner.served_age_ms.store(
                u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let version = reader.table.version();
        if reader
            .scan
            .as_ref()
            .is_none_or(|s| s.version != version || s.views != views)
        {
            reader.scan = ScanFiles::of(&reader.table, views).map(Arc::new);
        }
        reader.used = now;
        let idle = self.inner.config.idle_timeout;
        let mut readers = self.inner.readers.lock().await;
        readers.retain(|_, r| now.duration_since(r.used) < idle);
        readers.insert(name.clone(), reader.clone());
        Ok(Some(reader))
    }
}

/// Whether `table` is on a local disk and its log has no commit after the
/// loaded version ([`local_log::no_commit_after`]): then the cached table
/// is the latest without a refresh. On object stores the refresh lists the
/// log from the loaded version (one request).
fn unchanged_on_disk(table: &DeltaTable) -> bool {
    let root = table.log_store().root_url().clone();
    let version = table.version();
    match (root.scheme(), version) {
        ("file", Some(v)) => root
            .to_file_path()
            .is_ok_and(|dir| local_log::no_commit_after(&dir, v)),
        _ => false,
    }
}

/// A table the query's token may not read (answered 403).
#[derive(Debug, Clone, thiserror::Error)]
#[error("this token may not read table {0}")]
pub struct NotReadable(pub String);

/// Whether `grants` (none: all) allow reading `database.measurement`.
fn may_read(grants: Option<&Grants>, database: &str, measurement: &str) -> bool {
    grants.is_none_or(|g| g.allows(Permission::Read, database, measurement))
}

/// The default catalog of a query's session.
#[derive(Debug)]
struct LakeCatalog {
    tables: Tables,
    /// The session (its runtime env gets each table's object store).
    state: Arc<SessionState>,
    readable: Option<Arc<Grants>>,
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.tables
            .known_databases()
            .iter()
            .filter(|d| {
                self.readable
                    .as_ref()
                    .is_none_or(|g| g.touches(Permission::Read, d.as_str()))
            })
            .map(|d| d.as_str().to_owned())
            .collect()
    }

    /// Every valid database name has a schema, known or not: a table it
    /// names is looked up in the store.
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let database = DatabaseName::new(name).ok()?;
        Some(Arc::new(LakeSchema {
            tables: self.tables.clone(),
            database,
            state: self.state.clone(),
            readable: self.readable.clone(),
        }))
    }
}

/// One database of a query's session.
#[derive(Debug)]
struct LakeSchema {
    tables: Tables,
    database: DatabaseName,
    state: Arc<SessionState>,
    readable: Option<Arc<Grants>>,
}

impl LakeSchema {
    /// The table `measurement` names here, if it is a name the hub could
    /// have written (anything else is "not found", never a path).
    fn name(&self, measurement: &str) -> Option<TableName> {
        Measurement::new(measurement)
            .ok()
            .map(|m| TableName::new(self.database.clone(), m))
            .filter(|t| check_storage_form(t).is_ok())
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let db = self.database.as_str();
        self.tables
            .known_where(|t| t.database == self.database)
            .iter()
            .map(|t| t.measurement.as_str().to_owned())
            .filter(|m| may_read(self.readable.as_deref(), db, m))
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if !may_read(self.readable.as_deref(), self.database.as_str(), name) {
            // DataFusion resolves a table function's name (`last_cache(…)`)
            // as a table first: it is no table to this token, and the
            // function checks its own argument.
            if self.state.table_functions().contains_key(name) {
                return Ok(None);
            }
            return Err(DataFusionError::External(Box::new(NotReadable(format!(
                "{}.{name}",
                self.database
            )))));
        }
        let Some(name) = self.name(name) else {
            return Ok(None);
        };
        let external = |e: TableError| DataFusionError::External(Box::new(e));
        let options = self.state.config_options();
        let views = options.execution.parquet.schema_force_view_types;
        let Some(reader) = self.tables.latest(&name, views).await.map_err(external)? else {
            return Ok(None);
        };
        let table = &reader.table;
        let label = name.to_string();
        debug!(table = %label, version = ?table.version(), own_scan = reader.scan.is_some(), "resolved");
        if let Some(files) = reader.scan {
            let scan = LakeScan::new(files, &table.log_store(), self.state.as_ref());
            return Ok(Some(Arc::new(scan)));
        }
        // A table only deltalake's scan reads (see `scan.rs`).
        table
            .update_datafusion_session(self.state.as_ref())
            .map_err(|e| external(TableError::storage(&label, e)))?;
        // The session's options decide the scan's (Parquet filter pushdown,
        // view types): `query.datafusion` reaches the Delta scan too.
        let provider = table
            .table_provider()
            .with_session(self.state.clone())
            .await?;
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        may_read(self.readable.as_deref(), self.database.as_str(), name)
            && self.name(name).is_some_and(|t| self.tables.is_known(&t))
    }
}
