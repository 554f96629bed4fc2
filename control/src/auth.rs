//! Accounts: registration, login with rotating refresh tokens, and the
//! authenticated [`Actor`] every other service method acts on behalf of.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{ClientIp, Json, Query};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use convene_proto::control::{
    LoginRequest, Problem, RefreshRequest, RegisterRequest, TokenResponse, User,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::db::{ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::ratelimit::Account;
use crate::tokens::{hash_refresh_token, random_secret};
use crate::{validate, Control};

/// The authenticated caller of a service method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub username: String,
}

impl Actor {
    pub fn new(user_id: Uuid, username: impl Into<String>) -> Self {
        Actor {
            user_id,
            username: username.into(),
        }
    }
}

/// Bounds argon2 work. Each hash or check holds `argon2_memory_kib` and a
/// core for its whole run; unbounded, a registration flood queued hundreds
/// on the blocking pool (gigabytes of memory, every core busy) and starved
/// other users' requests. A request that cannot get a slot within `wait` is
/// turned away with 503 rather than queued indefinitely.
#[derive(Debug)]
pub(crate) struct HashGate {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl HashGate {
    pub(crate) fn new(slots: usize, wait: Duration) -> Self {
        HashGate {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(ApiError::Internal("password hashing gate closed".into())),
            Err(_) => {
                tracing::debug!("no password hashing slot free; answering 503");
                return Err(ApiError::Overloaded {
                    retry_after: self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0),
                });
            }
        };
        // The slot moves into the blocking task: a client that disconnects
        // cancels its request, not the hash, which must keep its slot until
        // it really ends.
        Ok(tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await?)
    }
}

