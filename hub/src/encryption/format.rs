//! The bytes of an encrypted object.
//!
//! ```text
//! header (64 bytes): "FERRYENC" | version 1 | key id length | key id (32, zero-padded)
//!                    | salt (16) | 6 zero bytes
//! chunk 0:           AES-256-GCM(64 KiB of plaintext) | tag (16)
//! ...
//! chunk n (last):    AES-256-GCM(0..64 KiB - 1 bytes) | tag (16)
//! ```
//!
//! Each object has its own AES-256-GCM key, derived with HKDF-SHA256 from
//! the master key named in the header and the header's random salt, so no
//! (key, nonce) pair repeats across objects. A chunk's nonce is its index
//! and whether it is the last chunk; the header is every chunk's associated
//! data. The last chunk is always shorter than a full chunk (empty when the
//! plaintext is a multiple of 64 KiB), so a full chunk is never the last
//! one: an upload can seal full chunks as they arrive, and an object cut at
//! a chunk boundary fails to open instead of reading as a shorter file.
//!
//! The sizes are fixed functions of each other ([`cipher_len`],
//! [`plain_len`]), so a listing reports plaintext sizes without reading
//! anything, and a range of the plaintext maps to whole chunks.

use std::ops::Range;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// The first bytes of every encrypted object.
pub(crate) const MAGIC: &[u8; 8] = b"FERRYENC";
const VERSION: u8 = 1;
/// Bytes before the first chunk.
pub(crate) const HEADER_LEN: u64 = 64;
/// Plaintext bytes of a full chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;
/// The GCM tag after each chunk.
pub(crate) const TAG: u64 = 16;
/// The longest key id.
pub(crate) const MAX_KEY_ID: usize = 32;
const SALT_LEN: usize = 16;
const HKDF_INFO: &[u8] = b"ferry object key v1";

/// Why an object cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("not an encrypted object (it has no Ferry encryption header)")]
    NotEncrypted,
    #[error("encryption format version {0} is not supported")]
    Version(u8),
    #[error("the encryption header is damaged")]
    BadHeader,
    #[error("an encrypted object of {0} bytes has an impossible length (truncated?)")]
    Length(u64),
    #[error("chunk {0} does not authenticate: wrong key, or the object was changed")]
    Authentication(u64),
}

/// An object's header: which master key, and the salt of its object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    bytes: [u8; HEADER_LEN as usize],
}

impl Header {
    /// A header for a new object. `key_id` is at most [`MAX_KEY_ID`] bytes
    /// (the keyring checks it).
    pub(crate) fn new(key_id: &str, salt: [u8; SALT_LEN]) -> Header {
        let mut bytes = [0u8; HEADER_LEN as usize];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8] = VERSION;
        let id = &key_id.as_bytes()[..key_id.len().min(MAX_KEY_ID)];
        bytes[9] = id.len() as u8;
        bytes[10..10 + id.len()].copy_from_slice(id);
        bytes[42..58].copy_from_slice(&salt);
        Header { bytes }
    }

    /// Reads a header from the first bytes of an object.
    pub(crate) fn parse(data: &[u8]) -> Result<Header, FormatError> {
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(FormatError::NotEncrypted);
        }
        if data.len() < HEADER_LEN as usize {
            return Err(FormatError::BadHeader);
        }
        if data[8] != VERSION {
            return Err(FormatError::Version(data[8]));
        }
        let id_len = usize::from(data[9]);
        if id_len == 0
            || id_len > MAX_KEY_ID
            || std::str::from_utf8(&data[10..10 + id_len]).is_err()
        {
            return Err(FormatError::BadHeader);
        }
        let mut bytes = [0u8; HEADER_LEN as usize];
        bytes.copy_from_slice(&data[..HEADER_LEN as usize]);
        Ok(Header { bytes })
    }

    /// The id of the master key the object is sealed with.
    pub(crate) fn key_id(&self) -> &str {
        let len = usize::from(self.bytes[9]);
        std::str::from_utf8(&self.bytes[10..10 + len]).unwrap_or("")
    }

    fn salt(&self) -> &[u8] {
        &self.bytes[42..58]
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The ciphertext length of `plain` bytes of plaintext.
pub(crate) fn cipher_len(plain: u64) -> u64 {
    HEADER_LEN + (plain / CHUNK) * (CHUNK + TAG) + plain % CHUNK + TAG
}

/// The plaintext length of an encrypted object of `cipher` bytes.
pub(crate) fn plain_len(cipher: u64) -> Result<u64, FormatError> {
    let body = cipher
        .checked_sub(HEADER_LEN + TAG)
        .ok_or(FormatError::Length(cipher))?;
    let (full, rest) = (body / (CHUNK + TAG), body % (CHUNK + TAG));
    if rest >= CHUNK {
        return Err(FormatError::Length(cipher));
    }
    Ok(full * CHUNK + rest)
}

/// The chunks holding plaintext `range` of an object of `plain` bytes, and
/// where they are in the ciphertext. `range` must lie within `0..plain`.
pub(crate) fn chunks_for(range: &Range<u64>, plain: u64) -> (Range<u64>, Range<u64>) {
    let last_chunk = plain / CHUNK;
    let first = range.start / CHUNK;
    let last = if range.end <= range.start {
        first
    } else {
        (range.end - 1) / CHUNK
    };
    let start = HEADER_LEN + first * (CHUNK + TAG);
    let end = if last >= last_chunk {
        cipher_len(plain)
    } else {
        HEADER_LEN + (last + 1) * (CHUNK + TAG)
    };
    (first..last.min(last_chunk) + 1, start..end)
}

/// The AES-256-GCM key of one object.
pub(crate) struct ObjectKey {
    key: LessSafeKey,
    header: Header,
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectKey({})", self.header.key_id())
    }
}

