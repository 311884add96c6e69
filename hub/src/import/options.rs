//! An import's options: Arc's query parameters (`measurement`,
//! `time_column`, `time_format`, `delimiter`, `skip_rows`, `precision`) and
//! Ferry's (`tag_columns`, `types`), checked before the file is received.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Uri};
use ferry_protocols::lines::{TimeFormat, ValueKind};
use ferry_protocols::{DatabaseName, FieldKey, Measurement, Precision, TagKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ingest::params::{self, DatabaseSource, WriteParams};
use crate::server::ApiError;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    Lp,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            "lp" => Some(Format::Lp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Lp => "lp",
        }
    }
}

/// How a file is read; stored with its job (so a resumed job reads it the
/// same way) and part of its idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOptions {
    pub format: Format,
    pub database: String,
    /// CSV and Parquet: the table (required). Line protocol: only lines of
    /// this measurement are imported (Arc's filter).
    pub measurement: Option<String>,
    pub time_column: String,
    pub time_format: TimeFormat,
    pub delimiter: u8,
    pub skip_rows: usize,
    pub precision: Precision,
    /// Columns stored as tags (strings; an empty value is no tag).
    pub tag_columns: Vec<String>,
    /// Field types that override inference (`types=count:i64,ok:bool`).
    pub types: BTreeMap<String, ValueKind>,
    /// Columns left out (an export's extra columns, such as InfluxDB's
    /// `name`).
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    /// Chunk size the job was created with (fixed for its life: chunks
    /// are the unit of exactly-once).
    pub chunk_rows: usize,
}

/// The query parameters of `POST /api/v1/import/{format}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ImportParams {
    pub db: Option<String>,
    pub measurement: Option<String>,
    pub time_column: Option<String>,
    pub time_format: Option<String>,
    pub delimiter: Option<String>,
    pub skip_rows: Option<usize>,
    pub precision: Option<String>,
    pub tag_columns: Option<String>,
    pub types: Option<String>,
    pub ignore_columns: Option<String>,
    /// Start the job from a resumable upload with this SHA-256.
    pub upload: Option<String>,
    /// Answer 202 with the job at once instead of waiting for it.
    #[serde(rename = "async")]
    pub asynchronous: Option<bool>,
    /// The file's name, for the job listing (multipart uploads carry it).
    pub file_name: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message.into())
}

fn list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Arc's `time_format` names, and Ferry's.
fn time_format(raw: Option<&str>) -> Result<TimeFormat, ApiError> {
    Ok(match raw.unwrap_or("") {
        "" | "auto" => TimeFormat::Auto,
        "epoch_s" | "s" => TimeFormat::S,
        "epoch_ms" | "ms" => TimeFormat::Ms,
        "epoch_us" | "us" => TimeFormat::Us,
        "epoch_ns" | "ns" => TimeFormat::Ns,
        "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
        other => {
            return Err(bad(format!(
                "unsupported time_format {other:?} (want epoch_s, epoch_ms, epoch_us, epoch_ns, rfc3339, or empty for auto)"
            )));
        }
    })
}

fn types(raw: Option<&str>) -> Result<BTreeMap<String, ValueKind>, ApiError> {
    let mut out = BTreeMap::new();
    for pair in list(raw) {
        let (column, kind) = pair
            .split_once(':')
            .ok_or_else(|| bad(format!("types: {pair:?} is not column:type")))?;
        let kind: ValueKind = serde_json::from_value(serde_json::Value::String(kind.to_owned()))
            .map_err(|_| {
                bad(format!(
                    "types: {kind:?} is not one of f64, i64, u64, bool, str"
                ))
            })?;
        FieldKey::new(column).map_err(|e| bad(format!("types: column {column:?}: {e}")))?;
        out.insert(column.to_owned(), kind);
    }
    Ok(out)
}

