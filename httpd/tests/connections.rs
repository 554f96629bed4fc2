//! The server loop over real TCP on loopback: header and idle timeouts,
//! connection caps, WebSockets past the idle timeout, ConnectInfo, drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use convene_httpd::{ConnLimits, ConnMetrics, RejectReason};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// Upper bound for anything the tests wait for; far above every timeout set.
const DEADLINE: Duration = Duration::from_secs(5);

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";

struct Server {
    addr: SocketAddr,
    metrics: ConnMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: ConnLimits) -> Server {
        Self::with_app(limits, app()).await
    }

    async fn with_app(limits: ConnLimits, app: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ConnMetrics::new();
        let (tx, rx) = oneshot::channel::<()>();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            convene_httpd::serve(listener, app, &limits, &m, async {
                let _ = rx.await;
            })
            .await
        });
        Server {
            addr,
            metrics,
            stop: Some(tx),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if let Message::Text(t) = msg {
                            if socket.send(Message::Text(t)).await.is_err() {
                                return;
                            }
                        }
                    }
                })
            }),
        )
}

fn limits(header_ms: u64, idle_ms: u64) -> ConnLimits {
    ConnLimits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        ..ConnLimits::default()
    }
}

/// Reads one response (status line, headers, `content-length` body) and
/// returns its status.
async fn read_response(s: &mut TcpStream) -> std::io::Result<u16> {
    read_full(s).await.map(|(status, _)| status)
}

/// Like [`read_response`], with the body.
async fn read_full(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            return Ok((head[9..12].parse().unwrap(), body));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `s` (EOF or reset); returns how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 256];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server should have closed the connection");
    start.elapsed()
}

