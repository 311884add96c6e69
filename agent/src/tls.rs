//! TLS setup shared by the broker's listener, upstream subscriptions and the
//! uplink: rustls with the `ring` provider everywhere (no OpenSSL, no aws-lc,
//! so ARM and musl builds stay simple).

/// Installs `ring` as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
