//! Errors: [`ApiError`] for everything a request can run into (rendered as
//! RFC 9457 `application/problem+json`), [`ControlError`] for start-up.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use convene_proto::control::Problem;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// What every handler answers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A failed request. Each variant maps to one stable problem `type`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body exceeds the configured limit")]
    PayloadTooLarge,
    #[error("{0}")]
    Unauthorized(String),
    #[error("invalid login or password")]
    InvalidCredentials,
    #[error("token has been revoked")]
    TokenRevoked,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("a team must keep at least one admin")]
    LastAdmin,
    #[error("the conference has ended")]
    ConferenceEnded,
    #[error("too many attempts; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// A bounded resource (password hashing) is saturated; unlike
    /// `Unavailable` the client is told when to come back.
    #[error("the server is busy; retry in {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials | ApiError::TokenRevoked => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::LastAdmin | ApiError::ConferenceEnded => {
                StatusCode::CONFLICT
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable slug of the problem type; clients may match on it.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation(_) => "validation-failed",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::PayloadTooLarge => "payload-too-large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials => "invalid-credentials",
            ApiError::TokenRevoked => "token-revoked",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::LastAdmin => "last-admin",
            ApiError::ConferenceEnded => "conference-ended",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unavailable(_) => "service-unavailable",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Internal(_) => "internal-error",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "Bad request",
            ApiError::Validation(_) => "Validation failed",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::PayloadTooLarge => "Payload too large",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::InvalidCredentials => "Invalid credentials",
            ApiError::TokenRevoked => "Token revoked",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::Conflict(_) => "Conflict",
            ApiError::LastAdmin => "Last admin",
            ApiError::ConferenceEnded => "Conference ended",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Overloaded { .. } => "Server busy",
            ApiError::Internal(_) => "Internal server error",
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: problem_type(self.slug()),
            title: self.title().to_string(),
            status: self.status().as_u16(),
            // Internal details go to the log, never to the client.
            detail: match self {
                ApiError::Internal(_) => None,
                other => Some(other.to_string()),
            },
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }
}

pub fn problem_type(slug: &str) -> String {
    format!("urn:convene:problem:{slug}")
}

/// Renders a problem document with the right content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(msg) = &self {
            tracing::error!(error = %msg, "internal error");
        }
        let mut resp = problem_response(&self.problem());
        if let ApiError::RateLimited { retry_after } | ApiError::Overloaded { retry_after } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                ApiError::Conflict("resource already exists".into())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                ApiError::Conflict("referenced resource does not exist".into())
            }
            sqlx::Error::RowNotFound => ApiError::NotFound("resource not found".into()),
            sqlx::Error::PoolTimedOut => ApiError::Unavailable("database is busy".into()),
            _ => ApiError::Internal(format!("database: {err}")),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        ApiError::Internal(format!("redis: {err}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("task: {err}"))
    }
}

/// Why [`crate::Control::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("event bus: {0}")]
    Bus(#[from] convene_bus::BusError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
