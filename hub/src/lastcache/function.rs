//! `last_cache('db.table' [, 'name'])`: a cache's rows as a table.

use std::sync::Arc;

use deltalake::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use deltalake::datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::Expr;
use ferry_protocols::{DatabaseName, Measurement};

use super::Registry;
use crate::table::TableName;

/// The table function, registered in every query session.
#[derive(Debug)]
pub struct LastCacheFunction {
    pub registry: Registry,
    /// What the query's token may read (`None`: everything).
    pub readable: Option<std::sync::Arc<crate::auth::Grants>>,
}

fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s),
        _ => None,
    }
}

impl TableFunctionImpl for LastCacheFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let Some(table) = exprs.first().and_then(text) else {
            return plan_err!("last_cache('database.measurement' [, 'cache name']) takes a string");
        };
        let name = match exprs.get(1) {
            None => None,
            Some(e) => match text(e) {
                Some(n) => Some(n),
                None => return plan_err!("last_cache's second argument is the cache's name"),
            },
        };
        if exprs.len() > 2 {
            return plan_err!("last_cache takes at most two arguments");
        }
        let default_db = args
            .session()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let (db, measurement) = match table.split_once('.') {
            Some((db, m)) => (db.to_owned(), m.to_owned()),
            None => (default_db, table.to_owned()),
        };
        let (Ok(db), Ok(m)) = (
            DatabaseName::new(db.as_str()),
            Measurement::new(measurement.as_str()),
        ) else {
            return plan_err!("last_cache: {table:?} is not database.measurement");
        };
        let table_name = TableName::new(db, m);
        if let Some(g) = &self.readable
            && !g.allows(
                crate::auth::Permission::Read,
                table_name.database.as_str(),
                table_name.measurement.as_str(),
            )
        {
            return Err(deltalake::datafusion::error::DataFusionError::External(
                Box::new(crate::table::NotReadable(table_name.to_string())),
            ));
        }
        let caches = self.registry.of(&table_name);
        let cache = match name {
            Some(n) => caches.into_iter().find(|c| c.def.name == n),
            None if caches.len() > 1 => {
                let names: Vec<String> = caches.iter().map(|c| c.def.name.clone()).collect();
                return plan_err!(
                    "{table_name} has several last-value caches ({}); name one: last_cache('{table_name}', '{}')",
                    names.join(", "),
                    names[0]
                );
            }
            None => caches.into_iter().next(),
        };
        let Some(cache) = cache else {
            return plan_err!(
                "{table_name} has no last-value cache{}; create one with POST /api/v1/last_cache",
                name.map(|n| format!(" named {n:?}")).unwrap_or_default()
            );
        };
        let batch = cache.snapshot()?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Arc::new(table))
    }
}
