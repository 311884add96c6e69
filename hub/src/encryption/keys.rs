//! The master keys: read from a key file or an environment variable, never
//! from the metadata store, and never logged or returned by the API (a key
//! shows as its id and a fingerprint).
//!
//! Both sources hold entries `<id>:<64 hex digits>` (32 random bytes, as
//! `openssl rand -hex 32` prints them), one per line in a file, separated by
//! newlines or commas in the variable; `#` starts a comment. The last entry
//! is the active key: new objects are sealed with it, and every listed key
//! opens the objects sealed with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::format::{Header, MAX_KEY_ID, ObjectKey};

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// Why the keys cannot be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("{0}: cannot read or write: {1}")]
    Io(String, std::io::Error),
    #[error(
        "{0} holds no new key: add one as its last entry (the hub cannot change its own environment), then restart or rotate"
    )]
    NothingNew(String),
}

/// One master key.
pub(crate) struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// A short, one-way fingerprint: tells keys apart without revealing them.
    pub(crate) fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"ferry key fingerprint v1");
        h.update(self.bytes.as_ref());
        hex::encode(&h.finalize()[..8])
    }
}

/// The keys of one reading of the source; the last is active.
#[derive(Debug)]
pub(crate) struct KeySet {
    keys: Vec<MasterKey>,
}

impl KeySet {
    pub(crate) fn active(&self) -> &MasterKey {
        // `parse` refuses an empty set.
        &self.keys[self.keys.len() - 1]
    }

    pub(crate) fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub(crate) fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    /// A fresh object key under the active key.
    pub(crate) fn new_object_key(&self) -> ObjectKey {
        let mut salt = [0u8; 16];
        // The system RNG failing is not something to write data through.
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the system random number generator works");
        let active = self.active();
        ObjectKey::derive(&active.bytes, Header::new(&active.id, salt))
    }

