//! The object store under every table on a local disk (`file://`): it lists
//! a table's `_delta_log` from a version without reading the whole
//! directory, and it does not hand out a listing with a gap that a commit
//! made while the directory was read.
//!
//! Both come from how a local directory is listed. `LocalFileSystem` reads
//! every entry of the directory and compares it with the offset, whatever
//! the offset. A log keeps 30 days of commits
//! (`delta.logRetentionDuration`), up to one per group commit, so the
//! listing made by every query (the reader cache's refresh), checkpoint and
//! compaction, and with `multi_writer` by every commit, grew with the
//! table's age (43,000 files after 26 minutes of `ferry-bench ingest-long`;
//! `ferry-bench commit-growth` times that listing). And a directory read is
//! not a snapshot: a file created while it is read can be left out (ext4
//! returns entries in hash order) while a later one is listed, and the
//! kernel then fails with "Expected contiguous commit files".
//!
//! A listing of `_delta_log` from version `v` (the form delta-kernel and
//! deltalake use: the offset is the 20-digit version) asks for
//! `v.json`, `v.checkpoint.parquet` and `v.crc`, then `v+1` and so on, until
//! a commit is missing: a few `stat`s per new version, none for the old
//! ones. Commit `n+1` is only written by a writer that read commit `n`, so
//! the commits found this way are the log's contiguous tail. The probe
//! gives way to a full listing when it cannot vouch for its answer: the
//! first commit is missing and so is the one before it (the range starts
//! below the log's clean-up, or the log is empty), the commit after the
//! first missing one exists and the missing one still does not when asked
//! again (a gap; a commit written between the two looks is simply taken),
//! or more than [`PROBE_LIMIT`] versions follow. A full listing of the log
//! that shows a gap between commits after its newest checkpoint is listed
//! again, up to [`LISTING_TRIES`] times; a gap that stays is handed on, and
//! the kernel reports it.
//!
//! Every call into `LocalFileSystem`, which does each of its I/O on one of
//! tokio's blocking threads, runs on a runtime of its own whose blocking
//! pool is capped ([`disk_threads`], threads named [`DISK_THREAD_NAME`]),
//! and a read is finished there. On the hub's runtime, a caller that read
//! many files at once started a blocking thread for each: the kernel reads
//! up to 1,000 commit files concurrently, so each checkpoint of a table at
//! the default interval started about 100 threads. Tokio wakes idle
//! blocking threads in turn, so under steady ingest none stayed idle long
//! enough to end, and each kept its own allocator heap: 160 sequential
//! writes of 10,000 rows took the hub from 184 MiB to 704 MiB with 105
//! threads (decision 0006, amendment 13).
//!
//! Checkpoints are found by the probe only as single files
//! (`v.checkpoint.parquet`, the ones the hub and deltalake write); a
//! multi-part or UUID-named checkpoint written by another engine is not
//! probed for, so the kernel replays the commits after an older checkpoint
//! instead, which is correct and only slower.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The name of a table's log directory.
const LOG_DIR: &str = "_delta_log";
/// Versions the probe follows before it lists the directory instead.
pub(crate) const PROBE_LIMIT: u64 = 1_000;
/// Full listings of the log tried before a gap is handed on as real.
pub(crate) const LISTING_TRIES: u32 = 5;
/// Two per core: the cap on the threads that do the local disk's blocking
/// I/O across every table, raised to [`MIN_DISK_THREADS`] on small machines.
pub(crate) fn disk_threads() -> usize {
    (std::thread::available_parallelism().map_or(1, usize::from) * 2).max(MIN_DISK_THREADS)
}
/// The fewest [`disk_threads`], whatever the cores.
pub(crate) const MIN_DISK_THREADS: usize = 8;
/// The name of those threads.
pub(crate) const DISK_THREAD_NAME: &str = "ferry-disk-io";

/// The runtime whose blocking pool, capped at [`disk_threads`], does the
/// local disk's I/O; `None` if it could
/// not be started (the I/O then runs on the caller's runtime, as
/// `LocalFileSystem` alone would).
fn disk_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static DISK: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(disk_threads())
            .thread_name(DISK_THREAD_NAME)
            .build()
            .map_err(|error| {
                tracing::warn!(%error, "could not start the disk I/O threads; using the shared blocking pool");
            })
            .ok()
    });
    DISK.as_ref()
}

/// Runs `io` (calls into `LocalFileSystem`, which does each on a blocking
/// thread of the runtime it runs in) on [`disk_runtime`].
async fn on_disk<T: Send + 'static>(
    io: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let Some(runtime) = disk_runtime() else {
        return io.await;
    };
    runtime
        .spawn(io)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalLog",
            source: Box::new(e),
        })?
}

