//! `POST /api/v1/query`: read-only SQL over the tables (role `read`).
//!
//! Body: `{"sql": "SELECT ...", "database": "plant"}`; `database` is
//! optional (also from `x-ferry-database` / `x-arc-database` or `?db=`)
//! and becomes the default schema, so `SELECT * FROM boiler` means
//! `plant.boiler`. Without it, name tables `database.measurement`.
//! DataFusion folds unquoted identifiers to lower case: quote names with
//! capitals or dashes (`SELECT * FROM "plant-1"."Boiler"`).
//!
//! The answer format follows `Accept`: `application/vnd.apache.arrow.stream`
//! (Arrow IPC), `text/csv`, else JSON ([`encode`]). `POST
//! /api/v1/query/arrow` (Arc's route) always answers Arrow IPC. Results are Arrow
//! record batches first; each format is encoded from them.
//!
//! | status | when |
//! |---|---|
//! | 200 | the result (cut at `query.max_rows`, flagged `truncated`) |
//! | 400 `bad_request` | SQL syntax, unknown table or column, a bad database name |
//! | 422 `query_rejected` | DDL, DML, `COPY`, `SET` and other statements |
//! | 503 `unavailable` | the object store failed |
//! | 504 `timeout` | longer than `query.timeout` |

mod config;
mod coop;
pub mod encode;
pub mod engine;
pub mod executor;
pub mod gapfill;
mod limits;
pub mod manage;
pub mod memory;
pub mod show;
pub mod tracker;

pub use config::QueryConfig;
pub use executor::QueryExecutor;

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use ferry_protocols::DatabaseName;
use ferry_protocols::api::headers;
use serde::Deserialize;

use crate::auth::{Permission, Principal};
use crate::metrics as m;
use crate::server::{ApiError, ApiResult, AppState, JsonBody, Remote};

/// The content type of Arrow IPC stream answers.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Header: `true` if the answer was cut at `query.max_rows`.
pub const TRUNCATED_HEADER: &str = "x-ferry-truncated";
/// Header: rows in a CSV or Arrow answer.
pub const ROW_COUNT_HEADER: &str = "x-ferry-row-count";

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    #[serde(default)]
    pub database: Option<String>,
}

/// The answer formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    /// From the `Accept` header: the first of Arrow or CSV it names, else JSON.
    pub fn from_headers(h: &HeaderMap) -> Format {
        let accept = h
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if accept.contains(ARROW_STREAM) {
            Format::Arrow
        } else if accept.contains("text/csv") {
            Format::Csv
        } else {
            Format::Json
        }
    }
}

/// An encoded answer.
#[derive(Debug)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub truncated: bool,
    pub row_count: usize,
}

/// Encodes `output` in `format` (on the query runtime: a big answer does
/// not hold up the threads that serve ingest).
pub fn encode_answer(
    output: &engine::QueryOutput,
    format: Format,
    started: Instant,
) -> Result<Encoded, ApiError> {
    let encode_error =
        |e: &dyn std::fmt::Display| ApiError::internal("encoding the query result", e);
    let (body, content_type) = match format {
        Format::Json => {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let answer = encode::to_json(output, ms).map_err(|e| encode_error(&e))?;
            let body = serde_json::to_vec(&answer).map_err(|e| encode_error(&e))?;
            (body, "application/json")
        }
        Format::Csv => (
            encode::to_csv(output).map_err(|e| encode_error(&e))?,
            "text/csv; charset=utf-8",
        ),
        Format::Arrow => (
            encode::to_arrow(output).map_err(|e| encode_error(&e))?,
            ARROW_STREAM,
        ),
    };
    Ok(Encoded {
        body,
        content_type,
        truncated: output.truncated,
        row_count: output.row_count,
    })
}

/// `POST /api/v1/query`: the format from `Accept`.
pub async fn query(
    principal: Principal,
    State(state): State<AppState>,
    remote: Remote,
    uri: Uri,
    headers_map: HeaderMap,
    JsonBody(request): JsonBody<QueryRequest>,
) -> ApiResult<Response> {
    let format = Format::from_headers(&headers_map);
    answer(
        principal,
        state,
        remote,
        &uri,
        &headers_map,
        request,
        format,
    )
    .await
}

/// `POST /api/v1/query/arrow` (Arc's route): always an Arrow IPC stream.
pub async fn query_arrow(
    principal: Principal,
    State(state): State<AppState>,
    remote: Remote,
    uri: Uri,
    headers_map: HeaderMap,
    JsonBody(request): JsonBody<QueryRequest>,
) -> ApiResult<Response> {
    answer(
        principal,
        state,
        remote,
        &uri,
        &headers_map,
        request,
        Format::Arrow,
    )
    .await
}

async fn answer(
    principal: Principal,
    state: AppState,
    remote: Remote,
    uri: &Uri,
    headers_map: &HeaderMap,
    request: QueryRequest,
    format: Format,
) -> ApiResult<Response> {
    principal.require_anywhere(Permission::Read)?;
    let statement = Statement {
        database: database(&request, headers_map, uri)?,
        sql: request.sql,
        remote: remote.0,
    };
    let answer = execute(&state, &principal, statement, move |output, started| {
        encode_answer(&output, format, started)
    })
    .await?;
    Ok(with_meta(answer))
}

