//! The object store that encrypts: every object written through it is
//! sealed ([`super::format`]) with the active key, every read is opened
//! with the key its header names, and sizes in listings and metadata are
//! plaintext sizes, so deltalake, delta-kernel and DataFusion read and
//! write the tables through it unchanged.
//!
//! A range read fetches only the chunks it covers. It needs the object's
//! header, kept in [`super::Encryption`]'s bounded cache; a header that no
//! longer opens the chunks (the object was re-encrypted since) is read
//! again once.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};

use super::Encryption;
use super::format::{self, FormatError, HEADER_LEN, Header, ObjectKey, Sealer};
use super::metrics as m;

const STORE: &str = "Encrypted";

/// An object store whose objects are encrypted at rest.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    inner: Arc<dyn ObjectStore>,
    enc: Arc<Encryption>,
}

impl std::fmt::Display for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encrypted({})", self.inner)
    }
}

fn error(path: &Path, e: impl std::fmt::Display) -> object_store::Error {
    m::failed();
    object_store::Error::Generic {
        store: STORE,
        source: format!("{path}: {e}").into(),
    }
}

/// Plaintext sizes in a listing. An object that is not encrypted (the
/// lake's marker) keeps its size.
fn plain_meta(mut meta: ObjectMeta) -> ObjectMeta {
    if let Ok(size) = format::plain_len(meta.size) {
        meta.size = size;
    }
    meta
}

