//! Compressed request bodies: gzip and zstd, detected by magic bytes.
//!
//! HTTP clients (Telegraf's Arc output gzips by default) and MQTT publishers
//! may compress a body. [`decompress`] looks at the first bytes and decides:
//!
//! | first bytes | format | what happens |
//! |---|---|---|
//! | `1f 8b` | gzip (RFC 1952) | decompressed; concatenated members are read in turn |
//! | `28 b5 2f fd` | zstd frame | decompressed; concatenated frames are read in turn |
//! | anything else | — | passed through unchanged, borrowed ([`Cow::Borrowed`]) |
//!
//! The `Content-Encoding` header is not needed and not consulted: neither
//! magic can start a MessagePack map or array (`0x80..=0x9f`, `0xdc..=0xdf`)
//! nor a JSON document, so detection never misreads a plain body.
//!
//! # Guarantees
//!
//! * **Zip-bomb safe.** Output is produced by streaming decoders behind a hard
//!   limit of `max_output` bytes. Nothing is allocated from a size the body
//!   claims; the output buffer grows only as real bytes arrive, and decoding
//!   stops at the first byte past the limit with
//!   [`CompressionError::TooLarge`]. zstd's window is also capped (at 8 MiB,
//!   or the next power of two above `max_output` if that is larger, at most
//!   128 MiB), so a frame header cannot make the decoder reserve a huge window.
//! * **No panics.** A truncated or corrupt body is
//!   [`CompressionError::Corrupt`] with the decoder's reason.
//!
//! The limit applies to decompressed output only: a body that is passed
//! through is already in memory, and the caller bounds its size.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

/// gzip's magic bytes (RFC 1952, ID1 ID2).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// A zstd frame's magic number, little-endian `0xFD2FB528`.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Smallest zstd window log we accept: 8 MiB covers every compression level
/// of the reference encoder when it streams without a pledged size.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
/// zstd's own default limit (128 MiB).
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// A compression format recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Gzip,
    Zstd,
}

impl Format {
    /// The lowercase name (`gzip`, `zstd`), as in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a compressed body could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The decompressed body would exceed the caller's limit.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The body starts with a known magic but is not a valid stream.
    #[error("corrupt {format} body: {reason}")]
    Corrupt { format: Format, reason: String },
}

/// The format whose magic bytes `body` starts with, if any.
pub fn detect(body: &[u8]) -> Option<Format> {
    if body.starts_with(&GZIP_MAGIC) {
        Some(Format::Gzip)
    } else if body.starts_with(&ZSTD_MAGIC) {
        Some(Format::Zstd)
    } else {
        None
    }
}

/// Decompresses `body` if it starts with a gzip or zstd magic, producing at
/// most `max_output` bytes; otherwise returns it unchanged.
pub fn decompress(body: &[u8], max_output: usize) -> Result<Cow<'_, [u8]>, CompressionError> {
    match detect(body) {
        Some(format) => decompress_as(format, body, max_output).map(Cow::Owned),
        None => Ok(Cow::Borrowed(body)),
    }
}

/// Decompresses `body` as `format`, producing at most `max_output` bytes.
pub fn decompress_as(
    format: Format,
    body: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, CompressionError> {
    let corrupt = |e: std::io::Error| CompressionError::Corrupt {
        format,
        reason: e.to_string(),
    };
    match format {
        Format::Gzip => read_capped(flate2::read::MultiGzDecoder::new(body), max_output)
            .map_err(|e| e.map_io(corrupt)),
        Format::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            decoder
                .window_log_max(zstd_window_log(max_output))
                .map_err(corrupt)?;
            read_capped(decoder, max_output).map_err(|e| e.map_io(corrupt))
        }
    }
}

