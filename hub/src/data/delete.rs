//! `POST /api/v1/delete` (permission `delete`, held by `admin`): Arc's
//! delete, on a Delta table ([`crate::table::Tables::delete_rows`] says
//! how rows go and what happens to concurrent ingest).
//!
//! Body: `{"database": "plant", "measurement": "boiler", "where": "host =
//! 'a' AND time < '2026-01-01T00:00:00Z'", "dry_run": false, "confirm":
//! false}`. `where` is one SQL boolean expression over the table's columns;
//! a row goes where it is true. `dry_run` (default `false`) counts without
//! changing anything. A real delete of every row of the table, or of more
//! than `delete.confirm_threshold` rows, is refused with 400
//! `confirm_required` (naming which) unless `confirm` is `true`; a dry run
//! says whether it would be (`confirm_required`).
//!
//! Answer (Arc's fields first): `success`, `deleted_count`,
//! `affected_files`, `rewritten_files`, `execution_time_ms`, `dry_run`,
//! `files_processed`, then `table`, `removed_files` (dropped whole),
//! `files_read`, `table_rows`, `confirm_required` and `version` (the Delta
//! version of the delete, `null` in a dry run or when nothing matched).
//!
//! | status | when |
//! |---|---|
//! | 400 `bad_request` | a bad name, or a `where` that is not a boolean expression over the table's columns (a statement, a subquery, an unknown column) |
//! | 400 `confirm_required` | see above; nothing changed |
//! | 403 `forbidden` | the token lacks `delete`, or `delete.enabled` is off |
//! | 404 `not_found` | no such table |
//! | 409 `conflict` | the table's files kept changing under the delete (three plans); nothing changed |
//! | 422 `query_rejected` | a table Ferry cannot rewrite (deletion vectors, column mapping) |

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use ferry_protocols::api::ErrorCode;
use ferry_protocols::{DatabaseName, Measurement};
use serde::{Deserialize, Serialize};

use crate::audit::AuditNote;
use crate::auth::{Permission, Principal};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};
use crate::table::{DeleteError, DeleteReport, TableName};

/// The request body (Arc's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub database: String,
    pub measurement: String,
    #[serde(rename = "where")]
    pub predicate: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub confirm: bool,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct DeleteAnswer {
    pub success: bool,
    pub dry_run: bool,
    pub execution_time_ms: f64,
    pub table: String,
    /// Whether a real delete of these rows needs `"confirm": true`.
    pub confirm_required: bool,
    #[serde(flatten)]
    pub report: DeleteReport,
}

/// `GET /api/v1/delete/config` (Arc's shape).
#[derive(Debug, Serialize)]
pub struct DeleteSettings {
    pub enabled: bool,
    pub confirmation_threshold: u64,
    pub implementation: &'static str,
}

/// Why a real delete of `report` needs confirmation, if it does.
fn needs_confirmation(report: &DeleteReport, table: &str, threshold: u64) -> Option<String> {
    if report.is_whole_table() {
        Some(format!(
            "this deletes every row of {table} ({} rows); send \"confirm\": true to do it",
            report.deleted_count
        ))
    } else if report.deleted_count > threshold {
        Some(format!(
            "this deletes {} rows of {table}, more than delete.confirm_threshold ({threshold}); \
             send \"confirm\": true to do it",
            report.deleted_count
        ))
    } else {
        None
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> Self {
        match e {
            DeleteError::NoTable(_) => ApiError::not_found(e.to_string()),
            DeleteError::BadPredicate(_) | DeleteError::NewColumns(_) => {
                ApiError::bad_request(e.to_string())
            }
            DeleteError::Unsupported { .. } => {
                ApiError::new(ErrorCode::QueryRejected, e.to_string())
            }
            DeleteError::Conflict(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            DeleteError::Table(t) => t.into(),
        }
    }
}

/// `POST /api/v1/delete`.
pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DeleteRequest>,
) -> ApiResult<(Extension<AuditNote>, Json<DeleteAnswer>)> {
    principal.require_anywhere(Permission::Delete)?;
    if !state.config.delete.enabled {
        return Err(ApiError::forbidden(
            "deletes are turned off on this hub (delete.enabled = false)",
        ));
    }
    let database = DatabaseName::new(request.database.trim())
        .map_err(|e| ApiError::bad_request(format!("database {:?}: {e}", request.database)))?;
    let measurement = Measurement::new(request.measurement.trim()).map_err(|e| {
        ApiError::bad_request(format!("measurement {:?}: {e}", request.measurement))
    })?;
    principal.require_on(Permission::Delete, database.as_str(), measurement.as_str())?;
    let note = AuditNote {
        target: None,
        database: Some(database.to_string()),
        detail: None,
    };
    let name = TableName::new(database, measurement);
    let label = name.to_string();
    let threshold = state.config.delete.confirm_threshold;
    let started = Instant::now();
    let confirm = request.confirm;
    let report = state
        .tables
        .delete_rows(
            &name,
            &request.predicate,
            request.dry_run,
            confirm,
            |report| match needs_confirmation(report, &label, threshold) {
                Some(reason) if !confirm => Err(ApiError::new(ErrorCode::ConfirmRequired, reason)),
                _ => Ok(()),
            },
        )
        .await
        .map_err(ApiError::from)??;
    tracing::info!(
        principal = %principal.name,
        table = %label,
        predicate = %request.predicate,
        dry_run = request.dry_run,
        rows = report.deleted_count,
        "delete"
    );
    let note = AuditNote {
        target: Some(label.clone()),
        detail: Some(serde_json::json!({
            "predicate": request.predicate,
            "dry_run": request.dry_run,
            "rows": report.deleted_count,
        })),
        ..note
    };
    Ok((
        Extension(note),
        Json(DeleteAnswer {
            success: true,
            dry_run: request.dry_run,
            execution_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            confirm_required: needs_confirmation(&report, &label, threshold).is_some(),
            table: label,
            report,
        }),
    ))
}

/// `GET /api/v1/delete/config`.
pub async fn config(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<DeleteSettings>> {
    principal.require(Permission::Read)?;
    Ok(Json(DeleteSettings {
        enabled: state.config.delete.enabled,
        confirmation_threshold: state.config.delete.confirm_threshold,
        implementation: "delta-rewrite",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_for_whole_tables_and_above_the_threshold() {
        let report = |deleted, rows| DeleteReport {
            deleted_count: deleted,
            table_rows: rows,
            ..DeleteReport::default()
        };
        assert!(needs_confirmation(&report(5, 100), "a.b", 10).is_none());
        assert!(needs_confirmation(&report(10, 100), "a.b", 10).is_none());
        let over = needs_confirmation(&report(11, 100), "a.b", 10).unwrap();
        assert!(over.contains("delete.confirm_threshold (10)"), "{over}");
        let whole = needs_confirmation(&report(3, 3), "a.b", 10).unwrap();
        assert!(whole.contains("every row of a.b"), "{whole}");
        assert!(needs_confirmation(&report(0, 0), "a.b", 10).is_none());
    }
}
