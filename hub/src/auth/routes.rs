//! Token management, admin only:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/auth/tokens` | every token (never a secret) |
//! | `POST /api/v1/auth/tokens` | create: `name`, `role`, `agents`, `description`, `expires_in`; the secret is shown once |
//! | `GET /api/v1/auth/tokens/{id}` | one token |
//! | `PATCH /api/v1/auth/tokens/{id}` | set `description` |
//! | `POST /api/v1/auth/tokens/{id}/rotate` | a new secret (shown once); the old one works for `grace` (default `auth.rotation_grace`) |
//! | `POST /api/v1/auth/tokens/{id}/revoke` | every secret stops at once; the record stays |
//! | `DELETE /api/v1/auth/tokens/{id}` | remove the record |
//!
//! The last active admin token can be neither revoked nor deleted.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{AgentPattern, Permission, Principal, Role, token};
use crate::audit::AuditNote;
use crate::meta::{NewToken, TokenChange, TokenRecord, format_ms, now_ms};
use crate::server::{ApiError, ApiResult, AppState, Body, JsonBody, json_or_default};

/// The longest token name, in bytes.
const MAX_NAME_LEN: usize = 128;
/// The longest description, in bytes.
const MAX_DESCRIPTION_LEN: usize = 1024;

/// `GET` answer.
#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// A duration as `"90d"` / `"1h 30m"` or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationArg {
    Seconds(u64),
    Text(String),
}

/// The longest `expires_in` or `grace`: 100 years.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

impl DurationArg {
    fn parse(&self, what: &str) -> ApiResult<Duration> {
        let d = match self {
            DurationArg::Seconds(s) => Duration::from_secs(*s),
            DurationArg::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                ApiError::bad_request(format!(
                    "{what} {t:?} is not a duration (\"90d\", \"12h\", or seconds): {e}"
                ))
            })?,
        };
        if d > MAX_DURATION {
            return Err(ApiError::bad_request(format!(
                "{what} is longer than 100 years"
            )));
        }
        Ok(d)
    }
}

/// `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// The built-in role; `none` (the default when `roles` is given) for a
    /// token that has only what its roles grant.
    #[serde(default)]
    pub role: Option<Role>,
    /// Names of roles (`/api/v1/auth/roles`) the token holds.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Write tokens only: the agent id (or pattern with `*`) this token may
    /// upload segments for. Give every gateway a bound token.
    #[serde(default)]
    pub agents: Option<AgentPattern>,
    #[serde(default)]
    pub description: Option<String>,
    /// The token stops working this long after its creation.
    #[serde(default)]
    pub expires_in: Option<DurationArg>,
    /// The secret, when it is not new: the same token on another hub over
    /// the same tables (docs/scale-out.md). `ferry_` + 64 lowercase hex
    /// digits, as the hub generates them; without it the hub draws one.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `PATCH` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateToken {
    pub description: Option<String>,
}

/// `POST .../rotate` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateToken {
    /// How long the previous secret keeps working; `0` stops it at once.
    #[serde(default)]
    pub grace: Option<DurationArg>,
}

/// `POST` and rotation answer: the only time a secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenRecord,
    pub token: String,
}

fn note(record: &TokenRecord, detail: serde_json::Value) -> Extension<AuditNote> {
    Extension(AuditNote {
        target: Some(format!("token {} ({})", record.id, record.name)),
        database: None,
        detail: Some(detail),
    })
}

fn parse_id(id: &str) -> ApiResult<i64> {
    crate::server::integer_id("token id", id)
}

fn check_description(d: Option<String>) -> ApiResult<Option<String>> {
    let d = d.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if let Some(d) = &d
        && (d.len() > MAX_DESCRIPTION_LEN || d.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes without control characters"
        )));
    }
    Ok(d)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The answer to a change that [`TokenChange`] may refuse.
