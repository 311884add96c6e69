//! Supervision of the hub's background tasks: table batchers, compaction
//! and retention.
//!
//! The hub is a shared service, so unlike the agent (which is crash-only)
//! it contains an internal fault to the task it happened in:
//!
//! * a table's **batcher** that panics ends alone: every write it held or
//!   had queued is answered at once with a retryable 503 (`WriterFailed`),
//!   never left waiting, and the next write to that table starts a new
//!   batcher from the table's committed state in the object store;
//! * a **compaction or retention pass** that panics is recorded as a failed
//!   pass; the schedule goes on and the next pass runs as usual;
//! * an **HTTP handler** that panics answers 500 (`internal`) to its own
//!   request only (`tower_http::catch_panic`).
//!
//! Each is logged at ERROR and counted in
//! [`TASK_PANICS`](crate::metrics::TASK_PANICS) with label `task`
//! (`batcher`, `compaction`, `retention`, `http`).

use tokio::task::JoinError;

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Records that `task` (working on `target`) panicked.
pub(crate) fn panicked(task: &'static str, target: &str, error: JoinError) {
    let message = match error.try_into_panic() {
        Ok(payload) => panic_text(payload.as_ref()),
        Err(e) => e.to_string(),
    };
    record(task, target, &message);
}

/// Logs and counts a panic of `task`.
pub(crate) fn record(task: &'static str, target: &str, message: &str) {
    tracing::error!(
        task,
        target,
        message,
        "internal fault: a panic, contained to this task (see docs/hub.md, supervision)"
    );
    metrics::counter!(crate::metrics::TASK_PANICS, "task" => task).increment(1);
}
