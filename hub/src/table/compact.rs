//! Compaction of one table: merge the small files of a day partition into
//! files of about `target_file_size`, sorted by the tag columns, fewest
//! distinct values first, and then `time`.
//!
//! # Which files
//!
//! A file is *small* when it is below half the target size. A partition is
//! compacted when it has at least `min_files` small files, or, once it is
//! *settled* (its UTC day ended more than `settle` ago), when it has two.
//! A small file larger than all the partition's smaller small files
//! together is left out (it joins a merge once the others add up to it),
//! so that a day is not rewritten whole for every few files that reach it.
//! Small files are packed, oldest first, into bins of at most the target
//! size; a bin of one file is left alone. Files with a deletion vector are
//! never picked (Ferry does not write them; another writer might).
//!
//! # How
//!
//! Each bin is read whole into memory (so memory per table is bounded by
//! about the target size, decompressed), conformed to the current table
//! schema (columns added since the file was written become nulls), sorted,
//! and written as new files through deltalake's writer, which also records
//! their statistics. The row count written must equal the row count of the
//! files it replaces, or nothing is committed.
//!
//! One Delta commit per partition holds the `remove`s of the old files and
//! the `add`s of the new ones, all with `dataChange = false`, and operation
//! `OPTIMIZE`: a reader sees either the old files or the new ones, never
//! both and never neither. Ingest goes on while the files are rewritten;
//! for the commit itself the compaction takes the table's commit gate (this
//! hub's writer holds it around each append), brings its snapshot to the
//! latest version and commits on top, so a table committed many times a
//! second cannot keep it from landing. Another hub's commit may still land
//! first: Delta's conflict check lets both through (an append and a
//! rewrite of other files do not conflict) and the compaction commit
//! retries on the next version. A commit that loses for real (the files it
//! replaces were removed, e.g. by retention) is dropped; the files it wrote
//! are unreferenced and vacuum deletes them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDate;
use deltalake::arrow::array::{ArrayRef, Date32Array, RecordBatch, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches, take_record_batch};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Remove};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::schema::{PARTITION_COLUMN, parquet_properties};
use super::sort_key::sorted_indices;

/// zstd level of compacted files: compaction runs in the background and its
/// files stay, so it spends more CPU on them than a commit does.
pub(super) const COMPACT_ZSTD_LEVEL: i32 = 3;

/// What decides which files are compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Files are written up to this size; below half of it a file is small.
    pub target_file_size: u64,
    /// Small files that make a partition worth compacting before it settles.
    pub min_files: usize,
    /// How long after its UTC day ends a partition counts as settled.
    pub settle: Duration,
}

/// What one run did to one table (or, summed, to all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Partitions committed.
    pub partitions: u64,
    /// Files replaced.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Bytes of the replaced files.
    pub bytes_removed: u64,
    /// Bytes of the new files.
    pub bytes_added: u64,
    /// Rows rewritten (the same rows, now in fewer files).
    pub rows: u64,
    /// Partitions whose commit failed (conflict or storage error).
    pub failed_partitions: u64,
}

impl CompactionReport {
    pub fn add(&mut self, other: &CompactionReport) {
        self.partitions += other.partitions;
        self.files_removed += other.files_removed;
        self.files_added += other.files_added;
        self.bytes_removed += other.bytes_removed;
        self.bytes_added += other.bytes_added;
        self.rows += other.rows;
        self.failed_partitions += other.failed_partitions;
    }
}

/// A file picked for rewriting.
#[derive(Debug, Clone)]
struct Candidate {
    location: deltalake::Path,
    size: u64,
    rows: Option<u64>,
    modified: i64,
    remove: Remove,
}

/// The bins of one partition.
#[derive(Debug)]
pub(crate) struct PartitionPlan {
    day: NaiveDate,
    bins: Vec<Vec<Candidate>>,
}

impl PartitionPlan {
    pub(crate) fn day(&self) -> NaiveDate {
        self.day
    }
}

/// Days since 1970-01-01 (Arrow's `Date32`).
pub(crate) fn epoch_days(day: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((day - epoch).num_days()).unwrap_or(i32::MAX)
}

