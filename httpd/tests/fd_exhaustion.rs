//! Issue 13's outage: idle connections from another process use up the
//! server's file descriptors, `accept` fails with EMFILE, and `/healthz`
//! hangs for everyone. With the header timeout the silent connections are
//! closed, the accept loop rides out EMFILE, and the server answers again.
//!
//! Its own test binary: it lowers this process's open-file limit.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use convene_httpd::{ConnLimits, ConnMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ATTACK_ENV: &str = "CONVENE_TEST_IDLE_CONNECTIONS_TO";
const IDLE_CONNECTIONS: usize = 400;

/// Run as a child process by the test below: opens idle connections to the
/// address in the environment and holds them until stdin closes.
#[test]
fn idle_connection_holder() {
    let Ok(addr) = std::env::var(ATTACK_ENV) else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    println!("holding {}", held.len());
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_descriptor_limit_do_not_wedge_the_server() {
    let open_now = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(64);
    // Room for about 150 client connections in this process.
    let limit = open_now + 150;
    set_fd_limit(limit);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = ConnMetrics::new();
    let limits = ConnLimits {
        // Long enough that the holder's connections pile up past the
        // limit (a shorter one closes them as fast as a slow holder
        // opens them, and accept never sees EMFILE).
        header_timeout: Duration::from_millis(1500),
        max_connections_per_ip: 0,
        // No cap: let accept hit EMFILE for real.
        max_connections: 0,
        ..ConnLimits::default()
    };
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let m = metrics.clone();
    tokio::spawn(async move {
        convene_httpd::serve(listener, app, &limits, &m, std::future::pending()).await
    });

    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_connection_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ATTACK_ENV, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the holder has made its connections (more than fit).
    let mut out = holder.stdout.take().unwrap();
    let mut seen = String::new();
    // Kept open until the holder exits, which prints its test result there.
    let _out = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 256];
        while !seen.contains("holding") {
            let n = std::io::Read::read(&mut out, &mut buf).unwrap();
            assert!(n > 0, "holder exited early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        out
    })
    .await
    .unwrap();

    // The holder keeps every connection open; the server must still answer.
    let served = tokio::time::timeout(Duration::from_secs(15), healthz_until_ok(addr)).await;
    drop(holder.stdin.take());
    let _ = holder.wait();
    served.expect("/healthz answers while idle connections are held");
    assert!(
        metrics.accept_errors() > 0,
        "the test should have driven accept into EMFILE"
    );
}

async fn healthz_until_ok(addr: SocketAddr) {
    loop {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .await;
            let mut resp = Vec::new();
            if tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut resp))
                .await
                .is_ok()
                && resp.starts_with(b"HTTP/1.1 200")
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
fn set_fd_limit(soft: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let current = Some(lim.maximum.map_or(soft, |max| soft.min(max)));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current,
            maximum: lim.maximum,
        },
    )
    .expect("setrlimit");
}
