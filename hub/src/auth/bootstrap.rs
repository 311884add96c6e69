//! The first admin token.

use super::{Role, token};
use crate::meta::{Meta, MetaError, NewToken};

/// The name of the token created on the first start.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// If the store has no token at all, creates an admin token and returns its
/// secret (the caller prints it once). `None` when tokens exist.
///
/// Atomic: two hubs starting on one metadata file cannot both create one.
pub async fn ensure_admin_token(meta: &Meta) -> Result<Option<String>, MetaError> {
    let secret = token::generate();
    let created = meta
        .insert_first_token(NewToken {
            name: BOOTSTRAP_TOKEN_NAME.to_owned(),
            role: Role::Admin,
            hash: token::hash(&secret),
            agents: None,
            description: Some("created on the first start".to_owned()),
            expires_at_ms: None,
            roles: Vec::new(),
        })
        .await?;
    Ok(created.map(|record| {
        tracing::info!(
            token_id = record.id,
            "created the bootstrap admin token (printed once on stdout)"
        );
        secret
    }))
}
