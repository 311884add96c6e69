//! Page checks: the definition levels of every data page are checked before
//! parquet-rs decodes them.
//!
//! parquet-rs 59 trusts the run headers of the RLE / bit-packed hybrid
//! encoding: a bit-packed run that claims more bytes than the page holds
//! makes its fast path for nullable columns slice past the end and panic, and
//! so does a `BIT_PACKED` level section longer than the page, or a level
//! encoding it does not expect. This module hands parquet-rs the pages of a
//! segment through a [`RowGroups`] whose page readers reject such pages with
//! an error first. Pages are decompressed once, as before; the check only
//! walks the run headers.

use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::RowGroups;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::serialized_reader::SerializedPageReader;

/// The row groups of one segment, read from memory with checked pages.
pub(crate) struct CheckedRowGroups {
    bytes: Arc<Bytes>,
    metadata: Arc<ParquetMetaData>,
}

impl CheckedRowGroups {
    pub(crate) fn new(bytes: Bytes, metadata: Arc<ParquetMetaData>) -> Self {
        CheckedRowGroups {
            bytes: Arc::new(bytes),
            metadata,
        }
    }
}

impl RowGroups for CheckedRowGroups {
    fn num_rows(&self) -> usize {
        // The caller checked that every count is non-negative and that they
        // sum to `ferry.row_count`.
        self.metadata
            .row_groups()
            .iter()
            .map(|rg| usize::try_from(rg.num_rows()).unwrap_or(0))
            .sum()
    }

    fn column_chunks(&self, i: usize) -> Result<Box<dyn PageIterator>> {
        let max_def_level = self
            .metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .get(i)
            .map(|c| c.max_def_level())
            .ok_or_else(|| ParquetError::General(format!("no column {i}")))?;
        Ok(Box::new(ColumnChunks {
            bytes: Arc::clone(&self.bytes),
            metadata: Arc::clone(&self.metadata),
            column: i,
            max_def_level,
            next_group: 0,
        }))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.metadata.row_groups().iter())
    }

    fn metadata(&self) -> &ParquetMetaData {
        &self.metadata
    }
}

/// The page readers of one column, one per row group.
struct ColumnChunks {
    bytes: Arc<Bytes>,
    metadata: Arc<ParquetMetaData>,
    column: usize,
    max_def_level: i16,
    next_group: usize,
}

impl Iterator for ColumnChunks {
    type Item = Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rg = self.metadata.row_groups().get(self.next_group)?;
        self.next_group += 1;
        let reader = rg
            .columns()
            .get(self.column)
            .ok_or_else(|| ParquetError::General(format!("row group lacks column {}", self.column)))
            .and_then(|chunk| {
                let rows = usize::try_from(rg.num_rows()).unwrap_or(0);
                SerializedPageReader::new(Arc::clone(&self.bytes), chunk, rows, None)
            })
            .map(|inner| {
                Box::new(CheckedPages {
                    inner,
                    max_def_level: self.max_def_level,
                    rows_left: u64::try_from(rg.num_rows()).unwrap_or(0),
                }) as Box<dyn PageReader>
            });
        Some(reader)
    }
}

impl PageIterator for ColumnChunks {}

/// A page reader that checks each data page's definition levels, and that
/// the pages of a column chunk hold no more values than its row group has
/// rows (segment columns are flat: one value per row). Without that, a few
/// bytes of run-length encoding can claim billions of values.
struct CheckedPages {
    inner: SerializedPageReader<Bytes>,
    max_def_level: i16,
    rows_left: u64,
}

impl Iterator for CheckedPages {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for CheckedPages {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        let page = self.inner.get_next_page()?;
        if let Some(page) = &page {
            let values = match page {
                Page::DataPage { num_values, .. } | Page::DataPageV2 { num_values, .. } => {
                    u64::from(*num_values)
                }
                _ => 0,
            };
            self.rows_left = self.rows_left.checked_sub(values).ok_or_else(|| {
                ParquetError::General(
                    "corrupt data page: more values than the row group has rows".to_owned(),
                )
            })?;
            check_page(page, self.max_def_level)
                .map_err(|why| ParquetError::General(format!("corrupt data page: {why}")))?;
        }
        Ok(page)
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.inner.skip_next_page()
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        self.inner.at_record_boundary()
    }
}

/// Bits per level for levels up to `max` (0 for 0).
fn bit_width(max: i16) -> u32 {
    u16::try_from(max).map_or(0, |m| u16::BITS - m.leading_zeros())
}

/// Checks the definition level section of a data page.
pub(crate) fn check_page(page: &Page, max_def_level: i16) -> Result<(), &'static str> {
    let width = bit_width(max_def_level);
    match page {
        Page::DataPage {
            buf,
            num_values,
            def_level_encoding,
            ..
        } if width > 0 => match def_level_encoding {
            Encoding::RLE => {
                let len = buf.get(..4).ok_or("level length missing")?;
                let mut prefix = [0u8; 4];
                prefix.copy_from_slice(len);
                let len = u32::from_le_bytes(prefix) as usize;
                let levels = buf
                    .get(4..4usize.saturating_add(len))
                    .ok_or("level section longer than the page")?;
                check_hybrid(levels, width)
            }
            #[allow(deprecated)]
            Encoding::BIT_PACKED => {
                let bits = u64::from(*num_values) * u64::from(width);
                if bits.div_ceil(8) > buf.len() as u64 {
                    return Err("level section longer than the page");
                }
                Ok(())
            }
            _ => Err("unsupported definition level encoding"),
        },
        Page::DataPageV2 {
            buf,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let start = *rep_levels_byte_len as usize;
            let end = start.saturating_add(*def_levels_byte_len as usize);
            let levels = buf
                .get(start..end)
                .ok_or("level sections longer than the page")?;
            if width > 0 {
                check_hybrid(levels, width)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Walks the runs of an RLE / bit-packed hybrid stream of `width`-bit
/// values: every run header must be a valid ULEB128 of at most 10 bytes and
/// every run must fit in `data`.
fn check_hybrid(data: &[u8], width: u32) -> Result<(), &'static str> {
    let value_bytes = width.div_ceil(8) as usize;
    let mut at = 0usize;
    while at < data.len() {
        let mut header = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = *data.get(at).ok_or("truncated run header")?;
            at += 1;
            if shift >= 63 && byte > 1 {
                return Err("run header overflows");
            }
            header |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift >= 70 {
                return Err("run header too long");
            }
        }
        let left = (data.len() - at) as u64;
        if header & 1 == 1 {
            // A bit-packed run of `groups` groups of 8 values.
            let bytes = (header >> 1).saturating_mul(u64::from(width));
            if bytes > left {
                return Err("bit-packed run longer than the level data");
            }
            at += bytes as usize;
        } else {
            if value_bytes as u64 > left {
                return Err("run value missing");
            }
            at += value_bytes;
        }
    }
    Ok(())
}