#[tokio::test]
async fn silent_client_is_closed_after_the_header_timeout() {
    let server = Server::start(limits(300, 60_000)).await;
    let mut s = server.connect().await;
    let took = closed_within(&mut s, DEADLINE).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn dribbling_client_is_closed_after_the_header_timeout() {
    let server = Server::start(limits(300, 60_000)).await;
    // Once on a fresh connection, once after a keep-alive request: the second
    // head gets its own header deadline, not the (long) idle timeout.
    for after_a_request in [false, true] {
        let mut s = server.connect().await;
        if after_a_request {
            s.write_all(GET).await.unwrap();
            assert_eq!(read_response(&mut s).await.unwrap(), 200);
        }
        let (mut rd, mut wr) = s.into_split();
        let dribble = async {
            // Ten seconds' worth of head, one byte every 50 ms.
            for b in b"GET /healthz HTTP/1.1\r\nx-slow: "
                .iter()
                .chain([b'a'; 200].iter())
            {
                if wr.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the whole slow head went through (after_a_request: {after_a_request})");
        };
        let closed = async {
            let mut chunk = [0u8; 256];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, async {
            tokio::select! {
                () = dribble => {}
                () = closed => {}
            }
        })
        .await
        .expect("a dribbling client is disconnected");
    }
    server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(limits(5_000, 300)).await;
    let mut s = server.connect().await;
    // Requests closer together than the idle timeout keep it open.
    for _ in 0..4 {
        s.write_all(GET).await.unwrap();
        assert_eq!(read_response(&mut s).await.unwrap(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap(), 200);
    let took = closed_within(&mut s, DEADLINE).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    server.stop().await;
}

/// Connects until one gets a 200 on `/healthz`, up to the deadline.
async fn eventually_served(server: &Server) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut s = server.connect().await;
            if s.write_all(GET).await.is_ok() && matches!(read_response(&mut s).await, Ok(200)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a new connection is served again");
}

/// The server's answer to a connection over a cap: a bare 503, or just the close.
async fn assert_turned_away(s: &mut TcpStream) {
    let _ = s.write_all(GET).await;
    let answer = tokio::time::timeout(DEADLINE, read_response(s))
        .await
        .expect("a connection over the cap is closed at once");
    assert!(
        matches!(answer, Ok(503) | Err(_)),
        "over the cap, got {answer:?}"
    );
}

#[tokio::test]
async fn per_ip_cap_turns_away_the_next_connection() {
    let server = Server::start(ConnLimits {
        max_connections_per_ip: 3,
        ..limits(5_000, 60_000)
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = server.connect().await;
        s.write_all(GET).await.unwrap();
        assert_eq!(read_response(&mut s).await.unwrap(), 200);
        held.push(s);
    }
    assert_eq!(server.metrics.open(), 3);
    let mut extra = server.connect().await;
    assert_turned_away(&mut extra).await;
    assert_eq!(server.metrics.rejected_total(RejectReason::PerIp), 1);
    assert_eq!(server.metrics.rejected_total(RejectReason::Global), 0);

    // Closing one frees its slot (once the server has seen the close).
    drop(held.pop());
    eventually_served(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn global_cap_turns_away_the_next_connection() {
    let server = Server::start(ConnLimits {
        max_connections_per_ip: 0,
        max_connections: 2,
        ..limits(5_000, 60_000)
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = server.connect().await;
        s.write_all(GET).await.unwrap();
        assert_eq!(read_response(&mut s).await.unwrap(), 200);
        held.push(s);
    }
    let mut extra = server.connect().await;
    assert_turned_away(&mut extra).await;
    assert_eq!(server.metrics.rejected_total(RejectReason::Global), 1);
    held.clear();
    eventually_served(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn websocket_outlives_the_idle_and_header_timeouts() {
    let server = Server::start(limits(200, 200)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::Message as M;
    for round in 0..3 {
        // Silent for several idle timeouts, then still answered.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ws.send(M::Text(format!("ping {round}").into()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("echo")
            .expect("socket open")
            .unwrap();
        assert_eq!(echo, M::Text(format!("ping {round}").into()));
    }
    // The upgraded socket still holds its slot in the caps, and gives it back.
    assert_eq!(server.metrics.open(), 1);
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(DEADLINE, async {
        while server.metrics.open() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed WebSocket's slot is released");
    server.stop().await;
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = Server::start(ConnLimits::default()).await;
    let mut s = server.connect().await;
    s.write_all(b"GET /peer HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_full(&mut s).await.unwrap(), (200, "127.0.0.1".into()));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_bounds_the_drain() {
    let started = Arc::new(Notify::new());
    let (s2, s3) = (started.clone(), started.clone());
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let started = s2.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }
            }),
        )
        .route(
            "/never",
            get(move || {
                let started = s3.clone();
                async move {
                    started.notify_one();
                    std::future::pending::<&'static str>().await
                }
            }),
        );
    let server = Server::with_app(
        ConnLimits {
            drain_timeout: Duration::from_secs(3),
            ..ConnLimits::default()
        },
        app.clone(),
    )
    .await;
    let mut s = server.connect().await;
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;
    let addr = server.addr;
    server.stop().await;
    assert_eq!(read_response(&mut s).await.unwrap(), 200);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );

    // A request that never finishes holds the drain only for its bound.
    let server = Server::with_app(
        ConnLimits {
            drain_timeout: Duration::from_millis(300),
            ..ConnLimits::default()
        },
        app,
    )
    .await;
    let mut s = server.connect().await;
    s.write_all(b"GET /never HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;
    let start = Instant::now();
    server.stop().await;
    assert!(start.elapsed() < Duration::from_secs(3));
    closed_within(&mut s, DEADLINE).await;
}

/// Sends `head` (in the background: the server may answer before reading
/// it all) and reads the answer: status, content type, body.
async fn answer_to(server: &Server, head: Vec<u8>) -> (u16, String, serde_json::Value) {
    let s = server.connect().await;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        // The server may close before taking it all; that is its right.
        let _ = wr.write_all(&head).await;
        wr
    });
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, rd.read_to_end(&mut buf))
        .await
        .expect("an answer, then the close")
        .expect("no reset before the answer was read");
    drop(writer.await);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let head = head.to_lowercase();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (head[9..12].parse().unwrap(), content_type, body)
}

fn request(target: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nhost: t\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[tokio::test]
async fn an_oversized_request_head_gets_a_problem_json_answer() {
    let server = Server::start(ConnLimits::default()).await;
    let cap = convene_httpd::MAX_HEAD_BYTES;
    let field = |len: usize| vec![("x-big".to_string(), "a".repeat(len))];
    // Over the cap but within hyper's buffer, and far over hyper's buffer
    // (where hyper itself would answer a bare 431).
    for len in [cap + 1, 600 * 1024] {
        let (status, ct, body) = answer_to(&server, request("/healthz", &field(len))).await;
        assert_eq!(
            (status, ct.as_str()),
            (431, "application/problem+json"),
            "{len}"
        );
        assert_eq!(body["status"], 431);
        assert_eq!(body["type"], "urn:convene:problem:headers-too-large");
    }
    // One field more than hyper accepts.
    let many: Vec<_> = (0..convene_httpd::MAX_HEADERS)
        .map(|i| (format!("x-{i}"), "v".to_string()))
        .collect();
    let (status, ct, _) = answer_to(&server, request("/healthz", &many)).await;
    assert_eq!((status, ct.as_str()), (431, "application/problem+json"));
    // A request line alone over the cap.
    let long = format!("/healthz?q={}", "a".repeat(cap));
    let (status, ct, body) = answer_to(&server, request(&long, &[])).await;
    assert_eq!((status, ct.as_str()), (414, "application/problem+json"));
    assert_eq!(body["type"], "urn:convene:problem:uri-too-long");

    // Just within both caps: served.
    let mut s = server.connect().await;
    let mut fit: Vec<_> = (0..convene_httpd::MAX_HEADERS - 2)
        .map(|i| (format!("x-{i}"), "v".to_string()))
        .collect();
    let used = request("/healthz", &fit).len() + "x-big: \r\n".len();
    fit.push(("x-big".into(), "a".repeat(cap - used)));
    s.write_all(&request("/healthz", &fit)).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap(), 200);
    // The next head on the same connection is capped afresh.
    s.write_all(&request("/healthz", &field(cap)))
        .await
        .unwrap();
    let (status, _) = read_full(&mut s).await.unwrap();
    assert_eq!(status, 431);
    server.stop().await;
}

#[tokio::test]
async fn websocket_frames_are_not_mistaken_for_a_request_head() {
    let server = Server::start(ConnLimits::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::Message as M;
    // Several times the head cap, with no blank line anywhere.
    let text = "a".repeat(4 * convene_httpd::MAX_HEAD_BYTES);
    ws.send(M::Text(text.clone().into())).await.unwrap();
    let echo = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo")
        .expect("socket open")
        .unwrap();
    assert_eq!(echo, M::Text(text.into()));
    server.stop().await;
}
