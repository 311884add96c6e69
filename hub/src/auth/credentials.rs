//! Finding the token in a request (see the forms in [`crate::auth`]).

use axum::http::{HeaderMap, Uri, header};

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

fn query_password(uri: &Uri) -> Option<String> {
    let query = uri.query()?;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "p" && !v.is_empty() {
            return Some(percent_decode(v));
        }
    }
    None
}

/// Decodes `%XX` and `+` in a query value. Invalid escapes stay literal.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 (RFC 4648 §4), padding optional.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0_u32;
    let mut bits = 0;
    for c in s.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    // A single leftover character (6 bits) cannot come from a valid encoding.
    if bits >= 6 {
        return None;
    }
    Some(out)
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
