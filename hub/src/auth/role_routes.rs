//! Role management, admin only: `GET, POST /api/v1/auth/roles`,
//! `GET, PUT, DELETE /api/v1/auth/roles/{id}`. A role is a name and a list
//! of grants (`{"permission": "read", "database": "plant_*",
//! "measurement": "vib*"}`); tokens hold roles by name.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{Grant, Permission, Principal, Role};
use crate::audit::AuditNote;
use crate::meta::roles::{NewRole, RoleChange, RoleRecord};
use crate::server::{ApiError, ApiResult, AppState, JsonBody};

/// The longest role name, in bytes.
const MAX_NAME_LEN: usize = 64;
/// Grants one role holds at most.
pub const MAX_GRANTS: usize = 256;

/// `GET` answer: the built-in roles, then the stored ones.
#[derive(Debug, Serialize)]
pub struct RoleList {
    pub builtin: Vec<Builtin>,
    pub roles: Vec<RoleRecord>,
}

/// A built-in role (a token's `role`).
#[derive(Debug, Serialize)]
pub struct Builtin {
    pub name: Role,
    pub grants: Vec<Grant>,
}

/// `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub grants: Vec<Grant>,
}

/// `PUT` body: the new description and grants (replacing the old).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    #[serde(default)]
    pub description: Option<String>,
    pub grants: Vec<Grant>,
}

fn check_grants(grants: &[Grant]) -> ApiResult<()> {
    if grants.len() > MAX_GRANTS {
        return Err(ApiError::bad_request(format!(
            "a role holds at most {MAX_GRANTS} grants"
        )));
    }
    Ok(())
}

fn note(rec: &RoleRecord) -> Extension<AuditNote> {
    Extension(AuditNote {
        target: Some(format!("role {} ({})", rec.id, rec.name)),
        database: None,
        detail: serde_json::to_value(&rec.grants)
            .ok()
            .map(|g| serde_json::json!({ "grants": g })),
    })
}

fn parse_id(id: &str) -> ApiResult<i64> {
    crate::server::integer_id("role id", id)
}

fn changed(id: i64, change: RoleChange) -> ApiResult<RoleRecord> {
    match change {
        RoleChange::Done(rec) => Ok(rec),
        RoleChange::NotFound => Err(ApiError::not_found(format!("no role with id {id}"))),
        RoleChange::Exists => Err(ApiError::conflict("a role with this name exists")),
        RoleChange::InUse(n) => Err(ApiError::bad_request(format!(
            "{n} token(s) hold this role: take it from them first (PUT /api/v1/auth/tokens/{{id}}/roles)"
        ))),
        RoleChange::Unknown(names) => Err(ApiError::bad_request(format!(
            "no role named {}",
            names.join(", ")
        ))),
    }
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<RoleList>> {
    principal.require(Permission::Admin)?;
    let builtin = [Role::Read, Role::Write, Role::Admin]
        .into_iter()
        .map(|r| Builtin {
            name: r,
            grants: super::Grants::of_role(r).0,
        })
        .collect();
    Ok(Json(RoleList {
        builtin,
        roles: state.meta.list_roles().await?,
    }))
}

pub async fn get(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleRecord>> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    state
        .meta
        .get_role(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no role with id {id}")))
}

pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateRole>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let name = body.name.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(ApiError::bad_request(format!(
            "role name must be 1..={MAX_NAME_LEN} letters, digits, '_', '-' or '.'"
        )));
    }
    if name.parse::<Role>().is_ok() {
        return Err(ApiError::bad_request(format!(
            "{name:?} is a built-in role"
        )));
    }
    check_grants(&body.grants)?;
    let rec = changed(
        0,
        state
            .meta
            .insert_role(NewRole {
                name: name.to_owned(),
                description: body.description,
                grants: body.grants,
            })
            .await?,
    )?;
    Ok((StatusCode::CREATED, note(&rec), Json(rec)).into_response())
}

pub async fn update(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateRole>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    check_grants(&body.grants)?;
    let rec = changed(
        id,
        state
            .meta
            .update_role(id, body.description, body.grants)
            .await?,
    )?;
    Ok((note(&rec), Json(rec)).into_response())
}

pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let id = parse_id(&id)?;
    let rec = changed(id, state.meta.delete_role(id).await?)?;
    Ok((StatusCode::NO_CONTENT, note(&rec)).into_response())
}
