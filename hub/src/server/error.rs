//! The one error type of every HTTP handler, answered as an [`ErrorBody`].
//!
//! The status always comes from [`ErrorCode::http_status`], so a client can
//! rely on the code alone. Internal errors are logged with their cause and
//! answered with a generic message (no paths or backtraces leak).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_protocols::api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::table::TableError;

/// An error answer: a code, a message and optional per-line details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header (429 and 503 answers of limits).
    pub retry_after: Option<u64>,
}

/// `Result` of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// The integer id in a path (`what` names it in the 400 otherwise).
pub fn integer_id(what: &str, raw: &str) -> ApiResult<i64> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} {raw:?} is not an integer")))
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody::new(code, message),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: <seconds>`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 429: a limit of this client was reached; retry after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: u64) -> Self {
        Self::new(ErrorCode::TooManyRequests, message).with_retry_after(seconds)
    }

    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.body.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is over the limit of {limit} bytes (server.max_body)"),
        )
    }

    /// Logs `cause` and answers a generic 500.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what}");
        Self::new(ErrorCode::Internal, format!("internal error: {what}"))
    }

    pub fn code(&self) -> ErrorCode {
        self.body.error
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.body.message
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.body.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let mut response = (status, Json(self.body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferry\""),
            );
        }
        response
    }
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        match &e {
            TableError::SchemaConflict { .. } => {
                Self::new(ErrorCode::SchemaConflict, e.to_string())
            }
            TableError::ShuttingDown => Self::unavailable("the hub is shutting down; retry"),
            TableError::WriterFailed { .. } => Self::unavailable(e.to_string()),
            TableError::QueueFull { .. } => Self::unavailable(e.to_string()).with_retry_after(1),
            _ if e.is_client_error() => Self::bad_request(e.to_string()),
            _ => {
                tracing::warn!(error = %e, "table write failed");
                Self::unavailable(format!("storage unavailable: {e}"))
            }
        }
    }
}

impl From<crate::meta::MetaError> for ApiError {
    fn from(e: crate::meta::MetaError) -> Self {
        use crate::meta::MetaError;
        match e {
            MetaError::Conflict => Self::unavailable(e.to_string()).with_retry_after(1),
            MetaError::ReadOnly => Self::forbidden(e.to_string()),
            MetaError::Shared(_) => Self::unavailable(e.to_string()).with_retry_after(1),
            _ => Self::internal("metadata store", e),
        }
    }
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
