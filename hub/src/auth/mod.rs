//! Authentication and authorization.
//!
//! Every route except `/health`, `/ready` and `/metrics` goes through
//! [`middleware::authenticate`], which turns the request's credentials into
//! one [`Principal`] (the token's id, name and role) and stores it in the
//! request's extensions. Handlers take the `Principal` as an extractor and
//! call [`Principal::require`] with the [`Permission`] they need.
//!
//! # Credentials
//!
//! In order of precedence ([`credentials`]):
//!
//! 1. `Authorization: Bearer <token>` or `Authorization: Token <token>`;
//! 2. `Authorization: Basic base64(user:password)`, the password being the
//!    token (or the user name, when the password is empty): what InfluxDB
//!    1.x clients send;
//! 3. on `/write` only, the InfluxDB 1.x query parameters `?p=<token>`
//!    (with or without `u=`).
//!
//! No credentials: 401 `unauthorized`. An unknown, expired, revoked or
//! rotated-out token: 401, saying which. A known token whose role lacks the
//! permission: 403 `forbidden`. Every failure goes to the audit log
//! ([`crate::audit`]).
//!
//! # Token lifecycle
//!
//! Tokens may expire (`expires_in` at creation), be rotated (a new secret;
//! the old one keeps working for a grace period, `auth.rotation_grace` by
//! default) and be revoked (every secret stops at once; the record stays).
//! `last_used` is recorded to the minute. See [`crate::meta::tokens`].
//!
//! # Roles
//!
//! | role | read (query, fleet) | write (segments, LP, msgpack) | delete (rows) | admin (tokens, retention) |
//! |---|---|---|---|---|
//! | `read` | yes | no | no | no |
//! | `write` | no | yes | no | no |
//! | `admin` | yes | yes | yes | yes |
//!
//! These are the built-in roles (and `none`, which grants nothing). Roles of
//! one's own grant permissions on database and measurement patterns
//! ([`grants`], [`role_routes`]); a token holds its built-in role plus any
//! roles, and [`Principal::grants`] is what they grant together.
//! [`Principal::require`] asks for a permission on every database;
//! [`Principal::require_on`] on one table (writes, deletes, imports, and
//! the query catalog's `read` check).
//!
//! `write` does not imply `read` on purpose: write tokens live on gateways
//! in the field, and a stolen gateway must not be able to read the lake.
//!
//! A write token can also be bound to one gateway or a pattern of gateway
//! ids ([`binding`]): it then uploads segments for those agents only (403
//! otherwise), so a stolen gateway cannot speak for the others.
//!
//! # Bootstrap
//!
//! On a start with no token at all, [`bootstrap::ensure_admin_token`]
//! creates an admin token and prints it **once** on stdout. It is never
//! logged and cannot be shown again; lose it and create another with it
//! before it is lost, or delete the metadata file to start over.

pub mod binding;
pub mod bootstrap;
pub mod credentials;
pub mod grants;
pub mod middleware;
pub mod role_routes;
pub mod routes;
pub mod token;

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::server::ApiError;

pub use binding::AgentPattern;
pub use grants::{Grant, Grants, NamePattern};
pub use token::TokenHash;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
    /// No built-in permission: the token has only what its roles grant.
    None,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
            Role::None => "none",
        }
    }

    /// Whether this role grants `permission` on everything (see the module
    /// table).
    pub fn grants(self, permission: Permission) -> bool {
        Grants::of_role(self).everywhere(permission)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            "none" => Ok(Role::None),
            other => Err(format!(
                "unknown role {other:?}; expected read, write, admin or none"
            )),
        }
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Queries and the fleet view.
    Read,
    /// Segment uploads and writes.
    Write,
    /// Deleting rows (`POST /api/v1/delete`).
    Delete,
    /// Everything; on every database: token, role and maintenance
    /// management.
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }
}

/// Who is making the request: resolved once per request by the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id; `None` when auth is disabled.
    pub token_id: Option<i64>,
    pub name: String,
    pub role: Role,
    /// The agents this token may upload segments for; `None`: any.
    pub agents: Option<AgentPattern>,
    /// The peer address of the request (for the audit log).
    pub source: Option<std::net::IpAddr>,
    /// What the built-in role and the token's roles grant.
    pub grants: std::sync::Arc<Grants>,
}

