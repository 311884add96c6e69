//! Request parameters of the write endpoints: the target database, the
//! timestamp precision, `accept_partial`, and the body's encoding.

use std::borrow::Cow;

use axum::extract::Query;
use axum::http::{HeaderMap, Uri, header};
use ferry_protocols::api::{ErrorCode, headers};
use ferry_protocols::compression::{self, Format};
use ferry_protocols::{DatabaseName, Precision};
use serde::Deserialize;

use crate::server::ApiError;

/// Query parameters understood by the write endpoints (others are ignored,
/// as InfluxDB clients send extras such as `rp`, `org` or `consistency`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WriteParams {
    /// InfluxDB 1.x / Ferry: the database.
    pub db: Option<String>,
    /// InfluxDB 2.x: the bucket, `database` or `database/retention-policy`.
    pub bucket: Option<String>,
    pub precision: Option<String>,
    /// InfluxDB 3 semantics; default true (see `docs/hub-api-data.md`).
    pub accept_partial: Option<bool>,
}

impl WriteParams {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Self, ApiError> {
        match Query::<WriteParams>::try_from_uri(uri) {
            Ok(Query(p)) => Ok(p),
            Err(e) => Err(ApiError::bad_request(format!(
                "invalid query parameters: {}",
                e.body_text()
            ))),
        }
    }

    pub(crate) fn accept_partial(&self) -> bool {
        self.accept_partial.unwrap_or(true)
    }

    /// The precision, default nanoseconds. InfluxDB 1.x's `h` and `m` are
    /// refused (no client sends them by default).
    pub(crate) fn precision(&self) -> Result<Precision, ApiError> {
        match self.precision.as_deref() {
            None | Some("") => Ok(Precision::Ns),
            Some(p) => p
                .parse()
                .map_err(|e: ferry_protocols::time::PrecisionError| {
                    ApiError::bad_request(e.to_string())
                }),
        }
    }
}

/// Which endpoint's rule finds the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatabaseSource {
    /// `/write`: `db`.
    V1,
    /// `/api/v2/write`: `bucket`, a `/rp` suffix stripped.
    V2,
    /// Ferry / Arc: `x-ferry-database`, `x-arc-database`, else `db`.
    Ferry,
}

/// The target database of a write.
pub(crate) fn database(
    source: DatabaseSource,
    params: &WriteParams,
    headers_map: &HeaderMap,
) -> Result<DatabaseName, ApiError> {
    let raw: Option<Cow<'_, str>> = match source {
        DatabaseSource::V1 => params.db.as_deref().map(Cow::Borrowed),
        DatabaseSource::V2 => params
            .bucket
            .as_deref()
            .map(|b| Cow::Borrowed(b.split_once('/').map_or(b, |(db, _rp)| db))),
        DatabaseSource::Ferry => header_str(headers_map, headers::DATABASE)?
            .or(header_str(headers_map, headers::ARC_DATABASE)?)
            .map(|s| Cow::Owned(s.to_owned()))
            .or(params.db.as_deref().map(Cow::Borrowed)),
    };
    let what = match source {
        DatabaseSource::V1 => "the db query parameter",
        DatabaseSource::V2 => "the bucket query parameter",
        DatabaseSource::Ferry => "the x-ferry-database header (or x-arc-database, or ?db=)",
    };
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "missing database: set {what}"
        )));
    };
    DatabaseName::new(raw.as_ref()).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII"))),
    }
}

/// Decompresses a write body. `Content-Encoding: gzip` / `zstd` must match
/// the body's magic bytes; without the header, a gzip or zstd body is still
/// recognised by its magic (Arc clients rely on it). Output is capped at
/// `max`.
pub(crate) fn decode_body<'a>(
    headers_map: &HeaderMap,
    body: &'a [u8],
    max: usize,
) -> Result<Cow<'a, [u8]>, ApiError> {
    let declared = match header_str(headers_map, header::CONTENT_ENCODING.as_str())? {
        None | Some("") | Some("identity") => None,
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => {
            Some(Format::Gzip)
        }
        Some(e) if e.eq_ignore_ascii_case("zstd") => Some(Format::Zstd),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("unsupported Content-Encoding {other:?}; use gzip, zstd or none"),
            ));
        }
    };
    if let Some(format) = declared
        && compression::detect(body) != Some(format)
    {
        return Err(ApiError::bad_request(format!(
            "Content-Encoding is {format} but the body is not {format}"
        )));
    }
    compression::decompress(body, max).map_err(|e| match e {
        compression::CompressionError::TooLarge { limit } => ApiError::payload_too_large(limit),
        other => ApiError::bad_request(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn database_sources() {
        let p = WriteParams {
            db: Some("a".into()),
            bucket: Some("b/autogen".into()),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        assert_eq!(database(DatabaseSource::V1, &p, &h).unwrap().as_str(), "a");
        assert_eq!(database(DatabaseSource::V2, &p, &h).unwrap().as_str(), "b");
        assert_eq!(
            database(DatabaseSource::Ferry, &p, &h).unwrap().as_str(),
            "a"
        );
        h.insert(headers::ARC_DATABASE, HeaderValue::from_static("arc"));
        assert_eq!(
            database(DatabaseSource::Ferry, &p, &h).unwrap().as_str(),
            "arc"
        );
        h.insert(headers::DATABASE, HeaderValue::from_static("ferry"));
        assert_eq!(
            database(DatabaseSource::Ferry, &p, &h).unwrap().as_str(),
            "ferry"
        );
        let bad = WriteParams {
            db: Some("../etc".into()),
            ..Default::default()
        };
        let err = database(DatabaseSource::V1, &bad, &HeaderMap::new()).unwrap_err();
        assert!(
            err.body.message.contains("forbidden character"),
            "{}",
            err.body.message
        );
        assert!(
            database(
                DatabaseSource::V1,
                &WriteParams::default(),
                &HeaderMap::new()
            )
            .is_err()
        );
    }
}