/// A local-disk store with the log listing described in the module docs.
#[derive(Debug, Clone)]
pub(crate) struct LocalLog {
    /// Where every call goes, listings of the log from a version aside.
    inner: Arc<dyn ObjectStore>,
    /// The same directory, to map a path to its file for the probe.
    fs: Arc<LocalFileSystem>,
}

impl LocalLog {
    pub(crate) fn new(fs: LocalFileSystem) -> Self {
        let fs = Arc::new(fs);
        Self {
            inner: Arc::clone(&fs) as Arc<dyn ObjectStore>,
            fs,
        }
    }

    /// `inner` in front of `fs` (the same directory): tests put a store
    /// there that shows when it is listed.
    #[cfg(test)]
    fn with_inner(inner: Arc<dyn ObjectStore>, fs: LocalFileSystem) -> Self {
        Self {
            inner,
            fs: Arc::new(fs),
        }
    }
}

impl fmt::Display for LocalLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalLog({})", self.inner)
    }
}

/// `prefix` is a `_delta_log` directory and `offset` a 20-digit version in
/// it: the start version.
fn log_start(prefix: Option<&Path>, offset: &Path) -> Option<u64> {
    let prefix = prefix?;
    if prefix.filename() != Some(LOG_DIR) {
        return None;
    }
    let name = offset.filename()?;
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if offset.prefix_match(prefix)?.count() != 1 {
        return None;
    }
    name.parse().ok()
}

fn version_name(version: u64, suffix: &str) -> String {
    format!("{version:020}.{suffix}")
}

