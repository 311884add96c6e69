//! The hub's own scan of a Delta table: DataFusion's Parquet scan over the
//! snapshot's active files, with the log's statistics on every file.
//!
//! deltalake's provider (its kernel-based `DeltaScan`) reads every file
//! through the kernel's scan machinery: it decodes strings into `Utf8`
//! copies (DataFusion's own tables read views), adds a file-id column to
//! each batch, reads the filter columns into its output and evaluates
//! pushed predicates twice. On `ferry-bench queries` it cost the hub 1.6×
//! what DataFusion alone takes on the same files. Ferry's tables need none
//! of that machinery (no column mapping, no deletion vectors: the hub
//! writes neither), so for such a table the scan is DataFusion's own
//! (decision 0008):
//!
//! - one [`PartitionedFile`] per active file, `day` as its partition value,
//!   read through the session's object store for the table and its shared
//!   Parquet metadata cache;
//! - strings and binaries as view types when the session's
//!   `schema_force_view_types` is on (its default, see [`view_types`]);
//! - the `add` action's statistics as the file's [`Statistics`]: files the
//!   query's filters rule out (partition values included) are left out of
//!   the plan ([`ScanFiles::keep`]), and the Parquet opener skips more as a
//!   `TopK` bound (`ORDER BY time DESC LIMIT n`) tightens;
//! - the files' row count as the scan's exact statistics, so `count(*)` is
//!   answered from the log;
//! - every filter offered as inexact: DataFusion keeps its filter and pushes
//!   it into the Parquet scan (row groups, pages, and row filters when
//!   `pushdown_filters` is on) once.
//!
//! Statistics are taken only where they are exact bounds: integers, dates,
//! booleans, strings shorter than the 64 bytes Parquet truncates to, and
//! timestamps (the log keeps milliseconds: the minimum is floored, the
//! maximum ceiled by deltalake, still bounds). Floating-point bounds are left
//! out (NaN is outside them). A table with deletion vectors or column
//! mapping (written by another engine) gets deltalake's provider instead.
//!
//! The files are listed once per table version: the list is kept with the
//! reader cache's table ([`ScanFiles`]) and rebuilt only when the version
//! moves.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use delta_kernel::expressions::Scalar;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::pruning::PrunableStatistics;
use deltalake::datafusion::common::stats::{ColumnStatistics, Precision, Statistics};
use deltalake::datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::object_store::ObjectStoreUrl;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use deltalake::datafusion::datasource::table_schema::TableSchema;
use deltalake::datafusion::logical_expr::utils::conjunction;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use deltalake::datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use deltalake::kernel::LogicalFileView;
use deltalake::logstore::LogStoreRef;
use object_store::ObjectMeta;
use tracing::debug;

/// Parquet truncates a column chunk's string statistics to this many bytes
/// (`DEFAULT_STATISTICS_TRUNCATE_LENGTH`); a bound this long may be cut.
const STRING_STATS_TRUNCATE: usize = 64;

/// What a query's scans of Ferry tables considered: put into its session
/// as a config extension, counted at planning (`query` history and
/// `explain` report it).
#[derive(Debug, Default)]
pub struct ScanCounter {
    /// Active data files of the scanned tables.
    pub files: std::sync::atomic::AtomicU64,
    /// Of those, the files the scan reads after skipping by statistics.
    pub scanned: std::sync::atomic::AtomicU64,
}

impl ScanCounter {
    /// `(files, scanned)`.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.files.load(Relaxed), self.scanned.load(Relaxed))
    }
}

/// A table version's files as the scan reads them.
#[derive(Debug)]
pub(crate) struct ScanFiles {
    /// The table version these files are.
    pub(super) version: Option<u64>,
    /// Whether strings are read as views (see [`view_types`]).
    pub(super) views: bool,
    /// Data columns, then the partition columns (the provider's schema).
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    files: Vec<PartitionedFile>,
    /// Each file's statistics over `schema` (its partition values as the
    /// bounds of the partition columns), for skipping files at planning.
    pruning: Vec<Arc<Statistics>>,
}

