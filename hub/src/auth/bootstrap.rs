//! The first admin token.

use super::{Role, token};
use crate::meta::{Meta, MetaError, NewToken};

/// The name of the token created on the first start.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// If the store has no token at all, creates an admin token and returns its
/// secret (the caller prints it once). `None` when tokens exist.
///
/// Atomic: two hubs starting on one metadata file cannot both create one.
///
/// With the shared metadata log, two hubs starting at once race for it: the
/// one that loses sees the other's token and creates none.
pub async fn ensure_admin_token(meta: &Meta) -> Result<Option<String>, MetaError> {
    let secret = token::generate();
    let mut attempts = 0;
    let created = loop {
        let tried = meta
            .insert_first_token(NewToken {
                name: BOOTSTRAP_TOKEN_NAME.to_owned(),
                role: Role::Admin,
                hash: token::hash(&secret),
                agents: None,
                description: Some("created on the first start".to_owned()),
                expires_at_ms: None,
                roles: Vec::new(),
            })
            .await;
        match tried {
            Err(MetaError::Conflict) if attempts < 5 => attempts += 1,
            other => break other?,
        }
    };
    Ok(created.map(|record| {
        tracing::info!(
            token_id = record.id,
            "created the bootstrap admin token (printed once on stdout)"
        );
        secret
    }))
}
