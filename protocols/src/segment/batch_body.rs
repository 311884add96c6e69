//! Several segments in one upload body (`POST /api/v1/segments/batch`).
//!
//! An agent with a backlog sends its next segments together, so that one
//! request and one table commit carry many of them. The body is:
//!
//! | bytes | content |
//! |---|---|
//! | 4 | the magic [`BATCH_MAGIC`] (`FSB1`) |
//! | 4 | segment length `n`, `u32` little-endian, at least 1 |
//! | `n` | one segment file (see [`crate::segment`]) |
//! | ... | more length + segment pairs, to the end of the body |
//!
//! At least one segment; no bytes after the last one. The frames are only
//! the envelope: each segment is checked on its own by
//! [`read_segment`](super::read_segment), and a bad one is rejected alone.

use bytes::Bytes;

/// The first four bytes of a segment batch.
pub const BATCH_MAGIC: &[u8; 4] = b"FSB1";

/// Why a batch body could not be split into segments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentBatchError {
    #[error("segment batch: the body does not start with FSB1")]
    Magic,
    #[error("segment batch: holds no segment")]
    Empty,
    #[error("segment batch: frame {index} is cut short ({detail})")]
    Truncated { index: usize, detail: String },
    #[error("segment batch: frame {index} is empty")]
    EmptyFrame { index: usize },
    #[error("segment batch: more than {limit} segments")]
    TooMany { limit: usize },
}

/// Builds a batch body from segment files. A file of 4 GiB or more cannot
/// be a segment ([`MAX_SEGMENT_BYTES`](super::MAX_SEGMENT_BYTES)); its
/// length is written as `u32::MAX`, and the reader refuses the batch.
pub fn encode_batch<'a>(segments: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = BATCH_MAGIC.to_vec();
    for file in segments {
        let len = u32::try_from(file.len()).unwrap_or(u32::MAX);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(file);
    }
    body
}

/// Splits a batch body into its segment files (slices of `body`, no copy).
/// At most `limit` segments.
pub fn decode_batch(body: &Bytes, limit: usize) -> Result<Vec<Bytes>, SegmentBatchError> {
    let rest = body
        .strip_prefix(BATCH_MAGIC.as_slice())
        .ok_or(SegmentBatchError::Magic)?;
    let mut at = body.len() - rest.len();
    let mut frames = Vec::new();
    while at < body.len() {
        let index = frames.len();
        if index >= limit {
            return Err(SegmentBatchError::TooMany { limit });
        }
        let head = body
            .get(at..at + 4)
            .ok_or_else(|| SegmentBatchError::Truncated {
                index,
                detail: format!("{} length bytes of 4", body.len() - at),
            })?;
        let mut len = [0u8; 4];
        len.copy_from_slice(head);
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            return Err(SegmentBatchError::EmptyFrame { index });
        }
        at += 4;
        let end = at.checked_add(len).filter(|end| *end <= body.len());
        let Some(end) = end else {
            return Err(SegmentBatchError::Truncated {
                index,
                detail: format!("declares {len} bytes, {} remain", body.len() - at),
            });
        };
        frames.push(body.slice(at..end));
        at = end;
    }
    if frames.is_empty() {
        return Err(SegmentBatchError::Empty);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let files: [&[u8]; 3] = [b"one", b"segment two", b"3"];
        let body = Bytes::from(encode_batch(files));
        let back = decode_batch(&body, 8).unwrap();
        assert_eq!(back, files.map(Bytes::from_static).to_vec());
    }

    #[test]
    fn refusals() {
        let ok = encode_batch([b"abc".as_slice(), b"de"]);
        let decode = |b: &[u8], limit| decode_batch(&Bytes::copy_from_slice(b), limit);
        assert_eq!(decode(b"", 8), Err(SegmentBatchError::Magic));
        assert_eq!(decode(b"PAR1xxxx", 8), Err(SegmentBatchError::Magic));
        assert_eq!(decode(b"FSB1", 8), Err(SegmentBatchError::Empty));
        assert_eq!(decode(&ok, 1), Err(SegmentBatchError::TooMany { limit: 1 }));
        assert!(decode(&ok, 2).is_ok());
        // Cut anywhere but at the end of the first frame (a valid batch of one).
        for cut in (5..ok.len()).filter(|cut| *cut != 4 + 4 + 3) {
            assert!(
                matches!(
                    decode(&ok[..cut], 8),
                    Err(SegmentBatchError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut empty = BATCH_MAGIC.to_vec();
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode(&empty, 8),
            Err(SegmentBatchError::EmptyFrame { index: 0 })
        );
        let mut huge = BATCH_MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(b"x");
        assert!(matches!(
            decode(&huge, 8),
            Err(SegmentBatchError::Truncated { index: 0, .. })
        ));
    }
}
