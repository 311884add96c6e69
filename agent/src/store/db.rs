//! The synchronous buffer: one SQLite connection, owned by the writer thread.
//!
//! Every mutation runs in [`Db::txn`], which snapshots the in-memory
//! accounting ([`Mem`]) and restores it if the transaction fails, so the
//! running totals always describe what is committed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ferry_protocols::{AgentId, DatabaseName, Measurement};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tracing::{info, warn};

use super::checkpoint::Checkpointer;
use super::config::{StoreConfig, WhenFull};
use super::error::{Result, StoreError};
use super::metrics as m;
use super::types::DropReason;

/// Accounted bytes per reading on top of its body: rowid, record header,
/// the fixed columns and the two index entries. Calibrated by
/// `tests::overhead_estimate_tracks_the_file_size`.
pub(crate) const ROW_OVERHEAD: u64 = 48;
/// Accounted bytes per segment on top of its file.
pub(crate) const SEGMENT_OVERHEAD: u64 = 160;
/// What a small segment file costs beyond the readings it holds (its
/// Parquet footer, schema and Ferry metadata: about 1.5 KiB measured on
/// segments of 1 to 50 rows), kept free per buffered group by durable
/// appends so that cutting stays within `store.max_bytes`.
pub(crate) const CUT_RESERVE: u64 = 2048;
/// Accounted bytes per dead letter on top of its payload and strings.
pub(crate) const DEAD_LETTER_OVERHEAD: u64 = 48;

pub(crate) const META_NEXT_SEQ: &str = "next_seq";
pub(crate) const META_AGENT_ID: &str = "agent_id";
pub(crate) const META_DROPS_PREFIX: &str = "drops.";

/// Per-group running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupStats {
    pub(crate) rows: u64,
    pub(crate) size: u64,
}

/// The in-memory mirror of what is committed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mem {
    pub(crate) readings: u64,
    pub(crate) reading_bytes: u64,
    pub(crate) best_effort: u64,
    pub(crate) pending_segments: u64,
    pub(crate) pending_segment_rows: u64,
    pub(crate) pending_segment_bytes: u64,
    pub(crate) quarantined: u64,
    pub(crate) quarantined_bytes: u64,
    pub(crate) dead_letters: u64,
    pub(crate) dead_letter_bytes: u64,
    pub(crate) groups: BTreeMap<i64, GroupStats>,
    pub(crate) next_seq: u64,
    pub(crate) drops: BTreeMap<DropReason, u64>,
    /// Drop increments not yet persisted (and not yet emitted as metrics).
    pub(crate) unsaved_drops: BTreeMap<DropReason, u64>,
}

impl Mem {
    pub(crate) fn used(&self) -> u64 {
        self.reading_bytes
            + self.pending_segment_bytes
            + self.quarantined_bytes
            + self.dead_letter_bytes
    }

    /// Room kept free for cutting the buffered readings into segments: a
    /// segment file is larger than the readings it replaces by about its
    /// Parquet metadata, so each group holding readings (and the one an
    /// append may start) keeps [`CUT_RESERVE`].
    pub(crate) fn cut_reserve(&self) -> u64 {
        let groups = self.groups.values().filter(|g| g.rows > 0).count() as u64;
        (groups + 1) * CUT_RESERVE
    }

    pub(crate) fn drop_rows(&mut self, reason: DropReason, n: u64) {
        if n > 0 {
            *self.drops.entry(reason).or_default() += n;
            *self.unsaved_drops.entry(reason).or_default() += n;
        }
    }

    pub(crate) fn add_reading(&mut self, grp: i64, size: u64, durable: bool) {
        self.readings += 1;
        self.reading_bytes += size;
        if !durable {
            self.best_effort += 1;
        }
        let g = self.groups.entry(grp).or_default();
        g.rows += 1;
        g.size += size;
    }

    pub(crate) fn remove_reading(&mut self, grp: i64, size: u64, durable: bool) {
        self.readings = self.readings.saturating_sub(1);
        self.reading_bytes = self.reading_bytes.saturating_sub(size);
        if !durable {
            self.best_effort = self.best_effort.saturating_sub(1);
        }
        if let Some(g) = self.groups.get_mut(&grp) {
            g.rows = g.rows.saturating_sub(1);
            g.size = g.size.saturating_sub(size);
        }
    }
}

/// Limits that the transactions apply.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_bytes: u64,
    pub(crate) when_full: WhenFull,
    pub(crate) dead_letter_max: u64,
}

/// One reading, encoded, waiting to be inserted.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) database: DatabaseName,
    pub(crate) measurement: Measurement,
    pub(crate) durable: bool,
    pub(crate) received_ns: i64,
    pub(crate) time_ns: i64,
    pub(crate) body: Vec<u8>,
}

impl Row {
    pub(crate) fn size(&self) -> u64 {
        self.body.len() as u64 + ROW_OVERHEAD
    }
}

