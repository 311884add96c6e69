//! WAL checkpoints off the writer thread.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, at the
//! end of the commit that takes the WAL past 1,000 pages: it copies the
//! WAL's pages into the database file and fsyncs it, while every append
//! waiting for the next commit (and its acknowledgement) waits too. With
//! 1 KB readings that was a stall of several milliseconds every few hundred
//! milliseconds, and the largest part of the agent's p99 publish-to-ack.
//!
//! Here the writer's connection has no automatic checkpoint. Its WAL hook
//! (run after each commit, with the WAL's size in pages) decides:
//!
//! - each time `store.wal_checkpoint` of pages were written to the WAL
//!   since the last checkpoint ran, it wakes the checkpointer thread,
//!   which runs a `PASSIVE` checkpoint on a connection of its own. A
//!   passive checkpoint never waits for the writer and the writer never
//!   waits for it; WAL mode lets them run side by side. (Counting only new
//!   pages keeps it to one checkpoint per `store.wal_checkpoint` written,
//!   as SQLite's own.) In the last `store.wal_checkpoint` before the
//!   writer's own checkpoint, every commit wakes it, to catch up: under a
//!   steady load that is where most checkpoints run.
//! - at [`INLINE_FACTOR`] times that, it checkpoints itself, as SQLite
//!   would have. That bounds the WAL file whatever happens to the
//!   checkpointer thread (a slow disk, a failing checkpoint), and it lets
//!   the WAL restart from its beginning: SQLite only rewinds the WAL when
//!   a write transaction starts on a fully checkpointed one. A reader that
//!   holds an old snapshot still holds the WAL back, as it would SQLite's
//!   own checkpoints: no checkpoint can copy past it.
//!
//! Both connections use `synchronous = FULL`, so a checkpoint fsyncs the
//! database before the WAL may be reused: crash safety is SQLite's, from
//! whichever connection checkpoints. [`Checkpointer::stop`] removes the hook
//! and joins the thread, before the writer's final `TRUNCATE` checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;
use tracing::{debug, warn};

use super::error::{Result, StoreError};
use super::metrics as m;

/// The writer checkpoints itself once the WAL holds this many times
/// `store.wal_checkpoint`.
pub(crate) const INLINE_FACTOR: u64 = 4;

/// What the writer's WAL hook does after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The WAL is small: nothing.
    Nothing,
    /// Wake the checkpointer thread.
    Wake,
    /// Checkpoint on the writer's connection, now.
    Inline,
}

/// The decision, from the WAL's size in pages, its size when the last
/// checkpoint ran (see [`Counts::checked`]), and the threshold in pages.
///
/// In the last threshold before the writer's own checkpoint, every commit
/// wakes the thread. Under a steady load the thread never catches up with
/// the writer, so the WAL always grows to [`INLINE_FACTOR`] times the
/// threshold; catching up first leaves the writer's checkpoint (which
/// every commit waits for) a few pages to copy instead of up to a
/// threshold's worth.
pub(crate) fn action(wal_pages: u64, checked: u64, threshold_pages: u64) -> Action {
    let threshold = threshold_pages.max(1);
    // Fewer pages than then: the WAL restarted since.
    let fresh = wal_pages.checked_sub(checked).unwrap_or(wal_pages);
    if wal_pages >= threshold.saturating_mul(INLINE_FACTOR) {
        Action::Inline
    } else if fresh >= threshold
        || (fresh > 0 && wal_pages >= threshold.saturating_mul(INLINE_FACTOR - 1))
    {
        Action::Wake
    } else {
        Action::Nothing
    }
}

/// How many checkpoints ran, by whom (also exported as metrics).
#[derive(Debug, Default)]
struct Counts {
    background: AtomicU64,
    inline: AtomicU64,
    /// The WAL's size in pages when the last checkpoint ran. Not the pages
    /// it copied: a checkpoint copies only up to the oldest snapshot a
    /// reader still uses (the segmenter reads while the writer commits), so
    /// counting from what it copied would wake the thread after every
    /// commit until that reader is done, each time for a few pages and a
    /// database fsync.
    checked: AtomicU64,
}

