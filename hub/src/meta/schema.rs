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
//! ## Version 4
//!
//! | table | columns |
//! |---|---|
//! | `retention` | rebuilt with Arc's policy fields: `id` (integer key), `name` (unique), `database`, `measurement`, `days` (Arc's `retention_days`, > 0), `buffer_days` (≥ 0), `is_active`, `created_at_ms`, `updated_at_ms`; (`database`, `measurement`) unique. Existing policies keep their scope and days, named `database` or `database.measurement` |
//! | `retention_executions` | `id`, `policy_id`, `started_at_ms`, `status` (`completed`, `failed`), `dry_run`, `deleted_count`, `files_deleted`, `cutoff_date`, `duration_ms`, `error` |
//!
//! ## Version 5
//!
//! | table | columns |
//! |---|---|
//! | `query_history` | `id` (text key), `seq` (order), `sql`, `token_id`, `token_name`, `remote_addr`, `database`, `status`, `start_ms`, `end_ms`, `duration_ms`, `row_count`, `bytes_returned`, `files_total`, `files_scanned`, `error`, `slow`, `plan`, `peak_memory` |
//!
//! ## Version 6
//!
//! | table | columns |
//! |---|---|
//! | `continuous_queries` | `id` (integer key), `name` (unique), `description`, `database`, `source_measurement`, `destination_measurement`, `query`, `interval_ms`, `interval` (as given), `tag_columns` (JSON array or `NULL`), `lookback_windows`, `start_ms` (first window), `retention_days`, `delete_source_after_days`, `is_active`, `watermark_ms` (end of the last window written, a hint: the destination's `txn` is the truth), `created_at_ms`, `updated_at_ms` |
//! | `cq_executions` | `id`, `query_id`, `execution_id` (text), `started_at_ms`, `status` (`running`, `completed`, `failed`, `dry_run`), `start_ms`, `end_ms`, `windows_total`, `windows_done`, `records_read`, `records_written`, `duration_ms`, `error`, `scheduled` |
//!
//! ## Version 7
//!
//! | table | columns |
//! |---|---|
//! | `last_caches` | `id` (integer key), `name`, `database`, `measurement` ((`database`, `measurement`, `name`) unique), `key_columns` (JSON array), `value_columns` (JSON array or `NULL`: all), `count` (1-10), `ttl_ms`, `created_at_ms` |
//!
//! ## Version 8
//!
//! | table | columns |
//! |---|---|
//! | `import_jobs` | `id` (text key), `seq` (order), `key` (the job's `txn` app id: content hash and target; unique), `content_sha256`, `format`, `database`, `measurement`, `options` (JSON), `file_name`, `spool` (path of the received file), `state` (`queued`, `running`, `completed`, `failed`, `cancelled`), `bytes_total`, `bytes_done`, `chunks_done`, `rows_imported`, `rows_rejected`, `rejections` (JSON, the first 100), `measurements` (JSON), `time_min_ns`, `time_max_ns`, `error`, `created_by`, `created_at_ms`, `started_at_ms`, `finished_at_ms` |
//!
//! ## Version 9
//!
//! | table | columns |
//! |---|---|
//! | `tokens` | + `description`, `expires_at_ms` (`NULL`: never), `revoked_at_ms`, `rotated_at_ms`, `previous_hash` (the secret before the last rotation, unique), `previous_valid_until_ms` (end of its grace period) |
//! | `audit_log` | `id` (integer key, the chain order), `at_ms`, `event_type`, `actor`, `actor_token_id`, `source` (peer address), `target`, `database`, `outcome` (`success`, `failure`, `denied`), `status` (HTTP), `count` (failures coalesced into the entry), `detail` (JSON), `prev_hash`, `hash` (SHA-256 chaining the entry to the one before, see `crate::audit::chain`) |
//!
//! ## Version 10
//!
//! | table | columns |
//! |---|---|
//! | `tokens` | rebuilt: `role` may also be `none` (the token has only what its roles grant) |
//! | `roles` | `id` (integer key), `name` (unique), `description`, `grants` (JSON array of `{permission, database, measurement?}`), `created_at_ms`, `updated_at_ms` |
//! | `token_roles` | `token_id` (deleted with the token), `role_id` (a role held by a token cannot be deleted); key (`token_id`, `role_id`) |
//!
//! ## Version 11
//!
//! | table | columns |
//! |---|---|
//! | `quotas` | `scope` (`token`, `database`), `key` (token id or database name), `rows_per_second`, `bytes_per_second`, `max_bytes` (`NULL`: the config's default; 0: unlimited), `updated_at_ms`; key (`scope`, `key`) |
//! | `usage_daily` | `day` (UTC, `YYYY-MM-DD`), `token_id` (-1 without auth), `token_name`, `database` (`''` for queries without one), `rows_ingested`, `bytes_ingested`, `queries`, `query_ms`; key (`day`, `token_id`, `database`) |
//! | `storage_daily` | `day`, `database`, `bytes` (the last measurement of the day), `measured_at_ms`; key (`day`, `database`) |
//!
//! Times are milliseconds since the Unix epoch (UTC).

