//! The import routes (Arc's, and Ferry's jobs and resumable uploads).
//!
//! | route | role | what |
//! |---|---|---|
//! | `POST /api/v1/import/{csv,parquet,lp}` | write | a file as the raw body, a multipart field `file`, or `?upload=<sha256>` (a finished resumable upload); waits for the job and answers Arc's `{"status": "ok", "result": {...}}` plus `job`, or with `?async=true` answers 202 with the job at once |
//! | `GET /api/v1/import/jobs`, `GET /api/v1/import/jobs/{id}` | read | jobs with progress, rejected rows and ETA |
//! | `DELETE /api/v1/import/jobs/{id}` | write | cancel a queued or running job (chunks already committed stay) |
//! | `GET, PUT, DELETE /api/v1/import/uploads/{sha256}` | write | a resumable upload: bytes received; append at `?offset=`; drop |
//!
//! With `import.enabled = false` every route is 403 `forbidden`.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Imports;
use super::options::{Format, ImportOptions};
use super::spool::Received;
use crate::audit::AuditNote;
use crate::auth::{Permission, Principal};
use crate::meta::imports::{
    COMPLETED, Created, ImportJob, NewImportJob, QUEUED, RUNNING, RejectedRow,
};
use crate::meta::{format_ms, now_ms};
use crate::metrics as m;
use crate::server::{ApiError, ApiResult, AppState, Body};

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub state: String,
    pub format: String,
    pub database: String,
    pub measurement: Option<String>,
    pub file_name: Option<String>,
    pub content_sha256: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// `bytes_done / bytes_total`, 0 to 1.
    pub progress: f64,
    pub chunks_done: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    /// The first 100 rejected rows.
    pub rejected: Vec<RejectedRow>,
    pub measurements: Vec<String>,
    pub time_range_min: Option<String>,
    pub time_range_max: Option<String>,
    pub rows_per_second: Option<f64>,
    /// Seconds left at the rate so far (running jobs).
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
    pub options: serde_json::Value,
    pub created_by: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