impl ScanFiles {
    /// The files of `table`'s loaded version, strings read as views if
    /// `views`, or `None` when the table needs deltalake's own scan (column
    /// mapping, deletion vectors, or a file whose partition values do not
    /// parse).
    pub(crate) fn of(table: &DeltaTable, views: bool) -> Option<ScanFiles> {
        let state = table.snapshot().ok()?;
        let protocol = state.protocol();
        if protocol.min_reader_version() > 1 {
            // Reader features (column mapping, deletion vectors, ...).
            return None;
        }
        let table_schema = state.snapshot().arrow_schema();
        let partition_names = state.metadata().partition_columns();
        let (partition_fields, data_fields): (Vec<FieldRef>, Vec<FieldRef>) = table_schema
            .fields()
            .iter()
            .cloned()
            .partition(|f| partition_names.contains(f.name()));
        let file_schema = Schema::new(data_fields);
        let file_schema = if views {
            view_types(&file_schema)
        } else {
            Arc::new(file_schema)
        };
        let mut files = Vec::new();
        let mut pruning = Vec::new();
        for view in state.log_data().iter() {
            if view.deletion_vector_descriptor().is_some() {
                return None;
            }
            let partition_values = partition_values(&view, &partition_fields)?;
            let stats = file_statistics(&view, &file_schema);
            let mut whole = stats.clone();
            whole
                .column_statistics
                .extend(partition_values.iter().map(|v| ColumnStatistics {
                    null_count: Precision::Exact(usize::from(v.is_null()) * whole_rows(&stats)),
                    min_value: Precision::Exact(v.clone()),
                    max_value: Precision::Exact(v.clone()),
                    ..ColumnStatistics::new_unknown()
                }));
            pruning.push(Arc::new(whole));
            let size = u64::try_from(view.size()).unwrap_or(0);
            let meta = ObjectMeta {
                location: view.object_store_path(),
                last_modified: view
                    .modification_datetime()
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH),
                size,
                e_tag: None,
                version: None,
            };
            let mut file = PartitionedFile::new_from_meta(meta).with_statistics(Arc::new(stats));
            file.partition_values = partition_values;
            files.push(file);
        }
        let mut fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields.iter().cloned());
        Some(ScanFiles {
            version: table.version(),
            views,
            schema: Arc::new(Schema::new_with_metadata(
                fields,
                table_schema.metadata().clone(),
            )),
            file_schema,
            partition_fields,
            files,
            pruning,
        })
    }

    /// Whether these are `views`' files, in the same order.
    pub(super) fn same_order(&self, views: &[LogicalFileView]) -> bool {
        self.files.len() == views.len()
            && self
                .files
                .iter()
                .zip(views)
                .all(|(f, v)| f.object_meta.location == v.object_store_path())
    }

    /// Which files may hold rows that `filters` keep, by their statistics;
    /// every file when the filters say nothing a bound can decide.
    pub(super) fn keep(&self, session: &dyn Session, filters: &[Expr]) -> Vec<bool> {
        let all = vec![true; self.files.len()];
        let Some(filter) = conjunction(filters.iter().cloned()) else {
            return all;
        };
        let decided = DFSchema::try_from(self.schema.clone())
            .and_then(|df_schema| session.create_physical_expr(filter, &df_schema))
            .and_then(|predicate| {
                PruningPredicateBuilder::new()
                    .with_file_schema(self.schema.clone())
                    .try_build(predicate)
            })
            .and_then(|predicate| {
                let stats = PrunableStatistics::new(self.pruning.clone(), self.schema.clone());
                predicate.prune(&stats)
            });
        match decided {
            Ok(keep) if keep.len() == self.files.len() => keep,
            Ok(_) => all,
            Err(e) => {
                debug!(error = %e, "file skipping at planning not possible");
                all
            }
        }
    }
}

/// The rows of a file, if its statistics say (0 otherwise: a null count
/// of a partition column is only read against the file's rows).
fn whole_rows(stats: &Statistics) -> usize {
    match stats.num_rows {
        Precision::Exact(n) => n,
        _ => 0,
    }
}

/// The typed partition values of a file, in `fields` order; `None` if one
/// does not parse as its column's type.
fn partition_values(view: &LogicalFileView, fields: &[FieldRef]) -> Option<Vec<ScalarValue>> {
    let raw = view.partition_values_map();
    fields
        .iter()
        .map(|field| match raw.get(field.name()).cloned().flatten() {
            Some(text) => ScalarValue::try_from_string(text, field.data_type()).ok(),
            None => ScalarValue::try_from(field.data_type()).ok(),
        })
        .collect()
}

/// The file's statistics from its `add` action, per data column, where
/// they are exact bounds (see the module docs).
fn file_statistics(view: &LogicalFileView, file_schema: &Schema) -> Statistics {
    let min = struct_values(view.min_values());
    let max = struct_values(view.max_values());
    let nulls = struct_values(view.null_counts());
    let columns = file_schema
        .fields()
        .iter()
        .map(|field| column_statistics(field, &min, &max, &nulls))
        .collect();
    Statistics {
        num_rows: view
            .num_records()
            .map_or(Precision::Absent, Precision::Exact),
        total_byte_size: usize::try_from(view.size()).map_or(Precision::Absent, Precision::Inexact),
        column_statistics: columns,
    }
}

