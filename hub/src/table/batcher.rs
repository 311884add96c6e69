//! The per-table commit batcher: a task that collects write requests and
//! commits them as one Delta commit, at most one commit per
//! `commit_interval`. With the default of 0 this is group commit: a write
//! commits as soon as the previous commit of its table has finished,
//! together with everything queued meanwhile, so a write to an idle table
//! is never held and batches grow by themselves while commits are busy.
//! With an interval, a write to a table that has not committed for a
//! whole interval commits at once (with whatever is already queued beside
//! it); writes that arrive sooner after a commit wait for the rest of the
//! interval and share the next one. A batch that
//! reaches `early_commit_rows` stops waiting: it takes what is already
//! queued (up to `max_commit_rows`) and commits at once, so big writes (an
//! agent's segments) are not held back a whole interval, while writes that
//! queue up during a slow commit (S3) still share the next one. A flush
//! commits at once too.
//!
//! A batcher that receives nothing for `tables.idle_timeout` closes its
//! queue, commits whatever was already queued, and ends, giving back its
//! table writer (and the table state it holds). The next write to the table
//! starts a new batcher, which waits on the table's writer lock until the
//! old one has finished: there is never more than one writer per table.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::config::TableConfig;
use super::metrics as m;
use super::writer::{Pending, TableWriter};

/// What a table's queue carries.
#[derive(Debug)]
pub(crate) enum Command {
    /// Requests that commit together: never split over two commits.
    Write(Vec<Pending>),
    /// Commit what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// One batch in the making.
#[derive(Default)]
struct Collect {
    batch: Vec<Pending>,
    flushes: Vec<oneshot::Sender<()>>,
    rows: usize,
}

impl Collect {
    /// Adds a command; `true` when the batch must be committed now (a flush).
    fn add(&mut self, command: Command, label: &str) -> bool {
        match command {
            Command::Write(group) => {
                metrics::counter!(m::QUEUE_POPPED, "table" => label.to_owned())
                    .increment(group.len() as u64);
                for p in group {
                    self.rows = self.rows.saturating_add(p.request.rows());
                    self.batch.push(p);
                }
                false
            }
            Command::Flush(done) => {
                self.flushes.push(done);
                true
            }
        }
    }

    async fn commit(self, writer: &mut TableWriter) {
        if !self.batch.is_empty() {
            writer.commit(self.batch).await;
        }
        for done in self.flushes {
            let _ = done.send(());
        }
    }
}

/// Runs one table's batcher until `shutdown` or `tables.idle_timeout`
/// without a command, then commits what is queued and returns. Holds
/// `writer_lock` (the table's one-writer lock) from its start to its end.
pub(crate) async fn run(
    mut writer: TableWriter,
    mut rx: mpsc::Receiver<Command>,
    config: TableConfig,
    shutdown: CancellationToken,
    writer_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
) {
    let _only_writer = writer_lock.lock_owned().await;
    let label = writer.name().to_string();
    let max_rows = config.max_commit_rows.get();
    let early_rows = config.early_commit_rows.get();
    // The earliest moment the next commit may start.
    let mut next_commit = Instant::now();
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            command = rx.recv() => command,
            () = tokio::time::sleep(config.idle_timeout) => {
                debug!(table = %label, "table batcher idle, releasing it");
                None
            }
        };
        let Some(first) = first else { break };
        let mut collect = Collect::default();
        let mut cut = collect.add(first, &label);
        let deadline = next_commit;
        while !cut && collect.rows < max_rows {
            if collect.rows >= early_rows {
                // Big enough: take only what is queued already.
                match rx.try_recv() {
                    Ok(c) => cut = collect.add(c, &label),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                biased;
                command = rx.recv() => match command {
                    Some(c) => cut = collect.add(c, &label),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = shutdown.cancelled() => break,
            }
        }
        metrics::gauge!(m::QUEUE_DEPTH, "table" => label.clone()).set(rx.len() as f64);
        #[cfg(test)]
        if crate::test_faults::take(crate::test_faults::Fault::BatcherPanic, &label) {
            panic!("test fault: the batcher of {label} panics");
        }
        next_commit = Instant::now() + config.commit_interval;
        collect.commit(&mut writer).await;
    }
    // Shutdown or idle: take nothing new, commit everything already queued.
    rx.close();
    let mut collect = Collect::default();
    while let Ok(command) = rx.try_recv() {
        collect.add(command, &label);
    }
    debug!(table = %label, requests = collect.batch.len(), "table batcher stopping");
    collect.commit(&mut writer).await;
    metrics::gauge!(m::QUEUE_DEPTH, "table" => label).set(0.0);
}
