//! Token secrets: generation and hashing.
//!
//! A token is `ferry_` followed by 64 lowercase hex digits: 32 bytes from the
//! operating system's CSPRNG. The store keeps only its SHA-256.
//!
//! **Why SHA-256 and not argon2 / bcrypt:** slow password hashes exist to
//! make guessing a *low-entropy* human password expensive after the hash
//! leaks. A token carries 256 bits of randomness: no amount of guessing
//! recovers it from its hash, fast or slow. A slow hash would only cost
//! every request (the hub checks a token per request) tens of milliseconds
//! of CPU and open a cheap denial-of-service, with no security gain. The
//! hash is also the lookup key (a unique index), so checking a token is one
//! indexed query and needs no constant-time comparison of secrets.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every token, so scanners and humans recognise one.
pub const TOKEN_PREFIX: &str = "ferry_";

/// Random bytes per token.
const TOKEN_BYTES: usize = 32;

/// The SHA-256 of a token: what the store keeps.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short, and useless to an attacker anyway.
        write!(f, "TokenHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A new random token: `ferry_` + 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    s.push_str(TOKEN_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `secret` has the form [`generate`] gives (`ferry_` + 64
/// lowercase hex digits): what `POST /api/v1/auth/tokens` accepts as a
/// token's given secret (the same token on several hubs).
pub fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 2 * TOKEN_BYTES
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// The hash under which `token` is stored and looked up.
pub fn hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_uniqueness() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(
            a[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert!(well_formed(&a));
        for bad in [
            "",
            "ferry_",
            &a[..a.len() - 1],
            &format!("{a}0"),
            &a.to_uppercase(),
            &a.replace("ferry_", "token_"),
            &format!("ferry_{}", "g".repeat(64)),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}
