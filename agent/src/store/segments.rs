//! The segment side of the buffer: finding a due group, reading its oldest
//! readings on a connection of their own, committing a cut segment, and
//! the uplink's pending / ack / quarantine.

use std::path::Path;

use bytes::Bytes;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{DatabaseName, Measurement};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use super::db::{Db, SEGMENT_OVERHEAD, opt_i64};
use super::error::{Result, StoreError};
use super::room::{Claim, delete_pending_segment, insert_dead_letter, make_room};
use super::types::{DeadLetter, DropReason, PendingSegment};

/// A group due for a cut: where its oldest reading is, and the sequence
/// the segment will carry. Its readings are read by a [`RowReader`], off
/// the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct DueGroup {
    pub(crate) seq: SegmentSeq,
    pub(crate) grp: i64,
    pub(crate) database: DatabaseName,
    pub(crate) measurement: Measurement,
    /// The id of the group's oldest reading when it was found due.
    pub(crate) first_id: i64,
    /// About how many readings the cut will take, and their bodies' bytes
    /// (the group's, up to the cut's limits): what the cut sizes its
    /// buffers for.
    pub(crate) expect_rows: u64,
    pub(crate) expect_body_bytes: u64,
}

/// A buffered reading as a [`RowReader`] hands it over: the body is
/// borrowed from SQLite, not copied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    pub(crate) id: i64,
    pub(crate) received_ns: i64,
    pub(crate) time_ns: i64,
    pub(crate) body: &'a [u8],
}

/// A connection of its own on which the segmenter reads the readings of a
/// due group. Reading them on the writer's connection held every commit
/// (and every acknowledgement waiting for one) for as long as the read
/// took, and kept a whole segment's bodies in memory twice. The read is
/// one statement, so it sees one committed state; readings evicted after
/// it make the cut's commit fail as [`StoreError::Stale`].
#[derive(Debug)]
pub(crate) struct RowReader {
    conn: Connection,
}

/// The reader's page cache (KiB): it reads each page once, in order.
const READER_CACHE_KIB: i64 = 256;

impl RowReader {
    /// Opens a read-only connection to the buffer at `path` (in WAL mode).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = super::schema::open_beside(path)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        Ok(RowReader { conn })
    }

    /// Hands `f` the oldest readings of `due`'s group in id order, from
    /// `first_id` on: at most `max_rows`, and no more bodies than
    /// `max_body_bytes` once one reading is in. Stops early when `f` says
    /// so (`Ok(false)`). Returns how many readings `f` was given.
    pub(crate) fn scan(
        &mut self,
        due: &DueGroup,
        limits: CutLimits,
        mut f: impl FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, received_ns, time_ns, body FROM readings
             WHERE grp = ?1 AND id >= ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut q = stmt.query(params![
            due.grp,
            due.first_id,
            i64::try_from(limits.max_rows).unwrap_or(i64::MAX)
        ])?;
        let (mut given, mut bytes) = (0u64, 0u64);
        while let Some(r) = q.next()? {
            let body = match r.get_ref(3)? {
                ValueRef::Blob(b) => b,
                other => {
                    return Err(StoreError::BadMeta {
                        key: format!("readings.{}.body", r.get::<_, i64>(0)?),
                        value: format!("{:?}", other.data_type()),
                    });
                }
            };
            if given > 0 && bytes + body.len() as u64 > limits.max_body_bytes {
                break;
            }
            bytes += body.len() as u64;
            given += 1;
            let row = RowRef {
                id: r.get(0)?,
                received_ns: r.get(1)?,
                time_ns: r.get(2)?,
                body,
            };
            if !f(row)? {
                break;
            }
        }
        Ok(given)
    }
}

/// A segment ready to replace the readings `first_id..=last_id` of `grp`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentCut {
    pub(crate) seq: SegmentSeq,
    pub(crate) grp: i64,
    pub(crate) first_id: i64,
    pub(crate) last_id: i64,
    pub(crate) rows: u64,
    pub(crate) oldest_received_ns: i64,
    pub(crate) file: Vec<u8>,
}

/// Segments waiting for the uplink from which age stops cutting new ones
/// (see [`Db::load_due`]).
pub(crate) const BACKLOG_SEGMENTS: u64 = 8;

/// Limits a cut respects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CutLimits {
    pub(crate) max_rows: usize,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_age_ns: i64,
}

