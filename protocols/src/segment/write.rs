//! Writing a segment.

use std::num::NonZeroUsize;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::checksum::checksum;
use super::meta::to_key_values;
use super::{FORMAT_VERSION, SegmentError, SegmentHeader, SegmentMeta};
use crate::batch::{BatchView, first_unsorted_row, validate_schema};

/// How a segment is encoded. The defaults suit a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Rows per Parquet row group.
    pub max_row_group_rows: NonZeroUsize,
    /// zstd level (1..=22). Level 1 is parquet-rs's default and the cheapest
    /// on ARM; higher levels trade CPU for a few percent of size.
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            max_row_group_rows: NonZeroUsize::new(1024 * 1024).unwrap_or(NonZeroUsize::MIN),
            zstd_level: 1,
        }
    }
}

/// Encodes `batch` as a segment with the default [`WriteOptions`].
///
/// `batch` must follow the schema rules, hold at least one row and be
/// sorted by tags then time (as [`ReadingBatch::to_record_batch`](crate::batch::ReadingBatch::to_record_batch)
/// returns it); its rows must
/// all belong to `header.measurement`, which the writer cannot check.
pub fn write_segment(header: &SegmentHeader, batch: &RecordBatch) -> Result<Vec<u8>, SegmentError> {
    write_segment_with(header, batch, &WriteOptions::default())
}

/// Encodes `batch` as a segment with explicit options. See [`write_segment`].
pub fn write_segment_with(
    header: &SegmentHeader,
    batch: &RecordBatch,
    options: &WriteOptions,
) -> Result<Vec<u8>, SegmentError> {
    let schema = batch.schema();
    let layout = validate_schema(&schema)?;
    if batch.num_rows() == 0 {
        return Err(SegmentError::Empty);
    }
    if header.first_reading_id > header.last_reading_id {
        return Err(SegmentError::BadReadingRange {
            first: header.first_reading_id,
            last: header.last_reading_id,
        });
    }
    let views = [BatchView::new(batch, &layout)?];
    if let Some(row) = first_unsorted_row(&views)? {
        return Err(SegmentError::NotSorted { row });
    }
    let times = views[0].time.values();
    let min_time_ns = times.iter().copied().min().ok_or(SegmentError::Empty)?;
    let max_time_ns = times.iter().copied().max().ok_or(SegmentError::Empty)?;
    let meta = SegmentMeta {
        header: header.clone(),
        format_version: FORMAT_VERSION,
        min_time_ns,
        max_time_ns,
        row_count: batch.num_rows() as u64,
        checksum: checksum(&schema, &views),
    };

    let level = ZstdLevel::try_new(options.zstd_level)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.max_row_group_rows.get()))
        .set_key_value_metadata(Some(to_key_values(
            &meta,
            layout.tags.iter().map(|(_, key)| key),
        )))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    writer.write(batch)?;
    Ok(writer.into_inner()?)
}
