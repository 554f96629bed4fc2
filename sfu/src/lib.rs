//! convene's selective forwarding unit.
//!
//! Every conference is a room; each participant publishes its tracks once and
//! the SFU forwards their RTP to every subscriber without transcoding. The
//! forwarding core ([`core`]) is sans-IO: it takes packets and the current
//! time and returns what to send, so it is tested with a virtual clock and no
//! sockets. Around it, a UDP edge thread demultiplexes the shared media port
//! and worker threads ([`SfuConfig::workers`]) each own a shard of the rooms
//! with their str0m `Rtc` instances. See `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod demux;
mod edge;
pub mod error;
mod handle;
pub mod http;
pub mod metrics;
mod peer;
mod shard;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::SfuConfig;
pub use convene_proto::sfu::{
    DisconnectReason, Grants, SfuEvent, TrackInfo, TrackKind, VideoQuality,
};
pub use error::SfuError;
pub use handle::SfuHandle;
pub use metrics::Metrics;

use tokio::sync::broadcast;
use tracing::info;

/// Events buffered per receiver before the slowest one starts lagging.
const EVENT_CAPACITY: usize = 4096;
/// Receive buffers kept for reuse between the edge and the workers.
const BUFFER_POOL: usize = 4096;

/// The running SFU: owns the threads. Dropping it without `shutdown` leaves
/// the threads running until the process exits.
pub struct Sfu {
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    shards: Vec<SyncSender<shard::ShardMsg>>,
    threads: Vec<JoinHandle<()>>,
}

impl Sfu {
    /// The bound UDP media address (useful with `udp_port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the HTTP control API, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn registry(&self) -> &prometheus::Registry {
        &self.metrics.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Graceful stop: every participant gets a `ParticipantDisconnected
    /// { reason: Shutdown }` event, then the threads end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.http_task.take() {
            // Event streams never end on their own; don't let them hold
            // the shutdown hostage.
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        for s in &self.shards {
            // A full queue is drained by the worker; block briefly off the runtime.
            let s = s.clone();
            let _ = tokio::task::spawn_blocking(move || s.send(shard::ShardMsg::Shutdown)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        info!("SFU stopped");
    }
}

/// Bind the media port and start the edge and worker threads.
pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuHandle), SfuError> {
    if config.workers == 0 {
        return Err(SfuError::Config("workers must be at least 1".into()));
    }
    if config.public_ips.is_empty() {
        return Err(SfuError::Config("at least one public IP is needed".into()));
    }
    let bind = SocketAddr::new(config.bind_ip, config.udp_port);
    let socket = UdpSocket::bind(bind).map_err(|source| SfuError::Bind { addr: bind, source })?;
    let local_addr = socket.local_addr()?;
    let port = local_addr.port();
    let local_addrs: Vec<SocketAddr> = config
        .public_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    let metrics = Metrics::new()?;
    let routes = Arc::new(edge::Routes::default());
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let (buf_tx, buf_rx) = sync_channel(BUFFER_POOL);
    let next_key = Arc::new(AtomicU64::new(1));
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));

    let mut shards = Vec::new();
    let mut threads = Vec::new();
    for index in 0..config.workers {
        let (tx, rx) = sync_channel(config.worker_queue);
        shards.push(tx);
        let shard = shard::Shard {
            index,
            rx,
            socket: socket.try_clone()?,
            routes: routes.clone(),
            buffers: buf_tx.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
            config: config.clone(),
            local_addrs: local_addrs.clone(),
            next_key: next_key.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("sfu-worker-{index}"))
                .spawn(move || shard.run())?,
        );
    }
    let edge = edge::Edge {
        socket,
        routes,
        shards: shards.clone(),
        buffers: buf_rx,
        metrics: metrics.clone(),
        stop: stop.clone(),
    };
    threads.push(
        std::thread::Builder::new()
            .name("sfu-udp-edge".into())
            .spawn(move || edge.run())?,
    );
    info!(%local_addr, workers = config.workers, candidates = ?local_addrs, "SFU started");
    let handle = SfuHandle::new(shards.clone(), events);
    let (mut http_addr, mut http_stop, mut http_task) = (None, None, None);
    if let Some(addr) = config.http_addr {
        let secret = match &config.http_secret {
            Some(s) if !s.0.is_empty() => s.0.clone(),
            _ => {
                return Err(SfuError::Config(
                    "the HTTP control API needs http_secret".into(),
                ))
            }
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SfuError::Bind { addr, source })?;
        let bound = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(handle.clone(), &secret);
        http_task = Some(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("SFU HTTP control API stopped: {e}");
            }
        }));
        http_addr = Some(bound);
        http_stop = Some(tx);
        info!(%bound, "SFU HTTP control API listening");
    }
    Ok((
        Sfu {
            local_addr,
            http_addr,
            http_stop,
            http_task,
            metrics,
            stop,
            shards,
            threads,
        },
        handle,
    ))
}
