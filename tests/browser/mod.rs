//! Shared by the browser tests: finding Chromium and ChromeDriver, free
//! loopback ports, child processes killed on drop, waiting for HTTP.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub const CHROMIUM: &[&str] = &["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
pub const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

pub use convene_testkit::{free_tcp_addr as free_tcp, free_udp_port};

pub fn skip_or_fail(test: &str, why: &str) {
    convene_testkit::skip_or_fail(&format!("{test}: {why}"));
}

pub async fn wait_http(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up within {within:?}");
}

/// `convene up` on free ports in a temporary directory, and ChromeDriver;
/// both stop when this is dropped.
pub struct Stack {
    pub work: tempfile::TempDir,
    /// Base URL of `convene up`.
    pub base: String,
    /// Base URL of ChromeDriver.
    pub driver: String,
    pub chromium: PathBuf,
    _server: Killed,
    _driver: Killed,
}

/// Starts the stack, or `None` (after [`skip_or_fail`]) when Chromium or
/// ChromeDriver is missing.
pub async fn start(test: &str, jwt_secret: &str) -> Option<Stack> {
    let (Some(chromium), Some(chromedriver)) = (find(CHROMIUM), find(CHROMEDRIVER)) else {
        skip_or_fail(test, "chromium and chromedriver are not installed");
        return None;
    };
    let work = tempfile::tempdir().unwrap();
    let http = free_tcp();
    let udp = free_udp_port();
    let server = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_convene"))
            .args([
                "up",
                "--http-addr",
                &http.to_string(),
                "--udp-port",
                &udp.to_string(),
            ])
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .env("CONVENE_JWT_SECRET", jwt_secret)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("convene up starts"),
    );
    let base = format!("http://{http}");
    wait_http(&format!("{base}/healthz"), Duration::from_secs(30)).await;

    let driver_addr = free_tcp();
    let driver_proc = Killed(
        std::process::Command::new(&chromedriver)
            .arg(format!("--port={}", driver_addr.port()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let driver = format!("http://{driver_addr}");
    wait_http(&format!("{driver}/status"), Duration::from_secs(20)).await;
    Some(Stack {
        work,
        base,
        driver,
        chromium,
        _server: server,
        _driver: driver_proc,
    })
}
