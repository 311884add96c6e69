//! `GET /api/v1/measurements[?database=db]` (role `read`): every table the
//! hub knows, with its files, size and rows at its latest version, in
//! Arc's shape (`{"success": true, "measurements": [...], "count": n}`).
//!
//! Each table's numbers come from its log (through the reader cache), so
//! the answer costs one log refresh per listed table; name a database to
//! list only its tables.

use axum::Json;
use axum::extract::{Query, State};
use ferry_protocols::DatabaseName;
use serde::{Deserialize, Serialize};

use crate::auth::{Permission, Principal};
use crate::server::{ApiError, ApiResult, AppState};

/// The query string.
#[derive(Debug, Deserialize)]
pub struct MeasurementsQuery {
    #[serde(default)]
    pub database: Option<String>,
}

/// One table.
#[derive(Debug, Serialize)]
pub struct MeasurementInfo {
    pub database: String,
    pub measurement: String,
    pub file_count: u64,
    /// `total_size_bytes` in MiB (Arc's field).
    pub total_size_mb: f64,
    pub total_size_bytes: u64,
    /// Rows, from the files' statistics.
    pub row_count: u64,
    /// The table's Delta version.
    pub version: Option<u64>,
    /// Where the table is stored.
    pub storage_path: String,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Measurements {
    pub success: bool,
    pub measurements: Vec<MeasurementInfo>,
    pub count: usize,
}

/// `GET /api/v1/measurements`.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<MeasurementsQuery>,
) -> ApiResult<Json<Measurements>> {
    principal.require(Permission::Read)?;
    let only = match q.database.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(db) => Some(
            DatabaseName::new(db)
                .map_err(|e| ApiError::bad_request(format!("database {db:?}: {e}")))?,
        ),
    };
    let names = state.tables.known().await?;
    let mut measurements = Vec::new();
    for name in names
        .iter()
        .filter(|n| only.as_ref().is_none_or(|db| &n.database == db))
    {
        let Some(s) = state.tables.summary(name).await? else {
            continue;
        };
        measurements.push(MeasurementInfo {
            database: name.database.to_string(),
            measurement: name.measurement.to_string(),
            file_count: s.files,
            total_size_mb: s.bytes as f64 / (1024.0 * 1024.0),
            total_size_bytes: s.bytes,
            row_count: s.rows,
            version: s.version,
            storage_path: s.location,
        });
    }
    Ok(Json(Measurements {
        success: true,
        count: measurements.len(),
        measurements,
    }))
}
