//! The last-value cache API, and loading the caches at start.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/v1/last_cache` | read | `{"caches": [...], "count"}`, each with `keys` held |
//! | `POST /api/v1/last_cache` | admin | [`CacheCreate`] → 201 the cache, filled from the table |
//! | `DELETE /api/v1/last_cache/{id}` | admin | `{"success": true, "cache"}` |
//!
//! InfluxDB 3's `POST` / `DELETE /api/v3/configure/last_cache` take the
//! same bodies (`db`, `table`, `name`, `key_columns`, `value_columns`,
//! `count`, `ttl` in seconds; `DELETE` by `db`, `table`, `name`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_protocols::api::ErrorCode;
use ferry_protocols::batch::{ColumnRole, TIME_ZONE};
use ferry_protocols::name::TIME_COLUMN;
use ferry_protocols::{DatabaseName, Measurement};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Cache, fill_sql, quoted};
use crate::auth::{Permission, Principal};
use crate::meta::last_caches::{LastCacheDef, NewLastCache};
use crate::query::engine::{self, Limits, Probe};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};
use crate::table::{PARTITION_COLUMN, TableName};

/// `POST` body (InfluxDB 3's names accepted: `db`, `table`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheCreate {
    #[serde(alias = "db")]
    pub database: String,
    #[serde(alias = "table")]
    pub measurement: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Default: the table's tags.
    #[serde(default)]
    pub key_columns: Option<Vec<String>>,
    /// Default: every other column.
    #[serde(default)]
    pub value_columns: Option<Vec<String>>,
    /// 1-10, default 1.
    #[serde(default)]
    pub count: Option<u8>,
    /// Seconds (a number) or a duration (`"4h"`); default `last_cache.default_ttl`.
    #[serde(default)]
    pub ttl: Option<Value>,
}

/// InfluxDB 3's `DELETE` parameters.
#[derive(Debug, Deserialize)]
pub struct CacheKey {
    pub db: String,
    pub table: String,
    pub name: String,
}

fn enabled(state: &AppState) -> ApiResult<()> {
    if state.config.last_cache.enabled {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the last-value cache is disabled (last_cache.enabled = false)",
        ))
    }
}

fn ttl_ms(state: &AppState, ttl: Option<&Value>) -> ApiResult<i64> {
    let duration = match ttl {
        None | Some(Value::Null) => state.config.last_cache.default_ttl,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                ApiError::bad_request(format!("ttl {n} is not a positive number of seconds"))
            })?,
        Some(Value::String(s)) => humantime::parse_duration(s)
            .map_err(|e| ApiError::bad_request(format!("ttl {s:?} is not a duration: {e}")))?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "ttl {other} is neither seconds nor a duration"
            )));
        }
    };
    i64::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| ApiError::bad_request("ttl is out of range"))
}

/// The table's columns and tags now, from its schema.
async fn table_columns(
    state: &AppState,
    table: &TableName,
) -> ApiResult<(Vec<String>, Vec<String>)> {
    let sql = format!(
        "SELECT * FROM {}.{} LIMIT 0",
        quoted(table.database.as_str()),
        quoted(table.measurement.as_str())
    );
    let schema = engine::output_schema(
        &state.tables,
        &sql,
        None,
        state.query.session_base(),
        limits(state),
        Probe::new(state.query.memory_pool()),
    )
    .await
    .map_err(|_| ApiError::not_found(format!("table {table} does not exist")))?;
    let mut columns = Vec::new();
    let mut tags = Vec::new();
    for f in schema.fields() {
        if f.name() == PARTITION_COLUMN || f.name() == TIME_COLUMN {
            continue;
        }
        if ColumnRole::of(f) == Some(ColumnRole::Tag)
            || matches!(
                f.data_type(),
                deltalake::arrow::datatypes::DataType::Dictionary(..)
            )
        {
            tags.push(f.name().clone());
        }
        columns.push(f.name().clone());
    }
    Ok((columns, tags))
}

fn limits(state: &AppState) -> Limits {
    Limits {
        max_rows: state.config.last_cache.max_keys.saturating_mul(10),
        max_result_bytes: usize::MAX,
        max_string_bytes: state.config.query.max_string_bytes.as_u64(),
    }
}