/// Parses a `day` partition value (`YYYY-MM-DD`).
pub(crate) fn parse_day(value: Option<&Option<String>>) -> Option<NaiveDate> {
    let text = value?.as_deref()?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// The partitions of `table` worth compacting at `now`, with their bins.
pub(crate) fn plan(
    table: &DeltaTable,
    policy: &CompactionPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<PartitionPlan>, DeltaTableError> {
    let small_below = policy.target_file_size / 2;
    let mut by_day: BTreeMap<NaiveDate, Vec<Candidate>> = BTreeMap::new();
    for view in table.snapshot()?.log_data().iter() {
        let size = u64::try_from(view.size()).unwrap_or(u64::MAX);
        if size >= small_below || view.deletion_vector_descriptor().is_some() {
            continue;
        }
        let values = view.partition_values_map();
        let Some(day) = parse_day(values.get(PARTITION_COLUMN)) else {
            continue;
        };
        by_day.entry(day).or_default().push(Candidate {
            location: view.object_store_path(),
            size,
            rows: view.num_records().and_then(|n| u64::try_from(n).ok()),
            modified: view.modification_time(),
            remove: view.remove_action(false),
        });
    }
    let settle = chrono::Duration::from_std(policy.settle).unwrap_or(chrono::Duration::MAX);
    let mut plans = Vec::new();
    for (day, mut files) in by_day {
        let day_end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let settled = day_end.is_some_and(|end| now >= end + settle);
        let enough = if settled { 2 } else { policy.min_files.max(2) };
        leave_dominant_files(&mut files);
        if files.len() < enough {
            continue;
        }
        files.sort_by_key(|c| (c.modified, c.location.to_string()));
        let bins = pack(files, policy.target_file_size);
        if !bins.is_empty() {
            plans.push(PartitionPlan { day, bins });
        }
    }
    Ok(plans)
}

/// Drops from `files` (one partition's small files) each file larger than
/// all the smaller ones together, largest first. Without this, a day whose
/// compacted file is still below half the target (a highly compressed day
/// is, at any target that is worth reading) was rewritten whole whenever two
/// new files reached it: two late files into a settled day cost a rewrite
/// of the whole day. Now a file is merged again once the files that join it
/// add up to its size, and a partition keeps at most about log2(day / first
/// file) files, each at least the size of all the smaller ones together.
/// Sizes are bytes: a compacted file compresses better than the small files
/// that join it, so a day written as fast as it can be (`ferry-bench
/// ingest-long`) is still merged on most runs (1.66 rows rewritten per row
/// taken, against 1.74 without the rule).
fn leave_dominant_files(files: &mut Vec<Candidate>) {
    files.sort_by_key(|c| std::cmp::Reverse(c.size));
    let mut rest: u64 = files.iter().map(|c| c.size).sum();
    let mut keep_from = 0;
    for c in files.iter() {
        rest -= c.size;
        if c.size <= rest {
            break;
        }
        keep_from += 1;
    }
    files.drain(..keep_from);
}

/// Greedy packing in order; bins of a single file are dropped.
fn pack(files: Vec<Candidate>, target: u64) -> Vec<Vec<Candidate>> {
    let mut bins = Vec::new();
    let mut bin: Vec<Candidate> = Vec::new();
    let mut bytes = 0u64;
    for file in files {
        if !bin.is_empty() && bytes + file.size > target {
            bins.push(std::mem::take(&mut bin));
            bytes = 0;
        }
        bytes += file.size;
        bin.push(file);
    }
    bins.push(bin);
    bins.retain(|b| b.len() > 1);
    bins
}

/// Rewrites the bins of one partition and commits the swap. Returns what it
/// committed; an error means nothing of this partition was committed.
pub(crate) async fn compact_partition(
    table: &DeltaTable,
    plan: &PartitionPlan,
    policy: &CompactionPolicy,
    gate: Option<Arc<tokio::sync::Mutex<()>>>,
) -> Result<CompactionReport, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let full_schema: SchemaRef = snapshot.snapshot().arrow_schema();
    let store = table.object_store();
    let day_days = epoch_days(plan.day);
    let properties = parquet_properties(COMPACT_ZSTD_LEVEL);
    let mut writer = RecordBatchWriter::for_table(table)?
        .with_writer_properties(properties)
        .with_target_file_size(policy.target_file_size);
    let mut report = CompactionReport::default();
    let mut removes = Vec::new();
    for bin in &plan.bins {
        let mut files = Vec::with_capacity(bin.len());
        for c in bin {
            let bytes = store.get(&c.location).await?.bytes().await?;
            files.push(bytes);
        }
        let schema = full_schema.clone();
        let sorted = tokio::task::spawn_blocking(move || merge_sorted(files, &schema, day_days))
            .await
            .map_err(|e| DeltaTableError::Generic(format!("compaction task: {e}")))??;
        let expected: Option<u64> = bin.iter().map(|c| c.rows).sum();
        let rows = u64::try_from(sorted.num_rows()).unwrap_or(u64::MAX);
        if expected.is_some_and(|e| e != rows) {
            return Err(DeltaTableError::Generic(format!(
                "compaction of day={}: the files hold {rows} rows but their statistics say {expected:?}; nothing committed",
                plan.day
            )));
        }
        writer.write(sorted).await?;
        report.rows += rows;
        report.files_removed += bin.len() as u64;
        report.bytes_removed += bin.iter().map(|c| c.size).sum::<u64>();
        removes.extend(bin.iter().map(|c| Action::Remove(c.remove.clone())));
    }
    let mut adds = writer.flush().await?;
    let written: u64 = adds
        .iter()
        .filter_map(|a| a.get_stats().ok().flatten().map(|s| s.num_records))
        .filter_map(|n| u64::try_from(n).ok())
        .sum();
    if written != report.rows {
        return Err(DeltaTableError::Generic(format!(
            "compaction of day={}: wrote {written} rows for {} read; nothing committed",
            plan.day, report.rows
        )));
    }
    for add in &mut adds {
        add.data_change = false;
    }
    report.files_added = adds.len() as u64;
    report.bytes_added = adds
        .iter()
        .map(|a| u64::try_from(a.size).unwrap_or(0))
        .sum();
    report.partitions = 1;
    let mut actions = removes;
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Optimize {
        predicate: Some(format!("{PARTITION_COLUMN} = '{}'", plan.day)),
        target_size: i64::try_from(policy.target_file_size).unwrap_or(i64::MAX),
    };
    // A table written many times a second moves on by hundreds of versions
    // while its files are rewritten, and deltalake's commit checks every
    // one of them for conflicts on each try, longer than the writer takes
    // to commit the next: the compaction never lands (seen in
    // `ferry-bench ingest-long`). Under the gate this hub's writer of the
    // table does not commit; the snapshot is brought to the latest version
    // and the commit goes on top of it.
    let _gate = match gate {
        Some(g) => Some(g.lock_owned().await),
        None => None,
    };
    let mut fresh = table.clone();
    fresh.update_incremental(None).await?;
    let active: HashSet<String> = fresh
        .snapshot()?
        .log_data()
        .iter()
        .map(|v| v.object_store_path().to_string())
        .collect();
    if let Some(gone) = plan
        .bins
        .iter()
        .flatten()
        .find(|c| !active.contains(c.location.as_ref()))
    {
        return Err(DeltaTableError::Generic(format!(
            "compaction of day={}: {} was removed by another commit meanwhile; nothing committed",
            plan.day, gone.location
        )));
    }
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(fresh.snapshot()?), fresh.log_store(), operation)
        .await?;
    Ok(report)
}

