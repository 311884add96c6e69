//! The metadata schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version. [`MIGRATIONS`]`[i]`
//! takes the schema from version `i` to `i + 1`; a fresh file (version 0)
//! runs them all. Migrations are append-only: a released one never changes.
//!
//! ## Version 1
//!
//! | table | columns |
//! |---|---|
//! | `tokens` | `id` (integer key), `name`, `role` (`read`, `write`, `admin`), `hash` (SHA-256 of the token, 32 bytes, unique), `created_at_ms`, `last_used_ms` |
//! | `agents` | `id` (the agent id), `first_seen_ms`, `last_seen_ms`, `last_sequence`, `segments_received`, `rows_received`, `backlog_readings`, `backlog_bytes`, `version` |
//! | `settings` | `key`, `value` |
//!
//! ## Version 2
//!
//! | table | columns |
//! |---|---|
//! | `retention` | `database`, `measurement` (`''` = the whole database), `days` (> 0), `updated_at_ms`; key (`database`, `measurement`) |
//!
//! ## Version 3
//!
//! | table | columns |
//! |---|---|
//! | `tokens` | + `agents`: the agent id pattern a write token is bound to (`NULL`: unbound) |
//!
//! Times are milliseconds since the Unix epoch (UTC).

use rusqlite::Connection;

use super::{MetaError, Result};

/// The schema version this build writes.
pub(super) const CURRENT_VERSION: i64 = 3;

/// `MIGRATIONS[i]` migrates version `i` to `i + 1`.
const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    hash          BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at_ms INTEGER NOT NULL,
    last_used_ms  INTEGER
);
CREATE TABLE agents (
    id                TEXT    PRIMARY KEY,
    first_seen_ms     INTEGER NOT NULL,
    last_seen_ms      INTEGER NOT NULL,
    last_sequence     INTEGER,
    segments_received INTEGER NOT NULL DEFAULT 0,
    rows_received     INTEGER NOT NULL DEFAULT 0,
    backlog_readings  INTEGER,
    backlog_bytes     INTEGER,
    version           TEXT
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE retention (
    database      TEXT    NOT NULL,
    measurement   TEXT    NOT NULL DEFAULT '',
    days          INTEGER NOT NULL CHECK (days > 0),
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (database, measurement)
);
"#,
    r#"
ALTER TABLE tokens ADD COLUMN agents TEXT;
"#,
];

/// Brings `conn` to [`CURRENT_VERSION`].
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(MetaError::TooNew {
            found,
            supported: CURRENT_VERSION,
        });
    }
    let start = usize::try_from(found)
        .map_err(|_| MetaError::Corrupt(format!("negative schema version {found}")))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)?;
        tracing::info!(version = i + 1, "metadata schema migrated");
    }
    tx.execute_batch(&format!("PRAGMA user_version = {CURRENT_VERSION};"))?;
    tx.commit()?;
    Ok(())
}
