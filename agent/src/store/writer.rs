//! The writer thread: owns the connection, batches appends into group
//! commits, and serialises every other operation with them.

use std::sync::Arc;
use std::time::Instant;

use ferry_protocols::segment::SegmentSeq;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::clock::{Clock, duration_ns};
use super::config::StoreConfig;
use super::db::{Db, Row};
use super::error::{Result, StoreError};
use super::metrics as m;
use super::room::{insert_batch, insert_dead_letter};
use super::segments::{CutLimits, DueGroup, SegmentCut};
use super::types::{Appended, DeadLetter, DropReason, PendingSegment, StoreStatus};
use crate::ingest::RejectReason;

type Reply<T> = oneshot::Sender<T>;

/// What the handle asks of the writer.
#[derive(Debug)]
pub(crate) enum Command {
    Append {
        rows: Vec<Row>,
        durable: bool,
        reply: Option<Reply<Result<Appended, RejectReason>>>,
    },
    DeadLetter {
        letter: DeadLetter,
        received_ns: i64,
        reply: Reply<Result<(), RejectReason>>,
    },
    LoadDue {
        limits: CutLimits,
        force: bool,
        reply: Reply<Result<Option<DueGroup>>>,
    },
    CommitSegment {
        cut: SegmentCut,
        reply: Reply<Result<()>>,
    },
    DeadLetterReading {
        id: i64,
        letter: DeadLetter,
        reply: Reply<Result<()>>,
    },
    NextPending {
        after: Option<SegmentSeq>,
        reply: Reply<Result<Option<PendingSegment>>>,
    },
    Ack {
        seq: SegmentSeq,
        reply: Reply<Result<bool>>,
    },
    Quarantine {
        seq: SegmentSeq,
        reason: String,
        reply: Reply<Result<bool>>,
    },
    Status {
        reply: Reply<Result<StoreStatus>>,
    },
    Sync {
        reply: Reply<Result<()>>,
    },
    IntegrityCheck {
        reply: Reply<Result<bool>>,
    },
    Shutdown {
        reply: Reply<Result<()>>,
    },
    /// Check the deadlines against the clock now, without forcing a commit.
    Tick {
        reply: Reply<()>,
    },
    /// Run SQL on the writer's connection (tests: provoke storage errors).
    #[cfg(test)]
    Exec {
        sql: String,
        reply: Reply<Result<()>>,
    },
}

struct PendingAppend {
    rows: Vec<Row>,
    reply: Option<Reply<Result<Appended, RejectReason>>>,
}

pub(crate) struct Writer {
    db: Db,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    pending: Vec<PendingAppend>,
    pending_rows: usize,
    /// When the last commit started: the next one (of durable rows) starts
    /// `commit_interval` later at the earliest.
    last_commit: Option<Instant>,
    qos0: Vec<Row>,
    qos0_first_ns: Option<i64>,
    qos0_first: Option<Instant>,
    failing: Option<String>,
    shutdown: Option<ShutdownReply>,
    /// [`m::QUEUE_POPPED`], registered once (one command per message).
    popped: metrics::Counter,
}

/// The shutdown reply, sent once the connection is closed.
pub(crate) type ShutdownReply = (Reply<Result<()>>, Result<()>);

impl Writer {
    pub(crate) fn new(db: Db, clock: Arc<dyn Clock>, config: StoreConfig) -> Self {
        Writer {
            db,
            clock,
            config,
            pending: Vec::new(),
            pending_rows: 0,
            last_commit: None,
            qos0: Vec::new(),
            qos0_first_ns: None,
            qos0_first: None,
            failing: None,
            shutdown: None,
            popped: metrics::counter!(m::QUEUE_POPPED),
        }
    }

