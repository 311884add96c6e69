//! Running one read-only SQL statement over the tables.
//!
//! Each query gets a fresh DataFusion [`SessionContext`] whose default
//! catalog is [`Tables::register_catalog`]'s: the tables the statement
//! names are loaded at their latest version while it is planned (and no
//! other), so what a write acknowledged is visible to the next query.
//!
//! # Read-only and sandboxed
//!
//! The statement is planned first, then checked with
//! `SQLOptions::new().with_allow_ddl(false).with_allow_dml(false)
//! .with_allow_statements(false)` before anything runs: `CREATE [EXTERNAL]
//! TABLE`, `DROP`, `INSERT`, `COPY ... TO`, `SET`, `PREPARE` and
//! transactions are answered 422 `query_rejected`. Nothing can read local
//! files: URL tables (`SELECT * FROM '/etc/passwd'`) are not enabled, no
//! file-reading table function (`read_parquet`, `read_csv`, ...) is
//! registered (DataFusion's defaults are only `generate_series` and
//! `range`), and `CREATE EXTERNAL TABLE` is DDL. The information schema is
//! on (`SHOW TABLES`, `information_schema.columns`): it describes only the
//! registered tables.
//!
//! # Limits
//!
//! Queries run on the [`executor`](super::executor) (own runtime, memory
//! pool, admission, `query.timeout`). At most `query.max_rows` rows and
//! `query.max_result_bytes` bytes are collected; the stream is dropped
//! after that and the output is marked truncated. Functions that build
//! values of a size given by an argument are capped ([`super::limits`]).

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::config::ConfigOptions;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use ferry_protocols::DatabaseName;
use ferry_protocols::api::ErrorCode;
use futures_util::StreamExt;

use deltalake::datafusion::physical_plan::display::DisplayableExecutionPlan;
use deltalake::datafusion::physical_plan::{ExecutionPlan, execute_stream};

use super::coop::YieldEverywhere;
use super::gapfill;
use super::limits::limited_functions;
use super::memory::QueryMemory;
use crate::server::ApiError;
use crate::table::{ScanCounter, Tables};

/// The catalog tables are registered in (DataFusion's default).
pub const CATALOG: &str = "datafusion";

/// What a query produced.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub row_count: usize,
    /// True if rows past `max_rows` (or bytes past `max_result_bytes`)
    /// were dropped.
    pub truncated: bool,
    /// Arrow memory of the kept batches.
    pub bytes: usize,
    /// The physical plan that ran (its metrics filled in), for the
    /// slow-query log; `None` for answers that did not run a plan (`SHOW`).
    pub plan: Option<Arc<dyn ExecutionPlan>>,
}

impl QueryOutput {
    /// No rows yet.
    fn empty(schema: SchemaRef) -> Self {
        QueryOutput {
            schema,
            batches: Vec::new(),
            row_count: 0,
            truncated: false,
            bytes: 0,
            plan: None,
        }
    }

    /// Wraps already computed batches, cutting them at `max_rows`.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>, max_rows: usize) -> Self {
        let mut out = QueryOutput::empty(schema);
        for b in batches {
            if !out.push(b, max_rows, usize::MAX) {
                break;
            }
        }
        out
    }

    /// Adds `batch`, cut at `max_rows` rows and `max_bytes` bytes (Arrow
    /// memory, prorated per row); false once a limit is reached.
    fn push(&mut self, batch: RecordBatch, max_rows: usize, max_bytes: usize) -> bool {
        let rows = batch.num_rows();
        let size = batch.get_array_memory_size();
        let room_rows = max_rows.saturating_sub(self.row_count);
        let room_bytes = max_bytes.saturating_sub(self.bytes);
        let fit = if size <= room_bytes || rows == 0 {
            rows
        } else {
            let per_row = size.div_ceil(rows).max(1);
            room_bytes / per_row
        };
        let keep = fit.min(room_rows);
        if keep < rows {
            if keep > 0 {
                let part = batch.slice(0, keep);
                self.bytes += part.get_array_memory_size();
                self.batches.push(part);
            }
            self.row_count += keep;
            self.truncated = true;
            return false;
        }
        self.row_count += rows;
        self.bytes += size;
        self.batches.push(batch);
        true
    }
}

/// The session options of every query: read-only.
pub fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// What one query may produce and build.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_result_bytes: usize,
    pub max_string_bytes: u64,
}

