//! The thread cuts run on: started by the first cut of a busy spell, kept
//! while passes keep finding work, ended by the first pass that finds none.
//!
//! A cut allocates a segment's worth of memory (about 6 MB at its peak for
//! 10,000 small readings). On one of tokio's pooled blocking threads,
//! mimalloc kept part of it after the cut: each size class's last page
//! stays with its thread until that thread allocates again, and an idle
//! pooled thread lives on for 10 s, or longer while other blocking work
//! reuses it. A thread that ends hands its pages back at once, so an idle
//! agent holds none of a cut's memory (decision 0024, third pass).
//!
//! Ending the thread after every cut, as the agent first did, cost a thread
//! start, a fresh heap's page faults and the purge of that heap's pages at
//! exit (TLB shootdowns across the cores) for each segment: under a steady
//! load, a cut every few tens of milliseconds. While cuts keep coming, their
//! thread and its heap now stay (benchmarks-agent.md, "One cut thread per
//! busy spell").

use crate::store::{RowReader, StoreError};

type Job = Box<dyn FnOnce() + Send>;

/// A thread of its own for cuts, with the reader its cuts share.
pub(super) struct CutThread {
    jobs: std::sync::mpsc::Sender<Job>,
    /// The connection cuts read with, moved to each job and back; opened by
    /// the first cut that needs it and closed with the thread.
    pub(super) reader: Option<RowReader>,
}

impl CutThread {
    /// Starts the thread (named `ferry-cut`, as `top -H` shows it). It ends
    /// when this is dropped, once the job it runs (if any) returns.
    pub(super) fn start() -> Result<Self, StoreError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ferry-cut".to_owned())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .map_err(io)?;
        Ok(CutThread { jobs, reader: None })
    }

    /// Runs `f` on the thread and waits for its answer (`&mut`: the reader
    /// is not `Sync`, and one job runs at a time anyway). A job that panics
    /// ends the thread: that job and every later one answer an error, and
    /// the caller drops this and starts another.
    pub(super) async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

fn io(source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: "segmenter".into(),
        source,
    }
}

fn gone() -> StoreError {
    io(std::io::Error::other(
        "the cut's thread ended without an answer",
    ))
}