fn ns_text(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl From<ImportJob> for JobView {
    fn from(j: ImportJob) -> Self {
        let end = j.finished_at_ms.unwrap_or_else(now_ms);
        let elapsed_ms = j.started_at_ms.map(|s| (end - s).max(1));
        let secs = elapsed_ms.map(|ms| ms as f64 / 1000.0);
        let rate_bytes = secs.map(|s| j.bytes_done as f64 / s);
        let eta_seconds = match (j.state.as_str(), rate_bytes) {
            (RUNNING, Some(r)) if r > 0.0 => {
                Some((j.bytes_total.saturating_sub(j.bytes_done)) as f64 / r)
            }
            _ => None,
        };
        JobView {
            progress: if j.bytes_total == 0 {
                1.0
            } else {
                j.bytes_done as f64 / j.bytes_total as f64
            },
            rows_per_second: secs.map(|s| j.rows_imported as f64 / s),
            eta_seconds,
            time_range_min: j.time_min_ns.map(ns_text),
            time_range_max: j.time_max_ns.map(ns_text),
            created_at: format_ms(j.created_at_ms),
            started_at: j.started_at_ms.map(format_ms),
            finished_at: j.finished_at_ms.map(format_ms),
            duration_ms: j.finished_at_ms.zip(j.started_at_ms).map(|(f, s)| f - s),
            id: j.id,
            state: j.state,
            format: j.format,
            database: j.database,
            measurement: j.measurement,
            file_name: j.file_name,
            content_sha256: j.content_sha256,
            bytes_total: j.bytes_total,
            bytes_done: j.bytes_done,
            chunks_done: j.chunks_done,
            rows_imported: j.rows_imported,
            rows_rejected: j.rows_rejected,
            rejected: j.rejections,
            measurements: j.measurements,
            error: j.error,
            options: j.options,
            created_by: j.created_by,
        }
    }
}

fn enabled(state: &AppState) -> ApiResult<&Imports> {
    if state.imports.config().enabled {
        Ok(&state.imports)
    } else {
        Err(ApiError::forbidden(
            "imports are disabled (import.enabled = false)",
        ))
    }
}

fn meta_error(e: crate::meta::MetaError) -> ApiError {
    ApiError::unavailable(format!("metadata store: {e}"))
}

fn refused(reason: &'static str, error: ApiError) -> ApiError {
    metrics::counter!(m::IMPORT_REFUSED, "reason" => reason).increment(1);
    error
}

/// `POST /api/v1/import/{format}`.
pub async fn import(
    principal: Principal,
    State(state): State<AppState>,
    Path(format): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    principal.require_anywhere(Permission::Write)?;
    let imports = enabled(&state)?;
    let format = Format::parse(&format).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown import format {format:?} (csv, parquet, lp)"
        ))
    })?;
    let config = imports.config();
    let (options, params) = ImportOptions::from_request(format, &uri, &headers, config.chunk_rows)?;
    // Without a measurement, a line protocol file may write any table of
    // the database: it needs write on all of them.
    principal.require_on(
        Permission::Write,
        &options.database,
        options.measurement.as_deref().unwrap_or("*"),
    )?;
    // A database over its stored-bytes quota (or a token in debt) takes no
    // import either; the job counts its rows in the creating token's usage.
    state.quotas.admit(&principal, &options.database, 0, 0)?;
    let pending = state.meta.pending_import_jobs().await.map_err(meta_error)?;
    if pending >= config.max_pending_jobs as u64 {
        return Err(refused(
            "pending_jobs",
            ApiError::unavailable(format!(
                "{pending} import jobs are queued or running (import.max_pending_jobs); try again later"
            ))
            .with_retry_after(30),
        ));
    }
    let received = match params.upload.clone() {
        Some(sha) => Err(sha),
        None => {
            let Ok(_permit) = imports.inner.uploads.clone().try_acquire_owned() else {
                return Err(refused(
                    "uploads",
                    ApiError::unavailable(format!(
                        "{} uploads are being received (import.max_uploads); try again later",
                        config.max_uploads
                    ))
                    .with_retry_after(10),
                ));
            };
            let r = receive_body(imports, &headers, body, params.file_name.clone()).await?;
            metrics::counter!(m::IMPORT_BYTES).increment(r.bytes);
            Ok(r)
        }
    };
    // Detached from the request: once the file is received (or an upload
    // taken), a client that goes away cannot leave it between the spool
    // and a job.
    let owned = state.clone();
    let file_name = params.file_name.clone();
    let database = options.database.clone();
    let (job, duplicate) = tokio::spawn(async move {
        let received = match received {
            Ok(r) => r,
            Err(sha) => {
                let mut r = owned.imports.inner.spool.take_upload(&sha).await?;
                r.file_name = file_name;
                r
            }
        };
        make_job(&owned, &principal, options, received).await
    })
    .await
    .map_err(|e| ApiError::internal("making the import job", e))??;
    let note = Extension(AuditNote {
        target: Some(format!("import job {}", job.id)),
        database: Some(database),
        detail: Some(json!({
            "format": format.as_str(),
            "sha256": job.content_sha256,
            "bytes": job.bytes_total,
            "duplicate": duplicate,
        })),
    });
    if params.asynchronous.unwrap_or(false) {
        let status = if duplicate {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        let view = JobView::from(job);
        return Ok((
            status,
            note,
            Json(json!({"status": "accepted", "duplicate": duplicate, "job": view})),
        )
            .into_response());
    }
    // Usage is counted by the job, chunk by chunk, for the creating token
    // (the same whether the client waits or not).
    let job = wait(&state, job).await?;
    answer(job, duplicate).map(|r| (note, r).into_response())
}

/// Streams the request's file to the spool: the body itself, or the
/// multipart field `file` (else the first field with a file name).
async fn receive_body(
    imports: &Imports,
    headers: &HeaderMap,
    body: axum::body::Body,
    file_name: Option<String>,
) -> ApiResult<Received> {
    let spool = &imports.inner.spool;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let received = if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
        let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
        loop {
            let field = tokio::time::timeout(imports.config().idle_timeout, form.next_field())
                .await
                .map_err(|_| {
                    ApiError::bad_request(
                        "no bytes for import.idle_timeout; the upload was dropped",
                    )
                })?
                .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
            let Some(field) = field else {
                return Err(ApiError::bad_request(
                    "the multipart body has no field `file` (Arc's field name)",
                ));
            };
            if field.name() == Some("file") || field.file_name().is_some() {
                let name = field.file_name().map(str::to_owned).or(file_name);
                break spool.receive(field.boxed(), name).await;
            }
        }
    } else {
        spool.receive(body.into_data_stream(), file_name).await
    };
    if let Err(e) = &received
        && e.code() == ferry_protocols::api::ErrorCode::PayloadTooLarge
    {
        metrics::counter!(m::IMPORT_REFUSED, "reason" => "file_size").increment(1);
    }
    let received = received?;
    if received.bytes == 0 {
        let _ = tokio::fs::remove_file(&received.path).await;
        return Err(ApiError::bad_request("file is empty"));
    }
    Ok(received)
}

