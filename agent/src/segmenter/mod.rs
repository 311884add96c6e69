//! The segmenter: cuts buffered readings into segment files.
//!
//! Readings are grouped by `(database, measurement)`. A group is cut when
//! it holds `segment.max_rows` readings or `segment.max_bytes` of encoded
//! bodies, when its oldest reading was received `segment.max_age` ago (on
//! the store's clock, not the readings' timestamps), or on
//! [`Segmenter::flush`] (shutdown). While the uplink is behind (8 or more
//! segments waiting), age stops cutting: an outage leaves a backlog of full
//! segments, which drains many times faster than one of `max_age`-sized
//! ones.
//!
//! # One cut
//!
//! 1. The writer finds the due group, its oldest reading and the sequence
//!    the segment will carry.
//! 2. Off the writer thread, on a thread of its own that ends with the busy
//!    spell (`cut_thread.rs`: the allocator's pages go back with it), and
//!    on a connection of its own
//!    ([`RowReader`]), the group's oldest readings are read, at most one
//!    segment's worth (memory stays bounded whatever the backlog), and each
//!    is decoded and pushed into a [`ReadingBatch`] in id order as it is
//!    read: no copy of the bodies is kept. The segment is the longest
//!    prefix the batch accepts: at the first reading it rejects (a field
//!    whose type differs from an earlier row's, a tag/field name clash), the
//!    segment ends, and that reading starts the next segment. A conflicting
//!    type *across* segments is the hub's decision. A reading that even an
//!    empty batch rejects (no fields, a corrupt body) can never be
//!    segmented: it is moved to the dead letters (`unsegmentable`), so it
//!    cannot block its group.
//! 3. The file is written with [`write_segment`] (agent id, sequence,
//!    first/last reading id), and the writer commits, in one transaction:
//!    the readings `first..=last` of the group are deleted, the segment is
//!    inserted and `meta.next_seq` advances. If the readings changed in the
//!    meantime (a `drop_oldest` eviction) or the sequence moved, the commit
//!    fails with [`StoreError::Stale`] and the cut is redone.
//!
//! Because segments are id-prefixes of their group, every segment's reading
//! ids are contiguous within the group and the readings of a group reach
//! the hub in id order. Run one segmenter per store: it relies on being the
//! only one to allocate sequences (a second one would only get `Stale`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::{SegmentHeader, write_segment};
use ferry_protocols::{AgentId, Precision};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::clock::duration_ns;
use crate::store::codec::decode_body;
use crate::store::metrics as m;
use crate::store::{
    CutLimits, DeadLetter, DueGroup, RowReader, SegmentConfig, SegmentCut, StoreError, StoreHandle,
};
use crate::supervise::{Beat, fault};

mod cut_thread;
#[cfg(test)]
mod tests;

use cut_thread::CutThread;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    pub segments: u64,
    pub rows: u64,
    /// Readings moved to the dead letters because no segment can hold them.
    pub unsegmentable: u64,
}

/// Cuts segments out of a store.
#[derive(Debug, Clone)]
pub struct Segmenter {
    store: StoreHandle,
    config: SegmentConfig,
    /// Told after every pass that cut a segment (the uplink waits on it).
    cut: Option<Arc<Notify>>,
    /// Liveness: beats every tick and every cut.
    beat: Option<Arc<Beat>>,
}

/// The outcome of encoding a loaded group.
enum Plan {
    Segment(SegmentCut),
    Poison { id: i64, letter: DeadLetter },
}

/// How many `Stale` retries one pass tolerates before giving up until the next.
const MAX_STALE: u32 = 16;

impl Segmenter {
    pub fn new(store: StoreHandle, config: SegmentConfig) -> Self {
        Segmenter {
            store,
            config,
            cut: None,
            beat: None,
        }
    }

    /// Reports progress to the supervisor (every tick, every segment cut).
    pub fn with_beat(mut self, beat: Beat) -> Self {
        self.beat = Some(Arc::new(beat));
        self
    }

    /// Liveness: next, a wait of at most `wait` and then internal work.
    fn waiting(&self, wait: Duration) {
        if let Some(beat) = &self.beat {
            beat.waiting(wait);
        }
    }

    /// Wakes `uplink` after every pass that cut a segment, so a new segment
    /// leaves at once instead of at the uplink's next idle poll.
    pub fn notify_cuts(mut self, uplink: Arc<Notify>) -> Self {
        self.cut = Some(uplink);
        self
    }

    fn limits(&self) -> CutLimits {
        CutLimits {
            max_rows: self.config.max_rows.max(1),
            max_body_bytes: self.config.max_bytes.as_u64().max(1),
            max_age_ns: duration_ns(self.config.max_age),
        }
    }

    /// Cuts every group that is due (full or old enough), as many segments
    /// as needed.
    pub async fn cut_due(&self) -> Result<CutReport, StoreError> {
        self.cut(false, &mut None).await
    }

    /// Cuts everything buffered, whatever its age (shutdown).
    pub async fn flush(&self) -> Result<CutReport, StoreError> {
        self.cut(true, &mut None).await
    }

    /// One pass. `spell` keeps the cut thread (and its reader) from one pass
    /// to the next while passes find work: the pass's first due group starts
    /// it, and a pass that cuts nothing, or fails, ends it.
    async fn cut(
        &self,
        force: bool,
        spell: &mut Option<CutThread>,
    ) -> Result<CutReport, StoreError> {
        let result = self.pass(force, spell).await;
        if !matches!(&result, Ok(r) if r.segments + r.unsegmentable > 0) {
            *spell = None;
        }
        result
    }