/// The buffer.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) conn: Connection,
    pub(crate) mem: Mem,
    pub(crate) limits: Limits,
    pub(crate) agent_id: AgentId,
    pub(crate) path: PathBuf,
    pub(crate) names: HashMap<i64, (DatabaseName, Measurement)>,
    ids: HashMap<DatabaseName, HashMap<Measurement, i64>>,
    /// Checkpoints the WAL on a thread of its own (see [`super::checkpoint`]).
    checkpointer: Option<Checkpointer>,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Db {
    /// Opens the buffer at `path` and loads the accounting.
    pub(crate) fn open(
        path: &Path,
        config: &StoreConfig,
        agent_id: Option<AgentId>,
        now_unix_s: i64,
    ) -> Result<Db> {
        let mut conn = super::schema::open(path, config, now_unix_s)?;
        let checkpointer = Checkpointer::start(&mut conn, path, config.wal_checkpoint.as_u64())?;
        let limits = Limits {
            max_bytes: config.max_bytes.as_u64(),
            when_full: config.when_full,
            dead_letter_max: config.dead_letter_max,
        };
        let mut db = Db {
            conn,
            mem: Mem::default(),
            limits,
            agent_id: AgentId::new("unset").map_err(|_| StoreError::Closed)?,
            path: path.to_owned(),
            names: HashMap::new(),
            ids: HashMap::new(),
            checkpointer: Some(checkpointer),
        };
        db.load(agent_id)?;
        Ok(db)
    }

    fn load(&mut self, agent_id: Option<AgentId>) -> Result<()> {
        let mut mem = Mem::default();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, database, measurement FROM groups")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (id, db, ms): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                let bad = |v: &str| StoreError::BadMeta {
                    key: format!("groups.{id}"),
                    value: v.to_owned(),
                };
                let database = DatabaseName::new(db.as_str()).map_err(|_| bad(&db))?;
                let measurement = Measurement::new(ms.as_str()).map_err(|_| bad(&ms))?;
                self.ids
                    .entry(database.clone())
                    .or_default()
                    .insert(measurement.clone(), id);
                self.names.insert(id, (database, measurement));
            }
            let mut stmt = self.conn.prepare(
                "SELECT grp, count(*), total(size), total(durable = 0) FROM readings GROUP BY grp",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let grp: i64 = r.get(0)?;
                let (n, size, be): (i64, f64, f64) = (r.get(1)?, r.get(2)?, r.get(3)?);
                let stats = GroupStats {
                    rows: to_u64(n),
                    size: size as u64,
                };
                mem.readings += stats.rows;
                mem.reading_bytes += stats.size;
                mem.best_effort += be as u64;
                mem.groups.insert(grp, stats);
            }
            let mut stmt = self.conn.prepare(
                "SELECT state, count(*), total(rows), total(length(file)) FROM segments GROUP BY state",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let state: String = r.get(0)?;
                let (n, nrows, bytes): (i64, f64, f64) = (r.get(1)?, r.get(2)?, r.get(3)?);
                let accounted = bytes as u64 + to_u64(n) * SEGMENT_OVERHEAD;
                if state == "pending" {
                    mem.pending_segments = to_u64(n);
                    mem.pending_segment_rows = nrows as u64;
                    mem.pending_segment_bytes = accounted;
                } else {
                    mem.quarantined = to_u64(n);
                    mem.quarantined_bytes = accounted;
                }
            }
            let (n, size): (i64, f64) =
                self.conn
                    .query_row("SELECT count(*), total(size) FROM dead_letters", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
            mem.dead_letters = to_u64(n);
            mem.dead_letter_bytes = size as u64;

            let mut stmt = self.conn.prepare("SELECT key, value FROM meta")?;
            let mut rows = stmt.query([])?;
            let mut meta = BTreeMap::new();
            while let Some(r) = rows.next()? {
                meta.insert(r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            }
            let max_seq: Option<i64> =
                self.conn
                    .query_row("SELECT max(seq) FROM segments", [], |r| r.get(0))?;
            let stored_seq = match meta.get(META_NEXT_SEQ) {
                Some(v) => v.parse::<u64>().map_err(|_| StoreError::BadMeta {
                    key: META_NEXT_SEQ.to_owned(),
                    value: v.clone(),
                })?,
                None => 1,
            };
            mem.next_seq = stored_seq.max(max_seq.map_or(1, |s| to_u64(s) + 1));
            for (key, value) in &meta {
                if let Some(reason) = key
                    .strip_prefix(META_DROPS_PREFIX)
                    .and_then(DropReason::parse)
                {
                    mem.drops.insert(reason, value.parse().unwrap_or(0));
                }
            }
            let stored_id = meta
                .get(META_AGENT_ID)
                .and_then(|v| AgentId::new(v.as_str()).ok());
            self.agent_id = match (agent_id, stored_id) {
                (Some(given), Some(stored)) if given != stored => {
                    warn!(%given, %stored, "agent id changed; new segments carry the new id");
                    given
                }
                (Some(given), _) => given,
                (None, Some(stored)) => stored,
                (None, None) => generate_agent_id(),
            };
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![META_AGENT_ID, self.agent_id.as_str()],
            )?;
        }
        info!(
            path = %self.path.display(),
            readings = mem.readings,
            pending_segments = mem.pending_segments,
            quarantined = mem.quarantined,
            used_bytes = mem.used(),
            next_seq = mem.next_seq,
            "opened the buffer"
        );
        self.mem = mem;
        Ok(())
    }

    /// The group id for `(database, measurement)`, created if new. A new
    /// group is committed on its own (once per group, ever), so that the
    /// name cache never refers to a rolled-back row.
    pub(crate) fn group_id(
        &mut self,
        database: &DatabaseName,
        measurement: &Measurement,
    ) -> Result<i64> {
        if let Some(id) = self
            .ids
            .get(database.as_str())
            .and_then(|m| m.get(measurement.as_str()))
        {
            return Ok(*id);
        }
        self.conn.execute(
            "INSERT OR IGNORE INTO groups (database, measurement) VALUES (?1, ?2)",
            params![database.as_str(), measurement.as_str()],
        )?;
        let id: i64 = self.conn.query_row(
            "SELECT id FROM groups WHERE database = ?1 AND measurement = ?2",
            params![database.as_str(), measurement.as_str()],
            |r| r.get(0),
        )?;
        self.ids
            .entry(database.clone())
            .or_default()
            .insert(measurement.clone(), id);
        self.names
            .insert(id, (database.clone(), measurement.clone()));
        Ok(id)
    }

    /// Runs `f` in an IMMEDIATE transaction with the drop counters persisted
    /// in the same transaction. On any error the transaction rolls back and
    /// the accounting is restored.
    pub(crate) fn txn<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>, &mut Mem, &Limits) -> Result<T>,
    ) -> Result<T> {
        let saved = self.mem.clone();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, &mut self.mem, &self.limits)?;
            save_drops(&tx, &self.mem)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Ok(value) => {
                for (reason, n) in std::mem::take(&mut self.mem.unsaved_drops) {
                    metrics::counter!(m::DROPS, "reason" => reason.as_str()).increment(n);
                }
                Ok(value)
            }
            Err(e) => {
                // Keep drops counted outside any transaction (they happened).
                let outside = saved.unsaved_drops.clone();
                self.mem = saved;
                self.mem.unsaved_drops = outside;
                Err(e)
            }
        }
    }

    /// Counts drops that happened outside a transaction; they are persisted
    /// by the next successful one.
    pub(crate) fn count_outside(&mut self, reason: DropReason, n: u64) {
        self.mem.drop_rows(reason, n);
    }

    /// Stops the checkpointer thread, checkpoints the WAL into the database
    /// and truncates it.
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        if let Some(mut c) = self.checkpointer.take() {
            c.stop(&mut self.conn);
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// WAL checkpoints since open: (by the background thread, by the writer).
    pub(crate) fn checkpoints(&self) -> (u64, u64) {
        self.checkpointer
            .as_ref()
            .map_or((0, 0), Checkpointer::counts)
    }

    /// Bytes on disk: the database file and its WAL.
    pub(crate) fn file_bytes(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|s| {
                let mut p = self.path.as_os_str().to_owned();
                p.push(s);
                std::fs::metadata(PathBuf::from(p)).ok()
            })
            .map(|md| md.len())
            .sum()
    }

    /// Runs `PRAGMA integrity_check`; `Ok(true)` when it says "ok".
    pub(crate) fn integrity_ok(&self) -> Result<bool> {
        let mut ok = true;
        self.conn.pragma_query(None, "integrity_check", |row| {
            ok &= row.get::<_, String>(0)? == "ok";
            Ok(())
        })?;
        Ok(ok)
    }
}

fn save_drops(tx: &Transaction<'_>, mem: &Mem) -> Result<()> {
    if mem.unsaved_drops.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    for reason in mem.unsaved_drops.keys() {
        let total = mem.drops.get(reason).copied().unwrap_or(0);
        stmt.execute(params![
            format!("{META_DROPS_PREFIX}{}", reason.as_str()),
            total.to_string()
        ])?;
    }
    Ok(())
}

fn generate_agent_id() -> AgentId {
    let n: u64 = rand::random();
    AgentId::new(format!("ferry-{n:016x}")).unwrap_or_else(|_| {
        // The format above is always a valid id; keep a fallback anyway.
        AgentId::new("ferry-agent").expect("a literal valid agent id")
    })
}

/// Reads one optional integer.
pub(crate) fn opt_i64(tx: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Option<i64>> {
    Ok(tx
        .prepare_cached(sql)?
        .query_row(p, |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}