use rusqlite::Connection;

use super::{MetaError, Result};

/// The schema version this build writes.
pub(super) const CURRENT_VERSION: i64 = 14;

/// `MIGRATIONS[i]` migrates version `i` to `i + 1`.
const MIGRATIONS: [&str; 14] = [
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
    r#"
CREATE TABLE retention_v4 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    database      TEXT    NOT NULL,
    measurement   TEXT    NOT NULL DEFAULT '',
    days          INTEGER NOT NULL CHECK (days > 0),
    buffer_days   INTEGER NOT NULL DEFAULT 0 CHECK (buffer_days >= 0),
    is_active     INTEGER NOT NULL DEFAULT 1,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (database, measurement)
);
INSERT INTO retention_v4 (name, database, measurement, days, created_at_ms, updated_at_ms)
    SELECT CASE measurement WHEN '' THEN database ELSE database || '.' || measurement END,
           database, measurement, days, updated_at_ms, updated_at_ms
    FROM retention ORDER BY database, measurement;
DROP TABLE retention;
ALTER TABLE retention_v4 RENAME TO retention;
CREATE TABLE retention_executions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id     INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    dry_run       INTEGER NOT NULL,
    deleted_count INTEGER NOT NULL DEFAULT 0,
    files_deleted INTEGER NOT NULL DEFAULT 0,
    cutoff_date   TEXT,
    duration_ms   REAL    NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX retention_executions_by_policy ON retention_executions (policy_id, id);
"#,
    r#"
CREATE TABLE query_history (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    sql            TEXT    NOT NULL,
    token_id       INTEGER,
    token_name     TEXT    NOT NULL,
    remote_addr    TEXT,
    database       TEXT,
    status         TEXT    NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    duration_ms    REAL    NOT NULL,
    row_count      INTEGER NOT NULL,
    bytes_returned INTEGER NOT NULL,
    files_total    INTEGER NOT NULL,
    files_scanned  INTEGER NOT NULL,
    error          TEXT,
    slow           INTEGER NOT NULL,
    plan           TEXT,
    peak_memory    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX query_history_by_start ON query_history (start_ms);
"#,
    r#"
CREATE TABLE continuous_queries (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    name                     TEXT    NOT NULL UNIQUE,
    description              TEXT,
    database                 TEXT    NOT NULL,
    source_measurement       TEXT    NOT NULL,
    destination_measurement  TEXT    NOT NULL,
    query                    TEXT    NOT NULL,
    interval_ms              INTEGER NOT NULL,
    interval                 TEXT    NOT NULL,
    tag_columns              TEXT,
    lookback_windows         INTEGER NOT NULL,
    start_ms                 INTEGER NOT NULL,
    retention_days           INTEGER,
    delete_source_after_days INTEGER,
    is_active                INTEGER NOT NULL,
    watermark_ms             INTEGER,
    created_at_ms            INTEGER NOT NULL,
    updated_at_ms            INTEGER NOT NULL
);
CREATE TABLE cq_executions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id        INTEGER NOT NULL,
    execution_id    TEXT    NOT NULL UNIQUE,
    started_at_ms   INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    windows_total   INTEGER NOT NULL,
    windows_done    INTEGER NOT NULL DEFAULT 0,
    records_read    INTEGER,
    records_written INTEGER NOT NULL DEFAULT 0,
    duration_ms     REAL    NOT NULL DEFAULT 0,
    error           TEXT,
    scheduled       INTEGER NOT NULL
);
CREATE INDEX cq_executions_by_query ON cq_executions (query_id, id);
"#,
    r#"
