//! Received files on disk, before and while their job reads them.
//!
//! | path under `import.spool_dir` | what |
//! |---|---|
//! | `incoming/<uuid>` | a file being received in one request (deleted at start: a crash left it half written) |
//! | `uploads/<sha256>.part` | a resumable upload, appended by `PUT /api/v1/import/uploads/{sha256}` (deleted after `import.upload_ttl` untouched) |
//! | `jobs/<job id>` | the file of a queued or running job (deleted when the job ends) |
//!
//! Every file is hashed (SHA-256) as it arrives, so a job's content hash
//! costs no second read. A resumable upload's hash state is kept in memory
//! between its requests, and rebuilt from its `.part` file after a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_protocols::api::ErrorCode;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::config::ImportConfig;
use crate::server::ApiError;

/// A file fully received.
#[derive(Debug)]
pub(crate) struct Received {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub file_name: Option<String>,
}

/// Removes its file when dropped, unless disarmed (`.0 = None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Debug, Clone)]
struct Partial {
    hasher: Sha256,
    len: u64,
}

type Slot = Arc<tokio::sync::Mutex<Option<Partial>>>;

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_file: u64,
    idle: Duration,
    upload_ttl: Duration,
    max_partial: usize,
    uploads: Mutex<HashMap<String, Slot>>,
}

fn io_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("{what}: {e}"))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the file is over the limit of {max} bytes (import.max_file_size)"),
    )
}

fn idle(timeout: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!(
            "no bytes for {} (import.idle_timeout); the upload was dropped",
            humantime::format_duration(timeout)
        ),
    )
}

