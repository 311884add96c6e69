//! Reading and validating a segment.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
};
use parquet::arrow::{ProjectionMask, parquet_to_arrow_field_levels};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::checksum::checksum;
use super::columns::expected_schema;
use super::meta::{encode_tag_columns, from_key_values, keys, tag_columns};
use super::pages::CheckedRowGroups;
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

/// Cheap structural checks before parquet-rs sees the bytes. Returns where
/// the data region (between the leading magic and the footer) ends.
fn check_envelope(bytes: &[u8]) -> Result<u64, SegmentError> {
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
    Ok((len - 8 - footer_len) as u64)
}

/// Checks that every column chunk the footer declares lies inside the data
/// region, before parquet-rs trusts the offsets (it asserts they are not
/// negative, which would panic on a corrupt footer).
fn check_column_chunks(parquet: &ParquetMetaData, data_end: u64) -> Result<(), SegmentError> {
    for (row_group, rg) in parquet.row_groups().iter().enumerate() {
        for (column, chunk) in rg.columns().iter().enumerate() {
            let bad = |reason| SegmentError::BadColumnChunk {
                row_group,
                column,
                reason,
            };
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            let start = u64::try_from(start).map_err(|_| bad("negative page offset"))?;
            let data = u64::try_from(chunk.data_page_offset())
                .map_err(|_| bad("negative data page offset"))?;
            let len = u64::try_from(chunk.compressed_size())
                .map_err(|_| bad("negative compressed size"))?;
            if start < MAGIC.len() as u64 || data < start {
                return Err(bad("page offsets out of order"));
            }
            if start.saturating_add(len) > data_end {
                return Err(bad("extends past the data region"));
            }
        }
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
    let data_end = check_envelope(bytes)?;
    let parquet = guarded(|| Ok(ParquetMetaDataReader::new().parse_and_finish(bytes)?))?;
    check_column_chunks(&parquet, data_end)?;
    let file = parquet.file_metadata();
    let kvs = file
        .key_value_metadata()
        .map_or(&[][..], |kv| kv.as_slice());
    let meta = from_key_values(kvs)?;
    let tags = tag_columns(kvs)?;

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
    // The schema comes from the Parquet schema and `ferry.tag_columns`
    // alone; `ARROW:schema` is never decoded (see `columns`).
    let expected = expected_schema(file.schema_descr(), &tags)?;
    let layout = validate_schema(&expected)?;
    if layout.tags.iter().map(|(_, k)| k).ne(tags.iter()) {
        return Err(SegmentError::BadValue {
            key: keys::TAG_COLUMNS,
            value: encode_tag_columns(&tags),
            expected: "the tag columns in schema order",
        });
    }
    let options = ArrowReaderOptions::new()
        .with_skip_arrow_metadata(true)
        .with_schema(Arc::new(expected));
    let arrow = guarded(|| Ok(ArrowReaderMetadata::try_new(Arc::new(parquet), options)?))?;
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
    // Pages go through `CheckedRowGroups`, which rejects corrupt level data
    // that would make parquet-rs panic; `guarded` stays as a second line.
    let batches: Vec<RecordBatch> = guarded(|| {
        let levels = parquet_to_arrow_field_levels(
            arrow.parquet_schema(),
            ProjectionMask::all(),
            Some(arrow.schema().fields()),
        )?;
        let groups = CheckedRowGroups::new(bytes, Arc::clone(arrow.metadata()));
        let batch_rows = usize::try_from(meta.row_count).map_or(BATCH_ROWS, |n| n.min(BATCH_ROWS));
        let reader =
            ParquetRecordBatchReader::try_new_with_row_groups(&levels, &groups, batch_rows, None)?;
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
