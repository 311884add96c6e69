//! Who is calling and which database they mean, from a call's gRPC
//! metadata: `authorization` as on the HTTP API, and the default database
//! from `database` (as InfluxDB 3's clients send it) or `x-ferry-database`.

use axum::http::Uri;
use ferry_protocols::DatabaseName;
use tonic::Request;

use crate::auth::credentials::{self, Credential};
use crate::auth::middleware::principal_for;
use crate::auth::{Permission, Principal};
use crate::server::{ApiError, AppState, PeerAddr};

/// Metadata keys naming the default database, in order.
pub(super) const DATABASE_KEYS: [&str; 2] = ["database", "x-ferry-database"];

/// The caller of `request` with `read` somewhere, or why not.
pub(super) async fn reader<T>(
    state: &AppState,
    request: &Request<T>,
    call: &str,
) -> Result<Principal, ApiError> {
    let principal = caller(state, request, call).await?.0;
    principal
        .require_anywhere(Permission::Read)
        .map_err(|e| denied(state, &principal, call, e))?;
    Ok(principal)
}

/// `e`, written to the audit log as `auth.denied` when it is a refusal
/// of what the token may do (as the HTTP API does for a 403).
pub(super) fn denied(state: &AppState, principal: &Principal, call: &str, e: ApiError) -> ApiError {
    if e.code() == ferry_protocols::api::ErrorCode::Forbidden && state.audit.enabled() {
        state.audit.failure(
            crate::audit::FailureKey {
                event_type: crate::audit::events::AUTH_DENIED,
                source: principal.source.map(|ip| ip.to_string()),
                actor: principal.name.clone(),
                actor_token_id: principal.token_id,
                reason: "forbidden",
            },
            403,
            Some(format!("Flight SQL {call}")),
        );
    }
    e
}

/// The caller of `request` and the credential it presented.
pub(super) async fn caller<T>(
    state: &AppState,
    request: &Request<T>,
    call: &str,
) -> Result<(Principal, Option<String>), ApiError> {
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    if !state.config.auth.enabled {
        return Ok((Principal::anonymous_admin(peer), None));
    }
    let headers = request.metadata().clone().into_headers();
    let credential = credentials::extract(&headers, &Uri::default(), false);
    let secret = match &credential {
        Credential::Token(t) => Some(t.clone()),
        _ => None,
    };
    let principal = principal_for(state, credential, peer, format!("Flight SQL {call}")).await?;
    Ok((principal, secret))
}

/// The call's default database, if its metadata names one.
pub(super) fn database<T>(request: &Request<T>) -> Result<Option<DatabaseName>, ApiError> {
    let named = DATABASE_KEYS.iter().find_map(|k| {
        request
            .metadata()
            .get(*k)
            .map(|v| v.to_str().map(str::trim))
    });
    match named {
        None => Ok(None),
        Some(Err(_)) => Err(ApiError::bad_request("the database metadata is not ASCII")),
        Some(Ok("")) => Ok(None),
        Some(Ok(name)) => DatabaseName::new(name)
            .map(Some)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}