pub(crate) fn hash_password_blocking(params: &Params, password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password_blocking(hash: &str, password: &str) -> bool {
    // Parameters come from the PHC string, so hashes made with older cost
    // settings keep verifying.
    PasswordHash::new(hash)
        .and_then(|h| Argon2::default().verify_password(password.as_bytes(), &h))
        .is_ok()
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User, ApiError> {
    Ok(User {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        created_at: ms_to_dt(row.try_get("created_at")?),
    })
}

const USER_COLUMNS: &str = "id, username, email, created_at";

impl Control {
    async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        let params = self.inner.argon2.clone();
        // Argon2 is deliberately slow; keep it off the async workers.
        self.inner
            .hash_gate
            .run(move || hash_password_blocking(&params, &password))
            .await?
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    }

    async fn verify_password(&self, hash: String, password: String) -> Result<bool, ApiError> {
        self.inner
            .hash_gate
            .run(move || verify_password_blocking(&hash, &password))
            .await
    }

    /// Creates an account, rate-limited per client IP: every attempt counts,
    /// failed ones too, as each may cost a password hash and a 409 tells
    /// whether a name is taken.
    pub async fn register(
        &self,
        req: RegisterRequest,
        ip: Option<IpAddr>,
    ) -> Result<User, ApiError> {
        self.inner.register_limits.check(ip, Instant::now())?;
        let username = validate::username(&req.username)?;
        let email = validate::email(&req.email)?;
        validate::password(&req.password)?;
        let hash = self.hash_password(req.password).await?;

        let id = Uuid::new_v4();
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        let taken = sqlx::query(
            "SELECT username_lower, email_lower FROM users WHERE username_lower = $1 OR email_lower = $2",
        )
        .bind(username.to_lowercase())
        .bind(email.to_lowercase())
        .fetch_optional(&mut *tx)
        .await?;
        // One answer for both, so the form does not tell a stranger which
        // of the two an existing account has.
        if taken.is_some() {
            return Err(ApiError::Conflict(
                "that username or email is already registered".into(),
            ));
        }
        // A concurrent registration can still slip between the check and the
        // insert; the unique constraints turn that into a 409 as well.
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, email, email_lower, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(&username)
        .bind(username.to_lowercase())
        .bind(&email)
        .bind(email.to_lowercase())
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(User {
            id,
            username,
            email,
            created_at: ms_to_dt(now),
        })
    }

    /// Password login, rate-limited per client IP and per account name.
    pub async fn login(
        &self,
        req: LoginRequest,
        ip: Option<IpAddr>,
    ) -> Result<TokenResponse, ApiError> {
        let login = req.login.trim().to_lowercase();
        self.inner.login_limits.check_ip(ip, Instant::now())?;
        if login.is_empty() || login.chars().count() > validate::LOOKUP_MAX {
            return Err(ApiError::InvalidCredentials);
        }
        // The account is looked up before it is limited, so its username and
        // email share one budget; the lookup is one indexed query, the hash
        // that follows is what the limits protect.
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username_lower = $1 OR email_lower = $1"
        ))
        .bind(&login)
        .fetch_optional(&self.db().pool)
        .await?;
        let account = match &row {
            Some(r) => Account::Id(user_from_row(r)?.id),
            None => Account::Unknown(login),
        };
        self.inner
            .login_limits
            .check_account(&account, ip, Instant::now())?;
        if req.password.chars().count() > validate::PASSWORD_MAX {
            return Err(ApiError::InvalidCredentials);
        }

        let hash = match &row {
            Some(r) => r.try_get::<String, _>("password_hash")?,
            None => self.inner.dummy_hash.clone(),
        };
        let ok = self.verify_password(hash, req.password).await?;
        let user = match (row, ok) {
            (Some(r), true) => user_from_row(&r)?,
            _ => return Err(ApiError::InvalidCredentials),
        };
        self.inner
            .login_limits
            .succeeded(user.id, ip, Instant::now());

        let mut conn = self.db().pool.acquire().await?;
        let refresh = insert_refresh_token(
            &mut conn,
            user.id,
            Uuid::new_v4(),
            self.config().refresh_token_ttl,
        )
        .await?;
        self.token_response(user, refresh)
    }

    /// Exchanges a refresh token for a new pair. Each refresh token works
    /// once; presenting a used one again revokes its whole family, since
    /// that means it was copied.
    pub async fn refresh(&self, req: RefreshRequest) -> Result<TokenResponse, ApiError> {
        let invalid = || ApiError::Unauthorized("invalid refresh token".into());
        if req.refresh_token.len() > validate::LOOKUP_MAX {
            return Err(invalid());
        }
        let hash = hash_refresh_token(&req.refresh_token);
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, family_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(invalid)?;
        let family: String = row.try_get("family_id")?;
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Err(ApiError::Unauthorized("refresh token has expired".into()));
        }
        let grace_ms = i64::try_from(self.config().refresh_reuse_grace_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let mut used_at: Option<i64> = row.try_get("used_at")?;
        if used_at.is_none() {
            let claimed = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                // A parallel refresh claimed it between our read and our
                // write (PostgreSQL): judge it as the reuse it is.
                used_at = Some(
                    sqlx::query("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
                        .bind(&hash)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get::<Option<i64>, _>("used_at")?
                        .unwrap_or(now),
                );
            }
        }
        // Reused: within the grace period it is the same client refreshing
        // in parallel, and gets a successor of its own in the same family;
        // later it is a replay, and the whole family is revoked.
        if let Some(used) = used_at {
            // `>=`: with no grace, a reuse in the same millisecond is a replay too.
            if now.saturating_sub(used) >= grace_ms {
                // Expired, not just used: a revoked token must not fall
                // within anyone's grace period.
                sqlx::query(
                    "UPDATE refresh_tokens SET used_at = COALESCE(used_at, $1), expires_at = 0
                     WHERE family_id = $2",
                )
                .bind(now)
                .bind(&family)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(family = %family, "refresh token reuse; family revoked");
                return Err(ApiError::Unauthorized(
                    "refresh token was already used".into(),
                ));
            }
        }
        let user_id = uuid_col(&row.try_get::<String, _>("user_id")?)?;
        let refresh = insert_refresh_token(
            &mut tx,
            user_id,
            uuid_col(&family)?,
            self.config().refresh_token_ttl,
        )
        .await?;
        let user = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(invalid)?;
        let user = user_from_row(&user)?;
        tx.commit().await?;
        self.token_response(user, refresh)
    }

    /// Ends the session a refresh token belongs to: its whole family is
    /// revoked, so neither it nor any successor refreshes again. Unknown,
    /// used or expired tokens are accepted quietly (RFC 7009): the answer
    /// tells nobody whether a token existed. Access tokens already issued
    /// stay valid until they expire (`access_token_ttl`).
    pub async fn logout(&self, req: RefreshRequest) -> Result<(), ApiError> {
        if req.refresh_token.len() > validate::LOOKUP_MAX {
            return Ok(());
        }
        let hash = hash_refresh_token(&req.refresh_token);
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = COALESCE(used_at, $1), expires_at = 0
             WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        )
        .bind(now_ms())
        .bind(&hash)
        .execute(&self.db().pool)
        .await?;
        if revoked.rows_affected() > 0 {
            tracing::info!("session ended by logout");
        }
        Ok(())
    }

    fn token_response(&self, user: User, refresh_token: String) -> Result<TokenResponse, ApiError> {
        let ttl = self.config().access_token_ttl;
        Ok(TokenResponse {
            access_token: self.keys().access_token(user.id, &user.username, ttl)?,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: ttl,
            user,
        })
    }

    /// Resolves a bearer access token to its user.
    pub fn authenticate(&self, access_token: &str) -> Result<Actor, ApiError> {
        let claims = self.keys().decode_access(access_token)?;
        Ok(Actor {
            user_id: claims.sub,
            username: claims.name,
        })
    }

    /// Builds an [`Actor`] for a user id, for in-process callers (the
    /// signaling service) that authenticated the user themselves.
    pub async fn actor(&self, user_id: Uuid) -> Result<Actor, ApiError> {
        let user = self.user(user_id).await?;
        Ok(Actor {
            user_id: user.id,
            username: user.username,
        })
    }

    pub async fn user(&self, user_id: Uuid) -> Result<User, ApiError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(user_id.to_string())
            .fetch_optional(&self.db().pool)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        user_from_row(&row)
    }

    pub async fn me(&self, actor: &Actor) -> Result<User, ApiError> {
        self.user(actor.user_id).await
    }

    /// Looks up a user the caller already shares a team or a chat with (or
    /// the caller), by exact email. Anyone else is "not found", exactly like
    /// an unknown address, so the endpoint cannot be used to find out who
    /// has an account.
    pub async fn find_user_by_email(&self, actor: &Actor, email: &str) -> Result<User, ApiError> {
        let email = email.trim().to_lowercase();
        if email.is_empty() || email.chars().count() > validate::EMAIL_MAX {
            return Err(ApiError::not_found("user"));
        }
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.email_lower = $1 AND (
                 u.id = $2
                 OR EXISTS (SELECT 1 FROM team_members a JOIN team_members b ON a.team_id = b.team_id
                            WHERE a.user_id = u.id AND b.user_id = $2)
                 OR EXISTS (SELECT 1 FROM chat_members a JOIN chat_members b ON a.chat_id = b.chat_id
                            WHERE a.user_id = u.id AND b.user_id = $2))"
        ))
        .bind(email)
        .bind(actor.user_id.to_string())
        .fetch_optional(&self.db().pool)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
        user_from_row(&row)
    }

    /// Any registered user by exact email, for a team admin adding a member
    /// by address (the caller's rights are checked there).
    pub(crate) async fn any_user_by_email(&self, email: &str) -> Result<User, ApiError> {
        let email = email.trim().to_lowercase();
        if email.is_empty() || email.chars().count() > validate::EMAIL_MAX {
            return Err(ApiError::not_found("user"));
        }
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email_lower = $1"
        ))
        .bind(email)
        .fetch_optional(&self.db().pool)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
        user_from_row(&row)
    }
}

