//! The order of a compacted file's rows: the tag columns, fewest distinct
//! values first (ties in table order), then `time`. A filter on a tag with
//! few values (site, fleet, region: what dashboards filter on) then selects
//! a few long runs of rows, whose pages the Parquet page index skips; the
//! series' high-cardinality tags (device, name) come last, so that each
//! series' rows stay together in time order.
//!
//! Arrow's `lexsort_to_indices` compares the tag strings themselves at
//! every step of the sort. A day partition of a busy table holds millions
//! of rows, and that comparison was most of a compaction's time:
//! `ferry-bench ingest-long` under `perf` spent 28 % of the hub's CPU in
//! `memcmp` and arrow's string comparators, while ingest itself was slowed
//! by a quarter. Tags have few distinct values, so each value is ranked
//! once (its place among the column's distinct values, nulls first), the
//! ranks of all tag columns are packed into one `u64`, and the rows are
//! sorted by `(packed ranks, time, row)`: plain integer comparisons, the
//! same order. When the ranks do not fit in 64 bits, a tag column is not a
//! string, or `time` has nulls, the rows go through `lexsort_to_indices`
//! as before.

use std::collections::{HashMap, HashSet};

use deltalake::DeltaTableError;
use deltalake::arrow::array::{
    Array, ArrayAccessor, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array,
};
use deltalake::arrow::compute::{SortColumn, SortOptions, cast, lexsort_to_indices};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::row::{RowConverter, SortField};
use ferry_protocols::batch::ROLE_KEY;
use ferry_protocols::name::TIME_COLUMN;

/// One tag column's rank per row (0 for null, then 1.. in byte order of
/// the distinct values) and how many ranks it uses.
struct Ranked {
    ranks: Vec<u32>,
    /// Distinct values, null counted as one.
    distinct: usize,
    /// Bits that hold ranks `0..=distinct`.
    bits: u32,
    /// Column index in the batch (ties in `distinct` keep table order).
    index: usize,
}

/// The row indices of `rows` in compaction order: tags (fewest distinct
/// values first, nulls first, ascending), then `time`.
pub(crate) fn sorted_indices(rows: &RecordBatch) -> Result<UInt32Array, DeltaTableError> {
    let time = rows
        .column_by_name(TIME_COLUMN)
        .ok_or_else(|| DeltaTableError::Generic("the table has no \"time\" column".to_owned()))?;
    let tags: Vec<usize> = rows
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.metadata().get(ROLE_KEY).map(String::as_str) == Some("tag"))
        .map(|(i, _)| i)
        .collect();
    let ranked: Option<Vec<Ranked>> = tags
        .iter()
        .map(|&i| rank(rows.column(i)).map(|(ranks, distinct)| Ranked::new(ranks, distinct, i)))
        .collect();
    let fits = u32::try_from(rows.num_rows()).is_ok() && time.null_count() == 0;
    match ranked {
        Some(mut ranked) if fits && packed_bits(&ranked) <= 64 => {
            ranked.sort_unstable_by_key(|r| (r.distinct, r.index));
            let time = cast(time, &DataType::Int64)?;
            let time = time
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DeltaTableError::Generic("time is not a 64-bit value".to_owned()))?;
            Ok(by_packed_ranks(&ranked, time.values()))
        }
        _ => lexsorted(rows, &tags, time),
    }
}

impl Ranked {
    fn new(ranks: Vec<u32>, distinct: usize, index: usize) -> Ranked {
        Ranked {
            ranks,
            distinct,
            bits: usize::BITS - distinct.leading_zeros(),
            index,
        }
    }
}

/// Bits to hold the ranks of every column.
fn packed_bits(ranked: &[Ranked]) -> u32 {
    ranked.iter().map(|r| r.bits).sum()
}

fn by_packed_ranks(ranked: &[Ranked], time: &[i64]) -> UInt32Array {
    let mut keys: Vec<(u64, i64, u32)> = (0..time.len())
        .map(|row| {
            let packed = ranked
                .iter()
                .fold(0u64, |acc, r| (acc << r.bits) | u64::from(r.ranks[row]));
            // `fits` checked that every row index is a u32.
            (packed, time[row], row as u32)
        })
        .collect();
    keys.sort_unstable();
    UInt32Array::from_iter_values(keys.into_iter().map(|(_, _, row)| row))
}

/// Ranks of a string column (`None` for other types).
fn rank(column: &ArrayRef) -> Option<(Vec<u32>, usize)> {
    match column.data_type() {
        DataType::Utf8 => Some(rank_strings(column.as_string::<i32>())),
        DataType::LargeUtf8 => Some(rank_strings(column.as_string::<i64>())),
        DataType::Utf8View => Some(rank_strings(column.as_string_view())),
        _ => None,
    }
}

fn rank_strings<'a>(column: impl ArrayAccessor<Item = &'a str>) -> (Vec<u32>, usize) {
    // First a provisional id per distinct value (in order of appearance),
    // then the ids renumbered in the values' byte order.
    let mut ids: HashMap<&'a str, u32> = HashMap::new();
    let mut values: Vec<&'a str> = Vec::new();
    let mut provisional = Vec::with_capacity(column.len());
    for row in 0..column.len() {
        if column.is_null(row) {
            provisional.push(u32::MAX);
            continue;
        }
        let v = column.value(row);
        let next = values.len() as u32;
        let id = *ids.entry(v).or_insert_with(|| {
            values.push(v);
            next
        });
        provisional.push(id);
    }
    let mut order: Vec<u32> = (0..values.len() as u32).collect();
    order.sort_unstable_by_key(|&id| values[id as usize]);
    let mut rank_of = vec![0u32; values.len()];
    for (place, id) in order.into_iter().enumerate() {
        rank_of[id as usize] = place as u32 + 1;
    }
    let has_null = column.null_count() > 0;
    let ranks = provisional
        .into_iter()
        .map(|id| {
            if id == u32::MAX {
                0
            } else {
                rank_of[id as usize]
            }
        })
        .collect();
    (ranks, values.len() + usize::from(has_null))
}

/// The general path: arrow's lexicographic sort on the columns themselves,
/// tags ordered by their distinct values as above.
fn lexsorted(
    rows: &RecordBatch,
    tags: &[usize],
    time: &ArrayRef,
) -> Result<UInt32Array, DeltaTableError> {
    let options = Some(SortOptions {
        descending: false,
        nulls_first: true,
    });
    let mut order = Vec::with_capacity(tags.len());
    for &i in tags {
        order.push((distinct_values(rows.column(i))?, i));
    }
    order.sort_unstable();
    let mut keys: Vec<SortColumn> = order
        .into_iter()
        .map(|(_, i)| SortColumn {
            values: rows.column(i).clone(),
            options,
        })
        .collect();
    keys.push(SortColumn {
        values: time.clone(),
        options,
    });
    Ok(lexsort_to_indices(&keys, None)?)
}

/// How many distinct values (null counts as one) `column` holds.
fn distinct_values(column: &ArrayRef) -> Result<usize, DeltaTableError> {
    let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(column))?;
    Ok(rows.iter().collect::<HashSet<_>>().len())
}

#[cfg(test)]
#[path = "sort_key_tests.rs"]
mod tests;
