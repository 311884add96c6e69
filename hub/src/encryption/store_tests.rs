use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::super::{Encryption, EncryptionConfig, Keyring};
use super::*;

const K1: &str = "k1:0101010101010101010101010101010101010101010101010101010101010101";
const K2: &str = "k2:0202020202020202020202020202020202020202020202020202020202020202";

fn sealed(inner: &Arc<InMemory>, keys: &str) -> Sealed {
    let enc = Encryption::new(
        Keyring::from_text(keys).unwrap(),
        &EncryptionConfig::default(),
    );
    Sealed::new(inner.clone(), Arc::new(enc))
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

#[tokio::test]
async fn reads_writes_lists_in_plaintext_and_stores_ciphertext() {
    let inner = Arc::new(InMemory::new());
    let store = sealed(&inner, K1);
    let path = Path::from("db/m/part-0.parquet");
    let plain = data(300_000);
    store
        .put(&path, PutPayload::from(plain.clone()))
        .await
        .unwrap();

    let raw = inner.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&raw[..8], b"FERRYENC");
    assert_eq!(raw.len() as u64, format::cipher_len(300_000));

    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        plain
    );
    assert_eq!(store.head(&path).await.unwrap().size, 300_000);
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(listed[0].size, 300_000);
    let listed = store
        .list_with_delimiter(Some(&Path::from("db/m")))
        .await
        .unwrap();
    assert_eq!(listed.objects[0].size, 300_000);

    for r in [0..8, 299_992..300_000, 65_530..131_080, 100..100] {
        let got = store.get_range(&path, r.clone()).await.unwrap();
        assert_eq!(&got[..], &plain[r.start as usize..r.end as usize]);
    }
    let ranges = [5..70_000, 200_000..299_999];
    let got = store.get_ranges(&path, &ranges).await.unwrap();
    for (g, r) in got.iter().zip(&ranges) {
        assert_eq!(&g[..], &plain[r.start as usize..r.end as usize]);
    }
    let suffix = store
        .get_opts(
            &path,
            GetOptions {
                range: Some(GetRange::Suffix(10)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(suffix.range, 299_990..300_000);
    assert_eq!(suffix.meta.size, 300_000);
    assert_eq!(&suffix.bytes().await.unwrap()[..], &plain[299_990..]);
    assert!(store.get_range(&path, 300_001..300_002).await.is_err());
}

#[tokio::test]
async fn multipart_uploads_seal_their_parts() {
    let inner = Arc::new(InMemory::new());
    let store = sealed(&inner, K1);
    let path = Path::from("big");
    let plain = data(PART_PLAIN * 2 + 12_345);
    let upload = store.put_multipart(&path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 1_000_003);
    for piece in plain.chunks(777_777) {
        writer.write(piece);
    }
    writer.finish().await.unwrap();
    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        plain
    );
    let raw = inner.head(&path).await.unwrap();
    assert_eq!(raw.size, format::cipher_len(plain.len() as u64));
}

#[tokio::test]
async fn old_keys_keep_opening_what_they_sealed() {
    let inner = Arc::new(InMemory::new());
    let old = Path::from("old");
    let new = Path::from("new");
    sealed(&inner, K1)
        .put(&old, PutPayload::from(data(10)))
        .await
        .unwrap();
    let both = sealed(&inner, &format!("{K1}\n{K2}"));
    both.put(&new, PutPayload::from(data(20))).await.unwrap();
    let raw = inner.get(&new).await.unwrap().bytes().await.unwrap();
    assert_eq!(Header::parse(&raw).unwrap().key_id(), "k2");
    assert_eq!(
        both.get(&old).await.unwrap().bytes().await.unwrap(),
        data(10)
    );
    assert_eq!(
        both.get(&new).await.unwrap().bytes().await.unwrap(),
        data(20)
    );
    // Without k1, the old object is refused with its key named.
    let only_new = sealed(&inner, K2);
    let err = only_new.get(&old).await.unwrap_err().to_string();
    assert!(err.contains("\"k1\""), "{err}");
    // Plaintext put in behind the hub's back is refused, not served.
    inner
        .put(&Path::from("plain"), PutPayload::from_static(b"PAR1 hello"))
        .await
        .unwrap();
    let err = both
        .get(&Path::from("plain"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an encrypted object"), "{err}");
}

#[tokio::test]
async fn a_range_read_survives_its_object_being_sealed_again() {
    let inner = Arc::new(InMemory::new());
    let reader = sealed(&inner, &format!("{K1}\n{K2}"));
    let path = Path::from("f");
    sealed(&inner, K1)
        .put(&path, PutPayload::from(data(100_000)))
        .await
        .unwrap();
    // Caches k1's header.
    assert_eq!(
        &reader.get_range(&path, 0..4).await.unwrap()[..],
        &data(4)[..]
    );
    // Another hub (or the job) seals it again under k2.
    sealed(&inner, &format!("{K1}\n{K2}"))
        .put(&path, PutPayload::from(data(100_000)))
        .await
        .unwrap();
    let got = reader.get_range(&path, 70_000..70_010).await.unwrap();
    assert_eq!(&got[..], &data(100_000)[70_000..70_010]);
}

#[tokio::test]
async fn a_truncated_object_is_an_error_not_a_panic() {
    let inner = Arc::new(InMemory::new());
    let store = sealed(&inner, K1);
    let path = Path::from("f");
    store
        .put(&path, PutPayload::from(data(200_000)))
        .await
        .unwrap();
    // Caches the header and size.
    store.get_range(&path, 0..4).await.unwrap();
    // Cut at a chunk boundary behind the hub's back.
    let raw = inner.get(&path).await.unwrap().bytes().await.unwrap();
    let cut = (format::HEADER_LEN + format::CHUNK + format::TAG) as usize;
    inner
        .put(&path, PutPayload::from(raw.slice(..cut)))
        .await
        .unwrap();
    assert!(store.get_range(&path, 60_000..140_000).await.is_err());
    assert!(store.get(&path).await.is_err());
    // An empty suffix is empty, as object_store answers it.
    let other = Path::from("g");
    store.put(&other, PutPayload::from(data(10))).await.unwrap();
    let empty = store
        .get_opts(
            &other,
            GetOptions {
                range: Some(GetRange::Suffix(0)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(empty.bytes().await.unwrap().is_empty());
}