/// Decodes `files`, conforms them to `schema` (the table's, with the
/// partition column), and sorts the rows by tags, fewest distinct values
/// first, then time ([`sorted_indices`]).
fn merge_sorted(
    files: Vec<Bytes>,
    schema: &SchemaRef,
    day: i32,
) -> Result<RecordBatch, DeltaTableError> {
    let mut batches = Vec::new();
    for bytes in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .with_batch_size(64 * 1024)
            .build()?;
        for batch in reader {
            batches.push(conform(&batch?, schema, day)?);
        }
    }
    let all = concat_batches(schema, &batches)?;
    drop(batches);
    let indices = sorted_indices(&all)?;
    Ok(take_record_batch(&all, &indices)?)
}

/// `batch` (a data file's rows) in `schema`'s columns: missing columns as
/// nulls, the partition column as the constant `day`, types cast if the file
/// was written with an equivalent physical type.
pub(super) fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
    day: i32,
) -> Result<RecordBatch, DeltaTableError> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        // Data files never hold the partition column; rows being added
        // (a continuous query's) carry their own.
        let own_day = batch
            .column_by_name(PARTITION_COLUMN)
            .filter(|c| c.data_type() == f.data_type());
        let column: ArrayRef = if let (true, Some(own)) = (f.name() == PARTITION_COLUMN, own_day) {
            own.clone()
        } else if f.name() == PARTITION_COLUMN {
            std::sync::Arc::new(Date32Array::from(vec![day; n]))
        } else {
            match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => c.clone(),
                Some(c) => cast(c, f.data_type())?,
                None if f.is_nullable() => new_null_array(f.data_type(), n),
                None => {
                    return Err(DeltaTableError::Generic(format!(
                        "a data file lacks the non-nullable column {:?}",
                        f.name()
                    )));
                }
            }
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, size: u64) -> Candidate {
        Candidate {
            location: deltalake::Path::from(name),
            size,
            rows: Some(1),
            modified: 0,
            remove: Remove {
                path: name.to_owned(),
                data_change: false,
                deletion_timestamp: None,
                extended_file_metadata: None,
                partition_values: None,
                size: None,
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            },
        }
    }

    #[test]
    fn packing_fills_bins_in_order_and_drops_singletons() {
        let files = vec![
            candidate("a", 40),
            candidate("b", 40),
            candidate("c", 40),
            candidate("d", 90),
        ];
        let bins = pack(files, 100);
        let names: Vec<Vec<String>> = bins
            .iter()
            .map(|b| b.iter().map(|c| c.location.to_string()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a".to_owned(), "b".to_owned()]]);
    }

    #[test]
    fn a_file_larger_than_the_others_together_is_left_alone() {
        // The names of the files `leave_dominant_files` keeps, sorted.
        let kept = |sizes: &[(&str, u64)]| -> Vec<String> {
            let mut files: Vec<Candidate> = sizes.iter().map(|(n, s)| candidate(n, *s)).collect();
            leave_dominant_files(&mut files);
            let mut names: Vec<String> = files.iter().map(|c| c.location.to_string()).collect();
            names.sort();
            names
        };
        // The day's compacted file and two new small ones: only those two.
        assert_eq!(
            kept(&[("day", 1_000), ("new1", 10), ("new2", 10)]),
            vec!["new1", "new2"]
        );
        // Tiers: 1,000 > 470 (all the others), 300 > 170, 150 > 20, and
        // 10 <= 10: only the last two merge.
        assert_eq!(
            kept(&[("a", 1_000), ("b", 300), ("c", 150), ("d", 10), ("e", 10)]),
            vec!["d", "e"]
        );
        // Once the new files add up to the big one, it is merged again.
        assert_eq!(
            kept(&[("day", 100), ("n1", 40), ("n2", 30), ("n3", 30)]),
            vec!["day", "n1", "n2", "n3"]
        );
        // Files of one size are all merged.
        assert_eq!(
            kept(&[("f0", 55), ("f1", 55), ("f2", 55), ("f3", 55), ("f4", 55)]).len(),
            5
        );
    }

    #[test]
    fn epoch_days_matches_arrow_date32() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(epoch_days(day), 20_783);
        assert_eq!(parse_day(Some(&Some("2026-11-26".to_owned()))), Some(day));
        assert_eq!(parse_day(Some(&Some("junk".to_owned()))), None);
        assert_eq!(parse_day(Some(&None)), None);
    }
}