async fn insert_refresh_token(
    conn: &mut AnyConnection,
    user_id: Uuid,
    family: Uuid,
    ttl_secs: u64,
) -> Result<String, ApiError> {
    let token = random_secret();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, used_at, created_at)
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(hash_refresh_token(&token))
    .bind(user_id.to_string())
    .bind(family.to_string())
    .bind(now + (ttl_secs as i64) * 1000)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

// ------------------------------------------------------------------ HTTP

/// The `/v1/auth` and `/v1/users` routes.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(user_by_email))
}

/// Create an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, body = Problem, headers(("Retry-After" = u64, description = "seconds")))))]
async fn register(
    State(c): State<Control>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(c.register(req, ip).await?)))
}

/// Log in with email or username.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem),
        (status = 429, body = Problem, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, body = Problem, headers(("Retry-After" = u64, description = "seconds")))))]
async fn login(
    State(c): State<Control>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(c.login(req, ip).await?))
}

/// Exchange a refresh token for a new token pair (the old one is invalidated).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
async fn refresh(
    State(c): State<Control>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(c.refresh(req).await?))
}

/// End the session of a refresh token: it and every token refreshed from it
/// stop working. Always 204, whether or not the token was known.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "the session is over"), (status = 422, body = Problem)))]
async fn logout(
    State(c): State<Control>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    c.logout(req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem)))]
async fn me(State(c): State<Control>, actor: Actor) -> ApiResult<Json<User>> {
    Ok(Json(c.me(&actor).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EmailQuery {
    /// Exact email address (case-insensitive).
    email: String,
}

/// Find a user you already know, by email.
///
/// Finds the caller, or a user who shares a team or a chat with the caller,
/// by exact email (case-insensitive). Anyone else is 404 like an unknown
/// address, so the endpoint cannot tell who has an account.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(EmailQuery),
    responses((status = 200, body = User), (status = 404, body = Problem)))]
async fn user_by_email(
    State(c): State<Control>,
    actor: Actor,
    Query(q): Query<EmailQuery>,
) -> ApiResult<Json<User>> {
    Ok(Json(c.find_user_by_email(&actor, &q.email).await?))
}