impl ImportOptions {
    /// Checks the request's parameters for `format`.
    pub(crate) fn from_request(
        format: Format,
        uri: &Uri,
        headers: &HeaderMap,
        chunk_rows: usize,
    ) -> Result<(ImportOptions, ImportParams), ApiError> {
        let p = match axum::extract::Query::<ImportParams>::try_from_uri(uri) {
            Ok(axum::extract::Query(p)) => p,
            Err(e) => return Err(bad(format!("invalid query parameters: {}", e.body_text()))),
        };
        let write = WriteParams {
            db: p.db.clone(),
            ..WriteParams::default()
        };
        let database: DatabaseName = params::database(DatabaseSource::Ferry, &write, headers)?;
        let measurement = p.measurement.clone().or_else(|| {
            headers
                .get("x-arc-measurement")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        if let Some(m) = &measurement {
            Measurement::new(m.as_str()).map_err(|e| bad(format!("measurement {m:?}: {e}")))?;
        }
        if format != Format::Lp && measurement.is_none() {
            return Err(bad(
                "measurement is required for csv and parquet imports (?measurement=)",
            ));
        }
        let delimiter = match p.delimiter.as_deref().unwrap_or(",") {
            "\\t" | "tab" => b'\t',
            d if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" => d.as_bytes()[0],
            d => {
                return Err(bad(format!(
                    "delimiter must be a single ASCII character, got {d:?}"
                )));
            }
        };
        let precision = match p.precision.as_deref() {
            None | Some("") => Precision::Ns,
            Some(raw) => raw
                .parse()
                .map_err(|e: ferry_protocols::time::PrecisionError| bad(e.to_string()))?,
        };
        let tag_columns = list(p.tag_columns.as_deref());
        for t in &tag_columns {
            TagKey::new(t.as_str()).map_err(|e| bad(format!("tag_columns: {t:?}: {e}")))?;
        }
        let options = ImportOptions {
            format,
            database: database.as_str().to_owned(),
            measurement,
            time_column: p.time_column.clone().unwrap_or_else(|| "time".to_owned()),
            time_format: time_format(p.time_format.as_deref())?,
            delimiter,
            skip_rows: p.skip_rows.unwrap_or(0),
            precision,
            tag_columns,
            types: types(p.types.as_deref())?,
            ignore_columns: list(p.ignore_columns.as_deref()),
            chunk_rows,
        };
        Ok((options, p))
    }

    /// The job's key and `txn` app id: the content hash and everything
    /// that decides what the file becomes, so the same file imported the
    /// same way again is found, and imported differently is a new job.
    /// `chunk_rows` is left out: a changed `import.chunk_rows` must not
    /// make an imported file new.
    pub fn key(&self, content_sha256: &str) -> String {
        let what = ImportOptions {
            chunk_rows: 0,
            ..self.clone()
        };
        let mut h = Sha256::new();
        h.update(content_sha256.as_bytes());
        h.update(serde_json::to_vec(&what).unwrap_or_default());
        let digest = hex::encode(h.finalize());
        format!("import-{}", &digest[..32])
    }

    pub fn database_name(&self) -> Result<DatabaseName, ApiError> {
        DatabaseName::new(self.database.as_str()).map_err(|e| bad(e.to_string()))
    }

    pub fn measurement_name(&self) -> Result<Option<Measurement>, ApiError> {
        self.measurement
            .as_deref()
            .map(|m| Measurement::new(m).map_err(|e| bad(e.to_string())))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ImportOptions {
        ImportOptions {
            format: Format::Csv,
            database: "plant".to_owned(),
            measurement: Some("m".to_owned()),
            time_column: "time".to_owned(),
            time_format: TimeFormat::Auto,
            delimiter: b',',
            skip_rows: 0,
            precision: Precision::Ns,
            tag_columns: vec![],
            types: BTreeMap::new(),
            ignore_columns: vec![],
            chunk_rows: 1000,
        }
    }

    #[test]
    fn the_key_follows_content_and_options_but_not_the_chunk_size() {
        let a = options();
        let key = a.key("abc");
        assert!(key.starts_with("import-") && key.len() <= 64, "{key}");
        assert!(ferry_protocols::AgentId::new(key.as_str()).is_ok(), "{key}");
        let resized = ImportOptions {
            chunk_rows: 5,
            ..a.clone()
        };
        assert_eq!(resized.key("abc"), key);
        assert_ne!(a.key("abd"), key);
        let tagged = ImportOptions {
            tag_columns: vec!["site".to_owned()],
            ..a.clone()
        };
        assert_ne!(tagged.key("abc"), key);
        let elsewhere = ImportOptions {
            measurement: Some("n".to_owned()),
            ..a
        };
        assert_ne!(elsewhere.key("abc"), key);
    }
}