/// What a query's session starts from (the executor's).
#[derive(Debug, Clone)]
pub struct SessionBase {
    /// The shared runtime env: the memory pool, the spill directory, the
    /// Parquet metadata cache.
    pub env: Arc<RuntimeEnv>,
    /// DataFusion's defaults with `query.datafusion` applied.
    pub options: Arc<ConfigOptions>,
    /// The tables the query may read: `None`, every table; else those the
    /// grants allow `read` on (others are 403 and not listed).
    pub readable: Option<Arc<crate::auth::Grants>>,
}

impl SessionBase {
    /// Limited to what `principal` may read.
    pub fn for_principal(mut self, principal: &crate::auth::Principal) -> Self {
        if !principal.grants.everywhere(crate::auth::Permission::Read) {
            self.readable = Some(principal.grants.clone());
        }
        self
    }
}

/// A session whose default catalog is the lake, on the shared runtime env (the
/// memory pool and the spill directory) and `query.datafusion`'s options, with the size-capped functions
/// and an operator that yields between batches everywhere; `database`
/// becomes the default schema, so its measurements can be named without a
/// prefix.
pub async fn session(
    tables: &Tables,
    database: Option<&DatabaseName>,
    base: SessionBase,
    max_string_bytes: u64,
    probe: Probe,
) -> Result<SessionContext, ApiError> {
    let mut config = SessionConfig::from(base.options.as_ref().clone())
        .with_information_schema(true)
        .with_extension(probe.scan);
    let mut env = base.env.as_ref().clone();
    env.memory_pool = probe.memory;
    if let Some(db) = database {
        config = config.with_default_catalog_and_schema(CATALOG, db.as_str());
    }
    // Not `enable_url_table()`: URL tables would read local files.
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(Arc::new(env))
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(YieldEverywhere))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for f in limited_functions(max_string_bytes)
        .into_iter()
        .chain(gapfill::functions())
    {
        ctx.register_udf(f);
    }
    ctx.register_udtf(
        "last_cache",
        Arc::new(crate::lastcache::function::LastCacheFunction {
            registry: tables.last_caches().clone(),
            readable: base.readable.clone(),
        }),
    );
    tables
        .register_catalog(&ctx, base.readable)
        .await
        .map_err(ApiError::from)?;
    Ok(ctx)
}

/// Plans, checks and runs `sql`, keeping at most `limits.max_rows` rows
/// and `limits.max_result_bytes` bytes. Runs on the query runtime, under
/// the executor's timeout.
pub async fn run(
    tables: &Tables,
    sql: &str,
    database: Option<&DatabaseName>,
    base: SessionBase,
    limits: Limits,
    probe: Probe,
) -> Result<QueryOutput, ApiError> {
    let (ctx, physical, gaps) = plan(tables, sql, database, base, limits, probe).await?;
    let schema = physical.schema();
    let mut stream =
        execute_stream(physical.clone(), ctx.task_ctx()).map_err(|e| execution_error(&e))?;
    let mut out = QueryOutput::empty(schema.clone());
    out.plan = Some(physical.clone());
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| execution_error(&e))?;
        if !out.push(batch, limits.max_rows, limits.max_result_bytes) {
            break;
        }
    }
    if let Some(gaps) = gaps {
        let (filled, cut) = gapfill::fill(&gaps, &schema, &out.batches, limits.max_rows)?;
        let was_cut = out.truncated;
        out = QueryOutput::empty(schema);
        out.push(filled, limits.max_rows, limits.max_result_bytes);
        out.truncated |= cut || was_cut;
        out.plan = Some(physical);
    }
    Ok(out)
}

/// What one query's session reports back: the files its scans considered
/// and its share of the memory pool.
#[derive(Debug, Clone)]
pub struct Probe {
    pub scan: Arc<ScanCounter>,
    pub memory: Arc<QueryMemory>,
}

impl Probe {
    /// A probe whose memory goes to `pool`.
    pub fn new(pool: Arc<dyn deltalake::datafusion::execution::memory_pool::MemoryPool>) -> Self {
        Probe {
            scan: Arc::new(ScanCounter::default()),
            memory: Arc::new(QueryMemory::new(pool)),
        }
    }
}

/// Plans `sql` (checked read-only) into a physical plan, ready to run.
async fn plan(
    tables: &Tables,
    sql: &str,
    database: Option<&DatabaseName>,
    base: SessionBase,
    limits: Limits,
    probe: Probe,
) -> Result<
    (
        SessionContext,
        Arc<dyn ExecutionPlan>,
        Option<gapfill::Spec>,
    ),
    ApiError,