/// Checks the file can be read as asked (its header or schema; 400 if
/// not) and makes its job, or finds the job of the same file.
async fn make_job(
    state: &AppState,
    principal: &Principal,
    options: ImportOptions,
    received: Received,
) -> ApiResult<(ImportJob, bool)> {
    let spool = &state.imports.inner.spool;
    let path = received.path.clone();
    let check = options.clone();
    let max_record =
        usize::try_from(state.imports.config().max_record_size.as_u64()).unwrap_or(usize::MAX);
    let opened = tokio::task::spawn_blocking(move || {
        super::source::open(&path, &check, max_record, 0).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::internal("checking the import file", e))?;
    if let Err(e) = opened {
        let _ = tokio::fs::remove_file(&received.path).await;
        return Err(ApiError::bad_request(e));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let key = options.key(&received.sha256);
    let new = NewImportJob {
        id: id.clone(),
        key,
        content_sha256: received.sha256.clone(),
        format: options.format.as_str().to_owned(),
        database: options.database.clone(),
        measurement: options.measurement.clone(),
        options: serde_json::to_value(&options).unwrap_or_default(),
        file_name: received.file_name.clone(),
        spool: spool.job_path(&id).display().to_string(),
        bytes_total: received.bytes,
        created_by: Some(principal.name.clone()),
        created_by_token: principal.token_id,
    };
    let created = state.meta.create_import_job(new).await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            let _ = tokio::fs::remove_file(&received.path).await;
            return Err(meta_error(e));
        }
    };
    match created {
        Created::Existing(job) => {
            let _ = tokio::fs::remove_file(&received.path).await;
            Ok((job, true))
        }
        Created::New(job) => {
            // A re-queued job keeps its id: its file goes to that id's place.
            let to = std::path::PathBuf::from(&job.spool);
            if let Err(e) = tokio::fs::rename(&received.path, &to).await {
                let _ = state
                    .meta
                    .finish_import_job(
                        &job.id,
                        crate::meta::imports::FAILED,
                        Some(format!("spool: {e}")),
                    )
                    .await;
                return Err(ApiError::unavailable(format!(
                    "moving the received file: {e}"
                )));
            }
            state.imports.inner.wake.notify_one();
            Ok((job, false))
        }
    }
}

