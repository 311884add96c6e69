//! The object store under the tables: on a local disk the log-listing store
//! of `local_log.rs`, elsewhere the one deltalake's factory builds for the
//! URL's scheme; wrapped in [`crate::encryption::store::Sealed`] when
//! `[encryption]` is on.

use std::sync::Arc;

use deltalake::DeltaTableError;
use deltalake::logstore::{StorageConfig, object_store_factories};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use super::config::ResolvedStorage;
use super::local_log::LocalLog;
use crate::encryption::store::Sealed;

/// The store rooted at the URL's scheme and authority, and the URL's path
/// in it; encrypting when `[encryption]` is on.
pub(crate) fn root_store(
    storage: &ResolvedStorage,
    url: &Url,
) -> Result<(Arc<dyn ObjectStore>, Path), DeltaTableError> {
    let (raw, path) = plain_root_store(storage, url)?;
    match &storage.encryption {
        Some(enc) => Ok((Arc::new(Sealed::new(raw, Arc::clone(enc))), path)),
        None => Ok((raw, path)),
    }
}

/// [`root_store`] without the encryption: the raw objects.
pub(crate) fn plain_root_store(
    storage: &ResolvedStorage,
    url: &Url,
) -> Result<(Arc<dyn ObjectStore>, Path), DeltaTableError> {
    if url.scheme() == "file" {
        let path = Path::from_url_path(url.path())
            .map_err(|e| DeltaTableError::Generic(format!("{url}: {e}")))?;
        return Ok((Arc::new(LocalLog::new(LocalFileSystem::new())), path));
    }
    let scheme = Url::parse(&format!("{}://", url.scheme()))
        .map_err(|_| DeltaTableError::InvalidTableLocation(url.to_string()))?;
    let factory = object_store_factories()
        .get(&scheme)
        .map(|f| Arc::clone(f.value()))
        .ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
    let config = StorageConfig::parse_options(storage.options.clone())?;
    factory.parse_url_opts(url, &config)
}