impl Principal {
    /// The principal of every request when `auth.enabled = false`.
    pub fn anonymous_admin(peer: Option<std::net::IpAddr>) -> Self {
        let name = match peer {
            Some(ip) => format!("anonymous@{ip} (auth disabled)"),
            None => "anonymous (auth disabled)".to_owned(),
        };
        Principal {
            token_id: None,
            name,
            role: Role::Admin,
            agents: None,
            source: peer,
            grants: std::sync::Arc::new(Grants::of_role(Role::Admin)),
        }
    }

    /// `Ok` if this principal may upload segments for `agent` (its token is
    /// unbound, or bound to a pattern `agent` matches), else a 403.
    pub fn require_agent(&self, agent: &ferry_protocols::AgentId) -> Result<(), ApiError> {
        match &self.agents {
            Some(pattern) if !pattern.matches(agent) => {
                metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "agent_binding")
                    .increment(1);
                Err(ApiError::forbidden(format!(
                    "token {:?} is bound to agents {pattern:?}; it cannot upload segments for agent {:?}",
                    self.name,
                    agent.as_str()
                )))
            }
            _ => Ok(()),
        }
    }

    /// A key for per-token limits: the token id, or the name without auth.
    pub fn key(&self) -> String {
        match self.token_id {
            Some(id) => format!("token:{id}"),
            None => self.name.clone(),
        }
    }

    /// Whether this principal may do `permission` on everything.
    pub fn can(&self, permission: Permission) -> bool {
        self.grants.everywhere(permission)
    }

    /// `Ok` if `permission` is granted on every database, else a 403 naming
    /// the missing permission.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(self.forbidden(format!(
                "token {:?} (role {}) does not grant {} access on every database",
                self.name,
                self.role,
                permission.as_str()
            )))
        }
    }

    /// `Ok` if `permission` is granted on some table (the request's tables
    /// are checked one by one later), else a 403.
    pub fn require_anywhere(&self, permission: Permission) -> Result<(), ApiError> {
        if self.grants.anywhere(permission) {
            Ok(())
        } else {
            Err(self.forbidden(format!(
                "token {:?} (role {}) grants no {} access",
                self.name,
                self.role,
                permission.as_str()
            )))
        }
    }

    /// `Ok` if `permission` is granted on table `database.measurement`,
    /// else a 403 naming the table.
    pub fn require_on(
        &self,
        permission: Permission,
        database: &str,
        measurement: &str,
    ) -> Result<(), ApiError> {
        if self.grants.allows(permission, database, measurement) {
            Ok(())
        } else {
            Err(self.forbidden(format!(
                "token {:?} may not {} table {database}.{measurement}",
                self.name,
                permission.as_str()
            )))
        }
    }

    /// `Ok` if `permission` covers what a database-level object (a
    /// retention policy, a continuous query) reaches: table
    /// `database.measurement`, or with `None` the whole database; else a
    /// 403 naming it.
    pub fn require_database(
        &self,
        permission: Permission,
        database: &str,
        measurement: Option<&str>,
    ) -> Result<(), ApiError> {
        match measurement {
            Some(m) => self.require_on(permission, database, m),
            None if self.grants.whole(permission, database) => Ok(()),
            None => Err(self.forbidden(format!(
                "token {:?} may not {} all of database {database}",
                self.name,
                permission.as_str()
            ))),
        }
    }

    /// Whether [`Principal::require_database`] would pass, without counting
    /// a refusal (for filtering lists).
    pub fn may_database(
        &self,
        permission: Permission,
        database: &str,
        measurement: Option<&str>,
    ) -> bool {
        match measurement {
            Some(m) => self.grants.allows(permission, database, m),
            None => self.grants.whole(permission, database),
        }
    }

    fn forbidden(&self, message: String) -> ApiError {
        metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "forbidden").increment(1);
        ApiError::forbidden(message)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("no credentials"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        assert!(Role::Admin.grants(Permission::Admin));
        assert!(Role::Admin.grants(Permission::Read));
        assert!(Role::Write.grants(Permission::Write));
        assert!(!Role::Write.grants(Permission::Read));
        assert!(!Role::Read.grants(Permission::Write));
        assert!(!Role::Read.grants(Permission::Admin));
        assert!(Role::Admin.grants(Permission::Delete));
        assert!(!Role::Write.grants(Permission::Delete));
        assert_eq!("write".parse::<Role>().unwrap(), Role::Write);
        assert!("root".parse::<Role>().is_err());
    }
}