/// Waits until `job` ends (the request may go away: the job does not). A
/// hub that is stopping answers 503: the job resumes at the next start.
async fn wait(state: &AppState, job: ImportJob) -> ApiResult<ImportJob> {
    let mut job = job;
    while job.state == QUEUED || job.state == RUNNING {
        if state.imports.inner.stop.is_cancelled() {
            return Err(ApiError::unavailable(format!(
                "the hub is stopping; import job {} resumes at its next start (GET /api/v1/import/jobs/{})",
                job.id, job.id
            ))
            .with_retry_after(30));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = state
            .meta
            .import_job(&job.id)
            .await
            .map_err(meta_error)?
            .ok_or_else(|| ApiError::internal("import job", "vanished while waited for"))?;
    }
    Ok(job)
}

/// Arc's answer for an ended job.
fn answer(job: ImportJob, duplicate: bool) -> ApiResult<Response> {
    if job.state != COMPLETED {
        let reason = job.error.clone().unwrap_or_else(|| job.state.clone());
        let mut e = if reason.starts_with("storage:") {
            ApiError::unavailable(format!("import job {} {}: {reason}", job.id, job.state))
        } else {
            ApiError::bad_request(format!("import job {} {}: {reason}", job.id, job.state))
        };
        e.body.details = job
            .rejections
            .iter()
            .take(10)
            .map(|r| ferry_protocols::api::ErrorDetail {
                line_number: r.line,
                record_index: r.record,
                error_message: r.reason.clone(),
                original_line: None,
            })
            .collect();
        return Err(e);
    }
    let view = JobView::from(job);
    let result = json!({
        "database": view.database,
        "measurement": view.measurement,
        "measurements": view.measurements,
        "rows_imported": if duplicate { 0 } else { view.rows_imported },
        "rows_rejected": if duplicate { 0 } else { view.rows_rejected },
        "time_range_min": view.time_range_min,
        "time_range_max": view.time_range_max,
        "duration_ms": view.duration_ms,
        "job_id": view.id,
    });
    Ok(
        Json(json!({"status": "ok", "duplicate": duplicate, "result": result, "job": view}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    pub limit: Option<usize>,
}

/// `GET /api/v1/import/jobs?limit=100`.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require(Permission::Read)?;
    enabled(&state)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = state
        .meta
        .list_import_jobs(limit)
        .await
        .map_err(meta_error)?;
    let jobs: Vec<JobView> = jobs.into_iter().map(JobView::from).collect();
    Ok(Json(json!({"count": jobs.len(), "jobs": jobs})))
}

async fn find(state: &AppState, id: &str) -> ApiResult<ImportJob> {
    state
        .meta
        .import_job(id)
        .await
        .map_err(meta_error)?
        .ok_or_else(|| ApiError::not_found(format!("no import job {id:?}")))
}

/// `GET /api/v1/import/jobs/{id}`.
pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    principal.require(Permission::Read)?;
    enabled(&state)?;
    Ok(Json(JobView::from(find(&state, &id).await?)))
}

/// `DELETE /api/v1/import/jobs/{id}`: cancels a queued or running job.
pub async fn cancel(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    principal.require_anywhere(Permission::Write)?;
    let imports = enabled(&state)?;
    let job = find(&state, &id).await?;
    principal.require_on(
        Permission::Write,
        &job.database,
        job.measurement.as_deref().unwrap_or("*"),
    )?;
    if job.state == QUEUED {
        state
            .meta
            .finish_import_job(&id, crate::meta::imports::CANCELLED, None)
            .await
            .map_err(meta_error)?;
        let _ = tokio::fs::remove_file(&job.spool).await;
    } else if job.state == RUNNING {
        if let Ok(mut c) = imports.inner.cancelled.lock() {
            c.insert(id.clone());
        }
    } else {
        return Err(ApiError::new(
            ferry_protocols::api::ErrorCode::Conflict,
            format!("import job {id} is {}, not queued or running", job.state),
        ));
    }
    // A running job stops at its next chunk.
    for _ in 0..50 {
        let job = find(&state, &id).await?;
        if job.state != RUNNING {
            return Ok(Json(JobView::from(job)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Json(JobView::from(find(&state, &id).await?)))
}

#[derive(Debug, Deserialize)]
pub struct OffsetQuery {
    pub offset: Option<u64>,
}

/// `GET /api/v1/import/uploads/{sha256}`: bytes received so far.
pub async fn upload_status(
    principal: Principal,
    State(state): State<AppState>,
    Path(sha): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require(Permission::Write)?;
    let imports = enabled(&state)?;
    let received = imports.inner.spool.received(&sha).await?;
    Ok(Json(json!({"sha256": sha, "received": received})))
}

/// `PUT /api/v1/import/uploads/{sha256}?offset=N`: appends the body.
pub async fn upload_append(
    principal: Principal,
    State(state): State<AppState>,
    Path(sha): Path<String>,
    Query(q): Query<OffsetQuery>,
    Body(body): Body,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require(Permission::Write)?;
    let imports = enabled(&state)?;
    let n = body.len() as u64;
    // Detached from the request: a client that goes away mid-write cannot
    // leave the file and the upload's hash state apart.
    let owned = imports.clone();
    let key = sha.clone();
    let received = tokio::spawn(async move {
        owned
            .inner
            .spool
            .append(&key, q.offset.unwrap_or(0), body)
            .await
    })
    .await
    .map_err(|e| ApiError::internal("appending to an upload", e))??;
    metrics::counter!(m::IMPORT_BYTES).increment(n);
    Ok(Json(json!({"sha256": sha, "received": received})))
}

/// `DELETE /api/v1/import/uploads/{sha256}`.
pub async fn upload_delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(sha): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require(Permission::Write)?;
    let imports = enabled(&state)?;
    let existed = imports.inner.spool.discard_upload(&sha).await?;
    if !existed {
        return Err(ApiError::not_found(format!("no upload {sha}")));
    }
    Ok(Json(json!({"sha256": sha, "deleted": true})))
}
