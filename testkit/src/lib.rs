//! Shared harness for convene's integration tests (dev-only, never
//! published): which test servers are reachable (PostgreSQL, Redis), a fresh
//! database per test, and a real control plane on a loopback port with a
//! small REST client. Any crate's `tests/` may use it; nothing else may.
//!
//! A missing server skips the test locally and fails it in CI (`CI` set);
//! ports for child processes come from [`free_tcp_addr`] and
//! [`free_udp_port`].

mod app;
mod db;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

pub use app::{Resp, TestApp};
pub use db::TestDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("CONVENE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("CONVENE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Skips (returns `None`) when a server is missing locally; in CI (`CI` set)
/// a missing server is a failure, so this panics.
pub fn skip(reason: String) -> Option<()> {
    skip_or_fail(&reason);
    None
}

/// For a test that cannot run here: panics in CI (`CI` set), where every
/// prerequisite must be present; otherwise says why on stderr.
pub fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// The Redis URL if a Redis answers `PING` there within 2 s.
pub async fn redis_reachable() -> Option<String> {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .ok()
        .map(|_| url)
}

/// [`redis_reachable`], skipping (or failing in CI) when it is not.
pub async fn redis_available() -> Option<String> {
    match redis_reachable().await {
        Some(url) => Some(url),
        None => {
            skip(format!(
                "Redis not reachable at {} (set CONVENE_TEST_REDIS_URL)",
                redis_url()
            ))?;
            None
        }
    }
}

/// A loopback TCP address nobody listens on right now (for a child process
/// to bind).
pub fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback TCP port")
}

/// A loopback UDP port nobody uses right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free loopback UDP port")
        .port()
}

/// Generates `sqlite::<name>` and `postgres::<name>` tests from
/// `async fn <name>(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