/// One statement to run for a client.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    /// The default database (schema) of unqualified table names.
    pub database: Option<DatabaseName>,
    /// The client's address, for the query history.
    pub remote: Option<std::net::SocketAddr>,
}

/// What the query history and the metrics count of an answer.
pub trait Answered {
    fn rows(&self) -> usize;
    fn size(&self) -> usize;
}

impl Answered for Encoded {
    fn rows(&self) -> usize {
        self.row_count
    }
    fn size(&self) -> usize {
        self.body.len()
    }
}

impl Answered for engine::QueryOutput {
    fn rows(&self) -> usize {
        self.row_count
    }
    fn size(&self) -> usize {
        self.bytes
    }
}

/// Runs `statement` for `principal` the one way every query interface does
/// (HTTP and Flight SQL): `SHOW` from the table list, anything else on the
/// [`QueryExecutor`] (admission, `query.timeout`, memory pool) with the
/// read-only rules and the principal's readable tables; the run goes into
/// the query history, the query metrics and the principal's usage.
/// `finish` turns the output into the answer on the query runtime.
pub async fn execute<T, F>(
    state: &AppState,
    principal: &Principal,
    statement: Statement,
    finish: F,
) -> ApiResult<T>
where
    T: Answered + Send + 'static,
    F: FnOnce(engine::QueryOutput, Instant) -> Result<T, ApiError> + Send + 'static,
{
    let Statement {
        sql,
        database,
        remote,
    } = statement;
    // Usage is kept per database that exists: a client naming made-up
    // databases must not grow the usage table.
    let usage_database = database
        .as_ref()
        .filter(|d| state.tables.known_databases().contains(d))
        .map(|d| d.as_str().to_owned());
    let started = Instant::now();
    let limits = limits(&state.config.query);
    let ticket = state.queries.start(
        principal,
        remote,
        database.as_ref().map(DatabaseName::as_str),
        &sql,
        state.query.memory_pool(),
    );
    let base = state.query.session_base().for_principal(principal);
    let result = match show::parse(&sql) {
        Some(s) => show::run(
            &state.tables,
            s,
            database.as_ref(),
            limits.max_rows,
            base.readable.as_deref(),
        )
        .await
        .and_then(|output| finish(output, started))
        .map(|answer| (answer, None)),
        None => {
            let tables = state.tables.clone();
            let probe = ticket.probe.clone();
            state
                .query
                .run(&principal.key(), &ticket.cancel, async move {
                    let output =
                        engine::run(&tables, &sql, database.as_ref(), base, limits, probe).await?;
                    let plan = output.plan.clone();
                    Ok((finish(output, started)?, plan))
                })
                .await
        }
    };
    let finished = match &result {
        Ok((answer, plan)) => tracker::Finished {
            error: None,
            rows: answer.rows() as u64,
            bytes: answer.size() as u64,
            plan: plan.as_ref(),
        },
        Err(e) => tracker::Finished {
            error: Some(e),
            rows: 0,
            bytes: 0,
            plan: None,
        },
    };
    state.queries.finish(ticket, finished).await;
    let result = result.map(|(answer, _)| answer);
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.code() == ferry_protocols::api::ErrorCode::Timeout => "timeout",
        Err(e) if e.code() == ferry_protocols::api::ErrorCode::TooManyRequests => "refused",
        Err(_) => "error",
    };
    metrics::histogram!(m::QUERY_SECONDS, "outcome" => outcome).record(elapsed.as_secs_f64());
    state
        .quotas
        .queried(principal, usage_database.as_deref(), elapsed);
    let answer = result?;
    metrics::counter!(m::QUERY_ROWS).increment(answer.rows() as u64);
    tracing::debug!(
        principal = %principal.name,
        rows = answer.rows(),
        ms = elapsed.as_millis() as u64,
        "query"
    );
    Ok(answer)
}

/// What one query may produce and build, from `[query]`.
pub fn limits(config: &QueryConfig) -> engine::Limits {
    engine::Limits {
        max_rows: config.max_rows.get(),
        max_result_bytes: usize::try_from(config.max_result_bytes.as_u64()).unwrap_or(usize::MAX),
        max_string_bytes: config.max_string_bytes.as_u64(),
    }
}

fn with_meta(answer: Encoded) -> Response {
    let mut response = answer.body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    h.insert(
        TRUNCATED_HEADER,
        HeaderValue::from_static(if answer.truncated { "true" } else { "false" }),
    );
    h.insert(ROW_COUNT_HEADER, HeaderValue::from(answer.row_count as u64));
    response
}

/// The query's default database: the body, then the headers, then `?db=`.
/// `?db=`, decoded like every query string of the hub.
#[derive(Debug, serde::Deserialize)]
struct DbParam {
    db: Option<String>,
}

fn database(
    request: &QueryRequest,
    h: &HeaderMap,
    uri: &Uri,
) -> Result<Option<DatabaseName>, ApiError> {
    let from_header = [headers::DATABASE, headers::ARC_DATABASE]
        .iter()
        .find_map(|name| h.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned);
    let from_query = axum::extract::Query::<DbParam>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.db);
    match request
        .database
        .clone()
        .or(from_header)
        .or(from_query)
        .filter(|s| !s.is_empty())
    {
        None => Ok(None),
        Some(db) => DatabaseName::new(db.trim())
            .map(Some)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}
