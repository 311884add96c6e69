//! Request extractors whose rejections are [`ApiError`]s, so that even a
//! malformed request gets an [`ErrorBody`](ferry_protocols::api::ErrorBody).

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use ferry_protocols::api::ErrorCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The raw body, within `server.max_body` (enforced by the router's
/// `DefaultBodyLimit`); over the limit it is a 413 `payload_too_large`.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(rejection) => Err(body_error(rejection.status(), rejection.body_text())),
        }
    }
}

/// A JSON body, within the body limit. The `Content-Type` is not checked:
/// `curl -d '{"sql": ...}'` sends `application/x-www-form-urlencoded`, and
/// Arc and InfluxDB clients accept JSON whatever the header says.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => return Err(body_error(rejection.status(), rejection.body_text())),
        };
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON: {e}")))
    }
}

fn body_error(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is over the configured limit (server.max_body)",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(ErrorCode::UnsupportedMediaType, text),
        _ => ApiError::bad_request(text),
    }
}

/// The client's address, when the connection has one (`ConnectInfo` is
/// absent when the router is driven without a listener, as in unit tests).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Remote(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<super::PeerAddr>>()
                .map(|c| c.0.0),
        ))
    }
}

/// A JSON body that may be empty or blank, which means `T::default()`
/// (`POST .../execute` without a body); anything else must parse.
pub fn json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