> {
    let ctx = session(tables, database, base, limits.max_string_bytes, probe).await?;
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(|e| plan_error(&e))?;
    sql_options()
        .verify_plan(&plan)
        .map_err(|e| ApiError::new(ErrorCode::QueryRejected, rejected_message(&e)))?;
    // Gap filling is read from the optimized plan (bounds folded to
    // literals); only statements that name it pay for the extra pass.
    let gaps = if sql.to_ascii_lowercase().contains(gapfill::GAPFILL) {
        let optimized = ctx.state().optimize(&plan).map_err(|e| plan_error(&e))?;
        gapfill::spec(&optimized)?
    } else {
        None
    };
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| execution_error(&e))?;
    let physical = df
        .create_physical_plan()
        .await
        .map_err(|e| execution_error(&e))?;
    Ok((ctx, physical, gaps))
}

/// The columns `sql` would answer, without running it (the plan is made,
/// the read-only rules applied).
pub async fn output_schema(
    tables: &Tables,
    sql: &str,
    database: Option<&DatabaseName>,
    base: SessionBase,
    limits: Limits,
    probe: Probe,
) -> Result<SchemaRef, ApiError> {
    let (_, physical, _) = plan(tables, sql, database, base, limits, probe).await?;
    Ok(physical.schema())
}

/// `POST /api/v1/query/explain`'s content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explained {
    /// The optimized logical plan.
    pub logical_plan: String,
    /// The physical plan; with `analyze`, with each operator's metrics
    /// (rows, time, row groups and pages pruned by statistics).
    pub physical_plan: String,
    /// Active data files of the tables it reads, and the ones it reads
    /// after skipping files by their statistics.
    pub files_total: u64,
    pub files_scanned: u64,
    /// With `analyze`: rows the query returned (all of them, not cut).
    pub rows: Option<u64>,
}

/// Plans `sql` and, with `analyze`, runs it to the end (discarding rows).
pub async fn explain(
    tables: &Tables,
    sql: &str,
    database: Option<&DatabaseName>,
    base: SessionBase,
    limits: Limits,
    probe: Probe,
    analyze: bool,
) -> Result<Explained, ApiError> {
    let counter = probe.scan.clone();
    let (ctx, physical, _) = plan(tables, sql, database, base, limits, probe).await?;
    let logical = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .and_then(|p| ctx.state().optimize(&p))
        .map(|p| p.display_indent().to_string())
        .map_err(|e| plan_error(&e))?;
    let mut rows = None;
    if analyze {
        let mut stream =
            execute_stream(physical.clone(), ctx.task_ctx()).map_err(|e| execution_error(&e))?;
        let mut n = 0u64;
        while let Some(batch) = stream.next().await {
            n += batch.map_err(|e| execution_error(&e))?.num_rows() as u64;
        }
        rows = Some(n);
    }
    let (files_total, files_scanned) = counter.get();
    Ok(Explained {
        logical_plan: logical,
        physical_plan: plan_text(&physical, analyze),
        files_total,
        files_scanned,
        rows,
    })
}

/// `plan` as indented text, with its operators' metrics when `metrics`.
pub fn plan_text(plan: &Arc<dyn ExecutionPlan>, metrics: bool) -> String {
    let shown = if metrics {
        DisplayableExecutionPlan::with_metrics(plan.as_ref())
    } else {
        DisplayableExecutionPlan::new(plan.as_ref())
    };
    shown.indent(true).to_string()
}

fn rejected_message(e: &DataFusionError) -> String {
    format!(
        "only read-only queries are allowed (no DDL, DML, COPY or SET): {}",
        e.message()
    )
}

/// A planning failure: the SQL is wrong, or names a missing table, or a
/// table it names could not be loaded (the table's own error: storage is 503).
fn plan_error(e: &DataFusionError) -> ApiError {
    if let DataFusionError::External(inner) = e.find_root() {
        if let Some(table) = inner.downcast_ref::<crate::table::TableError>() {
            return ApiError::from(table.clone());
        }
        if let Some(denied) = inner.downcast_ref::<crate::table::NotReadable>() {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "forbidden").increment(1);
            return ApiError::forbidden(denied.to_string());
        }
    }
    ApiError::bad_request(e.message().into_owned())
}

/// An execution failure: storage problems are 503, the rest the query's.
fn execution_error(e: &DataFusionError) -> ApiError {
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            ApiError::unavailable(format!("storage error while querying: {e}"))
        }
        DataFusionError::ResourcesExhausted(_) => ApiError::new(
            ErrorCode::ResourcesExhausted,
            format!(
                "the query needs more memory than query.memory_limit leaves it (sorts and \
                 aggregations spill; joins and large groups cannot): {e}"
            ),
        ),
        _ => ApiError::bad_request(e.message().into_owned()),
    }
}
