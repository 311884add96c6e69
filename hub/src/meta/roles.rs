//! Roles: named sets of [`Grant`]s that tokens hold (`token_roles`).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

use super::{Meta, MetaError, Result, format_ms, now_ms};
use crate::auth::{Grant, Grants};

/// A stored role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleRecord {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<Grant>,
    /// Tokens holding the role.
    pub tokens: i64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: i64,
}

fn rfc3339<S: Serializer>(ms: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

/// A role to store.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<Grant>,
}

/// What a change to roles came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    Done(RoleRecord),
    NotFound,
    /// The name is taken.
    Exists,
    /// Tokens hold the role (how many).
    InUse(i64),
    /// Role names that do not exist.
    Unknown(Vec<String>),
}

const COLUMNS: &str = "id, name, description, grants, created_at_ms, updated_at_ms, \
                       (SELECT count(*) FROM token_roles WHERE role_id = roles.id)";

fn record(r: &Row<'_>) -> rusqlite::Result<(RoleRecord, String)> {
    Ok((
        RoleRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            grants: Vec::new(),
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            tokens: r.get(6)?,
        },
        r.get(3)?,
    ))
}

fn finish((mut rec, grants): (RoleRecord, String)) -> Result<RoleRecord> {
    rec.grants = serde_json::from_str(&grants)
        .map_err(|e| MetaError::Corrupt(format!("role {}: grants: {e}", rec.id)))?;
    Ok(rec)
}

fn get(c: &Connection, id: i64) -> Result<Option<RoleRecord>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM roles WHERE id = ?1"),
        [id],
        record,
    )
    .optional()?
    .map(finish)
    .transpose()
}

fn grants_json(grants: &[Grant]) -> Result<String> {
    serde_json::to_string(grants).map_err(|e| MetaError::Corrupt(format!("grants: {e}")))
}

/// The names and grants of the roles token `id` holds.
pub(super) fn of_token(c: &Connection, id: i64) -> Result<(Vec<String>, Grants)> {
    let mut stmt = c.prepare_cached(
        "SELECT r.name, r.grants FROM token_roles t JOIN roles r ON r.id = t.role_id
         WHERE t.token_id = ?1 ORDER BY r.name",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut names = Vec::new();
    let mut grants = Grants::default();
    for row in rows {
        let (name, json) = row?;
        let g: Vec<Grant> = serde_json::from_str(&json)
            .map_err(|e| MetaError::Corrupt(format!("role {name:?}: grants: {e}")))?;
        grants.extend(g);
        names.push(name);
    }
    Ok((names, grants))
}

/// Gives token `id` exactly the roles `names` (in the caller's
/// transaction); the unknown names, if any.
pub(super) fn set_for_token(c: &Connection, id: i64, names: &[String]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match c
            .query_row("SELECT id FROM roles WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        {
            Some(role) => ids.push(role),
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Ok(unknown);
    }
    c.execute("DELETE FROM token_roles WHERE token_id = ?1", [id])?;
    for role in ids {
        c.execute(
            "INSERT OR IGNORE INTO token_roles (token_id, role_id) VALUES (?1, ?2)",
            params![id, role],
        )?;
    }
    Ok(Vec::new())
}

impl Meta {
    /// Every role, by name.
    pub async fn list_roles(&self) -> Result<Vec<RoleRecord>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM roles ORDER BY name"))?;
            let rows = stmt.query_map([], record)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish(row?)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn get_role(&self, id: i64) -> Result<Option<RoleRecord>> {
        self.call(move |c| get(c, id)).await
    }

    pub async fn insert_role(&self, role: NewRole) -> Result<RoleChange> {
        self.call(move |c| {
            let now = now_ms();
            let n = c.execute(
                "INSERT OR IGNORE INTO roles (name, description, grants, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![role.name, role.description, grants_json(&role.grants)?, now],
            )?;
            if n == 0 {
                return Ok(RoleChange::Exists);
            }
            Ok(get(c, c.last_insert_rowid())?.map_or(RoleChange::NotFound, RoleChange::Done))
        })
        .await
    }

    /// Replaces role `id`'s description and grants.
    pub async fn update_role(
        &self,
        id: i64,
        description: Option<String>,
        grants: Vec<Grant>,
    ) -> Result<RoleChange> {
        self.call(move |c| {
            let n = c.execute(
                "UPDATE roles SET description = ?2, grants = ?3, updated_at_ms = ?4 WHERE id = ?1",
                params![id, description, grants_json(&grants)?, now_ms()],
            )?;
            if n == 0 {
                return Ok(RoleChange::NotFound);
            }
            Ok(get(c, id)?.map_or(RoleChange::NotFound, RoleChange::Done))
        })
        .await
    }

    /// Deletes role `id` unless a token holds it.
    pub async fn delete_role(&self, id: i64) -> Result<RoleChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let Some(rec) = get(&tx, id)? else {
                return Ok(RoleChange::NotFound);
            };
            if rec.tokens > 0 {
                return Ok(RoleChange::InUse(rec.tokens));
            }
            tx.execute("DELETE FROM roles WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(RoleChange::Done(rec))
        })
        .await
    }
}
