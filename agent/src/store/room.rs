//! Writing readings and dead letters within the disk budget.
//!
//! [`make_room`] applies the `when_full` policy inside the caller's
//! transaction; see the module docs for the eviction order.

use rusqlite::{Statement, Transaction, params};

use super::config::WhenFull;
use super::db::{DEAD_LETTER_OVERHEAD, Limits, Mem, Row, SEGMENT_OVERHEAD, opt_i64};
use super::error::Result;
use super::types::{Appended, DeadLetter, DropReason};
use crate::ingest::RejectReason;

/// What is asking for space; decides what it may evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A best-effort reading: may evict older best-effort readings only.
    BestEffort,
    /// A durable append: best-effort readings and dead letters, then (with
    /// `drop_oldest`) quarantined segments and the oldest durable data.
    Durable,
    /// A segment replacing the readings it holds: evicts like `Durable`;
    /// the caller never refuses it (under `reject_new` it may overshoot the
    /// budget by what the segment file is larger than its readings).
    Segment,
    /// A dead letter: may evict older dead letters only.
    DeadLetter,
}

/// Rows deleted per statement while evicting: about what is missing,
/// estimated from the average size, within 1..=512.
fn chunk(missing: u64, count: u64, bytes: u64) -> i64 {
    let avg = bytes.checked_div(count).unwrap_or(1).max(1);
    i64::try_from((missing / avg + 1).clamp(1, 512)).unwrap_or(512)
}

/// Deletes readings chosen by `sql` (which must `RETURNING grp, size, durable`)
/// and updates the accounting. Returns (durable, best-effort) rows deleted.
fn delete_readings(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<(u64, u64)> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query(p)?;
    let (mut durable, mut best_effort) = (0, 0);
    while let Some(r) = rows.next()? {
        let (grp, size, d): (i64, i64, bool) = (r.get(0)?, r.get(1)?, r.get(2)?);
        mem.remove_reading(grp, u64::try_from(size).unwrap_or(0), d);
        if d {
            durable += 1;
        } else {
            best_effort += 1;
        }
    }
    Ok((durable, best_effort))
}

fn evict_best_effort(tx: &Transaction<'_>, mem: &mut Mem, missing: u64) -> Result<bool> {
    if mem.best_effort == 0 {
        return Ok(false);
    }
    let n = chunk(missing, mem.readings, mem.reading_bytes);
    let (_, be) = delete_readings(
        tx,
        mem,
        "DELETE FROM readings WHERE id IN
           (SELECT id FROM readings WHERE durable = 0 ORDER BY id LIMIT ?1)
         RETURNING grp, size, durable",
        [n],
    )?;
    mem.drop_rows(DropReason::Qos0Full, be);
    if be == 0 {
        // The count was off (it never should be); resynchronise.
        mem.best_effort = 0;
    }
    Ok(be > 0)
}

fn evict_dead_letters(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    missing: u64,
    reason: DropReason,
) -> Result<bool> {
    if mem.dead_letters == 0 {
        return Ok(false);
    }
    let n = chunk(missing, mem.dead_letters, mem.dead_letter_bytes);
    delete_dead_letters(tx, mem, n, reason)
}

pub(crate) fn delete_dead_letters(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    n: i64,
    reason: DropReason,
) -> Result<bool> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM dead_letters WHERE id IN
           (SELECT id FROM dead_letters ORDER BY id LIMIT ?1)
         RETURNING size",
    )?;
    let mut rows = stmt.query([n])?;
    let mut deleted = 0;
    while let Some(r) = rows.next()? {
        let size: i64 = r.get(0)?;
        mem.dead_letters = mem.dead_letters.saturating_sub(1);
        mem.dead_letter_bytes = mem
            .dead_letter_bytes
            .saturating_sub(u64::try_from(size).unwrap_or(0));
        deleted += 1;
    }
    mem.drop_rows(reason, deleted);
    Ok(deleted > 0)
}

