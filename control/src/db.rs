//! Database access: one `sqlx::AnyPool` over SQLite or PostgreSQL, portable
//! SQL, migrations at start-up, and helpers for the column encodings
//! (TEXT UUIDs, BIGINT unix milliseconds).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use uuid::Uuid;

use crate::error::{ApiError, ControlError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, ControlError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(ControlError::Config(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ));
        };
        let (url, max_connections) = match backend {
            Backend::Sqlite => {
                // Create the file if missing.
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                // One connection: SQLite has a single writer anyway, and a
                // deferred transaction that upgrades to a write lock can fail
                // with SQLITE_BUSY regardless of busy_timeout when several
                // connections race. Serialising in the pool avoids that.
                (url, 1)
            }
            Backend::Postgres => (url.to_string(), max_connections.max(1)),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Db { pool, backend })
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn ms_to_dt(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses a UUID read back from a TEXT column; a bad one means corrupt data.
pub fn uuid_col(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|e| ApiError::Internal(format!("corrupt uuid {s:?}: {e}")))
}

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
