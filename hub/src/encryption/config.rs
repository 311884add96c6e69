//! `[encryption]` of `hub.toml`.

use std::path::PathBuf;

use bytesize::ByteSize;
use serde::Deserialize;

use super::keys::KeySource;

/// `[encryption]`: every object the hub writes to the store (data files,
/// the Delta log, checkpoints) encrypted with a master key kept outside the
/// store and the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Off by default. Can be turned on only for an empty store, and a store
    /// written encrypted is refused without it.
    pub enabled: bool,
    /// The key file (`<id>:<64 hex digits>` per line, the last one active).
    /// Created with one new key if it does not exist.
    pub key_file: Option<PathBuf>,
    /// Or an environment variable holding the same entries, comma-separated.
    pub key_env: Option<String>,
    /// How fast the re-encryption job rewrites objects (bytes per second),
    /// so that it does not starve ingest and queries of the store.
    pub reencrypt_bytes_per_second: ByteSize,
    /// Object headers kept in memory for range reads.
    pub header_cache_entries: usize,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: false,
            key_file: None,
            key_env: None,
            reencrypt_bytes_per_second: ByteSize::mib(64),
            header_cache_entries: 100_000,
        }
    }
}

impl EncryptionConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.enabled {
            match (&self.key_file, &self.key_env) {
                (None, None) => errors.push(
                    "encryption.enabled = true needs encryption.key_file or encryption.key_env"
                        .to_owned(),
                ),
                (Some(_), Some(_)) => errors.push(
                    "encryption.key_file and encryption.key_env: set one of them, not both"
                        .to_owned(),
                ),
                _ => {}
            }
        }
        if self.reencrypt_bytes_per_second.as_u64() < 1024 * 1024 {
            errors.push("encryption.reencrypt_bytes_per_second: must be at least 1 MiB".to_owned());
        }
        if self.header_cache_entries == 0 {
            errors.push("encryption.header_cache_entries: must be at least 1".to_owned());
        }
    }

    /// Where the keys come from, when encryption is on.
    pub fn source(&self) -> Option<KeySource> {
        if !self.enabled {
            return None;
        }
        match (&self.key_file, &self.key_env) {
            (Some(f), _) => Some(KeySource::File(f.clone())),
            (None, Some(v)) => Some(KeySource::Env(v.clone())),
            (None, None) => None,
        }
    }
}