CREATE TABLE last_caches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    database      TEXT    NOT NULL,
    measurement   TEXT    NOT NULL,
    key_columns   TEXT    NOT NULL,
    value_columns TEXT,
    count         INTEGER NOT NULL,
    ttl_ms        INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (database, measurement, name)
);
"#,
    r#"
CREATE TABLE import_jobs (
    id             TEXT    PRIMARY KEY,
    seq            INTEGER NOT NULL,
    key            TEXT    NOT NULL UNIQUE,
    content_sha256 TEXT    NOT NULL,
    format         TEXT    NOT NULL,
    database       TEXT    NOT NULL,
    measurement    TEXT,
    options        TEXT    NOT NULL,
    file_name      TEXT,
    spool          TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    bytes_total    INTEGER NOT NULL,
    bytes_done     INTEGER NOT NULL DEFAULT 0,
    chunks_done    INTEGER NOT NULL DEFAULT 0,
    rows_imported  INTEGER NOT NULL DEFAULT 0,
    rows_rejected  INTEGER NOT NULL DEFAULT 0,
    rejections     TEXT    NOT NULL DEFAULT '[]',
    measurements   TEXT    NOT NULL DEFAULT '[]',
    time_min_ns    INTEGER,
    time_max_ns    INTEGER,
    error          TEXT,
    created_by     TEXT,
    created_at_ms  INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX import_jobs_state ON import_jobs (state, seq);
"#,
    r#"
ALTER TABLE tokens ADD COLUMN description TEXT;
ALTER TABLE tokens ADD COLUMN expires_at_ms INTEGER;
ALTER TABLE tokens ADD COLUMN revoked_at_ms INTEGER;
ALTER TABLE tokens ADD COLUMN rotated_at_ms INTEGER;
ALTER TABLE tokens ADD COLUMN previous_hash BLOB CHECK (previous_hash IS NULL OR length(previous_hash) = 32);
ALTER TABLE tokens ADD COLUMN previous_valid_until_ms INTEGER;
CREATE UNIQUE INDEX tokens_previous_hash ON tokens (previous_hash);
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    actor_token_id INTEGER,
    source         TEXT,
    target         TEXT,
    database       TEXT,
    outcome        TEXT    NOT NULL,
    status         INTEGER,
    count          INTEGER NOT NULL DEFAULT 1,
    detail         TEXT,
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_time ON audit_log (at_ms);
"#,
    r#"
CREATE TABLE tokens_v10 (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    name                    TEXT    NOT NULL,
    role                    TEXT    NOT NULL CHECK (role IN ('read', 'write', 'admin', 'none')),
    hash                    BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at_ms           INTEGER NOT NULL,
    last_used_ms            INTEGER,
    agents                  TEXT,
    description             TEXT,
    expires_at_ms           INTEGER,
    revoked_at_ms           INTEGER,
    rotated_at_ms           INTEGER,
    previous_hash           BLOB CHECK (previous_hash IS NULL OR length(previous_hash) = 32),
    previous_valid_until_ms INTEGER
);
INSERT INTO tokens_v10 (id, name, role, hash, created_at_ms, last_used_ms, agents, description,
    expires_at_ms, revoked_at_ms, rotated_at_ms, previous_hash, previous_valid_until_ms)
SELECT id, name, role, hash, created_at_ms, last_used_ms, agents, description,
    expires_at_ms, revoked_at_ms, rotated_at_ms, previous_hash, previous_valid_until_ms FROM tokens;
DELETE FROM sqlite_sequence WHERE name = 'tokens_v10';
INSERT INTO sqlite_sequence (name, seq) SELECT 'tokens_v10', seq FROM sqlite_sequence WHERE name = 'tokens';
DROP TABLE tokens;
ALTER TABLE tokens_v10 RENAME TO tokens;
CREATE UNIQUE INDEX tokens_previous_hash ON tokens (previous_hash);
CREATE TABLE roles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    description   TEXT,
    grants        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE token_roles (
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    role_id  INTEGER NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    PRIMARY KEY (token_id, role_id)
);
CREATE INDEX token_roles_role ON token_roles (role_id);
"#,
    r#"
CREATE TABLE quotas (
    scope            TEXT    NOT NULL CHECK (scope IN ('token', 'database')),
    key              TEXT    NOT NULL,
    rows_per_second  INTEGER,
    bytes_per_second INTEGER,
    max_bytes        INTEGER,
    updated_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE usage_daily (
    day            TEXT    NOT NULL,
    token_id       INTEGER NOT NULL,
    token_name     TEXT    NOT NULL,
    database       TEXT    NOT NULL,
    rows_ingested  INTEGER NOT NULL DEFAULT 0,
    bytes_ingested INTEGER NOT NULL DEFAULT 0,
    queries        INTEGER NOT NULL DEFAULT 0,
    query_ms       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, token_id, database)
);
CREATE TABLE storage_daily (
    day            TEXT    NOT NULL,
    database       TEXT    NOT NULL,
    bytes          INTEGER NOT NULL,
    measured_at_ms INTEGER NOT NULL,
    PRIMARY KEY (day, database)
);
"#,
    // v12: the token that created an import job, so that its rows count in
    // that token's usage.
    r#"
ALTER TABLE import_jobs ADD COLUMN created_by_token INTEGER;
"#,
    // v13: alert rules and their state changes.
    r#"
CREATE TABLE alert_rules (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    kind             TEXT    NOT NULL CHECK (kind IN ('sql', 'metric')),
    query            TEXT    NOT NULL,
    database         TEXT,
    op               TEXT    NOT NULL CHECK (op IN ('>', '>=', '<', '<=', '==', '!=')),
    threshold        REAL    NOT NULL,
    interval_ms      INTEGER NOT NULL,
    webhook_url      TEXT,
    created_by       TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'firing', 'resolved')),
    state_since_ms   INTEGER NOT NULL,
    last_value       REAL,
    last_evaluated_ms INTEGER,
    last_error       TEXT
);
CREATE TABLE alert_events (
    id             INTEGER PRIMARY KEY,
    rule_id        INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    at_ms          INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    value          REAL,
    webhook_status TEXT
);
CREATE INDEX alert_events_rule ON alert_events (rule_id, id);
"#,
    // v14: each gateway's failed uploads and last error, and a history of
    // its reports (one sample a minute at most, a day kept).
    r#"
ALTER TABLE agents ADD COLUMN uploads_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_error TEXT;
ALTER TABLE agents ADD COLUMN last_error_ms INTEGER;
CREATE TABLE agent_samples (
    agent_id          TEXT    NOT NULL,
    at_ms             INTEGER NOT NULL,
    backlog_readings  INTEGER,
    rows_received     INTEGER NOT NULL,
    segments_received INTEGER NOT NULL,
    uploads_failed    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, at_ms)
);
"#,
];

/// The SQL taking version `from` to `from + 1` (for tests).
#[cfg(test)]
pub(super) fn migration(from: usize) -> &'static str {
    MIGRATIONS[from]
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_policies_survive_the_move_to_version_4() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO retention VALUES ('plant', '', 30, 1000), ('plant', 'vib', 3, 2000);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, String, String, i64, i64, i64)> = conn
            .prepare(
                "SELECT id, name, measurement, days, buffer_days, is_active
                 FROM retention ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, "plant".into(), String::new(), 30, 0, 1),
                (2, "plant.vib".into(), "vib".into(), 3, 0, 1),
            ]
        );
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT_VERSION);
    }
}
