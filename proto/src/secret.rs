//! The shared secrets between convene's services: how a caller presents one
//! and how the callee checks it.
//!
//! Every service-to-service HTTP call (the control plane's internal API, the
//! SFU's control API) sends `Authorization: Bearer <secret>`.

/// The header the control plane's internal API accepted before it took
/// `Authorization: Bearer`.
///
/// Deprecated: still accepted by the control plane for one release so a
/// signaling service of the previous version keeps working during a rolling
/// upgrade; nothing sends it any more, and it will be removed.
pub const LEGACY_INTERNAL_SECRET_HEADER: &str = "x-convene-internal-secret";

/// The credentials of an `Authorization: Bearer <token>` header value; the
/// scheme is case-insensitive (RFC 9110).
pub fn bearer_token(authorization_header: &str) -> Option<&str> {
    let (scheme, token) = authorization_header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Whether `given` is the configured `secret`, in time independent of where
/// they differ and of their lengths: both are hashed first, so only digests
/// of equal length reach the constant-time compare. An empty secret never
/// matches, so an unset secret cannot be met by an empty credential.
pub fn secret_matches(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;

    let given_digest = Sha256::digest(given.as_bytes());
    let secret_digest = Sha256::digest(secret.as_bytes());
    let equal: bool = given_digest.ct_eq(&secret_digest).into();
    equal && !secret.is_empty()
}

/// Whether an `Authorization` header value carries `Bearer <secret>`.
pub fn bearer_secret_matches(authorization_header: Option<&str>, secret: &str) -> bool {
    authorization_header
        .and_then(bearer_token)
        .is_some_and(|given| secret_matches(given, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_match() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(bearer_secret_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_secret_matches(Some("bearer s3cret"), "s3cret"));
    }

    #[test]
    fn different_secrets_do_not_match() {
        assert!(!secret_matches("s3cret", "s3creT"));
        assert!(!bearer_secret_matches(Some("Bearer s3creT"), "s3cret"));
    }

    #[test]
    fn different_lengths_do_not_match() {
        assert!(!secret_matches("s3cre", "s3cret"));
        assert!(!secret_matches("s3crett", "s3cret"));
        assert!(!bearer_secret_matches(Some("Bearer s3cret "), "s3cret"));
    }

    #[test]
    fn empty_never_matches() {
        assert!(!secret_matches("", ""));
        assert!(!secret_matches("", "s3cret"));
        assert!(!secret_matches("s3cret", ""));
        assert!(!bearer_secret_matches(Some("Bearer "), ""));
        assert!(!bearer_secret_matches(Some("Bearer "), "s3cret"));
    }

    #[test]
    fn only_a_bearer_header_carries_the_secret() {
        assert!(!bearer_secret_matches(None, "s3cret"));
        assert!(!bearer_secret_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_secret_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_secret_matches(Some("Bearers3cret"), "s3cret"));
    }
}