impl Db {
    /// The first group (by id) that is due: at least a segment's worth of
    /// rows or bytes, its oldest reading received `max_age` ago, or any
    /// non-empty group when `force`. Its readings are read with a
    /// [`RowReader`].
    ///
    /// While the uplink is behind ([`BACKLOG_SEGMENTS`] or more segments
    /// waiting), age no longer cuts: readings wait for a full segment.
    /// Cutting a small segment every `max_age` through an outage would
    /// leave a backlog of tiny segments that drains one upload and one hub
    /// commit at a time; full segments drain it many times faster and
    /// leave the hub fewer, larger files.
    pub(crate) fn load_due(
        &mut self,
        limits: CutLimits,
        now_ns: i64,
        force: bool,
    ) -> Result<Option<DueGroup>> {
        let mut due = None;
        let mut drifted = Vec::new();
        for (&grp, stats) in &self.mem.groups {
            if stats.rows == 0 {
                continue;
            }
            let body = stats
                .size
                .saturating_sub(stats.rows * super::db::ROW_OVERHEAD);
            let full = stats.rows >= limits.max_rows as u64 || body >= limits.max_body_bytes;
            let oldest = self
                .conn
                .prepare_cached(
                    "SELECT id, received_ns FROM readings WHERE grp = ?1 ORDER BY id LIMIT 1",
                )?
                .query_row([grp], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()?;
            let Some((first_id, received_ns)) = oldest else {
                // The accounting said non-empty (it never should):
                // resynchronise and look at the next group.
                drifted.push(grp);
                continue;
            };
            let aged = self.mem.pending_segments < BACKLOG_SEGMENTS
                && super::clock::aged(now_ns, received_ns, limits.max_age_ns);
            if force || full || aged {
                due = Some((
                    grp,
                    first_id,
                    stats.rows.min(limits.max_rows as u64),
                    body.min(limits.max_body_bytes),
                ));
                break;
            }
        }
        for grp in drifted {
            self.mem.groups.remove(&grp);
        }
        let Some((grp, first_id, expect_rows, expect_body_bytes)) = due else {
            return Ok(None);
        };
        let Some((database, measurement)) = self.names.get(&grp).cloned() else {
            return Err(StoreError::BadMeta {
                key: format!("groups.{grp}"),
                value: "missing".to_owned(),
            });
        };
        Ok(Some(DueGroup {
            seq: SegmentSeq(self.mem.next_seq),
            grp,
            database,
            measurement,
            first_id,
            expect_rows,
            expect_body_bytes,
        }))
    }

    /// In one transaction: deletes the readings the segment holds, stores
    /// the segment, and advances the sequence. [`StoreError::Stale`] when
    /// the readings or the sequence changed since they were loaded.
    pub(crate) fn commit_segment(&mut self, cut: &SegmentCut, now_ns: i64) -> Result<()> {
        self.txn(|tx, mem, limits| {
            if cut.seq.0 != mem.next_seq {
                return Err(StoreError::Stale);
            }
            let mut stmt = tx.prepare_cached(
                "DELETE FROM readings WHERE grp = ?1 AND id BETWEEN ?2 AND ?3
                 RETURNING size, durable",
            )?;
            let mut rows = stmt.query(params![cut.grp, cut.first_id, cut.last_id])?;
            let mut deleted = 0u64;
            while let Some(r) = rows.next()? {
                let (size, durable): (i64, bool) = (r.get(0)?, r.get(1)?);
                mem.remove_reading(cut.grp, u64::try_from(size).unwrap_or(0), durable);
                deleted += 1;
            }
            drop(rows);
            if deleted != cut.rows {
                return Err(StoreError::Stale);
            }
            let size = cut.file.len() as u64 + SEGMENT_OVERHEAD;
            if !make_room(tx, mem, limits, size, Claim::Segment)? {
                tracing::warn!(
                    seq = cut.seq.0,
                    size,
                    "segment is larger than the readings it replaces and the buffer is full; over budget until it is sent"
                );
            }
            let seq = i64::try_from(cut.seq.0).map_err(|_| StoreError::Stale)?;
            tx.prepare_cached(
                "INSERT INTO segments (seq, grp, first_reading_id, last_reading_id, rows, bytes,
                    oldest_received_ns, created_ns, state, reason, file)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', NULL, ?9)",
            )?
            .execute(params![
                seq,
                cut.grp,
                cut.first_id,
                cut.last_id,
                i64::try_from(cut.rows).unwrap_or(i64::MAX),
                i64::try_from(cut.file.len()).unwrap_or(i64::MAX),
                cut.oldest_received_ns,
                now_ns,
                cut.file
            ])?;
            mem.pending_segments += 1;
            mem.pending_segment_rows += cut.rows;
            mem.pending_segment_bytes += size;
            mem.next_seq = cut.seq.0 + 1;
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![super::db::META_NEXT_SEQ, mem.next_seq.to_string()])?;
            Ok(())
        })
    }

    /// Moves a reading that no segment can hold into the dead letters.
    pub(crate) fn dead_letter_reading(
        &mut self,
        id: i64,
        letter: &DeadLetter,
        now_ns: i64,
    ) -> Result<()> {
        self.txn(|tx, mem, limits| {
            let row: Option<(i64, i64, bool)> = tx
                .prepare_cached("DELETE FROM readings WHERE id = ?1 RETURNING grp, size, durable")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((grp, size, durable)) = row {
                mem.remove_reading(grp, u64::try_from(size).unwrap_or(0), durable);
                mem.drop_rows(DropReason::Unsegmentable, 1);
                insert_dead_letter(tx, mem, limits, letter, now_ns)?;
            }
            Ok(())
        })
    }

    /// The pending segment with the smallest sequence above `after`.
    pub(crate) fn next_pending(&self, after: Option<SegmentSeq>) -> Result<Option<PendingSegment>> {
        let after = after.map_or(-1, |s| i64::try_from(s.0).unwrap_or(i64::MAX));
        let row: Option<(i64, i64, i64, Vec<u8>)> = self
            .conn
            .prepare_cached(
                "SELECT seq, grp, rows, file FROM segments
                 WHERE state = 'pending' AND seq > ?1 ORDER BY seq LIMIT 1",
            )?
            .query_row([after], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((seq, grp, rows, file)) = row else {
            return Ok(None);
        };
        let (database, measurement) =
            self.names
                .get(&grp)
                .cloned()
                .ok_or_else(|| StoreError::BadMeta {
                    key: format!("groups.{grp}"),
                    value: "missing".to_owned(),
                })?;
        Ok(Some(PendingSegment {
            seq: SegmentSeq(u64::try_from(seq).unwrap_or(0)),
            database,
            measurement,
            rows: u64::try_from(rows).unwrap_or(0),
            file: Bytes::from(file),
        }))
    }

    /// Deletes a segment the hub acknowledged. `Ok(false)`: no such segment.
    pub(crate) fn ack(&mut self, seq: SegmentSeq) -> Result<bool> {
        let Ok(seq) = i64::try_from(seq.0) else {
            return Ok(false);
        };
        self.txn(|tx, mem, _| Ok(delete_pending_segment(tx, mem, seq)?.is_some()))
    }

    /// Marks a pending segment as quarantined: kept, never offered again.
    pub(crate) fn quarantine(&mut self, seq: SegmentSeq, reason: &str) -> Result<bool> {
        let Ok(seq) = i64::try_from(seq.0) else {
            return Ok(false);
        };
        self.txn(|tx, mem, _| {
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "UPDATE segments SET state = 'quarantined', reason = ?2
                     WHERE seq = ?1 AND state = 'pending' RETURNING rows, length(file)",
                )?
                .query_row(params![seq, reason], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((rows, bytes)) = row else {
                return Ok(false);
            };
            let size = u64::try_from(bytes).unwrap_or(0) + SEGMENT_OVERHEAD;
            let rows = u64::try_from(rows).unwrap_or(0);
            mem.pending_segments = mem.pending_segments.saturating_sub(1);
            mem.pending_segment_rows = mem.pending_segment_rows.saturating_sub(rows);
            mem.pending_segment_bytes = mem.pending_segment_bytes.saturating_sub(size);
            mem.quarantined += 1;
            mem.quarantined_bytes += size;
            Ok(true)
        })
    }

    /// Receive time of the oldest reading not yet acknowledged by the hub.
    pub(crate) fn oldest_unsent_ns(&self) -> Result<Option<i64>> {
        let reading = opt_i64(
            &self.conn,
            "SELECT received_ns FROM readings ORDER BY id LIMIT 1",
            [],
        )?;
        let segment = opt_i64(
            &self.conn,
            "SELECT min(oldest_received_ns) FROM segments WHERE state = 'pending'",
            [],
        )?;
        Ok(match (reading, segment) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
