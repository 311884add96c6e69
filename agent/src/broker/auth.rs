//! Username/password check done by the gate before a client reaches rumqttd.
//!
//! Passwords are compared as SHA-256 digests with a constant-time fold, so
//! the time taken depends neither on where the password differs nor on its
//! length; an unknown user is compared against a dummy digest.

use sha2::{Digest, Sha256};

use super::config::MqttAuthConfig;

/// The outcome of checking a CONNECT's login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    Allowed,
    /// No user name or password given.
    NotAuthorized,
    /// Unknown user or wrong password.
    BadCredentials,
}

/// Password digests by user name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Authenticator {
    users: Option<std::collections::HashMap<String, [u8; 32]>>,
    /// The digest of the self-probe's password (a per-process secret).
    probe: Option<[u8; 32]>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Authenticator {
    /// `probe_password`: the self-probe logs in as
    /// [`PROBE_USER`](super::probe::PROBE_USER) with it.
    pub(crate) fn new(config: Option<&MqttAuthConfig>, probe_password: Option<&str>) -> Self {
        Authenticator {
            probe: probe_password.map(|p| digest(p.as_bytes())),
            users: config.map(|c| {
                c.users
                    .iter()
                    .map(|(name, password)| (name.clone(), digest(password.as_bytes())))
                    .collect()
            }),
        }
    }

    pub(crate) fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> AuthOutcome {
        let Some(users) = &self.users else {
            return AuthOutcome::Allowed;
        };
        let (Some(username), Some(password)) = (username, password) else {
            return AuthOutcome::NotAuthorized;
        };
        let given = digest(password);
        if username == super::probe::PROBE_USER
            && let Some(probe) = &self.probe
            && constant_time_eq(&given, probe)
        {
            return AuthOutcome::Allowed;
        }
        let dummy = [0u8; 32];
        let (known, expected) = match users.get(username) {
            Some(d) => (true, d),
            None => (false, &dummy),
        };
        if constant_time_eq(&given, expected) && known {
            AuthOutcome::Allowed
        } else {
            AuthOutcome::BadCredentials
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let open = Authenticator::new(None, None);
        assert_eq!(open.check(None, None), AuthOutcome::Allowed);
        let config = MqttAuthConfig {
            users: [("alice".to_owned(), "secret".to_owned())].into(),
        };
        let auth = Authenticator::new(Some(&config), Some("probe-secret"));
        assert_eq!(
            auth.check(Some("alice"), Some(b"secret")),
            AuthOutcome::Allowed
        );
        assert_eq!(
            auth.check(Some("alice"), Some(b"secreT")),
            AuthOutcome::BadCredentials
        );
        assert_eq!(
            auth.check(Some("bob"), Some(b"secret")),
            AuthOutcome::BadCredentials
        );
        assert_eq!(auth.check(Some("alice"), None), AuthOutcome::NotAuthorized);
        assert_eq!(auth.check(None, None), AuthOutcome::NotAuthorized);
        // The self-probe logs in with the per-process secret, and only so.
        let probe = Some(super::super::probe::PROBE_USER);
        assert_eq!(
            auth.check(probe, Some(b"probe-secret")),
            AuthOutcome::Allowed
        );
        assert_eq!(
            auth.check(probe, Some(b"probe-secreT")),
            AuthOutcome::BadCredentials
        );
        let unprobed = Authenticator::new(Some(&config), None);
        assert_eq!(
            unprobed.check(probe, Some(b"probe-secret")),
            AuthOutcome::BadCredentials
        );
    }
}
