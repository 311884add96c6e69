//! `GET /api/v1/admin/keys`, `POST /api/v1/admin/keys/rotate` and
//! `POST /api/v1/admin/keys/reencrypt` (admin everywhere). Keys show as
//! ids and fingerprints; no route returns or logs a key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::reencrypt::JobState;
use super::{Encryption, KeyError};
use crate::audit::AuditNote;
use crate::auth::{Permission, Principal};
use crate::server::{ApiError, ApiResult, AppState, Body, json_or_default};

/// One key as the API shows it.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    /// The first 8 bytes of SHA-256 over a label and the key: tells keys
    /// apart (the same id with another key) without revealing them.
    pub fingerprint: String,
    pub active: bool,
}

/// `GET /api/v1/admin/keys`.
#[derive(Debug, Serialize)]
pub struct KeysView {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    pub keys: Vec<KeyView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reencryption: Option<JobState>,
}

fn view(enc: Option<&Arc<Encryption>>) -> KeysView {
    let Some(enc) = enc else {
        return KeysView {
            enabled: false,
            source: None,
            active: None,
            keys: Vec::new(),
            reencryption: None,
        };
    };
    let set = enc.keyring.current();
    let active = set.active().id().to_owned();
    KeysView {
        enabled: true,
        source: Some(enc.keyring.source().to_string()),
        keys: set
            .keys()
            .iter()
            .map(|k| KeyView {
                id: k.id().to_owned(),
                fingerprint: k.fingerprint(),
                active: k.id() == active,
            })
            .collect(),
        active: Some(active),
        reencryption: Some(enc.job.state()),
    }
}

fn enabled(state: &AppState) -> ApiResult<&Arc<Encryption>> {
    state.tables.encryption().ok_or_else(|| {
        ApiError::conflict("encryption is off on this hub ([encryption] enabled = false)")
    })
}

pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Json<KeysView>> {
    principal.require(Permission::Admin)?;
    Ok(Json(view(state.tables.encryption())))
}

/// The body of `POST /api/v1/admin/keys/rotate` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Start the re-encryption job once the new key is active.
    #[serde(default)]
    pub reencrypt: bool,
}

/// `POST /api/v1/admin/keys/rotate`.
#[derive(Debug, Serialize)]
pub struct RotateView {
    pub previous: String,
    pub active: String,
    pub generated: bool,
    pub reencryption_started: bool,
}

pub async fn rotate(
    principal: Principal,
    State(state): State<AppState>,
    Body(raw): Body,
) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let body: RotateBody = json_or_default(&raw)?;
    let enc = enabled(&state)?;
    let keyring_enc = Arc::clone(enc);
    let rotated = tokio::task::spawn_blocking(move || keyring_enc.keyring.rotate())
        .await
        .map_err(|e| ApiError::internal("key rotation", e))?
        .map_err(|e| match e {
            KeyError::NothingNew(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal("key rotation", other),
        })?;
    tracing::info!(previous = %rotated.previous, active = %rotated.active, generated = rotated.generated, "encryption key rotated");
    let started = body.reencrypt && start_job(&state, enc)?;
    let note = Extension(AuditNote {
        target: Some(format!("key {}", rotated.active)),
        database: None,
        detail: serde_json::to_value(&rotated).ok(),
    });
    Ok((
        note,
        Json(RotateView {
            previous: rotated.previous,
            active: rotated.active,
            generated: rotated.generated,
            reencryption_started: started,
        }),
    )
        .into_response())
}

fn start_job(state: &AppState, enc: &Arc<Encryption>) -> ApiResult<bool> {
    super::start_reencryption(&state.tables, enc)
        .map_err(|e| ApiError::internal("opening the store", e))
}

/// `POST /api/v1/admin/keys/reencrypt`: 202 and the job's state; 409 if
/// one is running.
pub async fn reencrypt(principal: Principal, State(state): State<AppState>) -> ApiResult<Response> {
    principal.require(Permission::Admin)?;
    let enc = enabled(&state)?;
    if !start_job(&state, enc)? {
        return Err(ApiError::conflict(
            "a re-encryption job is running (GET /api/v1/admin/keys shows its progress)",
        ));
    }
    let note = Extension(AuditNote {
        target: Some(format!("key {}", enc.keyring.current().active().id())),
        database: None,
        detail: None,
    });
    Ok((StatusCode::ACCEPTED, note, Json(enc.job.state())).into_response())
}
