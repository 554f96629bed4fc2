//! The one HTTP server loop of every convene listener (control plane, signaling,
//! `convene up`, the split SFU's HTTP API).
//!
//! `axum::serve` holds every connection for as long as the peer likes: a client
//! that connects and sends nothing, dribbles a request head, or parks an idle
//! keep-alive connection keeps a file descriptor and a task forever, and enough
//! of them exhaust the descriptor limit for everyone. [`serve`] adds what it
//! lacks: a deadline for each request head, an idle timeout between requests,
//! per-IP and global connection caps, an accept loop that survives `EMFILE`,
//! and a bounded drain on shutdown. WebSocket upgrades and `ConnectInfo<SocketAddr>`
//! work as with `axum::serve`.
//!
//! Depends on no other convene crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

mod conn;
mod fdlimit;
mod head;
mod limits;

pub use fdlimit::{fd_soft_limit, raise_fd_limit};
pub use head::{MAX_HEADERS, MAX_HEAD_BYTES};
pub use limits::{ConnMetrics, RejectReason};

use limits::Tracker;

/// Descriptors kept free of client connections for the database pool,
/// outbound HTTP, Redis, the SFU's sockets and log files, so the global cap
/// trips before `accept` starts failing with `EMFILE`.
pub const FD_RESERVE: u64 = 128;

/// Sent to a connection over a cap before closing it, so a well-behaved client
/// sees why instead of a bare reset. Written without waiting: a peer that does
/// not read it just gets the close.
const REJECTED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";

/// How long the accept loop pauses after a resource error (`EMFILE`, `ENOMEM`…):
/// retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this period for repeated accept errors.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

/// Connection limits of one HTTP listener. Every field is a flag; the defaults
/// ([`ConnLimits::default`] and clap's) suit a public listener.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Seconds a client has to send a complete request head, counted from
    /// connecting or from its first byte after a keep-alive pause. Slower
    /// (or silent) clients are disconnected. Fractions allowed.
    #[arg(
        id = "http_header_timeout",
        long = "http-header-timeout-secs",
        env = "CONVENE_HTTP_HEADER_TIMEOUT_SECS",
        value_name = "SECS",
        default_value = "10",
        value_parser = parse_secs
    )]
    pub header_timeout: Duration,

    /// Seconds a keep-alive connection may stay open with no request in
    /// flight. Above the 60 s upstream keep-alive of ingress-nginx, so a proxy
    /// in front closes its pooled connections before convene does and never
    /// sends a request into a connection that is being closed. WebSockets are
    /// exempt (they have their own heartbeat).
    #[arg(
        id = "http_idle_timeout",
        long = "http-idle-timeout-secs",
        env = "CONVENE_HTTP_IDLE_TIMEOUT_SECS",
        value_name = "SECS",
        default_value = "75",
        value_parser = parse_secs
    )]
    pub idle_timeout: Duration,

    /// Open connections allowed per client address (IPv6: per /64), WebSockets
    /// included; 0 for no limit. Behind a reverse proxy every client has the
    /// proxy's address: set 0 there and limit at the proxy.
    #[arg(
        id = "http_max_connections_per_ip",
        long = "http-max-connections-per-ip",
        env = "CONVENE_HTTP_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256
    )]
    pub max_connections_per_ip: usize,

    /// Open connections allowed in total; 0 for no limit. Lowered at start-up
    /// to the file-descriptor limit minus a reserve of 128 when that is
    /// smaller.
    #[arg(
        id = "http_max_connections",
        long = "http-max-connections",
        env = "CONVENE_HTTP_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_connections: usize,

    /// Seconds open requests get to finish after a shutdown signal before the
    /// remaining connections are dropped. Fractions allowed.
    #[arg(
        id = "http_drain_timeout",
        long = "http-drain-timeout-secs",
        env = "CONVENE_HTTP_DRAIN_TIMEOUT_SECS",
        value_name = "SECS",
        default_value = "5",
        value_parser = parse_secs
    )]
    pub drain_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections_per_ip: 256,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting,