impl Sealed {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, enc: Arc<Encryption>) -> Sealed {
        Sealed { inner, enc }
    }

    fn object_key(&self, path: &Path, header: Header) -> Result<ObjectKey> {
        let id = header.key_id().to_owned();
        self.enc
            .keyring
            .current()
            .object_key(header)
            .ok_or_else(|| {
                error(
                    path,
                    format!("sealed with key {id:?}, which is not in the hub's keys"),
                )
            })
    }

    /// The header and ciphertext size of `path`, from the cache or the store.
    async fn header(&self, path: &Path, options: &GetOptions) -> Result<(Header, u64)> {
        if let Some(hit) = self.enc.cached(path) {
            return Ok(hit);
        }
        let result = self
            .inner
            .get_opts(
                path,
                GetOptions {
                    range: Some(GetRange::Bounded(0..HEADER_LEN)),
                    ..precondition(options)
                },
            )
            .await?;
        let size = result.meta.size;
        let bytes = result.bytes().await?;
        let header = Header::parse(&bytes).map_err(|e| error(path, e))?;
        self.enc.remember(path, header.clone(), size);
        Ok((header, size))
    }

    /// Decrypts a whole object.
    fn open_all(&self, path: &Path, object: &[u8]) -> Result<Vec<u8>> {
        let header = Header::parse(object).map_err(|e| error(path, e))?;
        let key = self.object_key(path, header)?;
        let plain = key.open(object).map_err(|e| error(path, e))?;
        m::opened(plain.len());
        Ok(plain)
    }

    /// Reads the plaintext ranges `resolve` picks from the object's
    /// plaintext size, in one go. The ranges are picked again when a stale
    /// header is read again.
    async fn read_ranges(
        &self,
        path: &Path,
        resolve: &(dyn Fn(u64) -> Result<Vec<Range<u64>>> + Send + Sync),
        options: &GetOptions,
    ) -> Result<(Vec<Bytes>, Vec<Range<u64>>, ObjectMeta)> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (header, cipher) = self.header(path, options).await?;
            let plain = format::plain_len(cipher).map_err(|e| error(path, e))?;
            let key = self.object_key(path, header)?;
            let ranges = resolve(plain)?;
            let mut chunks = Vec::with_capacity(ranges.len());
            for r in &ranges {
                if r.end > plain || r.start > r.end {
                    return Err(out_of_range(path, r, plain));
                }
                chunks.push(format::chunks_for(r, plain));
            }
            let cipher_ranges: Vec<Range<u64>> = chunks.iter().map(|(_, c)| c.clone()).collect();
            let (fetched, meta) = if cipher_ranges.len() == 1 {
                let result = self
                    .inner
                    .get_opts(
                        path,
                        GetOptions {
                            range: Some(GetRange::Bounded(cipher_ranges[0].clone())),
                            ..precondition(options)
                        },
                    )
                    .await?;
                let meta = result.meta.clone();
                (vec![result.bytes().await?], Some(meta))
            } else {
                (self.inner.get_ranges(path, &cipher_ranges).await?, None)
            };
            let mut out = Vec::with_capacity(ranges.len());
            let mut failed = None;
            for ((r, (index, cipher_range)), bytes) in ranges.iter().zip(&chunks).zip(fetched) {
                // A store clips a range past the object's end: a shorter
                // answer means the object changed since its header was read.
                if bytes.len() as u64 != cipher_range.end - cipher_range.start {
                    failed = Some(FormatError::Length(bytes.len() as u64));
                    break;
                }
                // The fetched buffer is normally ours alone: opened in place.
                let data = match bytes.try_into_mut() {
                    Ok(mine) => Vec::from(mine),
                    Err(shared) => shared.to_vec(),
                };
                match key.open_chunks_in_place(index.start, data, plain) {
                    Ok(opened) => {
                        let from = (r.start - index.start * format::CHUNK) as usize;
                        let to = from + (r.end - r.start) as usize;
                        if to > opened.len() {
                            failed = Some(FormatError::Length(opened.len() as u64));
                            break;
                        }
                        m::opened(to - from);
                        out.push(Bytes::from(opened).slice(from..to));
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => {
                    let meta = match meta {
                        Some(mut meta) => {
                            meta.size = plain;
                            meta
                        }
                        None => ObjectMeta {
                            location: path.clone(),
                            last_modified: chrono::Utc::now(),
                            size: plain,
                            e_tag: None,
                            version: None,
                        },
                    };
                    return Ok((out, ranges, meta));
                }
                // The object may have been sealed again since its header
                // was cached: read the header again, once.
                Some(FormatError::Authentication(_) | FormatError::Length(_)) if tries == 1 => {
                    self.enc.forget(path);
                }
                Some(e) => return Err(error(path, e)),
            }
        }
    }

    async fn get_range_opts(
        &self,
        path: &Path,
        range: GetRange,
        options: GetOptions,
    ) -> Result<GetResult> {
        let resolve = move |plain: u64| -> Result<Vec<Range<u64>>> {
            let wanted = match &range {
                GetRange::Bounded(r) => r.start..r.end.min(plain),
                GetRange::Offset(o) => *o..plain,
                GetRange::Suffix(n) => plain.saturating_sub(*n)..plain,
            };
            let empty_suffix = matches!(range, GetRange::Suffix(0));
            if wanted.start > wanted.end || (wanted.start >= plain && plain > 0 && !empty_suffix) {
                return Err(out_of_range(path, &wanted, plain));
            }
            Ok(vec![wanted])
        };
        // One range: fetched with `get_opts`, so `meta` is the object's.
        let (mut bytes, ranges, meta) = self.read_ranges(path, &resolve, &options).await?;
        let data = bytes.pop().unwrap_or_default();
        let wanted = ranges.into_iter().next().unwrap_or(0..0);
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(data) }).boxed()),
            meta,
            range: wanted,
            attributes: Default::default(),
        })
    }
}

fn out_of_range(path: &Path, r: &Range<u64>, plain: u64) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!(
            "{path}: range {}..{} is outside the object's {plain} bytes",
            r.start, r.end
        )
        .into(),
    }
}

