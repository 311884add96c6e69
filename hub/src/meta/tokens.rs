//! API tokens: only their SHA-256 hash is stored (see [`crate::auth::token`]
//! for why a fast hash is right for random tokens).
//!
//! # Lifecycle
//!
//! A token is *active* until it expires (`expires_at_ms`) or is revoked
//! (`revoked_at_ms`); either way its row stays, so the token list and the
//! audit log keep saying who it was. Rotation gives a token a new secret
//! and keeps the old one valid until `previous_valid_until_ms` (the grace
//! period), so a fleet can be moved to the new secret without a gap.
//! `last_used_ms` is written at most once per [`LAST_USED_RESOLUTION_MS`]
//! per token, so that a busy token does not turn every request into a
//! write.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

use super::{Meta, MetaError, Result, format_ms, now_ms, roles};
use crate::auth::{AgentPattern, Grants, Role, TokenHash};

/// `last_used` is recorded to within this many milliseconds.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// Where a token stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The agents a write token may upload segments for; `None`: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentPattern>,
    pub description: Option<String>,
    /// Computed at read time from `expires_at` and `revoked_at`.
    pub status: TokenStatus,
    /// RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub revoked_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub rotated_at: Option<i64>,
    /// Until when the secret replaced by the last rotation still works.
    #[serde(serialize_with = "rfc3339_opt")]
    pub previous_valid_until: Option<i64>,
    /// To within [`LAST_USED_RESOLUTION_MS`].
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_used: Option<i64>,
    /// The roles the token holds besides its built-in `role`.
    pub roles: Vec<String>,
    /// What the built-in role and the roles grant together.
    #[serde(skip)]
    pub grants: Grants,
}

fn rfc3339<S: Serializer>(ms: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

fn rfc3339_opt<S: Serializer>(ms: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_ms(*ms)),
        None => s.serialize_none(),
    }
}

impl TokenRecord {
    /// Active, expired or revoked at `now_ms`.
    pub fn status_at(&self, now_ms: i64) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now_ms) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub hash: TokenHash,
    pub agents: Option<AgentPattern>,
    pub description: Option<String>,
    pub expires_at_ms: Option<i64>,
    /// Names of roles to hold.
    pub roles: Vec<String>,
}

/// What a presented secret turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// No token has this secret (now or before a rotation).
    Unknown,
    /// An active token; `previous` when the secret is the one replaced by
    /// the last rotation, still inside its grace period.
    Valid { record: TokenRecord, previous: bool },
    /// The token expired or was revoked.
    Inactive(TokenRecord),
    /// The secret was replaced by a rotation and its grace period is over.
    Rotated(TokenRecord),
}

const COLUMNS: &str = "id, name, role, created_at_ms, agents, description, expires_at_ms, \
                       revoked_at_ms, rotated_at_ms, previous_valid_until_ms, last_used_ms";

/// A row, with the role and agent pattern still as stored.
struct RawToken {
    rec: TokenRecord,
    role: String,
    agents: Option<String>,
}

fn record(row: &Row<'_>) -> rusqlite::Result<RawToken> {
    Ok(RawToken {
        rec: TokenRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            role: Role::Read,
            agents: None,
            description: row.get(5)?,
            status: TokenStatus::Active,
            created_at: row.get(3)?,
            expires_at: row.get(6)?,
            revoked_at: row.get(7)?,
            rotated_at: row.get(8)?,
            previous_valid_until: row.get(9)?,
            last_used: row.get(10)?,
            roles: Vec::new(),
            grants: Grants::default(),
        },
        role: row.get(2)?,
        agents: row.get(4)?,
    })
}

/// Parses what [`record`] kept as stored, the status at `now`, and the
/// token's roles and grants.
fn finish(c: &Connection, raw: RawToken, now: i64) -> Result<TokenRecord> {
    let RawToken {
        mut rec,
        role,
        agents,
    } = raw;
    let id = rec.id;
    rec.role = role
        .parse::<Role>()
        .map_err(|e| MetaError::Corrupt(format!("token {id}: {e}")))?;
    rec.agents = agents
        .map(|a| AgentPattern::new(&a))
        .transpose()
        .map_err(|e| MetaError::Corrupt(format!("token {id}: {e}")))?;
    rec.status = rec.status_at(now);
    let (names, mut grants) = roles::of_token(c, id)?;
    grants.extend(Grants::of_role(rec.role).0);
    rec.roles = names;
    rec.grants = grants;
    Ok(rec)
}