fn column_statistics(
    field: &Field,
    min: &HashMap<String, Scalar>,
    max: &HashMap<String, Scalar>,
    nulls: &HashMap<String, Scalar>,
) -> ColumnStatistics {
    let bound = |values: &HashMap<String, Scalar>| {
        values
            .get(field.name())
            .and_then(|s| exact_bound(s, field.data_type()))
            .map_or(Precision::Absent, Precision::Exact)
    };
    let null_count = match nulls.get(field.name()) {
        Some(Scalar::Long(n)) => usize::try_from(*n).map_or(Precision::Absent, Precision::Exact),
        _ => Precision::Absent,
    };
    let (min_value, max_value) = match (bound(min), bound(max)) {
        (min @ Precision::Exact(_), max @ Precision::Exact(_)) => (min, max),
        // One side alone is still a bound, but keep the pair together so a
        // file never looks constant from a missing side.
        _ => (Precision::Absent, Precision::Absent),
    };
    ColumnStatistics {
        null_count,
        min_value,
        max_value,
        ..ColumnStatistics::new_unknown()
    }
}

/// A statistics value as a bound DataFusion may prune with, if it is one.
fn exact_bound(value: &Scalar, data_type: &DataType) -> Option<ScalarValue> {
    match value {
        Scalar::Null(_) | Scalar::Float(_) | Scalar::Double(_) => None,
        Scalar::String(s) if s.len() >= STRING_STATS_TRUNCATE => None,
        Scalar::Binary(_) | Scalar::Struct(_) | Scalar::Array(_) | Scalar::Map(_) => None,
        _ => {
            let array = value.to_array(1).ok()?;
            let scalar = ScalarValue::try_from_array(&array, 0).ok()?;
            if scalar.data_type() == *data_type {
                Some(scalar)
            } else {
                scalar.cast_to(data_type).ok()
            }
        }
    }
}

/// A statistics struct's top-level values by column name.
fn struct_values(value: Option<Scalar>) -> HashMap<String, Scalar> {
    match value {
        Some(Scalar::Struct(data)) => data
            .fields()
            .iter()
            .zip(data.values())
            .map(|(f, v)| (f.name().clone(), v.clone()))
            .collect(),
        _ => HashMap::new(),
    }
}

/// The provider: a table version's files, read by DataFusion's Parquet scan
/// through the table's object store.
#[derive(Debug)]
pub(crate) struct LakeScan {
    files: Arc<ScanFiles>,
    store_url: ObjectStoreUrl,
}

impl LakeScan {
    /// A provider over `files`; registers the table's object store (rooted at
    /// the table, as the file paths are) with the session if it is not yet.
    pub(crate) fn new(
        files: Arc<ScanFiles>,
        log_store: &LogStoreRef,
        session: &dyn Session,
    ) -> Self {
        let store_url = log_store.object_store_url();
        let env = session.runtime_env();
        if env.object_store(&store_url).is_err() {
            env.register_object_store(store_url.as_ref(), log_store.object_store(None));
        }
        LakeScan { files, store_url }
    }
}

/// `schema` with strings and binaries as view types: what DataFusion's own
/// Parquet tables read when `datafusion.execution.parquet.
/// schema_force_view_types` is on (its default). Dictionary-encoded tags
/// then decode into views of the dictionary instead of copies of every
/// value, and group-by and comparisons work on the views: on
/// `ferry-bench queries` the decode and the aggregation took 2 to 3 times
/// as long with `Utf8`. The same mapping as DataFusion's
/// `transform_schema_to_view`, which the `datafusion` crate does not
/// re-export.
fn view_types(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            DataType::Binary | DataType::LargeBinary => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::BinaryView))
            }
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[async_trait]
impl TableProvider for LakeScan {
    fn schema(&self) -> SchemaRef {
        self.files.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        // Used here only to skip files by their statistics: the filters
        // reach the Parquet scan through DataFusion's physical filter
        // pushdown (they are inexact), once, not twice.
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = &self.files;
        let keep = files.keep(state, filters);
        let chosen: Vec<PartitionedFile> = files
            .files
            .iter()
            .zip(&keep)
            .filter(|(_, keep)| **keep)
            .map(|(f, _)| f.clone())
            .collect();
        if let Some(counter) = state.config().get_extension::<ScanCounter>() {
            use std::sync::atomic::Ordering::Relaxed;
            counter.files.fetch_add(files.files.len() as u64, Relaxed);
            counter.scanned.fetch_add(chosen.len() as u64, Relaxed);
        }
        if chosen.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(files.schema.project(p)?),
                None => files.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let table_schema = TableSchema::builder(files.file_schema.clone())
            .with_table_partition_cols(files.partition_fields.clone())
            .build();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(table_schema);
        let mut statistics = Statistics::new_unknown(&files.schema);
        statistics.num_rows = chosen
            .iter()
            .map(|f| f.statistics.as_ref().map(|s| s.num_rows))
            .try_fold(0usize, |sum, rows| match rows {
                Some(Precision::Exact(n)) => Some(sum + n),
                _ => None,
            })
            .map_or(Precision::Absent, Precision::Exact);
        statistics.total_byte_size =
            Precision::Inexact(chosen.iter().map(|f| f.object_meta.size as usize).sum());
        let groups = FileGroup::new(chosen)
            .split_files(state.config_options().execution.target_partitions.max(1));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}
