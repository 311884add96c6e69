//! The re-encryption job: reads every object of the store and seals the
//! ones under an older key again with the active key, at
//! `encryption.reencrypt_bytes_per_second`. After it finishes without
//! failures, no object needs the older keys, and they can be removed from
//! the key source.
//!
//! An object keeps its plaintext, so its size and everything the Delta log
//! says about it stay true; a reader that holds the old header reads the
//! header again ([`super::store`]). Each rewrite is a conditional update of
//! the version read, so an object deleted (vacuum, retention) or rewritten
//! while the job runs is left alone, never re-created. After the rewrites
//! the job waits for writers that took an older key before a rotation (a
//! long compaction's upload), then counts every object's key again:
//! `objects_by_key` is what the store holds when the job ends. The job is
//! idempotent: run again, it rewrites only what is still under an old key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Encryption;
use super::format::{self, HEADER_LEN, Header};
use super::lake::MARKER;
use super::metrics as m;

/// What the last (or running) job did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct JobState {
    pub running: bool,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// The key objects are sealed with again.
    pub target_key: Option<String>,
    pub scanned: u64,
    pub resealed: u64,
    pub resealed_bytes: u64,
    /// Deleted between the listing and their rewrite.
    pub vanished: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    /// Objects per key when the job finished (or so far).
    pub objects_by_key: BTreeMap<String, u64>,
    pub cancelled: bool,
}

/// The job's state and task.
#[derive(Debug, Default)]
pub(crate) struct Job {
    state: Mutex<JobState>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Job {
    pub(crate) fn state(&self) -> JobState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut JobState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Starts the job unless one runs; false if one does.
    pub(crate) fn start(enc: &Arc<Encryption>, store: Arc<dyn ObjectStore>, root: Path) -> bool {
        let job = &enc.job;
        {
            let Ok(mut s) = job.state.lock() else {
                return false;
            };
            if s.running || job.cancel.is_cancelled() {
                return false;
            }
            *s = JobState {
                running: true,
                started: Some(chrono::Utc::now().to_rfc3339()),
                target_key: Some(enc.keyring.current().active().id().to_owned()),
                ..JobState::default()
            };
        }
        let enc = Arc::clone(enc);
        job.tracker.spawn(async move {
            run(&enc, store.as_ref(), &root).await;
            enc.job.update(|s| {
                s.running = false;
                s.cancelled = enc.job.cancel.is_cancelled();
                s.finished = Some(chrono::Utc::now().to_rfc3339());
            });
        });
        true
    }

    /// Stops a running job between two objects and waits for it.
    pub(crate) async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn run(enc: &Encryption, store: &dyn ObjectStore, root: &Path) {
    // Pass 1: seal again what is under another key.
    if !pass(enc, store, root, true).await {
        return;
    }
    // Writers that took an older key before the rotation (a long
    // compaction's upload) finish first; then pass 2 counts what the
    // store holds, so `objects_by_key` is what is there, not what was.
    let waited = std::time::Instant::now();
    while enc.writers_under_old_keys() > 0 && waited.elapsed() < WRITER_WAIT {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = enc.job.cancel.cancelled() => return,
        }
    }
    enc.job.update(|s| s.objects_by_key.clear());
    pass(enc, store, root, false).await;
}

/// How long the job waits for writers under an older key before it counts.
const WRITER_WAIT: Duration = Duration::from_secs(600);

/// One listing of the store: with `reseal`, objects under another key
/// than the active one are sealed again; either way `objects_by_key`
/// counts them. False when cancelled or the listing failed.
async fn pass(enc: &Encryption, store: &dyn ObjectStore, root: &Path, reseal_old: bool) -> bool {
    let marker = root.clone().join(MARKER);
    let mut listing = store.list(Some(root));
    while let Some(item) = listing.next().await {
        if enc.job.cancel.is_cancelled() {
            return false;
        }
        let meta = match item {
            Ok(meta) => meta,
            Err(e) => {
                enc.job.update(|s| {
                    s.failed += 1;
                    s.last_error = Some(format!("listing: {e}"));
                });
                return false;
            }
        };
        if meta.location == marker
            || is_temporary(&meta.location)
            || super::lake::is_hub_state(root, &meta.location)
        {
            continue;
        }
        if reseal_old {
            enc.job.update(|s| s.scanned += 1);
        }
        match reseal(enc, store, &meta.location, reseal_old).await {
            Ok(Outcome::Current(key)) => enc.job.update(|s| {
                *s.objects_by_key.entry(key).or_default() += 1;
            }),
            Ok(Outcome::Resealed(key, bytes)) => {
                m::resealed();
                enc.job.update(|s| {
                    s.resealed += 1;
                    s.resealed_bytes += bytes;
                    *s.objects_by_key.entry(key).or_default() += 1;
                });
                let pause = Duration::from_secs_f64(bytes as f64 / enc.rate as f64);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = enc.job.cancel.cancelled() => return false,
                }
            }
            Ok(Outcome::Vanished) => enc.job.update(|s| s.vanished += 1),
            Err(e) => {
                tracing::warn!(error = %e, "re-encryption: an object failed");
                enc.job.update(|s| {
                    s.failed += 1;
                    s.last_error = Some(e);
                });
            }
        }
    }
    true
}