/// The checkpointer thread and the hook that wakes it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl Checkpointer {
    /// Opens a second connection to the database at `path` (already in WAL
    /// mode), starts the thread, and installs the hook on `conn`.
    pub(crate) fn start(conn: &mut Connection, path: &Path, threshold_bytes: u64) -> Result<Self> {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let threshold =
            (threshold_bytes / u64::try_from(page_size).unwrap_or(4096).max(512)).max(1);
        let own = super::schema::open_beside(path)?;
        own.pragma_update(None, "synchronous", "FULL")?;
        let counts = Arc::new(Counts::default());
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("ferry-ckpt".to_owned())
            .spawn({
                let counts = counts.clone();
                move || run(&own, &woken, &counts)
            })
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        let hook_counts = counts.clone();
        let mut last_pages = 0u64;
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            let pages = u64::try_from(pages).unwrap_or(0);
            if pages < last_pages {
                // The WAL restarted from its beginning.
                hook_counts.checked.store(0, Ordering::Relaxed);
            }
            last_pages = pages;
            let checked = hook_counts.checked.load(Ordering::Relaxed);
            match action(pages, checked, threshold) {
                Action::Nothing => {}
                Action::Wake => match wake.try_send(()) {
                    // Full: a wake-up is already waiting, which covers this one.
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Disconnected(())) => inline(wal, &hook_counts),
                },
                Action::Inline => inline(wal, &hook_counts),
            }
            Ok(())
        }))?;
        Ok(Checkpointer {
            thread: Some(thread),
            counts,
        })
    }

    /// Checkpoints so far: (by the thread, by the writer).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counts.background.load(Ordering::Relaxed),
            self.counts.inline.load(Ordering::Relaxed),
        )
    }

    /// Removes the hook (which drops the thread's wake-up channel) and
    /// waits for the thread to finish the checkpoint it may be running.
    pub(crate) fn stop(&mut self, conn: &mut Connection) {
        type Hook = fn(&mut rusqlite::hooks::Wal, std::ffi::c_int) -> rusqlite::Result<()>;
        if let Err(e) = conn.wal_hook(None::<Hook>) {
            warn!(error = %e, "removing the WAL hook failed");
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the checkpointer thread panicked");
        }
    }
}

fn inline(wal: &mut rusqlite::hooks::Wal, counts: &Counts) {
    let started = Instant::now();
    match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
        Ok((wal_pages, _)) => {
            counts
                .checked
                .store(u64::try_from(wal_pages).unwrap_or(0), Ordering::Relaxed);
            counts.inline.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::CHECKPOINTS, "by" => "writer").increment(1);
            metrics::histogram!(m::CHECKPOINT_SECONDS, "by" => "writer")
                .record(started.elapsed().as_secs_f64());
        }
        Err(e) => debug!(error = %e, "inline WAL checkpoint did not run"),
    }
}

