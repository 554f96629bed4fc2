//! convene's signaling service: the WebSocket endpoint browsers talk to,
//! bridging them to the control plane (tokens, waiting hall) and the SFU.
//!
//! A browser gets a token from `POST /v1/conferences/{id}/join`, opens
//! `/v1/ws` and sends `join`. The service verifies the token with the control
//! plane, then attaches the socket to the conference's room actor on this
//! node, which relays SDP to the SFU, fans out room events and chat, and runs
//! the waiting hall live: waiters wait on the socket, moderators see the list
//! change and decide, and the decision (made in the control plane, whose
//! database is the source of truth) comes back as an event. Message shapes are
//! in `convene_proto::signaling` and `docs/protocol.md`.
//!
//! Depends on `convene-proto`, `convene-bus`, `convene-ratelimit` and
//! `convene-turn-config` only:
//! the control plane and the SFU sit behind the traits in [`ports`], with
//! network implementations in [`remote`] and in-process ones in the `convene`
//! crate, so `convene signaling` links neither a database nor the SFU.
#![forbid(unsafe_code)]

pub mod config;
mod connection;
mod hub;
pub mod metrics;
pub mod ports;
mod presence;
pub mod ratelimit;
pub mod remote;
mod room;
mod room_bus;
mod user_channel;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use convene_turn_config::IceConfig;

pub use config::SignalingConfig;
pub use metrics::Metrics;
pub use ports::{Admission, ChatSummary, ControlPort, HallEvent, MediaPort, PortError, UserPort};

pub(crate) struct Inner {
    pub config: Arc<SignalingConfig>,
    pub control: Arc<dyn ControlPort>,
    pub media: Arc<dyn MediaPort>,
    pub ice: IceConfig,
    pub metrics: Metrics,
    pub hub: hub::Hub,
    /// The user-level channel (`hello`); absent, `hello` is refused.
    pub users: Option<Arc<dyn UserPort>>,
    pub presence: presence::Presence,
    pub room_bus: Arc<room_bus::RoomBus>,
    next_conn: AtomicU64,
}

impl Inner {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The signaling service. Cheap to clone.
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

/// Optional parts of a signaling node.
#[derive(Default)]
pub struct NodeOptions {
    /// Serves `hello` (chats, typing, presence).
    pub users: Option<Arc<dyn UserPort>>,
    /// Shares presence and rooms with other signaling nodes.
    pub redis: Option<redis::Client>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("room bus: {0}")]
    Bus(String),
}

impl Signaling {
    /// A single node without the user channel. Starts routing SFU events to
    /// rooms; must be called inside a Tokio runtime.
    pub fn new(
        config: SignalingConfig,
        control: Arc<dyn ControlPort>,
        media: Arc<dyn MediaPort>,
        ice: IceConfig,
    ) -> Result<Self, prometheus::Error> {
        let node_id = node_id(&config);
        let parts = Parts {
            users: None,
            presence: presence::Presence::in_process(),
            room_bus: room_bus::RoomBus::in_process(node_id),
        };
        Self::build(config, control, media, ice, parts)
    }

    /// A node with the optional parts: the user channel, and Redis for
    /// running several signaling nodes side by side.
    pub async fn with_options(
        config: SignalingConfig,
        control: Arc<dyn ControlPort>,
        media: Arc<dyn MediaPort>,
        ice: IceConfig,
        options: NodeOptions,
    ) -> Result<Self, SignalingError> {
        let node_id = node_id(&config);
        let (presence, bus) = match &options.redis {
            Some(client) => {
                let conn = redis::aio::ConnectionManager::new(client.clone()).await?;
                let ttl = config.presence_ttl();
                let bus =
                    room_bus::RoomBus::redis(node_id.clone(), ttl, client.clone(), conn.clone())
                        .await
                        .map_err(|e| SignalingError::Bus(e.to_string()))?;
                (presence::Presence::redis(conn, node_id.clone(), ttl), bus)
            }
            None => (
                presence::Presence::in_process(),
                room_bus::RoomBus::in_process(node_id.clone()),
            ),
        };
        let parts = Parts {
            users: options.users,
            presence,
            room_bus: bus,
        };
        Ok(Self::build(config, control, media, ice, parts)?)
    }

    fn build(
        config: SignalingConfig,
        control: Arc<dyn ControlPort>,
        media: Arc<dyn MediaPort>,
        ice: IceConfig,
        parts: Parts,
    ) -> Result<Self, prometheus::Error> {
        let Parts {
            users,
            presence,
            room_bus,
        } = parts;
        let inner = Arc::new(Inner {
            config: Arc::new(config),
            control,
            media,
            ice,
            metrics: Metrics::new()?,
            hub: hub::Hub::default(),
            users,
            presence,
            room_bus,
            next_conn: AtomicU64::new(1),
        });
        tokio::spawn(hub::Hub::route_sfu_events(inner.clone()));
        tokio::spawn(refresh_presence(
            Arc::downgrade(&inner),
            inner.config.presence_ttl() / 3,
        ));
        Ok(Self { inner })
    }

    /// `GET /v1/ws`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/ws", get(upgrade))
            .with_state(self.inner.clone())
    }

    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.metrics.registry
    }
}

/// What differs between a single node and one of several.
struct Parts {
    users: Option<Arc<dyn UserPort>>,
    presence: presence::Presence,
    room_bus: Arc<room_bus::RoomBus>,
}

fn node_id(config: &SignalingConfig) -> String {
    config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
}

/// Keeps this node's presence claims alive while the service exists.
async fn refresh_presence(inner: std::sync::Weak<Inner>, period: std::time::Duration) {
    let mut every = tokio::time::interval(period);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.presence.refresh().await;
    }
}

async fn upgrade(State(inner): State<Arc<Inner>>, ws: WebSocketUpgrade) -> Response {
    // The transport limit sits above the configured one so an oversized frame
    // reaches our own check and gets a proper 1009 close instead of a reset.
    let hard_limit = inner.config.max_frame_bytes.saturating_mul(4).max(1024);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| connection::serve(socket, inner))
}
