//! convene's selective forwarding unit.
//!
//! Every conference is a room; each participant publishes its tracks once and
//! the SFU forwards their RTP to every subscriber without transcoding. The
//! forwarding core ([`core`]) is sans-IO: it takes packets and the current
//! time and returns what to send, so it is tested with a virtual clock and no
//! sockets. Around it, worker threads ([`SfuConfig::workers`]) each own
//! their participants' str0m `Rtc` instances and one UDP port
//! (`udp_port + index`) read and written in batches. A room lives on one
//! worker until it outgrows it, then spans several, each packet crossing
//! to each of them once (`placement.rs`, `worker/relay.rs`). See
//! `docs/architecture.md`.
//!
//! Of convene's crates it depends only on `convene-proto`; the signaling
//! service reaches it through its handle in-process or its HTTP API.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod demux;
pub mod error;
pub mod event_log;
mod handle;
pub mod http;
pub mod metrics;
mod negotiation;
mod peer;
pub mod placement;
mod sdp;
mod shard;
pub mod sim;
pub mod udp;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::SfuConfig;
pub use convene_proto::sfu::{
    DisconnectReason, Grants, SfuEvent, TrackInfo, TrackKind, TrackSource, TrackSources,
    VideoQuality,
};
pub use error::SfuError;
pub use handle::SfuHandle;
pub use metrics::Metrics;

use tokio::sync::broadcast;
use tracing::info;

/// Events buffered per receiver before the slowest one starts lagging.
const EVENT_CAPACITY: usize = 4096;

/// The running SFU: owns the threads. Dropping it without `shutdown` leaves
/// the threads running until the process exits.
pub struct Sfu {
    local_addrs: Vec<SocketAddr>,
    http_addr: Option<SocketAddr>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    event_log: Option<Arc<event_log::EventLog>>,
    metrics: Metrics,
    shards: Vec<shard::Mailbox>,
    threads: Vec<JoinHandle<()>>,
}

impl Sfu {
    /// The first worker's bound UDP media address (useful with
    /// `udp_port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every worker's bound UDP media address, by worker index.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
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
        if let Some(log) = self.event_log.take() {
            log.close();
        }
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

/// Bind the media ports and start the worker threads.
pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuHandle), SfuError> {
    if config.workers == 0 {
        return Err(SfuError::Config("workers must be at least 1".into()));
    }
    if config.public_ips.is_empty() {
        return Err(SfuError::Config("at least one public IP is needed".into()));
    }
    if usize::from(u16::MAX - config.udp_port) + 1 < config.workers && config.udp_port != 0 {
        return Err(SfuError::Config(format!(
            "{} workers need ports {}..{}, past 65535",
            config.workers,
            config.udp_port,
            usize::from(config.udp_port) + config.workers - 1
        )));
    }
    let metrics = Metrics::new()?;
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let next_key = Arc::new(AtomicU64::new(1));
    let config = Arc::new(config);
    let sizes = udp::BufferSizes {
        recv: config.socket_recv_buffer,
        send: config.socket_send_buffer,
    };

    let placement = Arc::new(std::sync::Mutex::new(placement::Placement::new(
        config.workers,
        config.room_spread_after,
        config.max_participants_per_room,
    )));
    let mut shards = Vec::new();
    let mut mailboxes = Vec::new();
    let mut threads = Vec::new();
    let mut bound = Vec::new();
    let mut candidates = Vec::new();
    for index in 0..config.workers {
        // Port 0 (tests): every worker gets its own ephemeral port.
        let port = match config.udp_port {
            0 => 0,
            p => p + index as u16,
        };
        let addr = SocketAddr::new(config.bind_ip, port);
        let socket = udp::MediaSocket::bind(addr, sizes)
            .map_err(|source| SfuError::Bind { addr, source })?;
        let local = socket.local_addr();
        let local_addrs: Vec<SocketAddr> = config
            .public_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, local.port()))
            .collect();
        candidates.extend(local_addrs.iter().copied());
        let worker = worker::Worker::new(
            index,
            config.clone(),
            local_addrs,
            metrics.clone(),
            next_key.clone(),
            std::time::Instant::now(),
        );
        let parts = shard::ShardParts {
            index,
            events: events.clone(),
            placement: placement.clone(),
            metrics: metrics.clone(),
            queue: config.worker_queue,
            relay_queue: config.relay_queue,
        };
        let (shard, mailbox) = shard::Shard::new(socket, worker, parts)?;
        shards.push(shard);
        mailboxes.push(mailbox);
        bound.push(local);
    }
    for (index, mut shard) in shards.into_iter().enumerate() {
        shard.peers = mailboxes.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("sfu-worker-{index}"))
                .spawn(move || shard.run())?,
        );
    }
    let shards = mailboxes;
    let local_addr = bound[0];
    info!(%local_addr, workers = config.workers, ?candidates, "SFU started");
    let handle = SfuHandle::new(shards.clone(), events, placement);
    let (mut http_addr, mut http_stop, mut http_task, mut event_log) = (None, None, None, None);
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
        let log = event_log::EventLog::start(&handle, config.event_replay);
        event_log = Some(log.clone());
        let app = http::router_with_log(handle.clone(), &secret, log);
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
            local_addrs: bound,
            http_addr,
            http_stop,
            http_task,
            event_log,
            metrics,
            shards,
            threads,
        },
        handle,
    ))
}