/// Checks a SHA-256 given by a client (64 lowercase hex digits).
pub(crate) fn check_sha(sha: &str) -> Result<(), ApiError> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{sha:?} is not a SHA-256 (64 lowercase hex digits)"
        )))
    }
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, config: &ImportConfig) -> Self {
        Spool {
            dir,
            max_file: config.max_file_size.as_u64(),
            idle: config.idle_timeout,
            upload_ttl: config.upload_ttl,
            max_partial: config.max_partial_uploads,
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn sub(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn part(&self, sha: &str) -> PathBuf {
        self.sub("uploads").join(format!("{sha}.part"))
    }

    /// Where job `id` keeps its file.
    pub(crate) fn job_path(&self, id: &str) -> PathBuf {
        self.sub("jobs").join(id)
    }

    /// Creates the directories and removes what a crash or a long absence
    /// left: half-received files, and uploads older than `upload_ttl`.
    pub(crate) fn prepare(&self) -> std::io::Result<()> {
        for d in ["incoming", "uploads", "jobs"] {
            std::fs::create_dir_all(self.sub(d))?;
        }
        for entry in std::fs::read_dir(self.sub("incoming"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        self.expire_uploads();
        Ok(())
    }

    fn expire_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(self.sub("uploads")) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.upload_ttl);
            if old {
                let _ = std::fs::remove_file(entry.path());
                let name = entry.file_name().to_string_lossy().replace(".part", "");
                if let Ok(mut map) = self.uploads.lock() {
                    map.remove(&name);
                }
            }
        }
    }

    /// Writes `stream` to a new file under `incoming/`, hashing it.
    pub(crate) async fn receive<S, E>(
        &self,
        stream: S,
        file_name: Option<String>,
    ) -> Result<Received, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.sub("incoming").join(uuid::Uuid::new_v4().to_string());
        // A request dropped mid-body (the client went away) leaves no file.
        let mut cleanup = RemoveOnDrop(Some(path.clone()));
        let (sha256, bytes) = self.write_new(&path, stream).await?;
        cleanup.0 = None;
        Ok(Received {
            path,
            sha256,
            bytes,
            file_name,
        })
    }

    async fn write_new<S, E>(&self, path: &Path, mut stream: S) -> Result<(String, u64), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| io_error("cannot create the spool file", e))?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        loop {
            let next = tokio::time::timeout(self.idle, stream.next())
                .await
                .map_err(|_| idle(self.idle))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("the upload broke off after {len} bytes: {e}"))
            })?;
            len += chunk.len() as u64;
            if len > self.max_file {
                return Err(too_large(self.max_file));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("writing the spool file", e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| io_error("syncing the spool file", e))?;
        Ok((hex::encode(hasher.finalize()), len))
    }

    fn slot(&self, sha: &str) -> Slot {
        let mut map = self
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(sha.to_owned()).or_default().clone()
    }

    /// The hash state of upload `sha`, rebuilt from its file if this
    /// process has not seen it (`None`: no such upload).
    async fn partial(&self, sha: &str, slot: &mut Option<Partial>) -> Result<(), ApiError> {
        if slot.is_some() {
            return Ok(());
        }
        let path = self.part(sha);
        if !path.exists() {
            return Ok(());
        }
        let rebuilt = tokio::task::spawn_blocking(move || -> std::io::Result<Partial> {
            let mut file = std::fs::File::open(&path)?;
            let mut hasher = Sha256::new();
            let len = std::io::copy(&mut file, &mut hasher)?;
            Ok(Partial { hasher, len })
        })
        .await
        .map_err(|e| io_error("hashing the upload", e))?
        .map_err(|e| io_error("reading the upload", e))?;
        *slot = Some(rebuilt);
        Ok(())
    }

    /// Bytes received of upload `sha` (0 when there is none).
    pub(crate) async fn received(&self, sha: &str) -> Result<u64, ApiError> {
        check_sha(sha)?;
        let slot = self.slot(sha);
        let mut guard = slot.lock().await;
        self.partial(sha, &mut guard).await?;
        Ok(guard.as_ref().map_or(0, |p| p.len))
    }

    fn partial_count(&self) -> usize {
        std::fs::read_dir(self.sub("uploads")).map_or(0, |d| d.count())
    }

    /// Appends `bytes` to upload `sha` at `offset`, which must be what was
    /// received so far (409 with the right offset otherwise).
    pub(crate) async fn append(
        &self,
        sha: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<u64, ApiError> {
        check_sha(sha)?;
        let slot = self.slot(sha);
        let mut guard = slot.lock().await;
        self.partial(sha, &mut guard).await?;
        let have = guard.as_ref().map_or(0, |p| p.len);
        if offset != have {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("upload {sha} has {have} bytes; send from offset {have}, not {offset}"),
            ));
        }
        if guard.is_none() {
            self.expire_uploads();
            if self.partial_count() >= self.max_partial {
                return Err(ApiError::unavailable(format!(
                        "{} resumable uploads are open (import.max_partial_uploads); finish or delete one",
                        self.max_partial
                    ))
                    .with_retry_after(60));
            }
        }
        let len = have + bytes.len() as u64;
        if len > self.max_file {
            return Err(too_large(self.max_file));
        }
        let path = self.part(sha);
        // At `have`, after cutting anything past it (bytes of a write that
        // failed half way): the file always holds exactly what the hash
        // state has seen.
        let piece = bytes.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::{Seek, SeekFrom, Write};
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.set_len(have)?;
            file.seek(SeekFrom::Start(have))?;
            file.write_all(&piece)?;
            file.sync_data()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let mut partial = guard.take().unwrap_or(Partial {
            hasher: Sha256::new(),
            len: 0,
        });
        if let Err(e) = written {
            // The file may hold part of the bytes: forget the state, it is
            // rebuilt from the file on the next request.
            return Err(io_error("writing the upload", e));
        }
        partial.hasher.update(&bytes);
        partial.len = len;
        *guard = Some(partial);
        Ok(len)
    }

    /// Drops upload `sha`.
    pub(crate) async fn discard_upload(&self, sha: &str) -> Result<bool, ApiError> {
        check_sha(sha)?;
        let slot = self.slot(sha);
        let mut guard = slot.lock().await;
        *guard = None;
        let existed = tokio::fs::remove_file(self.part(sha)).await.is_ok();
        if let Ok(mut map) = self.uploads.lock() {
            map.remove(sha);
        }
        Ok(existed)
    }

    /// Takes upload `sha` for a job: its bytes must hash to `sha` (400
    /// otherwise, and the upload is dropped: it cannot be completed).
    pub(crate) async fn take_upload(&self, sha: &str) -> Result<Received, ApiError> {
        check_sha(sha)?;
        let slot = self.slot(sha);
        let mut guard = slot.lock().await;
        self.partial(sha, &mut guard).await?;
        let Some(partial) = guard.take() else {
            return Err(ApiError::not_found(format!("no upload {sha}")));
        };
        let got = hex::encode(partial.hasher.finalize());
        let path = self.part(sha);
        let on_disk = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        if on_disk != partial.len {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::unavailable(format!(
                "upload {sha} holds {on_disk} bytes on disk, not the {} received; it was dropped, send the file again",
                partial.len
            )));
        }
        if got != sha {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::bad_request(format!(
                "the {} bytes received hash to {got}, not {sha}; the upload was dropped, send the file again",
                partial.len
            )));
        }
        let to = self.sub("incoming").join(uuid::Uuid::new_v4().to_string());
        tokio::fs::rename(&path, &to)
            .await
            .map_err(|e| io_error("moving the upload", e))?;
        Ok(Received {
            path: to,
            sha256: got,
            bytes: partial.len,
            file_name: None,
        })
    }
}
