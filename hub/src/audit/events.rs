//! Which requests are audited, under which event type, and the entry each
//! one leaves.

use axum::extract::Query;
use axum::http::{Method, StatusCode, Uri};

use super::{Audit, AuditNote, FailureKey};
use crate::auth::Principal;
use crate::meta::audit::NewAuditEntry;
use crate::meta::now_ms;

/// A 401: no usable credentials.
pub const AUTH_FAILURE: &str = "auth.failure";
/// A 403: credentials that do not grant what was asked.
pub const AUTH_DENIED: &str = "auth.denied";

/// The administrative routes: (method, route template, event type).
const EVENTS: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/auth/tokens", "token.create"),
    ("PATCH", "/api/v1/auth/tokens/{id}", "token.update"),
    ("DELETE", "/api/v1/auth/tokens/{id}", "token.delete"),
    ("POST", "/api/v1/auth/tokens/{id}/rotate", "token.rotate"),
    ("POST", "/api/v1/auth/tokens/{id}/revoke", "token.revoke"),
    ("PUT", "/api/v1/auth/tokens/{id}/roles", "token.roles"),
    ("POST", "/api/v1/auth/roles", "role.create"),
    ("PUT", "/api/v1/auth/roles/{id}", "role.update"),
    ("DELETE", "/api/v1/auth/roles/{id}", "role.delete"),
    ("PUT", "/api/v1/quotas/{kind}/{key}", "quota.set"),
    ("DELETE", "/api/v1/quotas/{kind}/{key}", "quota.delete"),
    ("POST", "/api/v1/retention", "retention.create"),
    ("DELETE", "/api/v1/retention", "retention.delete"),
    ("PUT", "/api/v1/retention/{id}", "retention.update"),
    ("DELETE", "/api/v1/retention/{id}", "retention.delete"),
    (
        "POST",
        "/api/v1/retention/{id}/execute",
        "retention.execute",
    ),
    ("POST", "/api/v1/retention/run", "retention.run"),
    ("POST", "/api/v1/retention/dry-run", "retention.dry_run"),
    ("POST", "/api/v1/compaction/run", "compaction.run"),
    ("POST", "/api/v1/continuous_queries", "cq.create"),
    ("PUT", "/api/v1/continuous_queries/{id}", "cq.update"),
    ("DELETE", "/api/v1/continuous_queries/{id}", "cq.delete"),
    (
        "POST",
        "/api/v1/continuous_queries/{id}/execute",
        "cq.execute",
    ),
    ("POST", "/api/v1/last_cache", "last_cache.create"),
    ("DELETE", "/api/v1/last_cache/{id}", "last_cache.delete"),
    ("POST", "/api/v3/configure/last_cache", "last_cache.create"),
    (
        "DELETE",
        "/api/v3/configure/last_cache",
        "last_cache.delete",
    ),
    ("POST", "/api/v1/delete", "data.delete"),
    ("POST", "/api/v1/import/{format}", "import.create"),
    ("DELETE", "/api/v1/import/jobs/{id}", "import.cancel"),
    (
        "DELETE",
        "/api/v1/import/uploads/{sha256}",
        "import.upload_delete",
    ),
    ("DELETE", "/api/v1/queries/{id}", "query.cancel"),
    ("POST", "/api/v1/admin/keys/rotate", "keys.rotate"),
    ("POST", "/api/v1/admin/keys/reencrypt", "keys.reencrypt"),
    ("POST", "/api/v1/alerts", "alert.create"),
    ("DELETE", "/api/v1/alerts/{id}", "alert.delete"),
    ("POST", "/api/v1/alerts/{id}/evaluate", "alert.evaluate"),
];

/// The event type of an administrative request, `None` for the others.
pub fn event_type(method: &Method, route: &str) -> Option<&'static str> {
    EVENTS
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map(|(_, _, e)| *e)
}

#[derive(Debug, serde::Deserialize)]
struct DbParams {
    db: Option<String>,
    database: Option<String>,
}

/// The database a request names: `database` or `db` in its JSON body, else
/// `db` or `database` in its query string.
pub fn named_database(uri: &Uri, body: &[u8]) -> Option<String> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["database", "db"]
                .iter()
                .find_map(|k| v.get(k).and_then(|d| d.as_str()).map(str::to_owned))
        });
    from_body
        .or_else(|| {
            let Query(q) = Query::<DbParams>::try_from_uri(uri).ok()?;
            q.db.or(q.database)
        })
        .filter(|d| !d.is_empty() && d.len() <= 256)
}

/// Records what an authenticated request did, once its answer is known:
/// a 403 is an `auth.denied` failure; an administrative request is an
/// entry of its own.
pub async fn after_request(
    audit: &Audit,
    principal: &Principal,
    method: &Method,
    route: Option<&str>,
    path: &str,
    status: StatusCode,
    note: Option<AuditNote>,
) {
    if !audit.enabled() {
        return;
    }
    let success = status.is_success();
    let status = status.as_u16();
    let source = principal.source.map(|ip| ip.to_string());
    if status == 403 {
        audit.failure(
            FailureKey {
                event_type: AUTH_DENIED,
                source,
                actor: principal.name.clone(),
                actor_token_id: principal.token_id,
                reason: "forbidden",
            },
            status,
            Some(format!("{method} {}", route.unwrap_or(path))),
        );
        return;
    }
    let Some(event) = route.and_then(|r| event_type(method, r)) else {
        return;
    };
    if !success && !principal.can(crate::auth::Permission::Admin) {
        // A refused request of a token that is not an admin everywhere (a
        // read token cancelling queries by made-up ids, a writer
        // cancelling imports): counted like an authentication failure,
        // so that no such token can grow the log one row per request.
        audit.failure(
            FailureKey {
                event_type: event,
                source,
                actor: principal.name.clone(),
                actor_token_id: principal.token_id,
                reason: "refused",
            },
            status,
            Some(format!("{method} {}", route.unwrap_or(path))),
        );
        return;
    }
    let note = note.unwrap_or_default();
    audit
        .record(NewAuditEntry {
            at_ms: now_ms(),
            event_type: event.to_owned(),
            actor: principal.name.clone(),
            actor_token_id: principal.token_id,
            source,
            target: Some(note.target.unwrap_or_else(|| path.to_owned())),
            database: note.database,
            outcome: if success {
                "success".to_owned()
            } else {
                "failure".to_owned()
            },
            status: Some(status),
            count: 1,
            detail: note.detail.map(|d| d.to_string()),
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_events() {
        assert_eq!(
            event_type(&Method::POST, "/api/v1/auth/tokens"),
            Some("token.create")
        );
        assert_eq!(event_type(&Method::GET, "/api/v1/auth/tokens"), None);
        assert_eq!(event_type(&Method::POST, "/api/v1/query"), None);
    }

    #[test]
    fn the_named_database() {
        assert_eq!(
            named_database(&Uri::from_static("/x"), br#"{"database":"plant","days":3}"#).as_deref(),
            Some("plant")
        );
        assert_eq!(
            named_database(&Uri::from_static("/x?db=a&x=1"), b"").as_deref(),
            Some("a")
        );
        assert_eq!(
            named_database(&Uri::from_static("/x?x=1"), b"not json"),
            None
        );
    }
}
