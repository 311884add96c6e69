//! The marker object that says a store is encrypted: written (in plaintext)
//! when an encrypting hub first opens an empty store, and checked at every
//! start, so that a hub never mixes plaintext and encrypted tables, and a
//! hub started without the keys says so instead of failing on every read.

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::format::{HEADER_LEN, Header};
use super::{Encryption, KeySource};

/// The marker's name in the store's root.
pub(crate) const MARKER: &str = "_ferry_encryption.json";

/// Checks (and on first use writes) the marker at `root` of `store` (the
/// store without encryption).
pub(crate) async fn check(
    store: &dyn ObjectStore,
    root: &Path,
    encryption: Option<&Encryption>,
    root_url: &str,
) -> Result<(), String> {
    let marker = root.clone().join(MARKER);
    let exists = match store.head(&marker).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => return Err(format!("{root_url}: cannot read {MARKER}: {e}")),
    };
    match (encryption, exists) {
        (Some(enc), true) => keys_fit(store, root, enc, root_url).await,
        (None, false) => Ok(()),
        (None, true) => Err(format!(
            "the store at {root_url} is encrypted (it has {MARKER}): set [encryption] enabled = true with its key_file or key_env"
        )),
        (Some(_), false) => {
            let listing = store
                .list_with_delimiter(Some(root))
                .await
                .map_err(|e| format!("{root_url}: cannot list: {e}"))?;
            if !listing.common_prefixes.is_empty() {
                return Err(format!(
                    "the store at {root_url} holds tables written without encryption; [encryption] can be turned on only for an empty store (query the old hub and write into a new, encrypted one)"
                ));
            }
            let body = serde_json::json!({
                "ferry_encryption": 1,
                "format": "FERRYENC v1: AES-256-GCM in 64 KiB chunks, HKDF-SHA256 object keys",
                "created": chrono::Utc::now().to_rfc3339(),
            });
            let put = store
                .put_opts(
                    &marker,
                    PutPayload::from(body.to_string().into_bytes()),
                    PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    },
                )
                .await;
            match put {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(format!("{root_url}: cannot write {MARKER}: {e}")),
            }
        }
    }
}

/// Where the hubs of a lake keep their shared state (the metadata log, the
/// maintenance lease, the fleet files): plain objects, never sealed, so the
/// key checks and the re-encryption job pass them by.
pub(crate) const HUB_STATE_DIR: &str = "_ferry";

/// Whether `path` is hub state under `root` ([`HUB_STATE_DIR`]).
pub(crate) fn is_hub_state(root: &Path, path: &Path) -> bool {
    path.prefix_match(&root.clone().join(HUB_STATE_DIR))
        .is_some()
}

/// An encrypted store and the hub's keys belong together: a key file this
/// start created (the real one went missing) is removed again and refused,
/// and the first object found must be under a key the hub holds.
async fn keys_fit(
    store: &dyn ObjectStore,
    root: &Path,
    enc: &Encryption,
    root_url: &str,
) -> Result<(), String> {
    if enc.keyring.created() {
        if let KeySource::File(path) = enc.keyring.source() {
            let _ = std::fs::remove_file(path);
        }
        return Err(format!(
            "the store at {root_url} is encrypted, but the {} did not exist (a new one was made and removed again): restore the key file",
            enc.keyring.source()
        ));
    }
    let marker = root.clone().join(MARKER);
    let mut listing = store.list(Some(root));
    while let Some(item) = listing.next().await {
        let meta = item.map_err(|e| format!("{root_url}: cannot list: {e}"))?;
        if meta.location == marker || meta.size < HEADER_LEN || is_hub_state(root, &meta.location) {
            continue;
        }
        let head = store
            .get_range(&meta.location, 0..HEADER_LEN)
            .await
            .map_err(|e| format!("{}: {e}", meta.location))?;
        let header = Header::parse(&head).map_err(|e| format!("{}: {e}", meta.location))?;
        if enc.keyring.current().get(header.key_id()).is_none() {
            return Err(format!(
                "the store at {root_url} holds objects sealed with key {:?}, which the {} does not have",
                header.key_id(),
                enc.keyring.source()
            ));
        }
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_state_is_the_ferry_directory_only() {
        let root = Path::from("bucket/lake");
        for (path, state) in [
            (
                "bucket/lake/_ferry/meta/log/00000000000000000001.json",
                true,
            ),
            (
                "bucket/lake/_ferry/lease/maintenance/00000000000000000001.beat",
                true,
            ),
            ("bucket/lake/_ferry/fleet/abc.json", true),
            ("bucket/lake/_ferry_encryption.json", false),
            (
                "bucket/lake/plant/boiler/_delta_log/00000000000000000000.json",
                false,
            ),
            ("bucket/other/_ferry/meta/log/1.json", false),
        ] {
            assert_eq!(is_hub_state(&root, &Path::from(path)), state, "{path}");
        }
    }
}
