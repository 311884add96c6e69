//! `PutMode::Update` on a local disk, which `LocalFileSystem` does not
//! offer: replace a file only if it still exists and is still the version
//! read (its e-tag), never re-creating one deleted meanwhile.
//!
//! The new content is written to a temporary file beside the target and
//! swapped with it atomically (`renameat2(RENAME_EXCHANGE)`), which fails
//! when the target is gone. The file swapped out is then the version that
//! was replaced: if its e-tag is not the expected one, the swap is undone
//! and the update refused. The re-encryption job uses it, so that a file
//! vacuum deleted stays deleted.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{PutPayload, PutResult, Result, UpdateVersion};
use rustix::fs::{CWD, RenameFlags, renameat_with};

const STORE: &str = "LocalFileSystem";

/// The e-tag `LocalFileSystem` gives a file: inode, modification time in
/// µs and size, in hex (object_store's `get_etag`, which is private).
fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{:x}-{mtime:x}-{:x}", meta.ino(), meta.len())
}

fn precondition(location: &Path, why: &str) -> object_store::Error {
    object_store::Error::Precondition {
        path: location.to_string(),
        source: why.into(),
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

/// Replaces `location` with `payload` if its e-tag is still `expected`.
pub(crate) async fn update(
    fs: &LocalFileSystem,
    location: &Path,
    payload: PutPayload,
    expected: UpdateVersion,
) -> Result<PutResult> {
    let target = fs.path_to_filesystem(location)?;
    let location = location.clone();
    tokio::task::spawn_blocking(move || {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.{:016x}.update", rand::random::<u64>()));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            for chunk in payload.iter() {
                f.write_all(chunk)?;
            }
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(generic(e));
        }
        if let Err(e) = renameat_with(CWD, &tmp, CWD, &target, RenameFlags::EXCHANGE) {
            let _ = std::fs::remove_file(&tmp);
            return Err(if e == rustix::io::Errno::NOENT {
                precondition(&location, "the object no longer exists")
            } else {
                generic(std::io::Error::from(e))
            });
        }
        // `tmp` now holds the version that was replaced.
        let replaced = std::fs::metadata(&tmp).map(|m| etag(&m));
        if replaced.as_ref().ok() != expected.e_tag.as_ref() {
            let _ = renameat_with(CWD, &tmp, CWD, &target, RenameFlags::EXCHANGE);
            let _ = std::fs::remove_file(&tmp);
            return Err(precondition(
                &location,
                "the object changed since it was read",
            ));
        }
        std::fs::remove_file(&tmp).map_err(generic)?;
        let e_tag = std::fs::metadata(&target).map(|m| etag(&m)).ok();
        Ok(PutResult {
            e_tag,
            version: None,
        })
    })
    .await
    .map_err(generic)?
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

    use super::*;

    #[tokio::test]
    async fn an_update_replaces_only_the_version_read_and_never_recreates() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let path = Path::from("t/f.parquet");
        fs.put(&path, PutPayload::from_static(b"one"))
            .await
            .unwrap();
        let read = fs.head(&path).await.unwrap();
        let version = UpdateVersion {
            e_tag: read.e_tag.clone(),
            version: None,
        };
        // The version read: replaced.
        update(&fs, &path, PutPayload::from_static(b"two"), version.clone())
            .await
            .unwrap();
        assert_eq!(
            &fs.get(&path).await.unwrap().bytes().await.unwrap()[..],
            b"two"
        );
        // A stale version: refused, the newer content kept.
        let err = update(&fs, &path, PutPayload::from_static(b"old"), version.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::Precondition { .. }),
            "{err}"
        );
        assert_eq!(
            &fs.get(&path).await.unwrap().bytes().await.unwrap()[..],
            b"two"
        );
        // Deleted meanwhile: stays deleted.
        fs.delete(&path).await.unwrap();
        let err = update(&fs, &path, PutPayload::from_static(b"back"), version)
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::Precondition { .. }),
            "{err}"
        );
        assert!(fs.head(&path).await.is_err());
        // Only the file itself is ever left in the directory.
        assert_eq!(std::fs::read_dir(dir.path().join("t")).unwrap().count(), 0);
        // Through LocalLog's put_opts.
        let log = super::super::local_log::LocalLog::new(
            LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
        );
        log.put(&path, PutPayload::from_static(b"a")).await.unwrap();
        let e_tag = log.head(&path).await.unwrap().e_tag;
        log.put_opts(
            &path,
            PutPayload::from_static(b"b"),
            PutOptions {
                mode: PutMode::Update(UpdateVersion {
                    e_tag,
                    version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            &log.get(&path).await.unwrap().bytes().await.unwrap()[..],
            b"b"
        );
    }
}
