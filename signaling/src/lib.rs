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
#![forbid(unsafe_code)]

pub mod config;
mod connection;
mod hub;
pub mod inprocess;
pub mod metrics;
pub mod ports;
pub mod ratelimit;
mod room;
pub mod web;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use convene_turn_config::IceConfig;

pub use config::SignalingConfig;
pub use metrics::Metrics;
pub use ports::{Admission, ControlPort, HallEvent, MediaPort, PortError};

pub(crate) struct Inner {
    pub config: Arc<SignalingConfig>,
    pub control: Arc<dyn ControlPort>,
    pub media: Arc<dyn MediaPort>,
    pub ice: IceConfig,
    pub metrics: Metrics,
    pub hub: hub::Hub,
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

impl Signaling {
    /// Starts routing SFU events to rooms; must be called inside a Tokio runtime.
    pub fn new(
        config: SignalingConfig,
        control: Arc<dyn ControlPort>,
        media: Arc<dyn MediaPort>,
        ice: IceConfig,
    ) -> Result<Self, prometheus::Error> {
        let inner = Arc::new(Inner {
            config: Arc::new(config),
            control,
            media,
            ice,
            metrics: Metrics::new()?,
            hub: hub::Hub::default(),
            next_conn: AtomicU64::new(1),
        });
        tokio::spawn(hub::Hub::route_sfu_events(inner.clone()));
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

async fn upgrade(State(inner): State<Arc<Inner>>, ws: WebSocketUpgrade) -> Response {
    // The transport limit sits above the configured one so an oversized frame
    // reaches our own check and gets a proper 1009 close instead of a reset.
    let hard_limit = inner.config.max_frame_bytes.saturating_mul(4).max(1024);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| connection::serve(socket, inner))
}