/// Fills `cache` from its table (the newest rows per key within its ttl).
pub async fn fill(state: &AppState, cache: &Cache) -> ApiResult<()> {
    let sql = fill_sql(&cache.def);
    let (tables, base, limits) = (
        state.tables.clone(),
        state.query.session_base(),
        limits(state),
    );
    let probe = Probe::new(state.query.memory_pool());
    let output = state
        .query
        .run(
            &format!("last_cache:{}", cache.def.name),
            &tokio_util::sync::CancellationToken::new(),
            async move { engine::run(&tables, &sql, None, base, limits, probe).await },
        )
        .await?;
    for batch in &output.batches {
        cache.observe(batch);
    }
    Ok(())
}

/// Validates and stores a new cache, fills it and registers it.
pub async fn create_cache(state: &AppState, body: CacheCreate) -> ApiResult<LastCacheDef> {
    let database = DatabaseName::new(body.database.as_str())
        .map_err(|e| ApiError::bad_request(format!("database {:?}: {e}", body.database)))?;
    let measurement = Measurement::new(body.measurement.as_str())
        .map_err(|e| ApiError::bad_request(format!("measurement {:?}: {e}", body.measurement)))?;
    let table = TableName::new(database.clone(), measurement.clone());
    let (columns, tags) = table_columns(state, &table).await?;
    let key_columns = body.key_columns.unwrap_or(tags);
    let known = |c: &String| columns.contains(c);
    if let Some(bad) = key_columns
        .iter()
        .chain(body.value_columns.iter().flatten())
        .find(|c| !known(c))
    {
        return Err(ApiError::bad_request(format!(
            "{table} has no column {bad:?} (time and day are always there and cannot be chosen)"
        )));
    }
    if let Some(both) = body
        .value_columns
        .iter()
        .flatten()
        .find(|c| key_columns.contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "column {both:?} is both a key and a value column"
        )));
    }
    let count = body.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::bad_request(format!(
            "count {count} is not within 1-10"
        )));
    }
    let ttl_ms = ttl_ms(state, body.ttl.as_ref())?;
    let name = body.name.unwrap_or_else(|| {
        if key_columns.is_empty() {
            format!("{measurement}_last")
        } else {
            format!("{measurement}_{}_last", key_columns.join("_"))
        }
    });
    let name = crate::maintenance::routes::check_policy_name(Some(&name))?;
    let max = state.config.last_cache.max_caches;
    if state.meta.list_last_caches().await?.len() >= max {
        return Err(ApiError::bad_request(format!(
            "there are already last_cache.max_caches ({max}) last-value caches"
        )));
    }
    let def = match state
        .meta
        .create_last_cache(NewLastCache {
            name,
            database: database.as_str().to_owned(),
            measurement: measurement.as_str().to_owned(),
            key_columns,
            value_columns: body.value_columns,
            count,
            ttl_ms,
        })
        .await?
    {
        Ok(def) => def,
        Err(taken) => return Err(ApiError::new(ErrorCode::Conflict, taken)),
    };
    let cache = Arc::new(Cache::new(def.clone(), state.config.last_cache.max_keys));
    // Registered first, so that no commit between the fill and the
    // registration is missed (the fill and the feed agree on duplicates).
    state.tables.last_caches().add(table, cache.clone());
    if let Err(e) = fill(state, &cache).await {
        state.tables.last_caches().remove(def.id);
        let _ = state.meta.delete_last_cache(def.id).await;
        return Err(e);
    }
    Ok(def)
}

/// Makes the caches in memory those stored: drops the ones deleted, adds
/// and fills the new ones (at start, and when another hub changed them
/// through the shared metadata log). The stored definitions, or `None` if
/// they cannot be read.
pub async fn sync(state: &AppState) -> Option<Vec<crate::meta::last_caches::LastCacheDef>> {
    if !state.config.last_cache.enabled {
        return None;
    }
    let stored = match state.meta.list_last_caches().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last-value caches");
            return None;
        }
    };
    let registry = state.tables.last_caches();
    let held: Vec<i64> = registry.all().iter().map(|c| c.def.id).collect();
    for id in &held {
        if !stored.iter().any(|d| d.id == *id) {
            registry.remove(*id);
        }
    }
    for def in stored.iter().filter(|d| !held.contains(&d.id)) {
        let (Ok(db), Ok(m)) = (
            DatabaseName::new(def.database.as_str()),
            Measurement::new(def.measurement.as_str()),
        ) else {
            continue;
        };
        let cache = Arc::new(Cache::new(def.clone(), state.config.last_cache.max_keys));
        state
            .tables
            .last_caches()
            .add(TableName::new(db, m), cache.clone());
        match fill(state, &cache).await {
            Ok(()) => {
                tracing::info!(cache = %def.name, keys = cache.keys(), "last-value cache filled")
            }
            Err(e) => {
                tracing::warn!(cache = %def.name, error = %e.message(), "cannot fill a last-value cache")
            }
        }
    }
    Some(stored)
}