    /// The loop. Runs on its own thread with a current-thread runtime for
    /// the timers; returns when shut down or when every handle is dropped.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Option<ShutdownReply> {
        self.publish_gauges();
        loop {
            let cmd = match self.deadline() {
                Some(at) => tokio::select! {
                    c = rx.recv() => c,
                    () = tokio::time::sleep_until(at.into()) => {
                        self.commit_if_due();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(cmd) = cmd else { break };
            self.handle(cmd);
            // Drain what is already queued before deciding to commit.
            while self.shutdown.is_none() {
                let Ok(cmd) = rx.try_recv() else { break };
                self.handle(cmd);
            }
            if self.shutdown.is_some() {
                // Dropping `self` closes the connection before the reply.
                return self.shutdown.take();
            }
            self.commit_if_due();
        }
        // Every handle is gone: flush and close.
        if let Err(e) = self.close() {
            error!(error = %e, "closing the buffer failed");
        }
        None
    }

    fn deadline(&self) -> Option<Instant> {
        let durable = (!self.pending.is_empty()).then(|| self.durable_due_at());
        let qos0 = self.qos0_first.map(|t| t + self.config.qos0_max_delay);
        match (durable, qos0) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When pending durable rows are due: `commit_interval` after the last
    /// commit started (at once when that is past, or after none).
    fn durable_due_at(&self) -> Instant {
        self.last_commit
            .map_or_else(Instant::now, |last| last + self.config.commit_interval)
    }

    fn commit_if_due(&mut self) {
        let durable_due = self.pending_rows >= self.config.max_batch
            || (!self.pending.is_empty() && self.durable_due_at() <= Instant::now());
        let qos0_due = self.qos0.len() >= self.config.max_batch
            || self.qos0_first_ns.is_some_and(|t| {
                super::clock::aged(
                    self.clock.now_ns(),
                    t,
                    duration_ns(self.config.qos0_max_delay),
                )
            });
        if durable_due || qos0_due {
            self.commit();
        } else if let (Some(first_ns), Some(wake)) = (self.qos0_first_ns, self.qos0_first)
            && wake + self.config.qos0_max_delay <= Instant::now()
        {
            // The timer fired but the (injected) clock says not yet:
            // sleep for what the clock says remains, at least 1 ms.
            let waited = self.clock.now_ns().saturating_sub(first_ns);
            let remaining = duration_ns(self.config.qos0_max_delay).saturating_sub(waited);
            let remaining = std::time::Duration::from_nanos(u64::try_from(remaining).unwrap_or(0))
                .max(std::time::Duration::from_millis(1));
            self.qos0_first = Instant::now()
                .checked_sub(self.config.qos0_max_delay)
                .map(|t| t + remaining)
                .or_else(|| Some(Instant::now()));
        }
    }

    /// Handles one command.
    fn handle(&mut self, cmd: Command) {
        crate::supervise::fault::point_blocking("store");
        self.popped.increment(1);
        if self.shutdown.is_some() {
            return;
        }
        match cmd {
            Command::Append {
                rows,
                durable: true,
                reply,
            } => {
                self.pending_rows += rows.len();
                self.pending.push(PendingAppend { rows, reply });
                if self.pending_rows >= self.config.max_batch {
                    self.commit();
                }
                return;
            }
            Command::Append {
                rows,
                durable: false,
                reply,
                ..
            } => {
                if let Some(first) = rows.first() {
                    self.qos0_first_ns.get_or_insert(first.received_ns);
                    self.qos0_first.get_or_insert_with(Instant::now);
                }
                let n = rows.len();
                self.qos0.extend(rows);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(Appended {
                        rows: n,
                        first_id: None,
                    }));
                }
                if self.qos0.len() >= self.config.max_batch {
                    self.commit();
                }
                return;
            }
            Command::Tick { reply } => {
                self.commit_if_due();
                let _ = reply.send(());
                return;
            }
            #[cfg(test)]
            Command::Exec { sql, reply } => {
                let _ = reply.send(self.db.conn.execute_batch(&sql).map_err(StoreError::from));
                return;
            }
            _ => {}
        }
        // Every other command sees all appends made before it.
        self.commit();
        let now = self.clock.now_ns();
        match cmd {
            Command::Append { .. } | Command::Tick { .. } => {}
            #[cfg(test)]
            Command::Exec { .. } => {}
            Command::DeadLetter {
                letter,
                received_ns,
                reply,
            } => {
                let r = self.db.txn(|tx, mem, limits| {
                    insert_dead_letter(tx, mem, limits, &letter, received_ns)
                });
                let _ = reply.send(
                    self.note(r)
                        .map(|_| ())
                        .map_err(|_| RejectReason::StorageError),
                );
            }
            Command::LoadDue {
                limits,
                force,
                reply,
            } => {
                let _ = reply.send(self.db.load_due(limits, now, force));
            }
            Command::CommitSegment { cut, reply } => {
                let r = self.db.commit_segment(&cut, now);
                if r.is_ok() {
                    metrics::counter!(m::SEGMENTS_CUT).increment(1);
                    metrics::counter!(m::SEGMENT_ROWS).increment(cut.rows);
                }
                let _ = reply.send(r);
            }
            Command::DeadLetterReading { id, letter, reply } => {
                let _ = reply.send(self.db.dead_letter_reading(id, &letter, now));
            }
            Command::NextPending { after, reply } => {
                let _ = reply.send(self.db.next_pending(after));
            }
            Command::Ack { seq, reply } => {
                let r = self.db.ack(seq);
                if matches!(r, Ok(true)) {
                    metrics::counter!(m::SEGMENTS_ACKED).increment(1);
                }
                let _ = reply.send(r);
            }
            Command::Quarantine { seq, reason, reply } => {
                let r = self.db.quarantine(seq, &reason);
                if matches!(r, Ok(true)) {
                    metrics::counter!(m::SEGMENTS_QUARANTINED).increment(1);
                    warn!(seq = seq.0, %reason, "segment quarantined");
                }
                let _ = reply.send(r);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
            Command::Sync { reply } => {
                let r = match &self.failing {
                    Some(e) => Err(StoreError::Io {
                        path: self.db.path.clone(),
                        source: std::io::Error::other(e.clone()),
                    }),
                    None => Ok(()),
                };
                let _ = reply.send(r);
            }
            Command::IntegrityCheck { reply } => {
                let _ = reply.send(self.db.integrity_ok());
            }
            Command::Shutdown { reply } => {
                let r = self.close();
                self.shutdown = Some((reply, r));
                return;
            }
        }
        self.publish_gauges();
    }

    /// Tracks the storage-error state; logs once per change.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        match &r {
            Ok(_) => {
                if let Some(old) = self.failing.take() {
                    info!(previous_error = %old, "the buffer is writable again");
                }
            }
            Err(e) => {
                metrics::counter!(m::COMMIT_ERRORS).increment(1);
                let msg = e.to_string();
                if self.failing.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, disk_full = e.is_disk_full(), "cannot write to the buffer; refusing durable readings until it recovers");
                    self.failing = Some(msg);
                }
            }
        }
        r
    }

    /// Commits every pending append and the QoS 0 rows in one transaction,
    /// then answers the appends.
    fn commit(&mut self) {
        if self.pending.is_empty() && self.qos0.is_empty() {
            return;
        }
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let qos0 = std::mem::take(&mut self.qos0);
        self.pending_rows = 0;
        self.last_commit = Some(started);
        self.qos0_first = None;
        self.qos0_first_ns = None;

        // Resolve group ids first (a new group commits on its own).
        let resolved = (|| -> Result<_> {
            let mut appends = Vec::with_capacity(pending.len());
            for p in &pending {
                let mut grps = Vec::with_capacity(p.rows.len());
                for r in &p.rows {
                    grps.push(self.db.group_id(&r.database, &r.measurement)?);
                }
                appends.push(grps);
            }
            let mut be = Vec::with_capacity(qos0.len());
            for r in &qos0 {
                be.push(self.db.group_id(&r.database, &r.measurement)?);
            }
            Ok((appends, be))
        })();
        let outcome = resolved.and_then(|(grps, be_grps)| {
            let appends: Vec<(&[Row], Vec<i64>)> = pending
                .iter()
                .zip(grps)
                .map(|(p, g)| (p.rows.as_slice(), g))
                .collect();
            let be: Vec<(&Row, i64)> = qos0.iter().zip(be_grps).collect();
            self.db
                .txn(|tx, mem, limits| insert_batch(tx, mem, limits, &appends, &be))
        });
        let outcome = self.note(outcome);
        match outcome {
            Ok((results, stored)) => {
                metrics::counter!(m::COMMITS).increment(1);
                metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                let mut durable = 0u64;
                for (p, r) in pending.into_iter().zip(results) {
                    match &r {
                        Ok(a) => durable += a.rows as u64,
                        Err(_) => {
                            metrics::counter!(m::APPENDS_REJECTED, "reason" => "full").increment(1)
                        }
                    }
                    if let Some(reply) = p.reply {
                        let _ = reply.send(r);
                    }
                }
                metrics::histogram!(m::COMMIT_ROWS).record((durable + stored) as f64);
                metrics::counter!(m::READINGS_COMMITTED, "durability" => "durable")
                    .increment(durable);
                metrics::counter!(m::READINGS_COMMITTED, "durability" => "best_effort")
                    .increment(stored);
            }
            Err(_) => {
                for p in pending {
                    metrics::counter!(m::APPENDS_REJECTED, "reason" => "storage_error")
                        .increment(1);
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Err(RejectReason::StorageError));
                    }
                }
                // Persisted (and emitted) with the next successful transaction.
                self.db
                    .count_outside(DropReason::Qos0StorageError, qos0.len() as u64);
            }
        }
    }

    fn status(&self, now: i64) -> Result<StoreStatus> {
        let mem = &self.db.mem;
        let oldest = self.db.oldest_unsent_ns()?;
        let (wal_checkpoints_background, wal_checkpoints_writer) = self.db.checkpoints();
        Ok(StoreStatus {
            agent_id: self.db.agent_id.clone(),
            backlog_readings: mem.readings,
            backlog_best_effort: mem.best_effort,
            backlog_bytes: mem.reading_bytes,
            pending_segments: mem.pending_segments,
            pending_segment_rows: mem.pending_segment_rows,
            pending_segment_bytes: mem.pending_segment_bytes,
            quarantined_segments: mem.quarantined,
            quarantined_bytes: mem.quarantined_bytes,
            dead_letters: mem.dead_letters,
            oldest_unsent_age: oldest.map(|t| {
                std::time::Duration::from_nanos(u64::try_from(now.saturating_sub(t)).unwrap_or(0))
            }),
            used_bytes: mem.used(),
            max_bytes: self.db.limits.max_bytes,
            db_file_bytes: self.db.file_bytes(),
            wal_checkpoints_background,
            wal_checkpoints_writer,
            next_sequence: mem.next_seq,
            drops: mem
                .drops
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect(),
            storage_error: self.failing.clone(),
        })
    }

    fn publish_gauges(&self) {
        let mem = &self.db.mem;
        metrics::gauge!(m::BYTES).set(mem.used() as f64);
        metrics::gauge!(m::MAX_BYTES).set(self.db.limits.max_bytes as f64);
        metrics::gauge!(m::BACKLOG_READINGS).set(mem.readings as f64);
        metrics::gauge!(m::PENDING_SEGMENTS).set(mem.pending_segments as f64);
        metrics::gauge!(m::QUARANTINED_SEGMENTS).set(mem.quarantined as f64);
        metrics::gauge!(m::DEAD_LETTERS).set(mem.dead_letters as f64);
        metrics::gauge!(m::FILE_BYTES).set(self.db.file_bytes() as f64);
    }

    /// Final commit, WAL checkpoint, close.
    fn close(&mut self) -> Result<()> {
        self.commit();
        self.publish_gauges();
        metrics::gauge!(m::FILE_BYTES).set(self.db.file_bytes() as f64);
        if let Some(e) = &self.failing {
            warn!(error = %e, "closing the buffer while it is failing");
        }
        self.db.checkpoint()?;
        info!(path = %self.db.path.display(), "closed the buffer");
        Ok(())
    }
}