impl ObjectKey {
    /// Derives the object key of `header` from its master key.
    pub(crate) fn derive(master: &[u8; 32], header: Header) -> ObjectKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, header.salt()).extract(master);
        // Both only fail for output lengths HKDF-SHA256 cannot make; 32
        // bytes is always possible.
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .expect("HKDF-SHA256 makes 32 bytes");
        let key = LessSafeKey::new(UnboundKey::from(okm));
        ObjectKey { key, header }
    }

    fn nonce(index: u64, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }

    /// Appends chunk `index` of `plain` to `out`.
    fn seal_chunk(&self, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Self::nonce(index, last),
                Aad::from(self.header.bytes()),
                &mut out[at..],
            )
            .expect("a chunk is far below GCM's length limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Decrypts the chunks `first..` laid out in `cipher` (whole chunks from
    /// chunk `first`), of an object with `plain` bytes of plaintext.
    pub(crate) fn open_chunks(
        &self,
        first: u64,
        cipher: &[u8],
        plain: u64,
    ) -> Result<Vec<u8>, FormatError> {
        self.open_chunks_in_place(first, cipher.to_vec(), plain)
    }

    /// [`ObjectKey::open_chunks`] in `data` itself: each chunk is opened
    /// where it lies and its plaintext moved down over the tags before it,
    /// so a read costs no copy beyond that move.
    pub(crate) fn open_chunks_in_place(
        &self,
        first: u64,
        mut data: Vec<u8>,
        plain: u64,
    ) -> Result<Vec<u8>, FormatError> {
        let last_chunk = plain / CHUNK;
        let sealed_len = (CHUNK + TAG) as usize;
        let mut at = 0;
        let mut written = 0;
        let mut index = first;
        while at < data.len() {
            let end = (at + sealed_len).min(data.len());
            if index > last_chunk || end - at < TAG as usize {
                return Err(FormatError::Authentication(index));
            }
            let opened = self
                .key
                .open_in_place(
                    Self::nonce(index, index == last_chunk),
                    Aad::from(self.header.bytes()),
                    &mut data[at..end],
                )
                .map_err(|_| FormatError::Authentication(index))?
                .len();
            data.copy_within(at..at + opened, written);
            written += opened;
            at = end;
            index += 1;
        }
        data.truncate(written);
        Ok(data)
    }

    /// Decrypts a whole object (header included).
    pub(crate) fn open(&self, object: &[u8]) -> Result<Vec<u8>, FormatError> {
        let plain = plain_len(object.len() as u64)?;
        self.open_chunks(0, &object[HEADER_LEN as usize..], plain)
    }
}

/// Seals a stream of plaintext chunk by chunk: full chunks as soon as they
/// are complete, the short last chunk at [`Sealer::finish`].
pub(crate) struct Sealer {
    key: ObjectKey,
    next: u64,
    pending: Vec<u8>,
    header_written: bool,
}

/// Shows no plaintext.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({:?}, chunk {})", self.key, self.next)
    }
}

impl Sealer {
    pub(crate) fn new(key: ObjectKey) -> Sealer {
        Sealer {
            key,
            next: 0,
            pending: Vec::new(),
            header_written: false,
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(self.key.header.bytes());
            self.header_written = true;
        }
    }

    /// Takes `data`; returns the ciphertext that is final so far.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 4096 + 64);
        self.start(&mut out);
        let chunk = CHUNK as usize;
        if !self.pending.is_empty() {
            let take = (chunk - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == chunk {
                let pending = std::mem::take(&mut self.pending);
                self.key.seal_chunk(self.next, false, &pending, &mut out);
                self.next += 1;
            }
        }
        while data.len() >= chunk {
            self.key
                .seal_chunk(self.next, false, &data[..chunk], &mut out);
            self.next += 1;
            data = &data[chunk..];
        }
        self.pending.extend_from_slice(data);
        out
    }

    /// The rest of the ciphertext: the short last chunk.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pending.len() + HEADER_LEN as usize + 16);
        self.start(&mut out);
        let pending = std::mem::take(&mut self.pending);
        self.key.seal_chunk(self.next, true, &pending, &mut out);
        out
    }
}

/// Seals a whole object.
pub(crate) fn seal(key: ObjectKey, plain: &[u8]) -> Vec<u8> {
    let mut sealer = Sealer::new(key);
    let mut out = sealer.push(plain);
    out.extend_from_slice(&sealer.finish());
    out
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
