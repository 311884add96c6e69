//! Tests only: faults a unit test arms and the code under test takes once.
//! One registry for every kind, keyed by the table (or `""`), so that a
//! fault armed for one table never fires in another test's table.

use std::sync::Mutex;

/// Where a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A table's batcher panics before its next commit.
    BatcherPanic,
    /// The next read of an agent's `txn` version from a table's log fails
    /// (a storage error).
    TxnRead,
    /// The next compaction pass panics (key `""`).
    CompactionPanic,
}

static ARMED: Mutex<Vec<(Fault, String)>> = Mutex::new(Vec::new());

/// Arms `fault` once for `key`.
pub(crate) fn arm(fault: Fault, key: &str) {
    ARMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((fault, key.to_owned()));
}

/// Whether `fault` was armed for `key`; disarms it.
pub(crate) fn take(fault: Fault, key: &str) -> bool {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    let at = armed.iter().position(|(f, k)| *f == fault && k == key);
    at.map(|at| armed.swap_remove(at)).is_some()
}