/// Loads every stored cache (and creates the ones `[last_cache]` declares)
/// at start, each filled from its table.
pub async fn load(state: &AppState) {
    if !state.config.last_cache.enabled {
        return;
    }
    let Some(stored) = sync(state).await else {
        return;
    };
    for declared in &state.config.last_cache.caches {
        let exists = stored.iter().any(|d| {
            d.database == declared.database
                && d.measurement == declared.measurement
                && declared.name.as_ref().is_none_or(|n| *n == d.name)
        });
        if exists {
            continue;
        }
        let body = CacheCreate {
            database: declared.database.clone(),
            measurement: declared.measurement.clone(),
            name: declared.name.clone(),
            key_columns: declared.key_columns.clone(),
            value_columns: declared.value_columns.clone(),
            count: declared.count,
            ttl: declared.ttl.map(|t| json!(t.as_secs_f64())),
        };
        match create_cache(state, body).await {
            Ok(def) => tracing::info!(cache = %def.name, "last-value cache created from hub.toml"),
            Err(e) => tracing::warn!(
                database = %declared.database,
                measurement = %declared.measurement,
                error = %e.message(),
                "cannot create the last-value cache hub.toml declares (its table may not exist yet)"
            ),
        }
    }
}

fn with_keys(state: &AppState, def: &LastCacheDef) -> Value {
    let keys = state
        .tables
        .last_caches()
        .all()
        .iter()
        .find(|c| c.def.id == def.id)
        .map_or(0, |c| c.keys());
    let mut v = json!(def);
    v["keys"] = json!(keys);
    v["time_zone"] = json!(TIME_ZONE);
    v
}

pub async fn list(principal: Principal, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    principal.require(Permission::Read)?;
    enabled(&state)?;
    let defs = state.meta.list_last_caches().await?;
    let caches: Vec<Value> = defs.iter().map(|d| with_keys(&state, d)).collect();
    Ok(Json(json!({ "count": caches.len(), "caches": caches })))
}

pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CacheCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Permission::Admin)?;
    enabled(&state)?;
    let def = create_cache(&state, body).await?;
    tracing::info!(by = %principal.name, cache = %def.name, "last-value cache created");
    Ok((StatusCode::CREATED, Json(with_keys(&state, &def))))
}

async fn delete_by_id(state: &AppState, id: i64) -> ApiResult<Json<Value>> {
    match state.meta.delete_last_cache(id).await? {
        Some(def) => {
            state.tables.last_caches().remove(id);
            Ok(Json(json!({ "success": true, "cache": def })))
        }
        None => Err(ApiError::not_found(format!(
            "last-value cache {id} not found"
        ))),
    }
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require(Permission::Admin)?;
    enabled(&state)?;
    let id = crate::server::integer_id("cache id", &raw)?;
    delete_by_id(&state, id).await
}

/// InfluxDB 3's `DELETE /api/v3/configure/last_cache?db=&table=&name=`.
pub async fn delete_by_name(
    principal: Principal,
    State(state): State<AppState>,
    Query(key): Query<CacheKey>,
) -> ApiResult<Json<Value>> {
    principal.require(Permission::Admin)?;
    enabled(&state)?;
    let found = state
        .meta
        .list_last_caches()
        .await?
        .into_iter()
        .find(|d| d.database == key.db && d.measurement == key.table && d.name == key.name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{}.{} has no last-value cache named {:?}",
                key.db, key.table, key.name
            ))
        })?;
    delete_by_id(&state, found.id).await
}