/// The thread: one passive checkpoint per wake-up, until the hook is gone.
fn run(conn: &Connection, woken: &Receiver<()>, counts: &Counts) {
    let mut failing = false;
    while woken.recv().is_ok() {
        let started = Instant::now();
        // Busy, pages in the WAL, pages copied into the database so far.
        let answer = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        });
        match answer {
            // The writer's own checkpoint held the lock: nothing ran.
            Ok((busy, wal_pages)) if busy != 0 || wal_pages < 0 => {
                debug!("background WAL checkpoint skipped: another one was running");
            }
            Ok((_, wal_pages)) => {
                // Without this the hook would count every page of the WAL as
                // new and wake the thread after every commit once the WAL
                // had `store.wal_checkpoint` of pages: under a steady load
                // the WAL never restarts, so that was a checkpoint (and a
                // database fsync) per commit or two.
                counts
                    .checked
                    .store(u64::try_from(wal_pages).unwrap_or(0), Ordering::Relaxed);
                if failing {
                    debug!("background WAL checkpoints work again");
                    failing = false;
                }
                counts.background.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CHECKPOINTS, "by" => "background").increment(1);
                metrics::histogram!(m::CHECKPOINT_SECONDS, "by" => "background")
                    .record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, factor = INLINE_FACTOR, "background WAL checkpoint failed; the writer checkpoints itself once the WAL is `factor` times store.wal_checkpoint");
                    failing = true;
                }
                metrics::counter!(m::CHECKPOINT_ERRORS).increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_wakes_the_thread_per_threshold_of_new_pages_and_checkpoints_itself_at_four_times() {
        assert_eq!(action(0, 0, 1000), Action::Nothing);
        assert_eq!(action(999, 0, 1000), Action::Nothing);
        assert_eq!(action(1000, 0, 1000), Action::Wake);
        // A checkpoint ran at 1,000 pages: wake again only at 1,000 new ones.
        assert_eq!(action(1999, 1000, 1000), Action::Nothing);
        assert_eq!(action(2000, 1000, 1000), Action::Wake);
        // The WAL restarted: what it holds now is all new.
        assert_eq!(action(1200, 3000, 1000), Action::Wake);
        assert_eq!(action(800, 3000, 1000), Action::Nothing);
        // From 3 times on, every commit wakes it, to catch up.
        assert_eq!(action(2999, 2500, 1000), Action::Nothing);
        assert_eq!(action(3000, 2500, 1000), Action::Wake);
        assert_eq!(action(3999, 3998, 1000), Action::Wake);
        assert_eq!(action(3500, 3500, 1000), Action::Nothing);
        // Whatever the thread did, the writer checkpoints at 4 times.
        assert_eq!(action(4000, 3999, 1000), Action::Inline);
        assert_eq!(action(1, 0, 0), Action::Wake);
    }

    /// A database in WAL mode without automatic checkpoints, with table `t`.
    fn wal_db(dir: &tempfile::TempDir) -> (std::path::PathBuf, Connection) {
        let path = dir.path().join("wal.db");
        let conn = Connection::open(&path).expect("opens");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no auto checkpoint");
        conn.execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        (path, conn)
    }

    /// One commit of `rows` rows of 4,000 bytes (a page each).
    fn commit(conn: &Connection, rows: u32) {
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO t SELECT zeroblob(4000) FROM n",
            [rows],
        )
        .expect("commits");
    }

    /// Frames in the WAL file (it never restarts in these tests).
    fn frames(path: &Path) -> u64 {
        let len = std::fs::metadata(path.with_extension("db-wal"))
            .expect("a WAL")
            .len();
        len.saturating_sub(32) / (4096 + 24)
    }

    /// A reader's snapshot, held until it is dropped: the checkpoint cannot
    /// copy past it, nor the WAL restart.
    fn hold_snapshot(path: &Path) -> Connection {
        let reader = Connection::open(path).expect("opens");
        reader.execute_batch("BEGIN").expect("begins");
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("reads");
        reader
    }

    /// The thread records the WAL's size its checkpoint saw, not the pages
    /// it could copy (a reader held the rest back), and not nothing (the
    /// bug: under a steady load every commit woke it again).
    #[test]
    fn a_background_checkpoint_records_the_wal_size_it_saw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, writer) = wal_db(&dir);
        commit(&writer, 40);
        let reader = hold_snapshot(&path);
        commit(&writer, 40);
        let total = frames(&path);
        assert!(total > 80, "the WAL holds {total} frames");
        let counts = Counts::default();
        let (wake, woken) = sync_channel::<()>(1);
        wake.send(()).expect("queued");
        drop(wake);
        let own = crate::store::schema::open_beside(&path).expect("opens");
        run(&own, &woken, &counts);
        assert_eq!(counts.background.load(Ordering::Relaxed), 1);
        let checked = counts.checked.load(Ordering::Relaxed);
        assert_eq!(
            checked, total,
            "the checkpoint saw {checked} of {total} frames"
        );
        drop(reader);
    }

    /// Through the hook: with a reader holding an old snapshot (so nothing
    /// can be copied and the WAL cannot restart), the thread is woken once
    /// per threshold of new pages, not after every commit.
    #[test]
    fn the_thread_is_woken_once_per_threshold_while_a_reader_holds_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut writer) = wal_db(&dir);
        commit(&writer, 1);
        let reader = hold_snapshot(&path);
        let mut checkpointer = Checkpointer::start(&mut writer, &path, 100 * 4096).expect("starts");
        // About 250 pages in 35 commits: past 1 and 2 thresholds, short of
        // the catch-up from 3.
        for _ in 0..35 {
            commit(&writer, 5);
            // Lets a woken thread finish before the next commit, as it
            // mostly does under load.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(frames(&path) < 300, "{} frames", frames(&path));
        checkpointer.stop(&mut writer);
        let (background, inline) = checkpointer.counts();
        assert_eq!(inline, 0);
        assert!(
            (1..=3).contains(&background),
            "{background} background checkpoints for 2 thresholds of new pages"
        );
        drop(reader);
    }
}
