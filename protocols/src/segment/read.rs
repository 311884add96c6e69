//! Reading and validating a segment.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaDataReader;

use super::checksum::checksum;
use super::meta::{from_key_values, keys};
use super::{Segment, SegmentError, SegmentMeta};
use crate::batch::{BatchView, SchemaLayout, first_unsorted_row, validate_schema};

/// Largest segment file accepted, in bytes (512 MiB).
pub const MAX_SEGMENT_BYTES: usize = 512 * 1024 * 1024;
/// Largest uncompressed size a segment's footer may declare (2 GiB).
pub const MAX_DECODED_BYTES: u64 = 2 * 1024 * 1024 * 1024;

const MAGIC: &[u8; 4] = b"PAR1";
/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

/// Runs `f`, turning a panic inside parquet-rs into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, SegmentError>) -> Result<T, SegmentError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(SegmentError::DecoderPanic))
}

/// Cheap structural checks before parquet-rs sees the bytes.
fn check_envelope(bytes: &[u8]) -> Result<(), SegmentError> {
    let len = bytes.len();
    if len < 12 {
        return Err(SegmentError::TooShort { len });
    }
    if len > MAX_SEGMENT_BYTES {
        return Err(SegmentError::TooLarge {
            len,
            max: MAX_SEGMENT_BYTES,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(SegmentError::BadMagic { at: "start" });
    }
    if !bytes.ends_with(MAGIC) {
        return Err(SegmentError::BadMagic { at: "end" });
    }
    let mut footer_len = [0u8; 4];
    footer_len.copy_from_slice(&bytes[len - 8..len - 4]);
    let footer_len = u32::from_le_bytes(footer_len) as usize;
    if footer_len.saturating_add(12) > len {
        return Err(SegmentError::Truncated { footer_len, len });
    }
    Ok(())
}

/// The footer, parsed and checked: metadata, Arrow schema and layout.
struct Opened {
    meta: SegmentMeta,
    arrow: ArrowReaderMetadata,
    layout: SchemaLayout,
}

fn open(bytes: &Bytes) -> Result<Opened, SegmentError> {
    check_envelope(bytes)?;
    let parquet = guarded(|| Ok(ParquetMetaDataReader::new().parse_and_finish(bytes)?))?;
    let file = parquet.file_metadata();
    let meta = from_key_values(file.key_value_metadata().map_or(&[], |kv| kv.as_slice()))?;

    let footer_rows = u64::try_from(file.num_rows()).unwrap_or(u64::MAX);
    if footer_rows != meta.row_count {
        return Err(SegmentError::RowCountMismatch {
            metadata: meta.row_count,
            actual: footer_rows,
            source_of_truth: "Parquet footer",
        });
    }
    let mut group_rows = 0u64;
    let mut declared = 0u64;
    for rg in parquet.row_groups() {
        group_rows = group_rows.saturating_add(u64::try_from(rg.num_rows()).unwrap_or(u64::MAX));
        declared = declared.saturating_add(u64::try_from(rg.total_byte_size()).unwrap_or(u64::MAX));
    }
    if group_rows != meta.row_count {
        return Err(SegmentError::RowCountMismatch {
            metadata: meta.row_count,
            actual: group_rows,
            source_of_truth: "sum of row groups",
        });
    }
    if declared > MAX_DECODED_BYTES {
        return Err(SegmentError::TooMuchData {
            declared,
            max: MAX_DECODED_BYTES,
        });
    }
    let arrow = guarded(|| {
        Ok(ArrowReaderMetadata::try_new(
            Arc::new(parquet),
            ArrowReaderOptions::new(),
        )?)
    })?;
    let layout = validate_schema(arrow.schema())?;
    Ok(Opened {
        meta,
        arrow,
        layout,
    })
}

/// Reads and checks only the footer: cheap validation before a decode.
///
/// Checks the size bounds, the magic, the format version, every `ferry.*`
/// key, the schema rules and the footer's row counts. It does not check the
/// data (time range, sort order, checksum); [`read_segment`] does.
pub fn read_segment_meta(bytes: &Bytes) -> Result<SegmentMeta, SegmentError> {
    Ok(open(bytes)?.meta)
}

/// Decodes a segment and checks everything the format promises (see the
/// [module docs](super)). Never panics on input where panics unwind.
pub fn read_segment(bytes: Bytes) -> Result<Segment, SegmentError> {
    let Opened {
        meta,
        arrow,
        layout,
    } = open(&bytes)?;
    let batches: Vec<RecordBatch> = guarded(|| {
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, arrow)
            .with_batch_size(BATCH_ROWS)
            .build()?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    })?;

    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    if rows != meta.row_count {
        return Err(SegmentError::RowCountMismatch {
            metadata: meta.row_count,
            actual: rows,
            source_of_truth: "decoded data",
        });
    }
    let views = batches
        .iter()
        .map(|b| BatchView::new(b, &layout))
        .collect::<Result<Vec<_>, _>>()?;
    let times = views.iter().flat_map(|v| v.time.values().iter().copied());
    let (min, max) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if min != meta.min_time_ns {
        return Err(SegmentError::TimeMismatch {
            key: keys::MIN_TIME_NS,
            metadata: meta.min_time_ns,
            actual: min,
        });
    }
    if max != meta.max_time_ns {
        return Err(SegmentError::TimeMismatch {
            key: keys::MAX_TIME_NS,
            metadata: meta.max_time_ns,
            actual: max,
        });
    }
    if let Some(row) = first_unsorted_row(&views)? {
        return Err(SegmentError::NotSorted { row });
    }
    let schema = batches.first().ok_or(SegmentError::Empty)?.schema();
    let actual = checksum(&schema, &views);
    if actual != meta.checksum {
        return Err(SegmentError::ChecksumMismatch {
            metadata: meta.checksum,
            actual,
        });
    }
    Ok(Segment { meta, batches })
}