fn get(c: &Connection, id: i64, now: i64) -> Result<Option<TokenRecord>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
        [id],
        record,
    )
    .optional()?
    .map(|r| finish(c, r, now))
    .transpose()
}

/// Inserts `token` (in the caller's transaction); its unknown role names,
/// if any (then nothing is meant to be committed).
fn insert(tx: &Connection, token: &NewToken) -> Result<TokenChange> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO tokens (name, role, hash, created_at_ms, agents, description, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            token.name,
            token.role.as_str(),
            &token.hash.0[..],
            now,
            token.agents.as_ref().map(AgentPattern::as_str),
            token.description,
            token.expires_at_ms,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let unknown = roles::set_for_token(tx, id, &token.roles)?;
    if !unknown.is_empty() {
        return Ok(TokenChange::UnknownRoles(unknown));
    }
    get(tx, id, now)?
        .map(TokenChange::Done)
        .ok_or_else(|| MetaError::Corrupt("inserted token not found".to_owned()))
}

/// Admin tokens other than `except` that are active and never expire: the
/// hub must keep one, or nobody could manage it once the others expire
/// (and the bootstrap token is only made for an empty store).
fn other_active_admins(c: &Connection, except: i64) -> Result<i64> {
    Ok(c.query_row(
        "SELECT count(*) FROM tokens WHERE role = 'admin' AND id != ?1
         AND revoked_at_ms IS NULL AND expires_at_ms IS NULL",
        params![except],
        |r| r.get(0),
    )?)
}

/// Why a change to a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    Done(TokenRecord),
    NotFound,
    /// The token is revoked or expired: it cannot be rotated.
    Inactive(TokenRecord),
    /// It is the last active admin token.
    LastAdmin,
    /// Role names that do not exist (nothing was changed).
    UnknownRoles(Vec<String>),
}

