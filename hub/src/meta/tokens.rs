//! API tokens: only their SHA-256 hash is stored (see [`crate::auth::token`]
//! for why a fast hash is right for random tokens).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Meta, MetaError, Result, format_ms, now_ms};
use crate::auth::{AgentPattern, Role, TokenHash};

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The agents a write token may upload segments for; `None`: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentPattern>,
    /// RFC 3339.
    pub created_at: String,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub hash: TokenHash,
    pub agents: Option<AgentPattern>,
}

const COLUMNS: &str = "id, name, role, created_at_ms, agents";

type RawToken = (i64, String, String, i64, Option<String>);

fn record(row: &Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_record((id, name, role, created, agents): RawToken) -> Result<TokenRecord> {
    let role = role
        .parse::<Role>()
        .map_err(|e| MetaError::Corrupt(format!("token {id}: {e}")))?;
    let agents = agents
        .map(|a| AgentPattern::new(&a))
        .transpose()
        .map_err(|e| MetaError::Corrupt(format!("token {id}: {e}")))?;
    Ok(TokenRecord {
        id,
        name,
        role,
        agents,
        created_at: format_ms(created),
    })
}

fn insert(tx: &rusqlite::Connection, token: &NewToken) -> Result<TokenRecord> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO tokens (name, role, hash, created_at_ms, agents) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            token.name,
            token.role.as_str(),
            &token.hash.0[..],
            now,
            token.agents.as_ref().map(AgentPattern::as_str)
        ],
    )?;
    Ok(TokenRecord {
        id: tx.last_insert_rowid(),
        name: token.name.clone(),
        role: token.role,
        agents: token.agents.clone(),
        created_at: format_ms(now),
    })
}

impl Meta {
    /// Stores a new token.
    pub async fn insert_token(&self, token: NewToken) -> Result<TokenRecord> {
        self.call(move |c| insert(c, &token)).await
    }

    /// Stores `token` only if there is no token at all (the bootstrap admin
    /// token), atomically. `None` if tokens already exist.
    pub async fn insert_first_token(&self, token: NewToken) -> Result<Option<TokenRecord>> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let n: i64 = tx.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
            if n > 0 {
                return Ok(None);
            }
            let rec = insert(&tx, &token)?;
            tx.commit()?;
            Ok(Some(rec))
        })
        .await
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id"))?;
            let rows = stmt.query_map([], record)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(to_record(row?)?);
            }
            Ok(out)
        })
        .await
    }

    /// The token whose hash is `hash`.
    pub async fn find_token(&self, hash: TokenHash) -> Result<Option<TokenRecord>> {
        self.call(move |c| {
            let row = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"),
                    [&hash.0[..]],
                    record,
                )
                .optional()?;
            row.map(to_record).transpose()
        })
        .await
    }

    /// Deletes token `id`; false if there was none.
    pub async fn delete_token(&self, id: i64) -> Result<bool> {
        self.call(move |c| Ok(c.execute("DELETE FROM tokens WHERE id = ?1", [id])? > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token;

    #[tokio::test]
    async fn crud() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("hub.db")).await.unwrap();
        let secret = token::generate();
        let first = meta
            .insert_first_token(NewToken {
                name: "admin".into(),
                role: Role::Admin,
                hash: token::hash(&secret),
                agents: None,
            })
            .await
            .unwrap()
            .unwrap();
        let again = meta
            .insert_first_token(NewToken {
                name: "admin2".into(),
                role: Role::Admin,
                hash: token::hash(&token::generate()),
                agents: None,
            })
            .await
            .unwrap();
        assert!(again.is_none());
        let found = meta.find_token(token::hash(&secret)).await.unwrap();
        assert_eq!(found.as_ref(), Some(&first));
        assert!(meta.find_token(token::hash("x")).await.unwrap().is_none());
        assert_eq!(meta.list_tokens().await.unwrap().len(), 1);
        assert!(meta.delete_token(first.id).await.unwrap());
        assert!(!meta.delete_token(first.id).await.unwrap());
        assert!(meta.list_tokens().await.unwrap().is_empty());
    }
}
