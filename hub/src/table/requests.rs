//! What table writers ask of maintenance between its scheduled runs.
//!
//! Commits no longer write checkpoints inline (see `append.rs`): the commit
//! that reaches a multiple of the checkpoint interval asks for one here.
//! And a table that is written often gets many small files between two
//! scheduled compactions: once its writer has added
//! `compaction.trigger_files` files since its last ask, it asks for the
//! table to be compacted now. Asks are kept per table (a table asked for
//! twice is worked on once), so what waits is bounded by the number of
//! tables. Maintenance answers the two kinds in two workers
//! (`Maintenance::spawn`): a compaction of a hot table can take minutes,
//! and the checkpoints that bound every reader's log replay must not wait
//! behind it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::name::TableName;

/// What a table needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    pub checkpoint: bool,
    pub compact: bool,
}

/// The asks of every table; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    inner: Arc<Inner>,
}

/// One kind of ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Checkpoint,
    Compact,
}

#[derive(Debug, Default)]
struct Inner {
    wanted: Mutex<BTreeMap<TableName, Wanted>>,
    checkpoint_asked: Notify,
    compact_asked: Notify,
    /// Files a writer adds before it asks for a compaction; 0: never.
    compact_after: AtomicU64,
}

impl Requests {
    /// Files a table's writer adds before it asks for a compaction (0: never).
    pub fn set_compact_after(&self, files: u64) {
        self.inner.compact_after.store(files, Ordering::Relaxed);
    }

    fn notify(&self, kind: Ask) -> &Notify {
        match kind {
            Ask::Checkpoint => &self.inner.checkpoint_asked,
            Ask::Compact => &self.inner.compact_asked,
        }
    }

    fn ask(&self, name: &TableName, kind: Ask) {
        let mut wanted = self.inner.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let w = wanted.entry(name.clone()).or_default();
        match kind {
            Ask::Checkpoint => w.checkpoint = true,
            Ask::Compact => w.compact = true,
        }
        drop(wanted);
        self.notify(kind).notify_one();
    }

    /// Asks for a checkpoint of `name`.
    pub(crate) fn checkpoint(&self, name: &TableName) {
        self.ask(name, Ask::Checkpoint);
    }

    /// Counts `added` files into the writer's `since_ask`; asks for a
    /// compaction (and restarts the count) once it reaches the trigger.
    pub(crate) fn files_added(&self, name: &TableName, since_ask: &mut u64, added: u64) {
        let after = self.inner.compact_after.load(Ordering::Relaxed);
        *since_ask = since_ask.saturating_add(added);
        if after > 0 && *since_ask >= after {
            *since_ask = 0;
            self.ask(name, Ask::Compact);
        }
    }

    /// Everything asked so far, emptied.
    pub fn take(&self) -> Vec<(TableName, Wanted)> {
        let mut wanted = self.inner.wanted.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *wanted).into_iter().collect()
    }

    /// The tables asked for `kind` so far; their asks of that kind are
    /// taken, asks of the other kind stay.
    pub fn take_kind(&self, kind: Ask) -> Vec<TableName> {
        let mut wanted = self.inner.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Vec::new();
        wanted.retain(|name, w| {
            let flag = match kind {
                Ask::Checkpoint => &mut w.checkpoint,
                Ask::Compact => &mut w.compact,
            };
            if std::mem::take(flag) {
                taken.push(name.clone());
            }
            w.checkpoint || w.compact
        });
        taken
    }

    /// Waits until `kind` is asked (or was asked since the last wait).
    pub async fn asked(&self, kind: Ask) {
        self.notify(kind).notified().await;
    }
}
