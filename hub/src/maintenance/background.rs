//! Where compaction runs: a thread of its own at a lower CPU priority, so
//! that on a busy hub ingest and queries get the CPU first and compaction
//! takes what is left.
//!
//! Compaction decodes, sorts and re-encodes whole partitions: on the
//! hour-long `ferry-bench ingest-long` it kept one of two cores busy for
//! 93 % of the hour. On the hub's shared runtime it competed with ingest as
//! an equal. Here it runs on a single-threaded Tokio runtime on a dedicated
//! thread whose nice value is raised by `compaction.nice` (Linux nice values
//! are per thread, and the threads this one starts, such as the blocking
//! pool that sorts, inherit it). A nice of 10 weighs about a tenth of a
//! normal thread under contention; on an idle hub it changes nothing.
//!
//! The thread ends when the last handle is dropped (after the maintenance
//! tasks that use it have stopped; see [`super::Maintenance::spawn`]).

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::warn;

/// A handle to the compaction thread. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Background {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    /// Dropped with the last handle: the thread's runtime then returns.
    _stop: oneshot::Sender<()>,
}

impl Background {
    /// Starts the thread, its nice value raised by `nice` (0: unchanged).
    pub(super) fn start(nice: u8) -> std::io::Result<Background> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, handle) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ferry-compaction".to_owned())
            .spawn(move || {
                lower_priority(nice);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("ferry-compaction-blocking")
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(runtime.handle().clone()));
                // Runs the spawned tasks until every handle is gone.
                let _ = runtime.block_on(stopped);
            })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the compaction thread ended at start"))??;
        Ok(Background {
            inner: Arc::new(Inner {
                handle,
                _stop: stop,
            }),
        })
    }

    /// Runs `task` on the compaction thread and waits for it. A panic in the
    /// task resumes here (so the caller's task records it as before); `None`
    /// if the thread stopped first.
    pub(super) async fn run<F>(&self, task: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.inner.handle.spawn(task).await {
            Ok(out) => Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

/// Raises the calling thread's nice value by `nice` (Linux: per thread).
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    let result = rustix::process::getpriority_process(None).and_then(|current| {
        rustix::process::setpriority_process(None, (current + i32::from(nice)).min(19))
    });
    if let Err(e) = result {
        warn!(error = %e, nice, "could not lower the compaction thread's priority");
    }
}

/// The calling thread's nice value (for tests).
#[cfg(test)]
pub(super) fn current_nice() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(i32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_and_their_blocking_work_run_at_the_lower_priority() {
        let base = current_nice();
        let background = Background::start(7).unwrap();
        let (own, blocking) = background
            .run(async {
                let blocking = tokio::task::spawn_blocking(current_nice).await.unwrap();
                (current_nice(), blocking)
            })
            .await
            .unwrap();
        assert_eq!(own, (base + 7).min(19));
        assert_eq!(blocking, (base + 7).min(19));
        // The caller's own thread is untouched.
        assert_eq!(current_nice(), base);
    }

    #[tokio::test]
    async fn a_panic_resumes_in_the_caller() {
        let background = Background::start(0).unwrap();
        let caught = tokio::spawn(async move {
            background
                .run(async { panic!("test fault: compaction panics") })
                .await
        })
        .await;
        assert!(caught.is_err_and(|e| e.is_panic()));
    }
}
