//! One HTTP connection: hyper's HTTP/1 state machine plus the deadlines it
//! does not have.
//!
//! Deadlines come from what the socket and the service see:
//! - waiting for a request head (fresh connection, or a byte arrived after a
//!   keep-alive pause): `header` from that moment;
//! - no request in flight and nothing received since the last response:
//!   `idle` from the end of that response;
//! - a request in flight (handler running or response body streaming): none,
//!   so long-lived responses (SFU event streams) are never cut.
//!
//! An upgraded connection (WebSocket) leaves hyper, and this task, as soon as
//! the upgrade completes, so no deadline applies to it; its slot in the caps
//! lives in the socket wrapper and is released when the socket closes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::head::{HeadGuard, Verdict};
use crate::limits::{ConnGuard, ConnMetrics};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

pub(crate) struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub guard: ConnGuard,
    pub app: Router,
    pub builder: Arc<Builder<TokioExecutor>>,
    pub timeouts: Timeouts,
    pub metrics: ConnMetrics,
    pub stop: watch::Receiver<()>,
}

pub(crate) async fn serve_connection(c: Connection) {
    let Connection {
        stream,
        peer,
        guard,
        app,
        builder,
        timeouts,
        metrics,
        mut stop,
    } = c;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: activity.clone(),
        head: HeadGuard::new(),
        rejecting: None,
        _guard: guard,
    });
    let service = ConnService {
        app,
        peer,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(timeouts);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                // The deadline may have moved while we slept; only an
                // expired one closes.
                if let Some((at, reason)) = activity.deadline(timeouts) {
                    if at <= Instant::now() {
                        metrics.timed_out(reason);
                        tracing::debug!(%peer, reason, "closing HTTP connection");
                        return;
                    }
                }
            }
            () = activity.changed.notified() => {}
            _ = stop.changed(), if !stopping => {
                // Finish the request in flight, if any, then close.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the deadlines are computed from; shared by the socket wrapper, the
/// service wrapper and the connection task.
struct Activity {
    state: Mutex<State>,
    /// Wakes the connection task when a deadline may have moved earlier.
    changed: Notify,
}

struct State {
    in_flight: usize,
    /// When the request head now awaited began: the connection's start, or
    /// the first byte after a keep-alive pause. `None` while idle or busy.
    head_since: Option<Instant>,
    /// End of the last response.
    idle_since: Instant,
    /// Switched protocols: the bytes are no longer HTTP heads.
    upgraded: bool,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
                upgraded: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deadline(&self, t: Timeouts) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_since {
            Some(since) => (since + t.header, "header_timeout"),
            None => (s.idle_since + t.idle, "idle_timeout"),
        })
    }

    /// Notes bytes received; whether they begin a new request head.
    fn bytes_received(&self) -> bool {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            let upgraded = s.upgraded;
            drop(s);
            self.changed.notify_one();
            return !upgraded;
        }
        false
    }

    fn is_upgraded(&self) -> bool {
        self.lock().upgraded
    }

    fn upgrading(&self) {
        self.lock().upgraded = true;
    }

    fn request_started(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_since = None;
    }

    fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }
}

/// In flight from the service call until the response body is done or
/// dropped (also when the client goes away mid-request).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.request_started();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The router for one connection, with the peer address attached.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::new(&self.activity);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        let activity = self.activity.clone();
        Box::pin(async move {
            let resp = match app.oneshot(req.map(Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                activity.upgrading();
            }
            Ok(resp.map(|body| TrackedBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight while it streams.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting received bytes and holding the connection's slot in
/// the caps for as long as the socket lives (an upgrade takes it along).
/// It also follows each request head ([`HeadGuard`]) and answers one over
/// the caps itself.
struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    head: HeadGuard,
    /// A head over the caps: the response still to write, then the write
    /// side is shut and what the client still sends is read and dropped,
    /// so closing does not reset the connection before the client has read
    /// the answer. The header timeout bounds how long that lasts.
    rejecting: Option<Rejecting>,
    _guard: ConnGuard,
}

struct Rejecting {
    response: Vec<u8>,
    written: usize,
    shut: bool,
}

impl TrackedIo {
    /// Writes the rejection, shuts the write side, then drains; `Ready`
    /// (end of stream for hyper) once the client closed.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.rejecting.as_mut().expect("rejecting");
        while r.written < r.response.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &r.response[r.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        if !r.shut {
            std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            r.shut = true;
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rejecting.is_some() {
            return self.poll_reject(cx);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let this = &mut *self;
            if this.activity.bytes_received() {
                this.head.restart();
            } else if this.activity.is_upgraded() {
                this.head.stop();
            }
            if let Verdict::TooLarge(rejection) = this.head.feed(&buf.filled()[before..]) {
                tracing::debug!(
                    ?rejection,
                    "request head over the cap; answering and closing"
                );
                // hyper never sees these bytes, so its own (bare) limit
                // cannot answer first.
                buf.set_filled(before);
                this.rejecting = Some(Rejecting {
                    response: rejection.response(),
                    written: 0,
                    shut: false,
                });
                return this.poll_reject(cx);
            }
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