/// lets open requests finish for at most [`ConnLimits::drain_timeout`] and
/// returns. Upgraded connections (WebSockets) are not waited for: they never
/// end by themselves, and the caller's shutdown closes them.
///
/// Handlers see the peer as `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnLimits,
    metrics: &ConnMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max_total = effective_max_connections(limits.max_connections, fd_soft_limit());
    let tracker = Arc::new(Tracker::new(
        limits.max_connections_per_ip,
        max_total,
        metrics.clone(),
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper restarts its header timer whenever it waits for a request head,
    // keep-alive pauses included, so it cannot be the header timeout without
    // also cutting keep-alive to it; `conn` enforces both. This is a backstop
    // that never fires first.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout + limits.idle_timeout);
    let builder = Arc::new(builder);
    let timeouts = conn::Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut conns = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match tracker.try_acquire(peer.ip()) {
                    Ok(guard) => {
                        conns.spawn(conn::serve_connection(conn::Connection {
                            stream,
                            peer,
                            guard,
                            app: app.clone(),
                            builder: builder.clone(),
                            timeouts,
                            metrics: metrics.clone(),
                            stop: stop_rx.clone(),
                        }));
                    }
                    Err(reason) => reject(stream, peer, reason, metrics),
                },
                Err(e) => {
                    if !is_connection_error(&e) {
                        metrics.accept_error();
                        accept_errors.warn(&e);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            },
        }
    }
    drop(listener);
    drop(stop_tx);
    let open = conns.len();
    if open > 0 {
        tracing::info!(open, "draining HTTP connections");
    }
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "HTTP connections still busy after {:?}; closing them",
            limits.drain_timeout
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// The global cap actually enforced: the configured one, lowered to what the
/// descriptor limit can hold.
fn effective_max_connections(configured: usize, fd_soft: Option<u64>) -> usize {
    let Some(soft) = fd_soft else {
        return configured;
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured == 0 || configured <= room {
        return configured;
    }
    tracing::warn!(
        configured,
        enforced = room,
        fd_limit = soft,
        "--http-max-connections exceeds the open-file limit; lowered (raise LimitNOFILE / ulimit -n)"
    );
    room
}

fn reject(stream: TcpStream, peer: SocketAddr, reason: RejectReason, metrics: &ConnMetrics) {
    metrics.rejected(reason);
    tracing::debug!(%peer, reason = reason.as_str(), "connection over the cap; closed");
    let _ = stream.try_write(REJECTED);
}

/// Errors of one incoming connection (it was reset before we took it) rather
/// than of the listener; the next accept is unaffected.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Rate-limits the warning for listener errors: under `EMFILE` accept fails
/// ten times a second, and one line per failure would flood the log.
#[derive(Default)]
struct AcceptErrors {
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn warn(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_warn
            .is_some_and(|t| now.duration_since(t) < ACCEPT_WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %e,
            suppressed = self.suppressed,
            "accept failed; pausing {ACCEPT_BACKOFF:?} (at the open-file limit? raise LimitNOFILE / ulimit -n)"
        );
        self.last_warn = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: ConnLimits,
    }

    #[test]
    fn clap_defaults_match_default() {
        let cli = Cli::try_parse_from(["convene"]).unwrap();
        assert_eq!(cli.limits, ConnLimits::default());
        let cli = Cli::try_parse_from([
            "convene",
            "--http-header-timeout-secs",
            "0.3",
            "--http-max-connections-per-ip",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.limits.header_timeout, Duration::from_millis(300));
        assert_eq!(cli.limits.max_connections_per_ip, 0);
        assert!(Cli::try_parse_from(["convene", "--http-idle-timeout-secs", "-1"]).is_err());
        assert!(Cli::try_parse_from(["convene", "--http-idle-timeout-secs", "x"]).is_err());
    }

    #[test]
    fn global_cap_fits_the_descriptor_limit() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1024)), 896);
        assert_eq!(effective_max_connections(500, Some(1024)), 500);
        assert_eq!(effective_max_connections(0, Some(1024)), 0);
        assert_eq!(effective_max_connections(10, Some(16)), 1);
    }
}
