//! The hub's errors as gRPC statuses, with the same message (and the
//! `retry-after` of a refused query as metadata).

use ferry_protocols::api::ErrorCode;
use tonic::{Code, Status};

use crate::server::ApiError;

/// `e` as the status a Flight client sees.
pub(super) fn from_api(e: &ApiError) -> Status {
    let code = match e.code() {
        ErrorCode::BadRequest
        | ErrorCode::InvalidSegment
        | ErrorCode::PartialWrite
        | ErrorCode::SchemaConflict
        | ErrorCode::SequenceGap
        | ErrorCode::ConfirmRequired
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::QueryRejected => Code::InvalidArgument,
        ErrorCode::Unauthorized => Code::Unauthenticated,
        ErrorCode::Forbidden => Code::PermissionDenied,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::Conflict => Code::Aborted,
        ErrorCode::PayloadTooLarge
        | ErrorCode::ResourcesExhausted
        | ErrorCode::TooManyRequests
        | ErrorCode::QuotaExceeded => Code::ResourceExhausted,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Timeout => Code::DeadlineExceeded,
    };
    let mut status = Status::new(code, e.message().to_owned());
    if let Some(secs) = e.retry_after {
        status
            .metadata_mut()
            .insert("retry-after", tonic::metadata::MetadataValue::from(secs));
    }
    status
}

/// The label of `code` in `ferry_hub_flight_calls_total`.
pub(super) fn label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
