//! convene's control plane: accounts, teams, conferences and the waiting
//! hall behind a versioned REST API (`/v1`), plus the pieces the signaling
//! service uses in-process — room-token verification, the event buses
//! (from `convene-bus`) and the same service methods the REST handlers call.
//!
//! The database (SQLite or PostgreSQL through `sqlx::AnyPool`) is the source
//! of truth; Redis, when configured, only carries events between processes
//! and caches membership checks.
//!
//! Depends on `convene-proto`, `convene-bus`, `convene-ratelimit`,
//! `convene-turn-config` and `convene-httpd`; never on the signaling service or the SFU.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

pub mod auth;
mod cache;
pub mod chats;
pub mod conferences;
pub mod config;
pub mod datadir;
pub mod db;
pub mod error;
pub mod extract;
pub mod internal;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod pagination;
pub mod posts;
mod ratelimit;
mod routes;
mod server;
pub mod teams;
pub mod tokens;
pub mod validate;
pub mod waiting;

pub use auth::Actor;
pub use config::ControlConfig;
pub use convene_bus::{BusError, ChatBus, ChatSubscription, EventBus, Subscription};
pub use convene_proto::collab::ChatEvent;
pub use convene_proto::control::{Grants, RoomClaims};
pub use convene_proto::events::ConferenceEvent;
pub use error::{ApiError, ControlError};
pub use server::serve;

use cache::MembershipCache;
use db::Db;
use metrics::Metrics;
use ratelimit::{LoginLimits, RegisterLimits};
use tokens::Keys;

/// The control plane: configuration, database, event bus and caches.
/// Cheap to clone; every clone shares the same state.
#[derive(Clone, Debug)]
pub struct Control {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ControlConfig,
    db: Db,
    bus: EventBus,
    chat_bus: ChatBus,
    cache: MembershipCache,
    keys: Keys,
    login_limits: LoginLimits,
    register_limits: RegisterLimits,
    /// Every argon2 computation goes through here.
    hash_gate: auth::HashGate,
    metrics: Metrics,
    argon2: argon2::Params,
    /// Verified against when a login names no account, so unknown and known
    /// accounts take equally long to reject.
    dummy_hash: String,
}

impl Control {
    /// Connects to the database (running migrations) and, when configured,
    /// to Redis.
    pub async fn start(config: ControlConfig) -> Result<Control, ControlError> {
        let url = config
            .database_url
            .clone()
            .ok_or_else(|| ControlError::Config("no database URL (set DATABASE_URL)".into()))?;
        let db = Db::connect(&url, config.db_max_connections).await?;

        let (bus, chat_bus, cache) = match &config.redis_url {
            Some(redis_url) => {
                let client = redis::Client::open(redis_url.as_str())?;
                let conn = redis::aio::ConnectionManager::new(client.clone()).await?;
                (
                    EventBus::redis(client.clone()).await?,
                    ChatBus::redis(client).await?,
                    MembershipCache::redis(conn, config.membership_cache_ttl),
                )
            }
            None => (
                EventBus::in_process(),
                ChatBus::in_process(),
                MembershipCache::disabled(),
            ),
        };

        let secret = match &config.jwt_secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => {
                // Only without a data directory (an explicit DATABASE_URL,
                // typically a cluster): `datadir::apply_embedded` persists one
                // otherwise, and nodes cannot agree on a secret by themselves.
                tracing::warn!(
                    "CONVENE_JWT_SECRET is not set; using a random secret: sessions will not survive a restart and tokens are not accepted by other nodes"
                );
                tokens::random_secret()
            }
        };

        let argon2 =
            argon2::Params::new(config.argon2_memory_kib, config.argon2_iterations, 1, None)
                .map_err(|e| ControlError::Config(format!("argon2 parameters: {e}")))?;
        let dummy_hash = auth::hash_password_blocking(&argon2, &tokens::random_secret())
            .map_err(|e| ControlError::Config(format!("argon2: {e}")))?;

        let window = Duration::from_secs(config.login_window_secs);
        let hash_slots = config.password_hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let control = Control {
            inner: Arc::new(Inner {
                login_limits: LoginLimits::new(
                    config.login_max_attempts_per_account,
                    config.login_max_attempts_per_ip,
                    window,
                    Duration::from_secs(config.login_known_address_ttl_secs),
                ),
                register_limits: RegisterLimits::new(
                    config.register_max_per_ip,
                    Duration::from_secs(config.register_window_secs),
                ),
                hash_gate: auth::HashGate::new(
                    hash_slots,
                    Duration::from_millis(config.password_hash_wait_ms),
                ),
                keys: Keys::new(secret.as_bytes()),
                metrics: Metrics::new(),
                config,
                db,
                bus,
                chat_bus,
                cache,
                argon2,
                dummy_hash,
            }),
        };
        tokio::spawn(expire_waiters(Arc::downgrade(&control.inner)));
        Ok(control)
    }

    /// Every HTTP route of the control plane, with its middleware.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Conference events; the signaling service subscribes here.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// Chat events (Redis channel `convene:chat:{id}`).
    pub fn chat_bus(&self) -> &ChatBus {
        &self.inner.chat_bus
    }

    /// One chat's events, for fan-out to its members. Not access-checked:
    /// check [`Control::is_chat_member`] before delivering to a user.
    pub fn subscribe_chat(&self, chat_id: uuid::Uuid) -> ChatSubscription {
        self.inner.chat_bus.subscribe(chat_id)
    }

    pub fn config(&self) -> &ControlConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Closes the database pool (e.g. before reopening the same SQLite file).
    pub async fn close(&self) {
        self.inner.db.pool.close().await;
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn cache(&self) -> &MembershipCache {
        &self.inner.cache
    }

    /// Publishes an event after the change it describes was committed. A
    /// failure is logged, not returned: the database already holds the new
    /// state and subscribers reconcile from it.
    async fn emit(&self, event: ConferenceEvent) {
        if let Err(e) = self.inner.bus.publish(&event).await {
            tracing::error!(error = %e, ?event, "publishing conference event failed");
        }
    }

    /// Like [`Control::emit`], for chat events.
    async fn emit_chat(&self, event: ChatEvent) {
        if let Err(e) = self.inner.chat_bus.publish(&event).await {
            tracing::error!(error = %e, ?event, "publishing chat event failed");
        }
    }
}

/// Sweeps waiters whose heartbeat stopped, for as long as the control plane
/// exists.
async fn expire_waiters(inner: std::sync::Weak<Inner>) {
    let period = {
        let Some(inner) = inner.upgrade() else { return };
        Duration::from_secs(inner.config.waiting_ttl_secs.max(3) / 3)
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.db.pool.is_closed() {
            return;
        }
        let control = Control { inner };
        if let Err(e) = control.expire_waiters().await {
            tracing::warn!(error = %e, "could not expire stale waiters");
        }
    }
}