    /// The object key of an existing object's header.
    pub(crate) fn object_key(&self, header: Header) -> Option<ObjectKey> {
        let master = self.get(header.key_id())?;
        Some(ObjectKey::derive(&master.bytes, header))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parses the entries of a source. Errors name the entry, never its key.
pub(crate) fn parse(text: &str, source: &KeySource) -> Result<KeySet, KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        source_name: source.to_string(),
        message,
    };
    let mut keys: Vec<MasterKey> = Vec::new();
    let entries = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty());
    for (n, entry) in entries.enumerate() {
        let n = n + 1;
        let Some((id, key)) = entry.split_once(':') else {
            return Err(invalid(format!("entry {n} is not <id>:<64 hex digits>")));
        };
        let id = id.trim();
        if !valid_id(id) {
            // Not echoed: a swapped entry would put the key here.
            return Err(invalid(format!(
                "entry {n}: the key id (before the colon) must be 1 to {MAX_KEY_ID} of A-Z a-z 0-9 - _ ."
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        if hex::decode_to_slice(key.trim(), bytes.as_mut()).is_err() {
            return Err(invalid(format!(
                "entry {n} (key {id}): the key must be 64 hex digits (32 bytes; `openssl rand -hex 32`)"
            )));
        }
        if keys.iter().any(|k| k.id == id) {
            return Err(invalid(format!("key id {id} is listed twice")));
        }
        keys.push(MasterKey {
            id: id.to_owned(),
            bytes,
        });
    }
    if keys.is_empty() {
        return Err(invalid("holds no key".to_owned()));
    }
    Ok(KeySet { keys })
}

/// The keys in use, reloadable at run time.
#[derive(Debug)]
pub struct Keyring {
    source: KeySource,
    set: RwLock<Arc<KeySet>>,
    /// One rotation at a time: two would read the same file and each
    /// append its own key, and the first one's key would be lost.
    rotation: std::sync::Mutex<()>,
    /// The key file did not exist and this start created it.
    created: bool,
}

/// What a rotation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rotated {
    pub previous: String,
    pub active: String,
    /// True when the hub made the new key itself (key file only).
    pub generated: bool,
}

impl Keyring {
    /// Reads the keys. A key file that does not exist yet is created with
    /// one new key (mode 0600), so a first start needs no key ceremony;
    /// the log says to back it up.
    pub fn load(source: KeySource) -> Result<Keyring, KeyError> {
        let mut created = false;
        if let KeySource::File(path) = &source
            && !path.exists()
        {
            let id = new_key_id(None);
            let text = Zeroizing::new(format!(
                "# Ferry hub master keys: <id>:<hex>; the last one seals new data.\n# Without this file the lake cannot be read: back it up apart from the store.\n{}\n",
                new_entry(&id).as_str()
            ));
            write_key_file(path, &text)?;
            created = true;
            tracing::warn!(path = %path.display(), key_id = %id, "created a new encryption key file: back it up, the lake cannot be read without it");
        }
        let set = read(&source)?;
        warn_if_readable(&source);
        Ok(Keyring {
            source,
            set: RwLock::new(Arc::new(set)),
            rotation: std::sync::Mutex::new(()),
            created,
        })
    }

    /// Whether this start created the key file (a store that is already
    /// encrypted then refuses it: its key file went missing).
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Keys from text, for tests and tools.
    pub fn from_text(text: &str) -> Result<Keyring, KeyError> {
        let source = KeySource::Env("(inline)".to_owned());
        let set = parse(text, &source)?;
        Ok(Keyring {
            source,
            set: RwLock::new(Arc::new(set)),
            rotation: std::sync::Mutex::new(()),
            created: false,
        })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    fn replace(&self, set: KeySet) {
        match self.set.write() {
            Ok(mut s) => *s = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
    }

    /// Makes a new key active: the source's last entry if it is new;
    /// otherwise, for a key file, a key the hub generates and appends.
    pub fn rotate(&self) -> Result<Rotated, KeyError> {
        let _one = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.current().active().id.clone();
        let reread = read(&self.source)?;
        if reread.active().id != previous {
            let active = reread.active().id.clone();
            self.replace(reread);
            return Ok(Rotated {
                previous,
                active,
                generated: false,
            });
        }
        let KeySource::File(path) = &self.source else {
            return Err(KeyError::NothingNew(self.source.to_string()));
        };
        let mut updated = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| KeyError::Io(self.source.to_string(), e))?,
        );
        let id = new_key_id(Some(&reread));
        if !updated.ends_with('\n') {
            updated.push('\n');
        }
        updated.push_str(&new_entry(&id));
        updated.push('\n');
        write_key_file(path, &updated)?;
        let set = read(&self.source)?;
        self.replace(set);
        Ok(Rotated {
            previous,
            active: id,
            generated: true,
        })
    }
}

fn read(source: &KeySource) -> Result<KeySet, KeyError> {
    let text = match source {
        KeySource::File(path) => Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| KeyError::Io(source.to_string(), e))?,
        ),
        KeySource::Env(var) => {
            Zeroizing::new(std::env::var(var).map_err(|_| KeyError::Invalid {
                source_name: source.to_string(),
                message: "is not set (or not UTF-8)".to_owned(),
            })?)
        }
    };
    parse(&text, source)
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .expect("the system random number generator works");
    bytes
}

/// `k<UTC time>-<4 random hex digits>` (hubs sharing a store do not pick the
/// same id for different keys), made unique against `existing`.
fn new_key_id(existing: Option<&KeySet>) -> String {
    loop {
        let id = format!(
            "k{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            hex::encode(random::<2>().as_ref())
        );
        if existing.is_none_or(|s| s.get(&id).is_none()) {
            return id;
        }
    }
}

fn new_entry(id: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("{id}:{}", hex::encode(random::<32>().as_ref())))
}

/// Replaces the key file atomically (temporary file, fsync, rename), mode 0600.
fn write_key_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let io = |e| KeyError::Io(KeySource::File(path.to_owned()).to_string(), e);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    // A new file of our own (never one already there, nor a symlink's
    // target), private from the start, removed if anything fails.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(random::<8>().as_ref())
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn warn_if_readable(source: &KeySource) {
    #[cfg(unix)]
    if let KeySource::File(path) = source {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the encryption key file can be read by other users: chmod 600 it");
        }
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