/// Whether the table in the local directory `table` has no commit after
/// `version`: one `stat` of the next commit file. A cached table that
/// answers true is the latest; the kernel's refresh would list the log
/// from there (through its blocking-stream executor, several thread hand-
/// offs) to learn the same. False when the file is there or cannot be
/// looked at: the caller then reads the log.
pub(crate) fn no_commit_after(table: &std::path::Path, version: u64) -> bool {
    let Some(next) = version.checked_add(1) else {
        return false;
    };
    let file = table.join(LOG_DIR).join(version_name(next, "json"));
    matches!(std::fs::symlink_metadata(file), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The version of a commit file name (`00000000000000000007.json`).
fn commit_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The version of a checkpoint file name (any kind of checkpoint).
fn checkpoint_version(name: &str) -> Option<u64> {
    let (digits, rest) = name.split_once('.')?;
    (digits.len() == 20 && rest.starts_with("checkpoint"))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Whether a listing of `log` skips a commit after its newest checkpoint.
pub(crate) fn has_gap(log: &Path, listed: &[ObjectMeta]) -> bool {
    let direct = |meta: &ObjectMeta| {
        meta.location
            .prefix_match(log)
            .is_some_and(|mut rest| rest.next().is_some() && rest.next().is_none())
    };
    let names = || {
        listed
            .iter()
            .filter(|m| direct(m))
            .filter_map(|m| m.location.filename())
    };
    let checkpoint = names().filter_map(checkpoint_version).max();
    let mut commits: Vec<u64> = names()
        .filter_map(commit_version)
        .filter(|v| checkpoint.is_none_or(|c| *v >= c))
        .collect();
    commits.sort_unstable();
    commits.windows(2).any(|w| w[1] > w[0] + 1)
}

/// What a probe of the log found.
enum Probed {
    /// The log's files from the start version on, in name order.
    Files(Vec<ObjectMeta>),
    /// The probe cannot vouch for an answer: list the directory.
    List,
}

/// The file at `location`, if there is one.
fn stat(fs: &LocalFileSystem, location: Path) -> Result<Option<ObjectMeta>> {
    let file = fs.path_to_filesystem(&location)?;
    let generic = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalLog",
        source: Box::new(e),
    };
    match std::fs::metadata(&file) {
        Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
            location,
            last_modified: DateTime::<Utc>::from(meta.modified().map_err(generic)?),
            size: meta.len(),
            e_tag: None,
            version: None,
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(generic(e)),
    }
}

/// The probe, one `stat` after the other on this thread.
fn probe(fs: &LocalFileSystem, log: &Path, start: u64) -> Result<Probed> {
    let commit = |v: u64| log.clone().join(version_name(v, "json"));
    if stat(fs, commit(start))?.is_none() {
        // Nothing from `start` on, if the commit before it is there.
        let before = match start.checked_sub(1) {
            Some(v) => stat(fs, commit(v))?.is_some(),
            None => false,
        };
        return Ok(if before {
            Probed::Files(Vec::new())
        } else {
            Probed::List
        });
    }
    let mut files = Vec::new();
    for version in start..start.saturating_add(PROBE_LIMIT) {
        let json = match stat(fs, commit(version))? {
            Some(json) => json,
            // The end of the log, unless the next commit exists.
            None if stat(fs, commit(version + 1))?.is_none() => return Ok(Probed::Files(files)),
            // It does: this commit was written between the two looks (a
            // commit is only written by a writer that read the one before
            // it, so it exists now), or the log has a real gap. A busy
            // writer makes the first case common (two commits in the time a
            // preempted probe takes between two `stat`s); only the second
            // needs the directory.
            None => match stat(fs, commit(version))? {
                Some(json) => json,
                None => return Ok(Probed::List),
            },
        };
        // Name order: `.checkpoint.parquet`, `.crc`, `.json`.
        for suffix in ["checkpoint.parquet", "crc"] {
            if let Some(meta) = stat(fs, log.clone().join(version_name(version, suffix)))? {
                files.push(meta);
            }
        }
        files.push(json);
    }
    Ok(Probed::List)
}

impl LocalLog {
    /// [`probe`] on a blocking thread when there is a runtime (as
    /// `LocalFileSystem` does its own I/O).
    async fn probe(&self, log: &Path, start: u64) -> Result<Probed> {
        if tokio::runtime::Handle::try_current().is_err() {
            return probe(&self.fs, log, start);
        }
        let (fs, log) = (Arc::clone(&self.fs), log.clone());
        on_disk(async move {
            tokio::task::spawn_blocking(move || probe(&fs, &log, start))
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalLog",
                    source: Box::new(e),
                })?
        })
        .await
    }

    /// Lists the directory, again while it shows a gap.
    async fn list_whole(&self, log: &Path, offset: &Path) -> Result<Vec<ObjectMeta>> {
        let mut tries = 1;
        loop {
            let listed: Vec<ObjectMeta> = self
                .inner
                .list_with_offset(Some(log), offset)
                .try_collect()
                .await?;
            if tries >= LISTING_TRIES || !has_gap(log, &listed) {
                return Ok(listed);
            }
            tracing::debug!(%log, tries, "log listed mid-commit; listing again");
            tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
            tries += 1;
        }
    }

    async fn list_log(&self, log: Path, offset: Path, start: u64) -> Result<Vec<ObjectMeta>> {
        match self.probe(&log, start).await? {
            Probed::Files(files) => Ok(files),
            Probed::List => self.list_whole(&log, &offset).await,
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for LocalLog {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let location = location.clone();
        if let object_store::PutMode::Update(expected) = &opts.mode {
            let (fs, expected) = (Arc::clone(&self.fs), expected.clone());
            return on_disk(async move {
                super::local_update::update(&fs, &location, payload, expected).await
            })
            .await;
        }
        let inner = Arc::clone(&self.inner);
        on_disk(async move { inner.put_opts(&location, payload, opts).await }).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    /// A file's content is read on the disk's threads too (an open file
    /// handed out would be read later on a blocking thread of the caller's
    /// runtime); every reader of the hub's tables reads what it gets whole.
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (inner, location) = (Arc::clone(&self.inner), location.clone());
        on_disk(async move {
            let head = options.head;
            let got = inner.get_opts(&location, options).await?;
            if head || !matches!(got.payload, GetResultPayload::File(..)) {
                return Ok(got);
            }
            let (meta, range, attributes) =
                (got.meta.clone(), got.range.clone(), got.attributes.clone());
            let bytes = got.bytes().await?;
            Ok(GetResult {
                payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
                meta,
                range,
                attributes,
            })
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (inner, location, ranges) =
            (Arc::clone(&self.inner), location.clone(), ranges.to_vec());
        on_disk(async move { inner.get_ranges(&location, &ranges).await }).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (Some(log), Some(start)) = (prefix, log_start(prefix, offset)) else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let this = self.clone();
        let (log, offset) = (log.clone(), offset.clone());
        stream::once(async move { this.list_log(log, offset, start).await })
            .map_ok(|files| stream::iter(files.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let (inner, from, to) = (Arc::clone(&self.inner), from.clone(), to.clone());
        on_disk(async move { inner.copy_opts(&from, &to, options).await }).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let (inner, from, to) = (Arc::clone(&self.inner), from.clone(), to.clone());
        on_disk(async move { inner.rename_opts(&from, &to, options).await }).await
    }
}

/// Whether the table under `store` (rooted at the table) has a log: one
/// entry of `_delta_log` is enough, not a listing of all of it.
pub(crate) async fn log_exists(store: &dyn ObjectStore) -> Result<bool> {
    match store.list(Some(&Path::from(LOG_DIR))).next().await {
        Some(Ok(_)) => Ok(true),
        None | Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
        Some(Err(e)) => Err(e),
    }
}

#[cfg(test)]
#[path = "local_log_tests.rs"]
mod tests;
