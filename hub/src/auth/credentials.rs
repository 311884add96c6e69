//! Finding the token in a request (see the forms in [`crate::auth`]).

use axum::extract::Query;
use axum::http::{HeaderMap, Uri, header};
use serde::Deserialize;

/// Where a token was presented, or why none could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token(String),
    Missing,
    /// An `Authorization` header that is not one of the accepted forms.
    Malformed(&'static str),
}

/// The token of a request. `query_allowed` enables InfluxDB 1.x's
/// `?u=&p=` parameters (only on `/write`).
pub fn extract(headers: &HeaderMap, uri: &Uri, query_allowed: bool) -> Credential {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Credential::Malformed("the Authorization header is not ASCII");
        };
        return from_authorization(value.trim());
    }
    if query_allowed && let Some(token) = query_password(uri) {
        return Credential::Token(token);
    }
    Credential::Missing
}

fn from_authorization(value: &str) -> Credential {
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r.trim()),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        if rest.is_empty() {
            return Credential::Malformed("the Authorization header has no token");
        }
        return Credential::Token(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some(decoded) = decode_base64(rest) else {
            return Credential::Malformed("Basic credentials are not valid base64");
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Credential::Malformed("Basic credentials are not UTF-8");
        };
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        let token = if password.is_empty() { user } else { password };
        if token.is_empty() {
            return Credential::Malformed("Basic credentials carry no token");
        }
        return Credential::Token(token.to_owned());
    }
    Credential::Malformed("expected Authorization: Bearer <token>, Token <token> or Basic")
}

/// InfluxDB 1.x's `?p=` (and `u=`) parameters, decoded by the same parser
/// as every other query string of the hub (axum's `Query`).
#[derive(Debug, Deserialize)]
struct V1Credentials {
    p: Option<String>,
}

fn query_password(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<V1Credentials>::try_from_uri(uri).ok()?;
    params.p.filter(|p| !p.is_empty())
}

/// Standard base64 (RFC 4648 §4), padding optional, as Basic credentials
/// arrive from InfluxDB 1.x clients.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    STANDARD_ANY_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn forms() {
        let uri: Uri = "/write?db=x&u=me&p=ferry_ab%2Bc".parse().unwrap();
        let tok = |s: &str| Credential::Token(s.to_owned());
        assert_eq!(extract(&with_auth("Bearer abc"), &uri, false), tok("abc"));
        assert_eq!(extract(&with_auth("token abc"), &uri, false), tok("abc"));
        // "me:abc"
        assert_eq!(
            extract(&with_auth("Basic bWU6YWJj"), &uri, false),
            tok("abc")
        );
        // "abc:" -> user name is the token
        assert_eq!(
            extract(&with_auth("Basic YWJjOg=="), &uri, false),
            tok("abc")
        );
        assert!(matches!(
            extract(&with_auth("Digest x"), &uri, false),
            Credential::Malformed(_)
        ));
        assert_eq!(extract(&HeaderMap::new(), &uri, true), tok("ferry_ab+c"));
        assert_eq!(extract(&HeaderMap::new(), &uri, false), Credential::Missing);
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a*==").is_none());
    }
}
