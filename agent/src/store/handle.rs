//! The async API: a cheap, cloneable handle to the writer thread.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ferry_protocols::AgentId;
use ferry_protocols::segment::SegmentSeq;
use tokio::sync::{mpsc, oneshot};

use super::clock::Clock;
use super::codec::{encode_body, encoded_len};
use super::config::StoreConfig;
use super::db::{Db, Row};
use super::error::{Result, StoreError};
use super::metrics as m;
use super::segments::{CutLimits, DueGroup, RowReader, SegmentCut};
use super::types::{Appended, DeadLetter, PendingSegment, StoreStatus};
use super::writer::{Command, Writer};
use crate::ingest::{Durability, Incoming, RejectReason};

/// A handle to the buffer. Clones share one writer thread; when the last
/// clone is dropped the writer flushes, checkpoints and closes.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    agent_id: AgentId,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    /// [`m::QUEUE_PUSHED`], registered once (one command per message).
    pushed: metrics::Counter,
}

impl StoreHandle {
    /// Opens (or creates) the buffer at `path` and starts its writer thread.
    ///
    /// Runs the integrity check and migrations on the writer thread, so it
    /// does not block the runtime. `agent_id`: the configured id, or `None`
    /// to use the one stored in the buffer (generated on first use).
    pub async fn open(
        path: &Path,
        config: StoreConfig,
        agent_id: Option<AgentId>,
        clock: Arc<dyn Clock>,
    ) -> Result<StoreHandle> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (ready_tx, ready_rx) = oneshot::channel();
        let path = path.to_owned();
        let db_path = path.clone();
        let thread_clock = clock.clone();
        std::thread::Builder::new()
            .name("ferry-store".to_owned())
            .spawn(move || {
                let now_s = thread_clock.now_ns() / 1_000_000_000;
                let db = match Db::open(&path, &config, agent_id, now_s) {
                    Ok(db) => db,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(StoreError::Io { path, source }));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(db.agent_id.clone()));
                let writer = Writer::new(db, thread_clock, config);
                if let Some((reply, result)) = runtime.block_on(writer.run(rx)) {
                    let _ = reply.send(result);
                }
            })
            .map_err(|source| StoreError::Io {
                path: std::path::PathBuf::from("ferry-store thread"),
                source,
            })?;
        let agent_id = ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(StoreHandle {
            tx,
            shared: Arc::new(Shared {
                agent_id,
                clock,
                path: db_path,
                pushed: metrics::counter!(m::QUEUE_PUSHED),
            }),
        })
    }

    /// The agent id segments are written with.
    pub fn agent_id(&self) -> &AgentId {
        &self.shared.agent_id
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    async fn send(&self, cmd: Command) -> Result<(), ()> {
        self.shared.pushed.increment(1);
        self.tx.send(cmd).await.map_err(|_| ())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends readings.
    ///
    /// `Durable`: resolves once the transaction holding all of them is
    /// committed (fsynced), or with a rejection, in which case none of them
    /// was stored. `BestEffort`: resolves at once; the readings are written
    /// within `qos0_max_delay` (or dropped and counted under disk pressure or
    /// a storage error). Waits when the writer's queue is full.
    pub async fn append(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> Result<Appended, RejectReason> {
        match self.enqueue(readings, durability).await? {
            Queued::Done(appended) => Ok(appended),
            Queued::Waiting(rx) => rx.await.map_err(|_| RejectReason::ShuttingDown)?,
        }
    }

    /// [`append`](Self::append) in two steps: resolves once the readings
    /// are queued for the writer (waiting while its queue is full), with a
    /// [`Committing`] that resolves as `append` would. Holding it costs no
    /// task, so a connection can keep one per message in flight.
    pub async fn queue_append(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> Result<Committing, RejectReason> {
        Ok(match self.enqueue(readings, durability).await? {
            Queued::Done(_) => Committing(Waiting::Done(Some(Ok(())))),
            Queued::Waiting(rx) => Committing(Waiting::Append(rx)),
        })
    }

    async fn enqueue(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> Result<Queued, RejectReason> {
        let received_ns = self.shared.clock.now_ns();
        let durable = durability == Durability::Durable;
        let rows: Vec<Row> = readings
            .into_iter()
            .map(|inc| {
                let mut body = Vec::with_capacity(encoded_len(&inc.reading));
                encode_body(&inc.reading, &mut body);
                Row {
                    database: inc.database,
                    measurement: inc.reading.measurement,
                    durable,
                    received_ns,
                    time_ns: inc.reading.time_ns,
                    body,
                }
            })
            .collect();
        let n = rows.len();
        if n == 0 {
            return Ok(Queued::Done(Appended {
                rows: 0,
                first_id: None,
            }));
        }
        let (reply, rx) = if durable {
            let (reply, rx) = oneshot::channel();
            (Some(reply), Some(rx))
        } else {
            (None, None)
        };
        self.send(Command::Append {
            rows,
            durable,
            reply,
        })
        .await
        .map_err(|_| RejectReason::ShuttingDown)?;
        Ok(match rx {
            Some(rx) => Queued::Waiting(rx),
            None => Queued::Done(Appended {
                rows: n,
                first_id: None,
            }),
        })
    }

    /// Keeps a message that could not be stored as readings. Committed
    /// before it resolves.
    pub async fn append_dead_letter(&self, letter: DeadLetter) -> Result<(), RejectReason> {
        self.queue_dead_letter(letter).await?.await
    }

    /// [`append_dead_letter`](Self::append_dead_letter) in two steps, as
    /// [`queue_append`](Self::queue_append).
    pub async fn queue_dead_letter(&self, letter: DeadLetter) -> Result<Committing, RejectReason> {
        let received_ns = self.shared.clock.now_ns();
        let (reply, rx) = oneshot::channel();
        self.send(Command::DeadLetter {
            letter,
            received_ns,
            reply,
        })
        .await
        .map_err(|_| RejectReason::ShuttingDown)?;
        Ok(Committing(Waiting::Letter(rx)))
    }

    /// The pending segment with the smallest sequence.
    pub async fn next_pending_segment(&self) -> Result<Option<PendingSegment>> {
        self.ask(|reply| Command::NextPending { after: None, reply })
            .await
    }

    /// The pending segment with the smallest sequence above `after` (for an
    /// uplink that keeps several uploads in flight).
    pub async fn next_pending_segment_after(
        &self,
        after: SegmentSeq,
    ) -> Result<Option<PendingSegment>> {
        self.ask(|reply| Command::NextPending {
            after: Some(after),
            reply,
        })
        .await
    }

    /// The hub acknowledged `seq`: deletes it. `Ok(false)` if it is not
    /// pending (already acknowledged, or dropped for space).
    pub async fn ack_segment(&self, seq: SegmentSeq) -> Result<bool> {
        self.ask(|reply| Command::Ack { seq, reply }).await
    }

    /// The hub refused `seq` for good: keeps it on disk, never offers it again.
    pub async fn quarantine_segment(&self, seq: SegmentSeq, reason: &str) -> Result<bool> {
        let reason = reason.to_owned();
        self.ask(|reply| Command::Quarantine { seq, reason, reply })
            .await
    }

    /// The buffer's state. Commits pending appends first.
    pub async fn status(&self) -> Result<StoreStatus> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Commits everything queued so far, best-effort readings included.
    /// Fails while the disk is failing.
    pub async fn sync(&self) -> Result<()> {
        self.ask(|reply| Command::Sync { reply }).await
    }

    /// Runs `PRAGMA integrity_check` (slow on a big buffer; for tests and
    /// `ferry-agent status --check`).
    pub async fn integrity_check(&self) -> Result<bool> {
        self.ask(|reply| Command::IntegrityCheck { reply }).await
    }

    /// Flushes everything queued (best-effort readings included),
    /// checkpoints the WAL and closes the database. Later calls on any
    /// clone fail with `Closed` / `ShuttingDown`.
    pub async fn shutdown(&self) -> Result<()> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }

    /// Makes the writer check its deadlines (`commit_interval`,
    /// `qos0_max_delay`) against the clock now, without forcing a commit.
    /// For tests driving a [`ManualClock`](super::ManualClock).
    pub async fn tick(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Tick { reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    #[cfg(test)]
    pub(crate) async fn exec(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        self.ask(|reply| Command::Exec { sql, reply }).await
    }

    pub(crate) async fn load_due(
        &self,
        limits: CutLimits,
        force: bool,
    ) -> Result<Option<DueGroup>> {
        self.ask(|reply| Command::LoadDue {
            limits,
            force,
            reply,
        })
        .await
    }

    /// Opens a connection of its own on which to read due groups
    /// ([`RowReader::scan`]). Blocking: call it off the runtime.
    pub(crate) fn open_reader(&self) -> Result<RowReader> {
        RowReader::open(&self.shared.path)
    }

    pub(crate) async fn commit_segment(&self, cut: SegmentCut) -> Result<()> {
        self.ask(|reply| Command::CommitSegment { cut, reply })
            .await
    }

    pub(crate) async fn dead_letter_reading(&self, id: i64, letter: DeadLetter) -> Result<()> {
        self.ask(|reply| Command::DeadLetterReading { id, letter, reply })
            .await
    }
}

/// What [`StoreHandle::enqueue`] left to wait for.
enum Queued {
    /// Nothing: no readings, or best effort.
    Done(Appended),
    /// The writer's reply once the transaction commits.
    Waiting(oneshot::Receiver<Result<Appended, RejectReason>>),
}

/// A queued append or dead letter: resolves once it is stored as
/// promised, or with the reason it was not. The writer commits it whether
/// or not this is still held.
#[derive(Debug)]
pub struct Committing(Waiting);

#[derive(Debug)]
enum Waiting {
    Done(Option<Result<(), RejectReason>>),
    Append(oneshot::Receiver<Result<Appended, RejectReason>>),
    Letter(oneshot::Receiver<Result<(), RejectReason>>),
}

impl Future for Committing {
    type Output = Result<(), RejectReason>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A writer gone without replying is shutting down.
        let closed = |_| RejectReason::ShuttingDown;
        match &mut self.0 {
            Waiting::Done(r) => Poll::Ready(r.take().unwrap_or(Err(RejectReason::ShuttingDown))),
            Waiting::Append(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.map_err(closed).and_then(|r| r.map(|_| ()))),
            Waiting::Letter(rx) => Pin::new(rx).poll(cx).map(|r| r.map_err(closed)?),
        }
    }
}
