//! TLS for every HTTPS client poolwatch builds (alert delivery, the admin
//! client, `check-failover`).
//!
//! reqwest is built without a default crypto provider (the default one
//! needs cmake and a C toolchain beyond cc); ring is ours.

/// Installs ring as the process's rustls provider. A provider installed
/// earlier is fine too. Call before building any HTTPS client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
