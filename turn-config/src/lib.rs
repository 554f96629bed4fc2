//! ICE server configuration for clients, with TURN REST credentials.
//!
//! Browsers behind NAT need a STUN server to learn their public address and,
//! on hostile networks, a TURN relay. convene does not run TURN itself; it
//! hands clients short-lived credentials for a coturn server configured with
//! `use-auth-secret`: the username is `expiry:user` (expiry in Unix seconds)
//! and the password is `base64(HMAC-SHA1(secret, username))`. coturn checks the
//! HMAC and the expiry, so no per-user state is shared between the two.
//!
//! Of convene's crates it depends only on `convene-proto`.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use convene_proto::ice::IceServer;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Default credential lifetime, matching what coturn's documentation suggests
/// for the TURN REST API (one day is common; calls rarely last longer).
pub const DEFAULT_TURN_TTL_SECS: u64 = 24 * 60 * 60;

/// Which STUN/TURN servers clients are told about.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IceConfig {
    /// STUN server URLs handed to clients (e.g. `stun:stun.example.org:3478`).
    #[arg(long = "stun-url", env = "CONVENE_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// TURN server URLs (e.g. `turn:turn.example.org:3478?transport=udp`).
    #[arg(long = "turn-url", env = "CONVENE_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// Shared secret of coturn's `static-auth-secret`. Without it no TURN entry
    /// is handed out, because a TURN URL without credentials is useless.
    #[arg(long, env = "CONVENE_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds.
    #[arg(long, env = "CONVENE_TURN_TTL_SECS", default_value_t = DEFAULT_TURN_TTL_SECS)]
    pub turn_ttl_secs: u64,
}

/// A TURN REST credential pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// `expiry:user`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
}

/// Computes the coturn `use-auth-secret` credential for `user`, valid until
/// `expires_at`.
pub fn turn_credential(secret: &str, user: &str, expires_at: SystemTime) -> TurnCredential {
    let expiry = expires_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let username = format!("{expiry}:{user}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential { username, password }
}

impl IceConfig {
    /// The ICE servers for `user` at time `now`: STUN entries as configured and
    /// one TURN entry with fresh credentials when a secret is set.
    pub fn ice_servers(&self, user: &str, now: SystemTime) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (Some(secret), false) = (&self.turn_secret, self.turn_urls.is_empty()) {
            let cred = turn_credential(secret, user, now + Duration::from_secs(self.turn_ttl_secs));
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(cred.username),
                credential: Some(cred.password),
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn credential_matches_coturn_reference_vector() {
        // Reference computed independently with
        // `printf %s '1700086400:alice' | openssl dgst -sha1 -hmac 'north' -binary | base64`.
        let cred = turn_credential("north", "alice", at(1_700_086_400));
        assert_eq!(cred.username, "1700086400:alice");
        assert_eq!(cred.password, OPENSSL_REFERENCE);
    }

    const OPENSSL_REFERENCE: &str = include_str!("../testdata/turn_reference.txt");

    #[test]
    fn credentials_change_with_secret_user_and_expiry() {
        let base = turn_credential("s1", "bob", at(100));
        assert_ne!(base, turn_credential("s2", "bob", at(100)));
        assert_ne!(base, turn_credential("s1", "eve", at(100)));
        assert_ne!(base, turn_credential("s1", "bob", at(101)));
    }

    #[test]
    fn ice_servers_include_turn_only_with_secret_and_urls() {
        let mut cfg = IceConfig {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec!["turn:turn.example.org:3478".into()],
            turn_secret: None,
            turn_ttl_secs: 600,
        };
        let servers = cfg.ice_servers("u1", at(1000));
        assert_eq!(servers.len(), 1);
        assert!(servers[0].username.is_none());

        cfg.turn_secret = Some("sekrit".into());
        let servers = cfg.ice_servers("u1", at(1000));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("1600:u1"));
        let expected = turn_credential("sekrit", "u1", at(1600)).password;
        assert_eq!(servers[1].credential.as_deref(), Some(expected.as_str()));

        cfg.turn_urls.clear();
        assert_eq!(cfg.ice_servers("u1", at(1000)).len(), 1);
    }
}
