//! Token management: `GET/POST /api/v1/auth/tokens`,
//! `DELETE /api/v1/auth/tokens/{id}`. Admin only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{AgentPattern, Permission, Principal, Role, token};
use crate::meta::{NewToken, TokenRecord};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// The longest token name, in bytes.
const MAX_NAME_LEN: usize = 128;

/// `GET` answer.
#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: Role,
    /// Write tokens only: the agent id (or pattern with `*`) this token may
    /// upload segments for. Give every gateway a bound token.
    #[serde(default)]
    pub agents: Option<AgentPattern>,
}

/// `POST` answer: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenRecord,
    pub token: String,
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
    if body.agents.is_some() && body.role != Role::Write {
        return Err(ApiError::bad_request(
            "only write tokens can be bound to agents (\"agents\"): a read or admin token does not upload segments",
        ));
    }
    let secret = token::generate();
    let record = state
        .meta
        .insert_token(NewToken {
            name: name.to_owned(),
            role: body.role,
            hash: token::hash(&secret),
            agents: body.agents,
        })
        .await?;
    tracing::info!(
        by = %principal.name,
        token_id = record.id,
        name = %record.name,
        role = %record.role,
        agents = record.agents.as_ref().map(AgentPattern::as_str).unwrap_or("*"),
        "token created"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            record,
            token: secret,
        }),
    )
        .into_response())
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Permission::Admin)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("token id {id:?} is not an integer")))?;
    let tokens = state.meta.list_tokens().await?;
    let Some(target) = tokens.iter().find(|t| t.id == id) else {
        return Err(ApiError::not_found(format!("no token with id {id}")));
    };
    let admins = tokens.iter().filter(|t| t.role == Role::Admin).count();
    if target.role == Role::Admin && admins <= 1 {
        return Err(ApiError::bad_request(
            "refusing to delete the last admin token: create another admin token first",
        ));
    }
    if !state.meta.delete_token(id).await? {
        return Err(ApiError::not_found(format!("no token with id {id}")));
    }
    tracing::info!(by = %principal.name, token_id = id, "token deleted");
    Ok(StatusCode::NO_CONTENT)
}