/// The options of `o` that are about which object, not which bytes.
fn precondition(o: &GetOptions) -> GetOptions {
    GetOptions {
        if_match: o.if_match.clone(),
        if_none_match: o.if_none_match.clone(),
        if_modified_since: o.if_modified_since,
        if_unmodified_since: o.if_unmodified_since,
        version: o.version.clone(),
        ..Default::default()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Sealed {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut plain = Vec::with_capacity(payload.content_length());
        for part in payload.iter() {
            plain.extend_from_slice(part);
        }
        let keys = self.enc.keyring.current();
        let _writing = self.enc.writing(keys.active().id());
        let sealed = format::seal(keys.new_object_key(), &plain);
        m::sealed(plain.len());
        self.enc.forget(location);
        self.inner
            .put_opts(location, PutPayload::from(sealed), opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let keys = self.enc.keyring.current();
        let writing = self.enc.writing(keys.active().id());
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        self.enc.forget(location);
        Ok(Box::new(SealedUpload {
            inner,
            sealer: Some(Sealer::new(keys.new_object_key())),
            buffer: Vec::new(),
            _writing: writing,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            let mut result = self.inner.get_opts(location, options).await?;
            result.meta = plain_meta(result.meta);
            result.range = 0..result.meta.size;
            return Ok(result);
        }
        if let Some(range) = options.range.clone() {
            return self.get_range_opts(location, range, options).await;
        }
        let result = self.inner.get_opts(location, options).await?;
        let mut meta = result.meta.clone();
        let attributes = result.attributes.clone();
        let object = result.bytes().await?;
        let plain = self.open_all(location, &object)?;
        meta.size = plain.len() as u64;
        Ok(GetResult {
            range: 0..meta.size,
            meta,
            attributes,
            payload: GetResultPayload::Stream(
                stream::once(async move { Ok(Bytes::from(plain)) }).boxed(),
            ),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = ranges.to_vec();
        let (bytes, _, _) = self
            .read_ranges(
                location,
                &move |_| Ok(wanted.clone()),
                &GetOptions::default(),
            )
            .await?;
        Ok(bytes)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let enc = self.enc.clone();
        let locations = locations
            .map(move |p| {
                if let Ok(p) = &p {
                    enc.forget(p);
                }
                p
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix).map(|m| m.map(plain_meta)).boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner
            .list_with_offset(prefix, offset)
            .map(|m| m.map(plain_meta))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = result.objects.into_iter().map(plain_meta).collect();
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.enc.forget(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.enc.forget(from);
        self.enc.forget(to);
        self.inner.rename_opts(from, to, options).await
    }
}

/// Plaintext gathered before it is sealed and sent as one part: a multiple
/// of the chunk size, and above S3's 5 MiB minimum part size once sealed.
const PART_PLAIN: usize = 128 * format::CHUNK as usize;

/// A multipart upload that seals its parts.
struct SealedUpload {
    inner: Box<dyn MultipartUpload>,
    sealer: Option<Sealer>,
    /// Plaintext not sealed yet.
    buffer: Vec<u8>,
    /// Counts the upload under its key until it is dropped.
    _writing: super::Writing,
}

/// Shows no plaintext.
impl std::fmt::Debug for SealedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedUpload({:?}, {} bytes buffered)",
            self.inner,
            self.buffer.len()
        )
    }
}

#[async_trait]
impl MultipartUpload for SealedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for b in data.iter() {
            self.buffer.extend_from_slice(b);
        }
        if self.buffer.len() < PART_PLAIN {
            return Box::pin(async { Ok(()) });
        }
        let Some(sealer) = self.sealer.as_mut() else {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: STORE,
                    source: "part after completion".into(),
                })
            });
        };
        let take = self.buffer.len() - self.buffer.len() % PART_PLAIN;
        let sealed = sealer.push(&self.buffer[..take]);
        m::sealed(take);
        self.buffer.drain(..take);
        self.inner.put_part(PutPayload::from(sealed))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let Some(mut sealer) = self.sealer.take() else {
            return Err(object_store::Error::Generic {
                store: STORE,
                source: "upload already completed".into(),
            });
        };
        let rest = std::mem::take(&mut self.buffer);
        let mut sealed = sealer.push(&rest);
        sealed.extend_from_slice(&sealer.finish());
        m::sealed(rest.len());
        self.inner.put_part(PutPayload::from(sealed)).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.sealer = None;
        self.buffer.clear();
        self.inner.abort().await
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
