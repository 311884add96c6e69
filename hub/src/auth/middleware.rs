//! The authentication middleware: credentials → [`Principal`].

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::credentials::{self, Credential};
use super::{Principal, token};
use crate::server::{ApiError, AppState};

/// The InfluxDB 1.x write route, the only one that reads `?p=`.
const QUERY_AUTH_PATHS: [&str; 1] = ["/write"];

/// Resolves the request's [`Principal`] and stores it in the request's
/// extensions, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.config.auth.enabled {
        // Without tokens, per-client limits (query.max_per_token) key on the
        // peer address, so one client still cannot take every query slot.
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::server::PeerAddr>>()
            .map(|c| c.0.0.ip());
        req.extensions_mut()
            .insert(Principal::anonymous_admin(peer));
        return next.run(req).await;
    }
    let query_allowed = QUERY_AUTH_PATHS.contains(&req.uri().path());
    let secret = match credentials::extract(req.headers(), req.uri(), query_allowed) {
        Credential::Token(t) => t,
        Credential::Missing => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "missing").increment(1);
            return ApiError::unauthorized(
                "missing token: send Authorization: Bearer <token> (or Token <token>)",
            )
            .into_response();
        }
        Credential::Malformed(why) => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "malformed").increment(1);
            return ApiError::unauthorized(why).into_response();
        }
    };
    match state.meta.find_token(token::hash(&secret)).await {
        Ok(Some(record)) => {
            req.extensions_mut().insert(Principal {
                token_id: Some(record.id),
                name: record.name,
                role: record.role,
                agents: record.agents,
            });
            next.run(req).await
        }
        Ok(None) => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "invalid").increment(1);
            ApiError::unauthorized("invalid token").into_response()
        }
        Err(e) => ApiError::internal("token lookup failed", e).into_response(),
    }
}