/// Files another writer is still writing (object_store's local staging).
fn is_temporary(path: &Path) -> bool {
    path.filename()
        .is_some_and(|n| n.contains("#") || n.ends_with(".update"))
}

enum Outcome {
    Current(String),
    Resealed(String, u64),
    /// Deleted, or changed by another writer, since the listing.
    Vanished,
}

/// The key id of `path`, and with `reseal_old` seals it again with the
/// active key if it is under another one. The rewrite is a conditional
/// update of the version read: an object deleted or rewritten meanwhile
/// is left as it is (never re-created).
async fn reseal(
    enc: &Encryption,
    store: &dyn ObjectStore,
    path: &Path,
    reseal_old: bool,
) -> Result<Outcome, String> {
    let keys = enc.keyring.current();
    let active = keys.active().id().to_owned();
    let head = store
        .get_opts(
            path,
            GetOptions {
                range: Some(GetRange::Bounded(0..HEADER_LEN)),
                ..Default::default()
            },
        )
        .await;
    let head = match head {
        Ok(r) => r.bytes().await.map_err(|e| format!("{path}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Outcome::Vanished),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let header = Header::parse(&head).map_err(|e| format!("{path}: {e}"))?;
    if header.key_id() == active || !reseal_old {
        return Ok(Outcome::Current(header.key_id().to_owned()));
    }
    let got = match store.get(path).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(Outcome::Vanished),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let object = got.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    let header = Header::parse(&object).map_err(|e| format!("{path}: {e}"))?;
    let old = header.key_id().to_owned();
    let key = keys.object_key(header).ok_or_else(|| {
        format!("{path}: sealed with key {old:?}, which is not in the hub's keys")
    })?;
    let plain = key.open(&object).map_err(|e| format!("{path}: {e}"))?;
    let sealed = format::seal(keys.new_object_key(), &plain);
    let put = store
        .put_opts(
            path,
            PutPayload::from(sealed),
            PutOptions {
                mode: PutMode::Update(version),
                ..Default::default()
            },
        )
        .await;
    enc.forget(path);
    match put {
        Ok(_) => Ok(Outcome::Resealed(active, plain.len() as u64)),
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
            Ok(Outcome::Vanished)
        }
        Err(object_store::Error::NotImplemented { .. }) => Err(format!(
            "{path}: this store has no conditional update, which re-encryption needs so that it never re-creates a deleted file (S3: storage.conditional_put = \"etag\")"
        )),
        Err(e) => Err(format!("{path}: {e}")),
    }
}
