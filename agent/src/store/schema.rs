//! Opening the database: pragmas, crash recovery and schema migrations.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tracing::{error, info};

use super::config::{IntegrityCheck, StoreConfig};
use super::error::{Result, StoreError};

/// The schema version this binary writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only:
/// never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the initial schema.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE groups (
        id          INTEGER PRIMARY KEY,
        database    TEXT NOT NULL,
        measurement TEXT NOT NULL,
        UNIQUE (database, measurement)
    );
    CREATE TABLE readings (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        grp         INTEGER NOT NULL,
        durable     INTEGER NOT NULL,
        received_ns INTEGER NOT NULL,
        time_ns     INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        body        BLOB NOT NULL
    );
    CREATE INDEX readings_by_group ON readings (grp, id);
    CREATE INDEX readings_best_effort ON readings (id) WHERE durable = 0;
    CREATE TABLE segments (
        seq                INTEGER PRIMARY KEY,
        grp                INTEGER NOT NULL,
        first_reading_id   INTEGER NOT NULL,
        last_reading_id    INTEGER NOT NULL,
        rows               INTEGER NOT NULL,
        bytes              INTEGER NOT NULL,
        oldest_received_ns INTEGER NOT NULL,
        created_ns         INTEGER NOT NULL,
        state              TEXT NOT NULL CHECK (state IN ('pending', 'quarantined')),
        reason             TEXT,
        file               BLOB NOT NULL
    );
    CREATE INDEX segments_by_age ON segments (state, first_reading_id);
    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ns INTEGER NOT NULL,
        topic       TEXT NOT NULL,
        source      TEXT NOT NULL,
        error       TEXT NOT NULL,
        size        INTEGER NOT NULL,
        payload     BLOB NOT NULL
    );",
];

/// Why an existing file was not usable as a buffer.
enum OpenFailure {
    /// Not a database, or corrupt: move it aside and start afresh.
    Corrupt(String),
    /// Anything else (permissions, a newer schema): refuse to start.
    Fatal(StoreError),
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                OpenFailure::Corrupt(e.to_string())
            }
            _ => OpenFailure::Fatal(StoreError::Sqlite(e)),
        }
    }
}

/// Opens (or creates) the buffer at `path`, checks it, and migrates it.
///
/// A file that is not a database or fails the integrity check is renamed
/// to `<path>.corrupt-<unix-seconds>` (with its `-wal` and `-shm`), logged at
/// ERROR, and replaced by a fresh buffer. A schema newer than
/// [`SCHEMA_VERSION`] is refused with [`StoreError::SchemaTooNew`].
pub(crate) fn open(path: &Path, config: &StoreConfig, now_unix_s: i64) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    match try_open(path, config) {
        Ok(conn) => Ok(conn),
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Corrupt(reason)) => {
            let aside = move_aside(path, now_unix_s)?;
            error!(
                path = %path.display(),
                moved_to = %aside.display(),
                %reason,
                "buffer is corrupt; moved it aside and started a fresh buffer"
            );
            match try_open(path, config) {
                Ok(conn) => Ok(conn),
                Err(OpenFailure::Fatal(e)) => Err(e),
                Err(OpenFailure::Corrupt(reason)) => Err(StoreError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::other(format!(
                        "a fresh buffer is corrupt too: {reason}"
                    )),
                }),
            }
        }
    }
}

/// How long a connection waits for a lock another one holds.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Every connection: one thread each (no SQLite mutex), URI file names.
const FLAGS: OpenFlags = OpenFlags::SQLITE_OPEN_READ_WRITE
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX)
    .union(OpenFlags::SQLITE_OPEN_URI);

/// The writer's page cache (KiB). It appends at the right edge of the
/// readings' B-trees and deletes at the left; SQLite's default (2,000 KiB)
/// fills under any steady load and stays resident, most of what a running
/// agent holds (docs/decisions/0024-gateway-allocator.md).
const WRITER_CACHE_KIB: i64 = 512;

/// Another connection to the buffer the writer opened (and put in WAL
/// mode): the checkpointer's, the segmenter's reader. Never creates it.
pub(crate) fn open_beside(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, FLAGS)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn try_open(path: &Path, config: &StoreConfig) -> Result<Connection, OpenFailure> {
    let mut conn = Connection::open_with_flags(path, FLAGS | OpenFlags::SQLITE_OPEN_CREATE)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first read of the header: fails with NotADatabase on garbage.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFailure::Fatal(StoreError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(format!(
                "the file system does not support WAL (journal_mode is {mode})"
            )),
        }));
    }
    // FULL: in WAL mode, NORMAL skips the fsync at commit, so a power loss
    // can roll back the last transactions, which would break "accepted
    // means durable".
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a checkpoint, the WAL file is truncated to at most this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    set_page_cap(&conn, config.max_bytes.as_u64())?;

    let check = match config.integrity_check {
        IntegrityCheck::Full => Some("integrity_check"),
        IntegrityCheck::Quick => Some("quick_check"),
        IntegrityCheck::Off => None,
    };
    if let Some(pragma) = check {
        let mut problems = Vec::new();
        conn.pragma_query(None, pragma, |row| {
            let line: String = row.get(0)?;
            if line != "ok" && problems.len() < 5 {
                problems.push(line);
            }
            Ok(())
        })?;
        if !problems.is_empty() {
            return Err(OpenFailure::Corrupt(problems.join("; ")));
        }
    }
    migrate(&mut conn).map_err(|e| match e {
        StoreError::Sqlite(e) => OpenFailure::from(e),
        other => OpenFailure::Fatal(other),
    })?;
    Ok(conn)
}

/// The hard cap: SQLite refuses to grow the file past twice the budget plus
/// 64 MiB (SQLITE_FULL), whatever the accounting estimates. The budget
/// itself is enforced by the accounting; this only catches estimate errors.
fn set_page_cap(conn: &Connection, max_bytes: u64) -> rusqlite::Result<()> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let page_size = u64::try_from(page_size.max(512)).unwrap_or(4096);
    let cap = max_bytes.saturating_mul(2).saturating_add(64 * 1024 * 1024) / page_size;
    conn.pragma_update(
        None,
        "max_page_count",
        i64::try_from(cap).unwrap_or(i64::MAX),
    )
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..SCHEMA_VERSION {
        let sql = usize::try_from(version)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            })?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        info!(
            from = version,
            to = version + 1,
            "migrated the buffer schema"
        );
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Renames the database and its `-wal`/`-shm` to `<path>.corrupt-<t>[-wal|-shm]`.
/// Never deletes anything.
pub(crate) fn move_aside(path: &Path, now_unix_s: i64) -> Result<PathBuf> {
    let mut stamp = now_unix_s;
    let target = loop {
        let candidate = sibling(path, &format!(".corrupt-{stamp}"));
        if !candidate.exists() {
            break candidate;
        }
        stamp += 1;
    };
    for suffix in ["", "-wal", "-shm"] {
        let from = sibling(path, suffix);
        if from.exists() {
            let to = sibling(&target, suffix);
            std::fs::rename(&from, &to).map_err(|source| StoreError::Io { path: from, source })?;
        }
    }
    Ok(target)
}
