//! Running one read-only SQL statement over the tables.
//!
//! Each query gets a fresh DataFusion [`SessionContext`] into which
//! [`Tables::register_all`] registers every table at its latest version,
//! so what a write acknowledged is visible to the next query.
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
//! Planning and execution run under `query.timeout` (504 `timeout`; the
//! running plan is dropped, which cancels its tasks). At most
//! `query.max_rows` rows are collected; the stream is dropped after that
//! and the output is marked truncated.

use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use ferry_protocols::DatabaseName;
use ferry_protocols::api::ErrorCode;
use futures_util::StreamExt;

use crate::server::ApiError;
use crate::table::Tables;

/// The catalog tables are registered in (DataFusion's default).
pub const CATALOG: &str = "datafusion";

/// What a query produced.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub row_count: usize,
    /// True if rows past `max_rows` were dropped.
    pub truncated: bool,
}

impl QueryOutput {
    /// Wraps already computed batches, cutting them at `max_rows`.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>, max_rows: usize) -> Self {
        let mut out = QueryOutput {
            schema,
            batches: Vec::new(),
            row_count: 0,
            truncated: false,
        };
        for b in batches {
            if !out.push(b, max_rows) {
                break;
            }
        }
        out
    }

    /// Adds `batch`, cut at `max_rows`; false once the limit is reached.
    fn push(&mut self, batch: RecordBatch, max_rows: usize) -> bool {
        let room = max_rows - self.row_count;
        if batch.num_rows() > room {
            if room > 0 {
                self.batches.push(batch.slice(0, room));
            }
            self.row_count = max_rows;
            self.truncated = true;
            return false;
        }
        self.row_count += batch.num_rows();
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

/// A session with every table registered; `database` becomes the default
/// schema, so its measurements can be named without a prefix.
pub async fn session(
    tables: &Tables,
    database: Option<&DatabaseName>,
) -> Result<SessionContext, ApiError> {
    let mut config = SessionConfig::new().with_information_schema(true);
    if let Some(db) = database {
        config = config.with_default_catalog_and_schema(CATALOG, db.as_str());
    }
    // Not `enable_url_table()`: URL tables would read local files.
    let ctx = SessionContext::new_with_config(config);
    tables.register_all(&ctx).await.map_err(ApiError::from)?;
    Ok(ctx)
}

/// Plans, checks and runs `sql` within `timeout`, keeping `max_rows` rows.
pub async fn run(
    tables: &Tables,
    sql: &str,
    database: Option<&DatabaseName>,
    timeout: Duration,
    max_rows: usize,
) -> Result<QueryOutput, ApiError> {
    let work = async {
        let ctx = session(tables, database).await?;
        let plan = ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| plan_error(&e))?;
        sql_options()
            .verify_plan(&plan)
            .map_err(|e| ApiError::new(ErrorCode::QueryRejected, rejected_message(&e)))?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| execution_error(&e))?;
        let schema = SchemaRef::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(|e| execution_error(&e))?;
        let mut out = QueryOutput {
            schema,
            batches: Vec::new(),
            row_count: 0,
            truncated: false,
        };
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| execution_error(&e))?;
            if !out.push(batch, max_rows) {
                break;
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the query ran longer than query.timeout ({})",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

fn rejected_message(e: &DataFusionError) -> String {
    format!(
        "only read-only queries are allowed (no DDL, DML, COPY or SET): {}",
        e.message()
    )
}

/// A planning failure: the SQL is wrong, or names a missing table.
fn plan_error(e: &DataFusionError) -> ApiError {
    ApiError::bad_request(e.message().into_owned())
}

/// An execution failure: storage problems are 503, the rest the query's.
fn execution_error(e: &DataFusionError) -> ApiError {
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            ApiError::unavailable(format!("storage error while querying: {e}"))
        }
        DataFusionError::ResourcesExhausted(_) => {
            ApiError::unavailable(format!("query resources exhausted: {e}"))
        }
        _ => ApiError::bad_request(e.message().into_owned()),
    }
}
