//! `GetDbSchemas` and `GetTables` from the catalog a query of the same
//! principal sees: the databases and tables its grants allow it to read
//! (and `information_schema`), nothing else. Filter patterns are applied
//! before a table is loaded, so a filtered `GetTables` with
//! `include_schema` loads only the tables it answers.

use std::sync::Arc;

use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::catalog::CatalogProvider;
use deltalake::datafusion::datasource::TableType;

use crate::auth::Principal;
use crate::query::engine;
use crate::server::{ApiError, AppState};

/// The table types `GetTableTypes` lists.
pub(super) const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

/// SQL `LIKE` with `%` (any run) and `_` (any one character), as Flight
/// SQL's filter patterns are defined.
pub(super) fn like(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    // matches[j]: the pattern read so far matches s[..j].
    let mut matches = vec![false; s.len() + 1];
    matches[0] = true;
    for c in &p {
        let mut next = vec![false; s.len() + 1];
        match c {
            '%' => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= matches[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 1..=s.len() {
                    next[j] = matches[j - 1] && (*c == '_' || *c == s[j - 1]);
                }
            }
        }
        matches = next;
    }
    matches[s.len()]
}

/// The catalog queries resolve tables in (DataFusion's default catalog,
/// `datafusion` unless `query.datafusion` renames it).
pub(super) fn catalog_name(state: &AppState) -> String {
    state
        .query
        .session_base()
        .options
        .catalog
        .default_catalog
        .clone()
}

fn matches(pattern: Option<&String>, name: &str) -> bool {
    pattern.is_none_or(|p| like(p, name))
}

/// The catalog of a session for `principal` (its readable tables), made
/// and read on the query executor.
async fn with_catalog<T, F, Fut>(
    state: &AppState,
    principal: &Principal,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn CatalogProvider>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send,
{
    let tables = state.tables.clone();
    let base = state.query.session_base().for_principal(principal);
    let probe = engine::Probe::new(state.query.memory_pool());
    let max_string = state.config.query.max_string_bytes.as_u64();
    let cancel = tokio_util::sync::CancellationToken::new();
    state
        .query
        .run(&principal.key(), &cancel, async move {
            let ctx = engine::session(&tables, None, base, max_string, probe).await?;
            let name = ctx
                .state()
                .config()
                .options()
                .catalog
                .default_catalog
                .clone();
            let catalog = ctx
                .catalog(&name)
                .ok_or_else(|| ApiError::internal("Flight SQL catalog", "no default catalog"))?;
            f(catalog).await
        })
        .await
}

fn wrong_catalog(catalog: Option<&String>, ours: &str) -> bool {
    catalog.is_some_and(|c| !c.is_empty() && c != ours)
}

/// `GetDbSchemas`.
pub(super) async fn schemas(
    state: &AppState,
    principal: &Principal,
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, ApiError> {
    let ours = catalog_name(state);
    let skip = wrong_catalog(query.catalog.as_ref(), &ours);
    let mut builder = query.into_builder();
    let names = with_catalog(state, principal, |c| async move { Ok(c.schema_names()) }).await?;
    if !skip {
        for name in names {
            builder.append(&ours, name);
        }
    }
    builder
        .build()
        .map_err(|e| ApiError::internal("GetDbSchemas", e))
}

/// `GetTables`.
pub(super) async fn tables(
    state: &AppState,
    principal: &Principal,
    query: CommandGetTables,
) -> Result<RecordBatch, ApiError> {
    let ours = catalog_name(state);
    let skip = wrong_catalog(query.catalog.as_ref(), &ours);
    let schema_pattern = query.db_schema_filter_pattern.clone();
    let table_pattern = query.table_name_filter_pattern.clone();
    let include_schema = query.include_schema;
    let mut builder = query.into_builder();
    if skip {
        return builder
            .build()
            .map_err(|e| ApiError::internal("GetTables", e));
    }
    let rows = with_catalog(state, principal, move |catalog| async move {
        let mut rows = Vec::new();
        for schema_name in catalog.schema_names() {
            if !matches(schema_pattern.as_ref(), &schema_name) {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table in schema.table_names() {
                if !matches(table_pattern.as_ref(), &table) {
                    continue;
                }
                let provider = if include_schema || schema_name == "information_schema" {
                    schema
                        .table(&table)
                        .await
                        .map_err(|e| ApiError::bad_request(e.message().into_owned()))?
                } else {
                    None
                };
                let kind = match provider.as_ref().map(|p| p.table_type()) {
                    Some(TableType::View) => "VIEW",
                    Some(TableType::Temporary) => "LOCAL TEMPORARY",
                    _ if schema_name == "information_schema" => "VIEW",
                    _ => "TABLE",
                };
                let columns = provider
                    .map(|p| p.schema())
                    .unwrap_or_else(|| Arc::new(deltalake::arrow::datatypes::Schema::empty()));
                rows.push((schema_name.clone(), table, kind, columns));
            }
        }
        Ok(rows)
    })
    .await?;
    for (schema, table, kind, columns) in rows {
        builder
            .append(&ours, schema, table, kind, &columns)
            .map_err(|e| ApiError::internal("GetTables", e))?;
    }
    builder
        .build()
        .map_err(|e| ApiError::internal("GetTables", e))
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("%", ""));
        assert!(like("%", "boiler"));
        assert!(like("boil%", "boiler"));
        assert!(like("b_iler", "boiler"));
        assert!(!like("b_iler", "bboiler"));
        assert!(like("%ile%", "boiler"));
        assert!(!like("boiler_", "boiler"));
        assert!(like("boiler", "boiler"));
        assert!(!like("Boiler", "boiler"));
        assert!(like("%a%b%", "xxaxxbxx"));
    }
}