fn changed(id: i64, change: TokenChange) -> ApiResult<TokenRecord> {
    match change {
        TokenChange::Done(rec) => Ok(rec),
        TokenChange::NotFound => Err(ApiError::not_found(format!("no token with id {id}"))),
        TokenChange::Inactive(rec) => Err(ApiError::bad_request(format!(
            "token {id} ({:?}) is {}: only an active token can be rotated",
            rec.name,
            serde_json::to_value(rec.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ))),
        TokenChange::LastAdmin => Err(ApiError::bad_request(
            "refusing to revoke or delete the last active admin token that never expires: create another admin token without expires_in first",
        )),
        TokenChange::UnknownRoles(names) => Err(ApiError::bad_request(format!(
            "no role named {}: create it with POST /api/v1/auth/roles first",
            names.join(", ")
        ))),
    }
}

/// `PUT .../roles` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    pub roles: Vec<String>,
}

pub async fn set_roles(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetRoles>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let record = changed(id, state.meta.set_token_roles(id, body.roles).await?)?;
    let detail = serde_json::json!({ "roles": record.roles });
    Ok((note(&record, detail), Json(record)).into_response())
}

/// `GET .../permissions` answer.
#[derive(Debug, Serialize)]
pub struct Permissions {
    pub id: i64,
    pub name: String,
    pub status: crate::meta::TokenStatus,
    pub role: Role,
    pub roles: Vec<String>,
    /// The built-in role's and the roles' grants together.
    pub grants: Vec<super::Grant>,
    /// For each permission: whether it holds on every database.
    pub everywhere: std::collections::BTreeMap<&'static str, bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentPattern>,
}

pub async fn permissions(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Permissions>> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let Some(rec) = state.meta.get_token(id).await? else {
        return Err(ApiError::not_found(format!("no token with id {id}")));
    };
    let everywhere = [
        Permission::Read,
        Permission::Write,
        Permission::Delete,
        Permission::Admin,
    ]
    .into_iter()
    .map(|p| (p.as_str(), rec.grants.everywhere(p)))
    .collect();
    Ok(Json(Permissions {
        id: rec.id,
        name: rec.name,
        status: rec.status,
        role: rec.role,
        roles: rec.roles,
        grants: rec.grants.0,
        everywhere,
        agents: rec.agents,
    }))
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<TokenList>> {
    principal.require(Permission::Admin)?;
    Ok(Json(TokenList {
        tokens: state.meta.list_tokens().await?,
    }))
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRecord>> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    state
        .meta
        .get_token(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no token with id {id}")))
}

pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateToken>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "token name must be 1..={MAX_NAME_LEN} bytes without control characters"
        )));
    }
    let role = match (body.role, body.roles.is_empty()) {
        (Some(role), _) => role,
        (None, false) => Role::None,
        (None, true) => {
            return Err(ApiError::bad_request(
                "a token needs a \"role\" (read, write, admin) or \"roles\" (names of roles)",
            ));
        }
    };
    if body.agents.is_some() && role != Role::Write {
        return Err(ApiError::bad_request(
            "only write tokens can be bound to agents (\"agents\"): a read or admin token does not upload segments",
        ));
    }
    let description = check_description(body.description)?;
    let lifetime = body
        .expires_in
        .as_ref()
        .map(|d| d.parse("expires_in"))
        .transpose()?;
    let max = state.config.auth.max_token_lifetime;
    if let Some(l) = lifetime {
        if l.is_zero() {
            return Err(ApiError::bad_request(
                "expires_in must be longer than 0s (leave it out for a token that does not expire)",
            ));
        }
        if !max.is_zero() && l > max {
            return Err(ApiError::bad_request(format!(
                "expires_in {} is longer than auth.max_token_lifetime ({})",
                humantime::format_duration(l),
                humantime::format_duration(max)
            )));
        }
    } else if !max.is_zero() {
        return Err(ApiError::bad_request(format!(
            "expires_in is required: auth.max_token_lifetime is {}",
            humantime::format_duration(max)
        )));
    }
    let given = body.secret.is_some();
    let secret = match body.secret {
        None => token::generate(),
        Some(secret) if token::well_formed(&secret) => {
            if !matches!(
                state.meta.find_token(token::hash(&secret)).await?,
                crate::meta::TokenLookup::Unknown
            ) {
                return Err(ApiError::conflict(
                    "a token with this secret exists on this hub already",
                ));
            }
            secret
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "secret must be \"ferry_\" followed by 64 lowercase hex digits, as the hub generates them (leave it out for a new one)",
            ));
        }
    };
    let change = state
        .meta
        .insert_token(NewToken {
            name: name.to_owned(),
            role,
            hash: token::hash(&secret),
            agents: body.agents,
            description,
            expires_at_ms: lifetime.map(|l| now_ms().saturating_add(ms(l))),
            roles: body.roles,
        })
        .await?;
    let record = changed(0, change)?;
    tracing::info!(
        by = %principal.name,
        token_id = record.id,
        name = %record.name,
        role = %record.role,
        agents = record.agents.as_ref().map(AgentPattern::as_str).unwrap_or("*"),
        "token created"
    );
    let detail = serde_json::json!({
        "role": record.role,
        "roles": record.roles,
        "agents": record.agents.as_ref().map(AgentPattern::as_str),
        "expires_at": record.expires_at.map(format_ms),
        "secret_given": given,
    });
    Ok((
        StatusCode::CREATED,
        note(&record, detail),
        Json(CreatedToken {
            record,
            token: secret,
        }),
    )
        .into_response())
}