    async fn pass(
        &self,
        force: bool,
        spell: &mut Option<CutThread>,
    ) -> Result<CutReport, StoreError> {
        let mut report = CutReport::default();
        let mut stale = 0;
        let limits = self.limits();
        while let Some(due) = self.store.load_due(limits, force).await? {
            self.waiting(Duration::ZERO);
            let agent_id = self.store.agent_id().clone();
            let started = Instant::now();
            let max_columns = self.config.max_columns.max(2);
            let store = self.store.clone();
            let thread = match spell {
                Some(thread) => thread,
                None => spell.insert(CutThread::start()?),
            };
            let taken = thread.reader.take();
            let (back, planned) = thread
                .run(move || {
                    let mut reader = match taken {
                        Some(r) => r,
                        None => match store.open_reader() {
                            Ok(r) => r,
                            Err(e) => return (None, Err(e)),
                        },
                    };
                    let planned = plan(&due, &mut reader, limits, &agent_id, max_columns);
                    (Some(reader), planned)
                })
                .await?;
            thread.reader = back;
            let plan = match planned {
                Err(StoreError::Stale) if stale < MAX_STALE => {
                    stale += 1;
                    debug!("the group's readings went during a cut; cutting again");
                    continue;
                }
                other => other?,
            };
            match plan {
                Plan::Segment(cut) => {
                    let rows = cut.rows;
                    match self.store.commit_segment(cut).await {
                        Ok(()) => {
                            metrics::histogram!(m::SEGMENT_CUT_SECONDS)
                                .record(started.elapsed().as_secs_f64());
                            report.segments += 1;
                            report.rows += rows;
                        }
                        Err(StoreError::Stale) if stale < MAX_STALE => {
                            stale += 1;
                            debug!("the buffer changed during a cut; cutting again");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Plan::Poison { id, letter } => {
                    warn!(reading_id = id, error = %letter.error, "a buffered reading fits no segment; moved to the dead letters");
                    self.store.dead_letter_reading(id, letter).await?;
                    report.unsegmentable += 1;
                }
            }
        }
        if report.segments > 0
            && let Some(uplink) = &self.cut
        {
            uplink.notify_one();
        }
        Ok(report)
    }

    /// Cuts due groups every `max_age / 4` (between 10 ms and 1 s) until
    /// `shutdown` is cancelled, then flushes everything. Errors are logged
    /// and retried on the next tick.
    pub async fn run(self, shutdown: CancellationToken) -> Result<CutReport, StoreError> {
        let tick =
            (self.config.max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        // The cut thread of the current busy spell (see `cut`).
        let mut spell = None;
        loop {
            self.waiting(tick);
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            fault::point("segmenter").await;
            self.waiting(Duration::ZERO);
            match self.cut(false, &mut spell).await {
                Ok(_) => failing = false,
                Err(StoreError::Closed) => return Err(StoreError::Closed),
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cutting segments failed; retrying");
                    }
                    failing = true;
                }
            }
        }
        drop(spell);
        self.flush().await
    }
}

/// Builds the segment for the longest prefix of the due group's readings
/// that one batch accepts, reading them with `reader`.
fn plan(
    due: &DueGroup,
    reader: &mut RowReader,
    limits: CutLimits,
    agent_id: &AgentId,
    max_columns: usize,
) -> Result<Plan, StoreError> {
    let measurement = &due.measurement;
    let mut batch = ReadingBatch::with_max_columns(measurement.clone(), max_columns);
    batch.expect(
        usize::try_from(due.expect_rows).unwrap_or(0),
        usize::try_from(due.expect_body_bytes).unwrap_or(0),
    );
    let (mut first_id, mut last_id, mut oldest) = (None, 0, i64::MAX);
    let mut poison = None;
    reader.scan(due, limits, |row| {
        let pushed = decode_body(measurement.clone(), row.time_ns, row.body)
            .map_err(|e| (e.to_string(), None))
            .and_then(|reading| match batch.push(&reading) {
                Ok(()) => Ok(()),
                Err(e) => Err((e.to_string(), Some(reading))),
            });
        match pushed {
            Ok(()) => {
                first_id.get_or_insert(row.id);
                last_id = row.id;
                oldest = oldest.min(row.received_ns);
                Ok(true)
            }
            Err((error, reading)) if batch.is_empty() => {
                let payload = reading
                    .and_then(|r| ferry_protocols::lp::to_line(&r, Precision::Ns).ok())
                    .map_or_else(
                        || bytes::Bytes::copy_from_slice(row.body),
                        bytes::Bytes::from,
                    );
                poison = Some(Plan::Poison {
                    id: row.id,
                    letter: DeadLetter {
                        topic: String::new(),
                        source: "segmenter".to_owned(),
                        error: format!(
                            "{}.{measurement}: reading {}: {error}",
                            due.database, row.id
                        ),
                        payload,
                    },
                });
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    })?;
    if let Some(poison) = poison {
        return Ok(poison);
    }
    // No reading at all: they were evicted since the group was found due.
    let first_id = first_id.ok_or(StoreError::Stale)?;
    let record_batch = batch.to_record_batch()?;
    let rows = batch.len() as u64;
    // The builders are a second copy of the rows: free them before the
    // Parquet encoder allocates, so a cut's peak holds one copy.
    drop(batch);
    let header = SegmentHeader {
        agent_id: agent_id.clone(),
        sequence: due.seq,
        first_reading_id: u64::try_from(first_id).unwrap_or(0),
        last_reading_id: u64::try_from(last_id).unwrap_or(0),
        database: due.database.clone(),
        measurement: measurement.clone(),
    };
    let file = write_segment(&header, &record_batch)?;
    Ok(Plan::Segment(SegmentCut {
        seq: due.seq,
        grp: due.grp,
        first_id,
        last_id,
        rows,
        oldest_received_ns: oldest,
        file,
    }))
}