/// Deletes one segment (the oldest in `state`, by first reading id, or a
/// given `seq`), updating the accounting. Returns its row count.
fn delete_segment(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    seq: i64,
    only_pending: bool,
) -> Result<Option<u64>> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM segments WHERE seq = ?1 AND (state = 'pending' OR NOT ?2)
         RETURNING state, rows, length(file)",
    )?;
    let mut rows = stmt.query(params![seq, only_pending])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let (state, n, bytes): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (n, size) = (
        u64::try_from(n).unwrap_or(0),
        u64::try_from(bytes).unwrap_or(0) + SEGMENT_OVERHEAD,
    );
    if state == "pending" {
        mem.pending_segments = mem.pending_segments.saturating_sub(1);
        mem.pending_segment_rows = mem.pending_segment_rows.saturating_sub(n);
        mem.pending_segment_bytes = mem.pending_segment_bytes.saturating_sub(size);
    } else {
        mem.quarantined = mem.quarantined.saturating_sub(1);
        mem.quarantined_bytes = mem.quarantined_bytes.saturating_sub(size);
    }
    Ok(Some(n))
}

/// Deletes the pending segment `seq` (acknowledged by the hub).
pub(crate) fn delete_pending_segment(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    seq: i64,
) -> Result<Option<u64>> {
    delete_segment(tx, mem, seq, true)
}

fn evict_quarantined(tx: &Transaction<'_>, mem: &mut Mem) -> Result<bool> {
    if mem.quarantined == 0 {
        return Ok(false);
    }
    let seq = opt_i64(
        tx,
        "SELECT seq FROM segments WHERE state = 'quarantined' ORDER BY seq LIMIT 1",
        [],
    )?;
    let Some(seq) = seq else { return Ok(false) };
    let rows = delete_segment(tx, mem, seq, false)?.unwrap_or(0);
    mem.drop_rows(DropReason::QuarantinedFull, rows);
    Ok(true)
}

/// Drops the oldest durable data: the buffered readings or the pending
/// segment holding the smallest reading ids, whichever is older.
fn evict_oldest(tx: &Transaction<'_>, mem: &mut Mem, missing: u64) -> Result<bool> {
    let oldest_reading = opt_i64(tx, "SELECT min(id) FROM readings", [])?;
    let oldest_segment: Option<(i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, first_reading_id FROM segments WHERE state = 'pending'
             ORDER BY first_reading_id LIMIT 1",
        )?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        }
    };
    match (oldest_reading, oldest_segment) {
        (None, None) => Ok(false),
        (Some(rid), seg) if seg.is_none_or(|(_, first)| rid < first) => {
            let bound = seg.map_or(i64::MAX, |(_, first)| first);
            let n = chunk(missing, mem.readings, mem.reading_bytes);
            let (d, be) = delete_readings(
                tx,
                mem,
                "DELETE FROM readings WHERE id IN
                   (SELECT id FROM readings WHERE id < ?1 ORDER BY id LIMIT ?2)
                 RETURNING grp, size, durable",
                params![bound, n],
            )?;
            mem.drop_rows(DropReason::OldestFull, d);
            mem.drop_rows(DropReason::Qos0Full, be);
            Ok(d + be > 0)
        }
        (_, Some((seq, _))) => {
            let rows = delete_segment(tx, mem, seq, false)?.unwrap_or(0);
            mem.drop_rows(DropReason::OldestFull, rows);
            Ok(true)
        }
        (Some(_), None) => Ok(false),
    }
}

/// Frees space until `need` more bytes fit in the budget, evicting what
/// `claim` may evict. `Ok(false)`: it does not fit.
pub(crate) fn make_room(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    limits: &Limits,
    need: u64,
    claim: Claim,
) -> Result<bool> {
    if need > limits.max_bytes {
        return Ok(false);
    }
    loop {
        // Readings also leave room for cutting what is buffered.
        let reserve = if matches!(claim, Claim::Durable | Claim::BestEffort) {
            mem.cut_reserve().min(limits.max_bytes - need)
        } else {
            0
        };
        let used = mem.used() + reserve;
        if used + need <= limits.max_bytes {
            return Ok(true);
        }
        let missing = used + need - limits.max_bytes;
        let freed = match claim {
            Claim::BestEffort => evict_best_effort(tx, mem, missing)?,
            Claim::DeadLetter => evict_dead_letters(tx, mem, missing, DropReason::DeadLetterFull)?,
            Claim::Durable | Claim::Segment => {
                evict_best_effort(tx, mem, missing)?
                    || evict_dead_letters(tx, mem, missing, DropReason::DeadLetterFull)?
                    || limits.when_full == WhenFull::DropOldest
                        && (evict_quarantined(tx, mem)? || evict_oldest(tx, mem, missing)?)
            }
        };
        if !freed {
            return Ok(false);
        }
    }
}

