//! The hub's metadata store: one SQLite file (`metadata.path`).
//!
//! It holds what is not table data: API tokens ([`tokens`]), the audit log
//! ([`audit`]), the agents seen
//! so far ([`agents`]), retention policies ([`retention`]), continuous
//! queries ([`continuous`]), last-value cache definitions ([`last_caches`]),
//! bulk import jobs ([`imports`]),
//! the query history ([`queries`]) and settings ([`settings`]). The tables themselves never depend on it: losing it
//! loses the tokens, the retention policies and the fleet view, not a
//! single reading.
//!
//! # Format
//!
//! SQLite in WAL mode with `synchronous = NORMAL` (a committed change can be
//! lost by a power cut, never corrupted; tokens are created rarely and the
//! agent statistics are advisory). The schema version is `PRAGMA
//! user_version`; [`schema`] holds the migrations, applied in order inside
//! one transaction at open. A file with a newer version than this build
//! knows is refused rather than guessed at.
//!
//! # Concurrency
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), so the async runtime never waits on
//! disk. The store's load is a token lookup per request and an upsert per
//! segment: one connection is plenty.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod continuous;
pub mod imports;
pub mod last_caches;
pub mod queries;
pub mod quotas;
pub mod retention;
pub mod roles;
mod schema;
pub mod settings;
pub mod shared;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use agents::{AgentRecord, AgentReport};
pub use retention::RetentionPolicy;
pub use tokens::{NewToken, TokenChange, TokenLookup, TokenRecord, TokenStatus};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "metadata schema version {found} is newer than this build supports ({supported}); upgrade ferry-hub"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("metadata store is closed")]
    Closed,
    #[error("metadata task failed: {0}")]
    Task(String),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("shared metadata log: {0}")]
    Shared(String),
    #[error("the metadata changed on another hub at the same moment; retry")]
    Conflict,
    #[error("a read replica does not change metadata; ask a writer hub")]
    ReadOnly,
    #[error(
        "this hub's metadata file has {0} shared rows (tokens, roles, policies...) of its own that are not in the lake's shared metadata log ({1}): start it with an empty metadata file, or with the file of a hub that follows the log"
    )]
    Diverged(usize, &'static str),
}

/// `Result` of the metadata store.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// A handle on the metadata store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Meta {
    conn: Arc<Mutex<Option<Connection>>>,
    /// The lake's shared metadata log, once [`shared::attach`]ed.
    shared: Arc<OnceLock<Arc<shared::SharedLog>>>,
}

impl Meta {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Meta> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&path))
            .await
            .map_err(|e| MetaError::Task(e.to_string()))??;
        Ok(Meta {
            conn: Arc::new(Mutex::new(Some(conn))),
            shared: Arc::new(OnceLock::new()),
        })
    }

    /// Runs `f` with the connection on the blocking pool; with the shared
    /// log on, what `f` changes in the shared tables is published first
    /// ([`shared`]).
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        match self.shared() {
            None => self.call_local(f).await,
            Some(log) => self.call_local(move |c| log.run(c, f)).await,
        }
    }

    /// [`Meta::call`] without the shared log: for the log's own work.
    pub(crate) async fn call_local<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| MetaError::Task("metadata mutex poisoned".to_owned()))?;
            let c = guard.as_mut().ok_or(MetaError::Closed)?;
            f(c)
        })
        .await
        .map_err(|e| MetaError::Task(e.to_string()))?
    }

    /// The shared metadata log, when on.
    pub fn shared(&self) -> Option<Arc<shared::SharedLog>> {
        self.shared.get().cloned()
    }

    fn set_shared(&self, log: Arc<shared::SharedLog>) -> Result<()> {
        self.shared
            .set(log)
            .map_err(|_| MetaError::Shared("attached twice".to_owned()))
    }

    /// Checkpoints the WAL and closes the connection. Later calls fail with
    /// [`MetaError::Closed`].
    pub async fn close(&self) -> Result<()> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| MetaError::Task("metadata mutex poisoned".to_owned()))?;
            if let Some(c) = guard.take() {
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
                c.close().map_err(|(_, e)| MetaError::Sqlite(e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| MetaError::Task(e.to_string()))?
    }
}

fn open_blocking(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| MetaError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 (UTC, milliseconds) for a stored millisecond timestamp.
pub fn format_ms(ms: i64) -> String {
    // RFC 3339 ends at year 9999 (humantime panics past it).
    const MAX_MS: i64 = 253_402_300_799_999;
    let t = u64::try_from(ms.min(MAX_MS))
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reopen_keeps_data_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hub.db");
        let meta = Meta::open(&path).await.unwrap();
        meta.set_setting("k", "v").await.unwrap();
        meta.close().await.unwrap();
        assert!(matches!(
            meta.get_setting("k").await,
            Err(MetaError::Closed)
        ));
        let meta = Meta::open(&path).await.unwrap();
        assert_eq!(meta.get_setting("k").await.unwrap().as_deref(), Some("v"));
        let version = meta
            .call(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert_eq!(version, schema::CURRENT_VERSION);
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("PRAGMA user_version = 999;").unwrap();
        }
        assert!(matches!(
            Meta::open(&path).await,
            Err(MetaError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