/// The zstd window log for a given output limit (see the module docs).
fn zstd_window_log(max_output: usize) -> u32 {
    let needed = usize::BITS - max_output.saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

enum CapError {
    TooLarge { limit: usize },
    Io(std::io::Error),
}

impl CapError {
    fn map_io(self, f: impl FnOnce(std::io::Error) -> CompressionError) -> CompressionError {
        match self {
            CapError::TooLarge { limit } => CompressionError::TooLarge { limit },
            CapError::Io(e) => f(e),
        }
    }
}

/// Reads `reader` to the end, failing as soon as it yields more than `limit`
/// bytes. The buffer grows with the data actually read.
fn read_capped(reader: impl Read, limit: usize) -> Result<Vec<u8>, CapError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(CapError::Io)?;
    if out.len() > limit {
        return Err(CapError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(detect(&gzip(b"x")), Some(Format::Gzip));
        assert_eq!(detect(&zstd(b"x")), Some(Format::Zstd));
        assert_eq!(detect(b"\x1f"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"\x81\xa1m\xa3cpu"), None);
        assert_eq!(detect(b"{\"value\": 1}"), None);
    }

    #[test]
    fn plain_bodies_pass_through_borrowed() {
        let body = b"\x81\xa1m\xa3cpu";
        let out = decompress(body, 4).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, body);
    }

    #[test]
    fn round_trips_gzip_and_zstd() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for body in [gzip(&data), zstd(&data)] {
            let out = decompress(&body, data.len()).unwrap();
            assert_eq!(&*out, &data[..]);
        }
    }

    #[test]
    fn concatenated_members_and_frames() {
        let mut body = gzip(b"hello ");
        body.extend(gzip(b"world"));
        assert_eq!(&*decompress(&body, 100).unwrap(), b"hello world");
        let mut body = zstd(b"hello ");
        body.extend(zstd(b"world"));
        assert_eq!(&*decompress(&body, 100).unwrap(), b"hello world");
    }

    #[test]
    fn limit_is_exact() {
        let data = vec![7u8; 1000];
        for body in [gzip(&data), zstd(&data)] {
            assert_eq!(decompress(&body, 1000).unwrap().len(), 1000);
            assert_eq!(
                decompress(&body, 999),
                Err(CompressionError::TooLarge { limit: 999 })
            );
        }
    }

    #[test]
    fn zip_bombs_stop_at_the_limit() {
        // 100 MB of zeros, streamed into the encoders so the test itself
        // never holds them.
        let chunk = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        for _ in 0..100 {
            gz.write_all(&chunk).unwrap();
            zs.write_all(&chunk).unwrap();
        }
        let bombs = [gz.finish().unwrap(), zs.finish().unwrap()];
        for bomb in bombs {
            assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
            let start = Instant::now();
            assert_eq!(
                decompress(&bomb, 1 << 20),
                Err(CompressionError::TooLarge { limit: 1 << 20 })
            );
            assert!(start.elapsed() < Duration::from_secs(5));
        }
    }

    #[test]
    fn corrupt_and_truncated_bodies() {
        let data = vec![1u8; 10_000];
        for body in [gzip(&data), zstd(&data)] {
            let format = detect(&body).unwrap();
            let truncated = &body[..body.len() / 2];
            assert!(matches!(
                decompress(truncated, 1 << 20),
                Err(CompressionError::Corrupt { format: f, .. }) if f == format
            ));
            let mut flipped = body.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0xff;
            flipped[mid + 1] ^= 0x55;
            // A flipped byte is either caught by the decoder or by the
            // checksum; it never panics and never returns the original data.
            if let Ok(out) = decompress(&flipped, 1 << 20) {
                assert_ne!(&*out, &data[..]);
            }
        }
        assert!(matches!(
            decompress(&GZIP_MAGIC, 10),
            Err(CompressionError::Corrupt {
                format: Format::Gzip,
                ..
            })
        ));
        assert!(matches!(
            decompress(&ZSTD_MAGIC, 10),
            Err(CompressionError::Corrupt {
                format: Format::Zstd,
                ..
            })
        ));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            CompressionError::TooLarge { limit: 5 }.to_string(),
            "decompressed body exceeds the limit of 5 bytes"
        );
        assert_eq!(zstd_window_log(0), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log(1 << 25), 25);
        assert_eq!(zstd_window_log((1 << 25) + 1), 26);
        assert_eq!(zstd_window_log(usize::MAX), ZSTD_MAX_WINDOW_LOG);
    }
}