/// The statement [`insert_row`] runs, prepared once per batch: looking it
/// up in the connection's cache hashes its text, once per reading.
const INSERT_READING: &str = "INSERT INTO readings (grp, durable, received_ns, time_ns, size, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn insert_row(insert: &mut Statement<'_>, mem: &mut Mem, grp: i64, row: &Row) -> Result<i64> {
    let size = row.size();
    let id = insert.insert(params![
        grp,
        row.durable,
        row.received_ns,
        row.time_ns,
        i64::try_from(size).unwrap_or(i64::MAX),
        row.body
    ])?;
    mem.add_reading(grp, size, row.durable);
    Ok(id)
}

/// Inserts the durable appends (each whole or not at all) and then the
/// best-effort rows, in one transaction. `grps[i]` is the group of each row.
pub(crate) fn insert_batch(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    limits: &Limits,
    appends: &[(&[Row], Vec<i64>)],
    best_effort: &[(&Row, i64)],
) -> Result<(Vec<Result<Appended, RejectReason>>, u64)> {
    let mut results = Vec::with_capacity(appends.len());
    let mut insert = tx.prepare_cached(INSERT_READING)?;
    for &(rows, ref grps) in appends {
        let need: u64 = rows.iter().map(Row::size).sum();
        if !make_room(tx, mem, limits, need, Claim::Durable)? {
            mem.drop_rows(DropReason::RejectedFull, rows.len() as u64);
            results.push(Err(RejectReason::Full));
            continue;
        }
        let mut first = None;
        for (row, grp) in rows.iter().zip(grps) {
            let id = insert_row(&mut insert, mem, *grp, row)?;
            first.get_or_insert(id);
        }
        results.push(Ok(Appended {
            rows: rows.len(),
            first_id: first.and_then(|id| u64::try_from(id).ok()),
        }));
    }
    let mut stored = 0;
    for &(row, grp) in best_effort {
        if make_room(tx, mem, limits, row.size(), Claim::BestEffort)? {
            insert_row(&mut insert, mem, grp, row)?;
            stored += 1;
        } else {
            mem.drop_rows(DropReason::Qos0Full, 1);
        }
    }
    Ok((results, stored))
}

/// Inserts a dead letter, then trims the table to `dead_letter_max`.
/// `Ok(false)`: no room, it was dropped (and counted).
pub(crate) fn insert_dead_letter(
    tx: &Transaction<'_>,
    mem: &mut Mem,
    limits: &Limits,
    letter: &DeadLetter,
    received_ns: i64,
) -> Result<bool> {
    if limits.dead_letter_max == 0 {
        mem.drop_rows(DropReason::DeadLetterCap, 1);
        return Ok(false);
    }
    let size =
        (letter.payload.len() + letter.topic.len() + letter.source.len() + letter.error.len())
            as u64
            + DEAD_LETTER_OVERHEAD;
    if !make_room(tx, mem, limits, size, Claim::DeadLetter)? {
        mem.drop_rows(DropReason::DeadLetterFull, 1);
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO dead_letters (received_ns, topic, source, error, size, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        received_ns,
        letter.topic,
        letter.source,
        letter.error,
        i64::try_from(size).unwrap_or(i64::MAX),
        letter.payload.as_ref()
    ])?;
    mem.dead_letters += 1;
    mem.dead_letter_bytes += size;
    if mem.dead_letters > limits.dead_letter_max {
        let excess = i64::try_from(mem.dead_letters - limits.dead_letter_max).unwrap_or(i64::MAX);
        delete_dead_letters(tx, mem, excess, DropReason::DeadLetterCap)?;
    }
    Ok(true)
}
