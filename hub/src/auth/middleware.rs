//! The authentication middleware: credentials → [`Principal`], and what the
//! request did → the audit log.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::credentials::{self, Credential};
use super::{Principal, token};
use crate::audit::{AuditNote, FailureKey, events};
use crate::meta::{TokenLookup, TokenRecord, format_ms};
use crate::server::{ApiError, AppState, PeerAddr};

/// The InfluxDB 1.x write route, the only one that reads `?p=`.
const QUERY_AUTH_PATHS: [&str; 1] = ["/write"];

/// Resolves the request's [`Principal`] and stores it in the request's
/// extensions, or answers 401; then records what the request did in the
/// audit log.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0.0.ip());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let principal = if state.config.auth.enabled {
        let query_allowed = QUERY_AUTH_PATHS.contains(&path.as_str());
        let credential = credentials::extract(req.headers(), req.uri(), query_allowed);
        let what = format!("{method} {}", route.as_deref().unwrap_or(&path));
        match principal_for(&state, credential, peer, what).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        }
    } else {
        // Without tokens, per-client limits (query.max_per_token) key on the
        // peer address, so one client still cannot take every query slot.
        Principal::anonymous_admin(peer)
    };
    req.extensions_mut().insert(principal.clone());
    let audited = route
        .as_deref()
        .and_then(|r| events::event_type(&method, r));
    // The database an administrative request names (in its JSON body or
    // its query), for the entry when the handler adds no note (a refused
    // request). Import bodies are files: their handler notes its own.
    let mut named_database = None;
    if audited.is_some_and(|e| e != "import.create") && state.audit.enabled() {
        let (parts, body) = req.into_parts();
        let limit = state.config.server.max_body_bytes();
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                if let Some(event) = audited {
                    state.audit.failure(
                        FailureKey {
                            event_type: event,
                            source: principal.source.map(|ip| ip.to_string()),
                            actor: principal.name.clone(),
                            actor_token_id: principal.token_id,
                            reason: "body_too_large",
                        },
                        413,
                        Some(format!("{method} {}", route.as_deref().unwrap_or(&path))),
                    );
                }
                return ApiError::payload_too_large(limit).into_response();
            }
        };
        named_database = events::named_database(&parts.uri, &bytes);
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    let response = next.run(req).await;
    let mut note = response.extensions().get::<AuditNote>().cloned();
    if let Some(db) = named_database {
        let n = note.get_or_insert_with(AuditNote::default);
        n.database.get_or_insert(db);
    }
    events::after_request(
        &state.audit,
        &principal,
        &method,
        route.as_deref(),
        &path,
        response.status(),
        note,
    )
    .await;
    response
}

/// The principal of `credential` presented from `peer` (auth on): a
/// failure is counted in `ferry_hub_auth_failures_total` and written to the
/// audit log with `what` (the route or the Flight SQL call) before it is
/// returned. Every interface (HTTP, Flight SQL) authenticates through here.
pub(crate) async fn principal_for(
    state: &AppState,
    credential: Credential,
    peer: Option<std::net::IpAddr>,
    what: String,
) -> Result<Principal, ApiError> {
    match resolve(state, credential).await {
        Ok(p) => Ok(Principal { source: peer, ..p }),
        Err(failure) => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => failure.reason)
                .increment(1);
            state.audit.failure(
                FailureKey {
                    event_type: events::AUTH_FAILURE,
                    source: peer.map(|ip| ip.to_string()),
                    actor: failure.actor,
                    actor_token_id: failure.token_id,
                    reason: failure.reason,
                },
                failure.error.status().as_u16(),
                Some(what),
            );
            Err(failure.error)
        }
    }
}

/// Why a request has no principal.
struct Failure {
    reason: &'static str,
    /// The token's name when the secret belongs to one.
    actor: String,
    token_id: Option<i64>,
    error: ApiError,
}

impl Failure {
    fn anonymous(reason: &'static str, error: ApiError) -> Self {
        Failure {
            reason,
            actor: "anonymous".to_owned(),
            token_id: None,
            error,
        }
    }

    fn of(reason: &'static str, rec: &TokenRecord, message: String) -> Self {
        Failure {
            reason,
            actor: rec.name.clone(),
            token_id: Some(rec.id),
            error: ApiError::unauthorized(message),
        }
    }
}

async fn resolve(state: &AppState, credential: Credential) -> Result<Principal, Failure> {
    let secret = match credential {
        Credential::Token(t) => t,
        Credential::Missing => {
            return Err(Failure::anonymous(
                "missing",
                ApiError::unauthorized(
                    "missing token: send Authorization: Bearer <token> (or Token <token>)",
                ),
            ));
        }
        Credential::Malformed(why) => {
            return Err(Failure::anonymous("malformed", ApiError::unauthorized(why)));
        }
    };
    match state.meta.find_token(token::hash(&secret)).await {
        Ok(TokenLookup::Valid { record, previous }) => {
            if previous {
                tracing::debug!(
                    token_id = record.id,
                    "a rotated token's previous secret was used"
                );
            }
            Ok(Principal {
                token_id: Some(record.id),
                name: record.name,
                role: record.role,
                agents: record.agents,
                source: None,
                grants: std::sync::Arc::new(record.grants),
            })
        }
        Ok(TokenLookup::Unknown) => Err(Failure {
            reason: "invalid",
            actor: "unknown token".to_owned(),
            token_id: None,
            error: ApiError::unauthorized("invalid token"),
        }),
        Ok(TokenLookup::Inactive(rec)) => Err(match (rec.revoked_at, rec.expires_at) {
            (Some(at), _) => Failure::of(
                "revoked",
                &rec,
                format!("token {:?} was revoked at {}", rec.name, format_ms(at)),
            ),
            (None, at) => Failure::of(
                "expired",
                &rec,
                format!(
                    "token {:?} expired at {}",
                    rec.name,
                    at.map(format_ms).unwrap_or_default()
                ),
            ),
        }),
        Ok(TokenLookup::Rotated(rec)) => Err(Failure::of(
            "rotated",
            &rec,
            format!(
                "this secret of token {:?} was replaced by a rotation and its grace period ended at {}",
                rec.name,
                rec.previous_valid_until.map(format_ms).unwrap_or_default()
            ),
        )),
        Err(e) => Err(Failure::anonymous(
            "lookup_error",
            ApiError::internal("token lookup failed", e),
        )),
    }
}
