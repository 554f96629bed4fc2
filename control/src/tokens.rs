//! JWTs (REST access tokens and conference room tokens), opaque refresh
//! tokens, and revocation by "not before" timestamps.
//!
//! Revocation is stored per (user, team) and per (user, conference) rather
//! than per token: removing someone must kill every token they hold for that
//! scope without the control plane having to remember each one it issued.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use convene_proto::control::{Grants, RoomClaims, ROOM_TOKEN_AUDIENCE};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::error::ApiError;
use crate::Control;

/// Audience of REST access tokens.
pub const ACCESS_TOKEN_AUDIENCE: &str = "convene:api";
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub name: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: Uuid,
}

#[derive(Clone)]
pub struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Keys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
        }
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.enc)
            .map_err(|e| ApiError::Internal(format!("jwt encode: {e}")))
    }

    fn decode<T: DeserializeOwned>(&self, token: &str, audience: &str) -> Result<T, ApiError> {
        self.decode_with(token, audience, true)
    }

    fn decode_with<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        validate_exp: bool,
    ) -> Result<T, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = validate_exp;
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<T>(token, &self.dec, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthorized("token has expired".into()),
                _ => ApiError::Unauthorized("invalid token".into()),
            })
    }

    pub fn access_token(&self, user_id: Uuid, name: &str, ttl: u64) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        self.sign(&AccessClaims {
            sub: user_id,
            name: name.to_string(),
            aud: ACCESS_TOKEN_AUDIENCE.into(),
            exp: now + ttl as i64,
            iat: now,
            jti: Uuid::new_v4(),
        })
    }

    pub fn decode_access(&self, token: &str) -> Result<AccessClaims, ApiError> {
        self.decode(token, ACCESS_TOKEN_AUDIENCE)
    }

    pub fn decode_room(&self, token: &str) -> Result<RoomClaims, ApiError> {
        self.decode(token, ROOM_TOKEN_AUDIENCE)
    }

    /// A room token whatever its age (for resumes; see
    /// [`Control::verify_room_token_for_resume`]).
    pub fn decode_room_any_age(&self, token: &str) -> Result<RoomClaims, ApiError> {
        self.decode_with(token, ROOM_TOKEN_AUDIENCE, false)
    }
}

/// A fresh random secret (used for refresh tokens and a missing JWT secret).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Refresh tokens are stored hashed so a database leak does not hand out
/// sessions; they are high-entropy, so a plain SHA-256 suffices.
pub fn hash_refresh_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Team,
    Conference,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Team => "team",
            Scope::Conference => "conference",
        }
    }
}

/// Invalidates every token of `user_id` for the scope issued up to now.
///
/// `not_before` is the next whole second: JWT `iat` has second resolution, so
/// a token issued earlier within the current second must fall before it.
/// Tokens issued afterwards get their `iat` raised to it (see
/// [`Control::issue_room_token`]) so they stay valid.
pub async fn revoke(
    conn: &mut AnyConnection,
    scope: Scope,
    scope_id: Uuid,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let not_before = Utc::now().timestamp() + 1;
    sqlx::query(
        "INSERT INTO revocations (scope, scope_id, user_id, not_before) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, scope_id, user_id) DO UPDATE SET not_before = excluded.not_before",
    )
    .bind(scope.as_str())
    .bind(scope_id.to_string())
    .bind(user_id.to_string())
    .bind(not_before)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest "not before" covering a user's tokens for a conference.
pub async fn not_before(
    conn: &mut AnyConnection,
    user_id: Uuid,
    conference_id: Uuid,
    team_id: Uuid,
) -> Result<i64, ApiError> {
    let row = sqlx::query(
        "SELECT MAX(not_before) AS nb FROM revocations WHERE user_id = $1
           AND ((scope = 'conference' AND scope_id = $2) OR (scope = 'team' AND scope_id = $3))",
    )
    .bind(user_id.to_string())
    .bind(conference_id.to_string())
    .bind(team_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<Option<i64>, _>("nb")?.unwrap_or(0))
}

impl Control {
    /// Signs a room token; `iat` is raised to any revocation cut-off so a
    /// token issued right after a revocation is not caught by it.
    pub(crate) async fn issue_room_token(
        &self,
        conn: &mut AnyConnection,
        user_id: Uuid,
        name: &str,
        conference_id: Uuid,
        team_id: Uuid,
        grants: Grants,
    ) -> Result<String, ApiError> {
        let nb = not_before(conn, user_id, conference_id, team_id).await?;
        let now = Utc::now().timestamp();
        let iat = now.max(nb);
        let claims = RoomClaims {
            sub: user_id,
            name: name.to_string(),
            conf: conference_id,
            team: team_id,
            aud: ROOM_TOKEN_AUDIENCE.into(),
            exp: iat + self.config().room_token_ttl as i64,
            iat,
            jti: Uuid::new_v4(),
            grants,
        };
        self.keys().sign(&claims)
    }

    /// Checks a room token for the signaling service: signature, expiry,
    /// revocation and that the conference still exists and has not ended.
    /// Checks a room token and returns its claims with the moderator grant
    /// as it is *now*: a moderator demoted after the token was issued (or a
    /// team admin made a member) rejoins without moderator rights, and one
    /// promoted gets them, without waiting for the token to expire.
    pub async fn verify_room_token(&self, token: &str) -> Result<RoomClaims, ApiError> {
        let claims = self.keys().decode_room(token)?;
        self.check_room_claims(claims).await
    }

    /// As [`Control::verify_room_token`], but the token may have expired: a
    /// client resuming its seat after the token's lifetime (a long meeting)
    /// still has the token it joined with, and proves the seat with its
    /// resume token. Revocation, team membership and the conference are
    /// checked as for a join.
    pub async fn verify_room_token_for_resume(&self, token: &str) -> Result<RoomClaims, ApiError> {
        let claims = self.keys().decode_room_any_age(token)?;
        self.check_room_claims(claims).await
    }

    async fn check_room_claims(&self, mut claims: RoomClaims) -> Result<RoomClaims, ApiError> {
        let mut conn = self.db().pool.acquire().await?;
        let row = sqlx::query("SELECT team_id, ended_at FROM conferences WHERE id = $1")
            .bind(claims.conf.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("conference no longer exists".into()))?;
        let team: String = row.try_get("team_id")?;
        if team != claims.team.to_string() {
            return Err(ApiError::Unauthorized("invalid token".into()));
        }
        if row.try_get::<Option<i64>, _>("ended_at")?.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let nb = not_before(&mut conn, claims.sub, claims.conf, claims.team).await?;
        if claims.iat < nb {
            return Err(ApiError::TokenRevoked);
        }
        drop(conn);
        if !claims.grants.waiting {
            claims.grants.moderator = self
                .moderates_now(claims.conf, claims.team, claims.sub)
                .await?
                .ok_or(ApiError::TokenRevoked)?;
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_and_room_tokens_are_not_interchangeable() {
        let keys = Keys::new(b"secret");
        let t = keys.access_token(Uuid::new_v4(), "a", 60).unwrap();
        assert!(keys.decode_access(&t).is_ok());
        assert!(keys.decode_room(&t).is_err());
        assert!(Keys::new(b"other").decode_access(&t).is_err());
    }
}
