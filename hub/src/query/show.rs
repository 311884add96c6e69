//! `SHOW DATABASES` and `SHOW MEASUREMENTS [FROM db]`, answered from the
//! table list before DataFusion sees the statement (InfluxQL habits that
//! Arc also accepts). The answer has the shape of any query answer.
//!
//! | statement | columns |
//! |---|---|
//! | `SHOW DATABASES` | `name` |
//! | `SHOW MEASUREMENTS` | `database`, `name` (all databases, or the request's database) |
//! | `SHOW MEASUREMENTS FROM db` (or `ON db`) | `database`, `name` |
//!
//! Keywords are case-insensitive; a trailing `;` is allowed.

use std::collections::BTreeSet;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use ferry_protocols::DatabaseName;

use super::engine::QueryOutput;
use crate::server::ApiError;
use crate::table::Tables;

/// A recognised `SHOW` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    Databases,
    Measurements { from: Option<String> },
}

/// Recognises a `SHOW` statement handled here; `None` for any other SQL.
pub fn parse(sql: &str) -> Option<Show> {
    let sql = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    match upper.as_slice() {
        ["SHOW", "DATABASES"] => Some(Show::Databases),
        ["SHOW", "MEASUREMENTS"] => Some(Show::Measurements { from: None }),
        ["SHOW", "MEASUREMENTS", "FROM" | "ON", _] => Some(Show::Measurements {
            from: words.get(3).map(|w| unquote(w).to_owned()),
        }),
        _ => None,
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Runs a `SHOW` statement. `database` is the request's default database.
pub async fn run(
    tables: &Tables,
    show: Show,
    database: Option<&DatabaseName>,
    max_rows: usize,
    readable: Option<&crate::auth::Grants>,
) -> Result<QueryOutput, ApiError> {
    let mut names = tables.known().await.map_err(ApiError::from)?;
    if let Some(g) = readable {
        names.retain(|n| {
            g.allows(
                crate::auth::Permission::Read,
                n.database.as_str(),
                n.measurement.as_str(),
            )
        });
    }
    match show {
        Show::Databases => {
            let dbs: BTreeSet<&str> = names.iter().map(|n| n.database.as_str()).collect();
            let schema = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)]));
            let col: ArrayRef = Arc::new(StringArray::from_iter_values(dbs));
            let batch = RecordBatch::try_new(schema.clone(), vec![col])
                .map_err(|e| ApiError::internal("SHOW DATABASES", e))?;
            Ok(QueryOutput::from_batches(schema, vec![batch], max_rows))
        }
        Show::Measurements { from } => {
            let filter = match from {
                Some(db) => Some(
                    DatabaseName::new(db.as_str())
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                ),
                None => database.cloned(),
            };
            let rows: Vec<(&str, &str)> = names
                .iter()
                .filter(|n| filter.as_ref().is_none_or(|db| &n.database == db))
                .map(|n| (n.database.as_str(), n.measurement.as_str()))
                .collect();
            let schema = Arc::new(Schema::new(vec![
                Field::new("database", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
            ]));
            let dbs: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
            let ms: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
            let batch = RecordBatch::try_new(schema.clone(), vec![dbs, ms])
                .map_err(|e| ApiError::internal("SHOW MEASUREMENTS", e))?;
            Ok(QueryOutput::from_batches(schema, vec![batch], max_rows))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_show() {
        assert_eq!(parse("show databases;"), Some(Show::Databases));
        assert_eq!(
            parse("  SHOW   MEASUREMENTS "),
            Some(Show::Measurements { from: None })
        );
        assert_eq!(
            parse("SHOW MEASUREMENTS FROM \"plant\""),
            Some(Show::Measurements {
                from: Some("plant".into())
            })
        );
        assert_eq!(parse("SHOW TABLES"), None);
        assert_eq!(parse("SELECT 1"), None);
    }
}