impl Meta {
    /// Stores a new token (not when a role it names does not exist).
    pub async fn insert_token(&self, token: NewToken) -> Result<TokenChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let change = insert(&tx, &token)?;
            if matches!(change, TokenChange::Done(_)) {
                tx.commit()?;
            }
            Ok(change)
        })
        .await
    }

    /// Gives token `id` exactly the roles `names`.
    pub async fn set_token_roles(&self, id: i64, names: Vec<String>) -> Result<TokenChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            if get(&tx, id, now)?.is_none() {
                return Ok(TokenChange::NotFound);
            }
            let unknown = roles::set_for_token(&tx, id, &names)?;
            if !unknown.is_empty() {
                return Ok(TokenChange::UnknownRoles(unknown));
            }
            let rec = get(&tx, id, now)?
                .ok_or_else(|| MetaError::Corrupt("token not found".to_owned()))?;
            tx.commit()?;
            Ok(TokenChange::Done(rec))
        })
        .await
    }

    /// Stores `token` only if there is no token at all (the bootstrap admin
    /// token), atomically. `None` if tokens already exist.
    pub async fn insert_first_token(&self, token: NewToken) -> Result<Option<TokenRecord>> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let n: i64 = tx.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
            if n > 0 {
                return Ok(None);
            }
            let TokenChange::Done(rec) = insert(&tx, &token)? else {
                return Err(MetaError::Corrupt("the first token names roles".to_owned()));
            };
            tx.commit()?;
            Ok(Some(rec))
        })
        .await
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.call(|c| {
            let now = now_ms();
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id"))?;
            let rows = stmt.query_map([], record)?;
            let mut out = Vec::new();
            let raws = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            for raw in raws {
                out.push(finish(c, raw, now)?);
            }
            Ok(out)
        })
        .await
    }

    /// Token `id`.
    pub async fn get_token(&self, id: i64) -> Result<Option<TokenRecord>> {
        self.call(move |c| get(c, id, now_ms())).await
    }

    /// What the secret hashing to `hash` is, and, when it is a valid token,
    /// its `last_used` brought up to date (at most once a
    /// [`LAST_USED_RESOLUTION_MS`]).
    pub async fn find_token(&self, hash: TokenHash) -> Result<TokenLookup> {
        self.call(move |c| {
            let now = now_ms();
            let row = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, hash = ?1 FROM tokens WHERE hash = ?1 OR previous_hash = ?1"
                ))?
                .query_row([&hash.0[..]], |r| Ok((record(r)?, r.get::<_, bool>(11)?)))
                .optional()?;
            let Some((raw, current)) = row else {
                return Ok(TokenLookup::Unknown);
            };
            let rec = finish(c, raw, now)?;
            if rec.status != TokenStatus::Active {
                return Ok(TokenLookup::Inactive(rec));
            }
            if !current && rec.previous_valid_until.is_none_or(|until| until <= now) {
                return Ok(TokenLookup::Rotated(rec));
            }
            // Only a stale `last_used` costs a write statement: a token in
            // steady use is read, not written, on each request.
            if rec
                .last_used
                .is_none_or(|t| t <= now - LAST_USED_RESOLUTION_MS)
            {
                c.execute(
                    "UPDATE tokens SET last_used_ms = ?2
                     WHERE id = ?1 AND (last_used_ms IS NULL OR last_used_ms <= ?2 - ?3)",
                    params![rec.id, now, LAST_USED_RESOLUTION_MS],
                )?;
            }
            Ok(TokenLookup::Valid {
                record: rec,
                previous: !current,
            })
        })
        .await
    }

    /// Sets token `id`'s description.
    pub async fn describe_token(
        &self,
        id: i64,
        description: Option<String>,
    ) -> Result<TokenChange> {
        self.call(move |c| {
            let n = c.execute(
                "UPDATE tokens SET description = ?2 WHERE id = ?1",
                params![id, description],
            )?;
            if n == 0 {
                return Ok(TokenChange::NotFound);
            }
            Ok(get(c, id, now_ms())?.map_or(TokenChange::NotFound, TokenChange::Done))
        })
        .await
    }

    /// Gives token `id` the secret hashing to `hash`; the old secret stays
    /// valid until `grace_until_ms`. A revoked or expired token is refused.
    pub async fn rotate_token(
        &self,
        id: i64,
        hash: TokenHash,
        grace_until_ms: i64,
    ) -> Result<TokenChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            let Some(rec) = get(&tx, id, now)? else {
                return Ok(TokenChange::NotFound);
            };
            if rec.status != TokenStatus::Active {
                return Ok(TokenChange::Inactive(rec));
            }
            tx.execute(
                "UPDATE tokens SET previous_hash = hash, previous_valid_until_ms = ?3,
                 hash = ?2, rotated_at_ms = ?4 WHERE id = ?1",
                params![id, &hash.0[..], grace_until_ms.max(now), now],
            )?;
            let rec = get(&tx, id, now)?
                .ok_or_else(|| MetaError::Corrupt("rotated token not found".to_owned()))?;
            tx.commit()?;
            Ok(TokenChange::Done(rec))
        })
        .await
    }

    /// Revokes token `id` (its secrets stop working at once; the row stays).
    /// The last active admin token is refused.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            let Some(rec) = get(&tx, id, now)? else {
                return Ok(TokenChange::NotFound);
            };
            if rec.status == TokenStatus::Revoked {
                return Ok(TokenChange::Done(rec));
            }
            if rec.role == Role::Admin
                && rec.status == TokenStatus::Active
                && other_active_admins(&tx, id)? == 0
            {
                return Ok(TokenChange::LastAdmin);
            }
            tx.execute(
                "UPDATE tokens SET revoked_at_ms = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            let rec = get(&tx, id, now)?
                .ok_or_else(|| MetaError::Corrupt("revoked token not found".to_owned()))?;
            tx.commit()?;
            Ok(TokenChange::Done(rec))
        })
        .await
    }

    /// Deletes token `id`; the last active admin token is refused.
    pub async fn delete_token(&self, id: i64) -> Result<TokenChange> {
        self.call(move |c| {
            let tx = c.savepoint()?;
            let now = now_ms();
            let Some(rec) = get(&tx, id, now)? else {
                return Ok(TokenChange::NotFound);
            };
            if rec.role == Role::Admin
                && rec.status == TokenStatus::Active
                && other_active_admins(&tx, id)? == 0
            {
                return Ok(TokenChange::LastAdmin);
            }
            tx.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(TokenChange::Done(rec))
        })
        .await
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
