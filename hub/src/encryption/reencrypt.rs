//! The re-encryption job: reads every object of the store and seals the
//! ones under an older key again with the active key, at
//! `encryption.reencrypt_bytes_per_second`. After it finishes without
//! failures, no object needs the older keys, and they can be removed from
//! the key source.
//!
//! An object keeps its plaintext, so its size and everything the Delta log
//! says about it stay true; a reader that holds the old header reads the
//! header again ([`super::store`]). An object deleted while the job runs
//! (compaction, retention) is skipped. The job is idempotent: run again, it
//! rewrites only what is still under an old key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetRange, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
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
    pub(crate) fn start(
        enc: &Arc<Encryption>,
        store: Arc<dyn ObjectStore>,
        root: Path,
    ) -> bool {
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
    let marker = root.clone().join(MARKER);
    let mut listing = store.list(Some(root));
    while let Some(item) = listing.next().await {
        if enc.job.cancel.is_cancelled() {
            return;
        }
        let meta = match item {
            Ok(meta) => meta,
            Err(e) => {
                enc.job.update(|s| {
                    s.failed += 1;
                    s.last_error = Some(format!("listing: {e}"));
                });
                return;
            }
        };
        if meta.location == marker {
            continue;
        }
        enc.job.update(|s| s.scanned += 1);
        match reseal(enc, store, &meta.location).await {
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
                    () = enc.job.cancel.cancelled() => return,
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
}

enum Outcome {
    Current(String),
    Resealed(String, u64),
    Vanished,
}

/// Seals `path` again with the active key if it is under another one.
async fn reseal(enc: &Encryption, store: &dyn ObjectStore, path: &Path) -> Result<Outcome, String> {
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
    if header.key_id() == active {
        return Ok(Outcome::Current(active));
    }
    let object = match store.get(path).await {
        Ok(r) => r.bytes().await.map_err(|e| format!("{path}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Outcome::Vanished),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let header = Header::parse(&object).map_err(|e| format!("{path}: {e}"))?;
    let old = header.key_id().to_owned();
    let key = keys
        .object_key(header)
        .ok_or_else(|| format!("{path}: sealed with key {old:?}, which is not in the hub's keys"))?;
    let plain = key.open(&object).map_err(|e| format!("{path}: {e}"))?;
    let sealed = format::seal(keys.new_object_key(), &plain);
    store
        .put(path, PutPayload::from(sealed))
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    enc.forget(path);
    Ok(Outcome::Resealed(active, plain.len() as u64))
}