pub async fn update(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateToken>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let description = check_description(body.description)?;
    let record = changed(id, state.meta.describe_token(id, description).await?)?;
    Ok((note(&record, serde_json::json!({})), Json(record)).into_response())
}

pub async fn rotate(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(raw): Body,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let body: RotateToken = json_or_default(&raw)?;
    let grace = match &body.grace {
        Some(g) => g.parse("grace")?,
        None => state.config.auth.rotation_grace,
    };
    let secret = token::generate();
    let until = now_ms().saturating_add(ms(grace));
    let record = changed(
        id,
        state
            .meta
            .rotate_token(id, token::hash(&secret), until)
            .await?,
    )?;
    tracing::info!(by = %principal.name, token_id = id, grace = %humantime::format_duration(grace), "token rotated");
    let detail = serde_json::json!({ "previous_valid_until": format_ms(until) });
    Ok((
        note(&record, detail),
        Json(CreatedToken {
            record,
            token: secret,
        }),
    )
        .into_response())
}

pub async fn revoke(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let record = changed(id, state.meta.revoke_token(id).await?)?;
    tracing::info!(by = %principal.name, token_id = id, "token revoked");
    Ok((note(&record, serde_json::json!({})), Json(record)).into_response())
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let record = changed(id, state.meta.delete_token(id).await?)?;
    tracing::info!(by = %principal.name, token_id = id, "token deleted");
    Ok((
        StatusCode::NO_CONTENT,
        note(&record, serde_json::json!({ "role": record.role })),
    )
        .into_response())
}

/// `GET /api/v1/auth/whoami` (any valid token): the caller's name, role
/// and what it may do on every database, for clients (the Control
/// Center) that show only what a token may use.
pub async fn whoami(principal: Principal) -> Json<serde_json::Value> {
    let everywhere: std::collections::BTreeMap<&'static str, bool> = [
        Permission::Read,
        Permission::Write,
        Permission::Delete,
        Permission::Admin,
    ]
    .into_iter()
    .map(|p| (p.as_str(), principal.can(p)))
    .collect();
    let somewhere: std::collections::BTreeMap<&'static str, bool> = [
        Permission::Read,
        Permission::Write,
        Permission::Delete,
        Permission::Admin,
    ]
    .into_iter()
    .map(|p| (p.as_str(), principal.grants.anywhere(p)))
    .collect();
    Json(serde_json::json!({
        "token_id": principal.token_id,
        "name": principal.name,
        "role": principal.role,
        "everywhere": everywhere,
        "somewhere": somewhere,
    }))
}
