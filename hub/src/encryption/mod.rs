//! Encryption at rest (`[encryption]`): every object the hub writes to the
//! store, data files and the Delta log alike, is encrypted with AES-256-GCM
//! under a master key that lives in a key file or an environment variable,
//! never in the store or the metadata.
//!
//! The encryption is a layer over the object store ([`store::Sealed`]), so
//! deltalake, delta-kernel, DataFusion, compaction, deletes and
//! checkpoints work unchanged; decision 0017 says why this layer and not
//! Parquet modular encryption, and what it means for other engines.
//!
//! - [`keys`]: the master keys, their source, rotation.
//! - [`format`]: the bytes of an encrypted object.
//! - [`lake`]: the marker that says a store is encrypted, checked at start.
//! - [`reencrypt`]: the job that seals old objects again with the active key.
//! - [`routes`]: `GET /api/v1/admin/keys`, `POST .../rotate`, `POST .../reencrypt`.

pub mod config;
pub(crate) mod format;
pub mod keys;
pub(crate) mod lake;
mod metrics;
pub(crate) mod reencrypt;
pub mod routes;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path;

pub use config::EncryptionConfig;
pub use keys::{KeyError, KeySource, Keyring};
pub use reencrypt::JobState;

use format::Header;

/// The hub's encryption: its keys and what readers share.
#[derive(Debug)]
pub struct Encryption {
    pub(crate) keyring: Keyring,
    headers: Mutex<HashMap<Path, (Header, u64)>>,
    capacity: usize,
    pub(crate) job: reencrypt::Job,
    pub(crate) rate: u64,
    /// Objects being written, per key id (a multipart upload holds its key
    /// from start to completion).
    writers: Mutex<HashMap<String, usize>>,
}

/// One object being written under key `id`; counted until dropped.
#[derive(Debug)]
pub(crate) struct Writing {
    enc: Arc<Encryption>,
    id: String,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Ok(mut w) = self.enc.writers.lock()
            && let Some(n) = w.get_mut(&self.id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(&self.id);
            }
        }
    }
}

impl Encryption {
    /// Reads the keys of `config`; `None` when encryption is off.
    pub fn open(config: &EncryptionConfig) -> Result<Option<Arc<Encryption>>, KeyError> {
        let Some(source) = config.source() else {
            return Ok(None);
        };
        let keyring = Keyring::load(source)?;
        Ok(Some(Arc::new(Encryption::new(keyring, config))))
    }

    pub fn new(keyring: Keyring, config: &EncryptionConfig) -> Encryption {
        Encryption {
            keyring,
            headers: Mutex::new(HashMap::new()),
            capacity: config.header_cache_entries.max(1),
            job: reencrypt::Job::default(),
            rate: config.reencrypt_bytes_per_second.as_u64().max(1),
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a write under key `id` until the guard is dropped.
    pub(crate) fn writing(self: &Arc<Self>, id: &str) -> Writing {
        if let Ok(mut w) = self.writers.lock() {
            *w.entry(id.to_owned()).or_default() += 1;
        }
        Writing {
            enc: Arc::clone(self),
            id: id.to_owned(),
        }
    }

    /// Writes in flight under another key than the active one.
    pub(crate) fn writers_under_old_keys(&self) -> usize {
        let active = self.keyring.current().active().id().to_owned();
        self.writers
            .lock()
            .map(|w| {
                w.iter()
                    .filter(|(id, _)| **id != active)
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0)
    }

    fn cached(&self, path: &Path) -> Option<(Header, u64)> {
        self.headers.lock().ok()?.get(path).cloned()
    }

    /// Keeps a header; a full cache is emptied first (bounded, and cheap:
    /// a miss costs one small read).
    fn remember(&self, path: &Path, header: Header, size: u64) {
        if let Ok(mut h) = self.headers.lock() {
            if h.len() >= self.capacity {
                h.clear();
            }
            h.insert(path.clone(), (header, size));
        }
    }

    fn forget(&self, path: &Path) {
        if let Ok(mut h) = self.headers.lock() {
            h.remove(path);
        }
    }
}

/// Seals `plain` as one object under the active key of `keys`: the bytes
/// the store layer writes (for tools and `ferry-bench`).
pub fn seal_object(keys: &Keyring, plain: &[u8]) -> Vec<u8> {
    format::seal(keys.current().new_object_key(), plain)
}

/// Opens an object [`seal_object`] (or the store layer) wrote.
pub fn open_object(keys: &Keyring, object: &[u8]) -> Result<Vec<u8>, String> {
    let header = Header::parse(object).map_err(|e| e.to_string())?;
    let key = keys
        .current()
        .object_key(header)
        .ok_or("sealed with a key that is not in the keyring")?;
    key.open(object).map_err(|e| e.to_string())
}

/// Starts the re-encryption job over `tables`' store (the raw objects);
/// false if one runs already.
pub(crate) fn start_reencryption(
    tables: &crate::table::Tables,
    enc: &Arc<Encryption>,
) -> Result<bool, crate::table::TableError> {
    let (store, root) = tables.raw_root()?;
    Ok(reencrypt::Job::start(enc, store, root))
}

/// Runs the re-encryption job over `tables`' store to its end and returns
/// its final state (`None`: encryption is off, or a job already runs).
pub async fn reencrypt_to_end(
    tables: &crate::table::Tables,
) -> Result<Option<JobState>, crate::table::TableError> {
    let Some(enc) = tables.encryption() else {
        return Ok(None);
    };
    if !start_reencryption(tables, enc)? {
        return Ok(None);
    }
    loop {
        let state = enc.job.state();
        if !state.running {
            return Ok(Some(state));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
