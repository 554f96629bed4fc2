//! Shared by the browser tests: finding Chromium and ChromeDriver, free
//! loopback ports, child processes killed on drop, waiting for HTTP, a
//! Chromium session with fake media, REST calls to set up users, and
//! opening the app signed in.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

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

/// A headless Chromium session with a fresh profile and a fake camera and
/// microphone, talking only to loopback.
pub async fn browser(driver: &str, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("chromedriver session")
}

/// `POST {base}{path}`, asserting success; returns the JSON body.
pub async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Registers `name` (email `{name}@example.org`) and logs in; returns the
/// login response (tokens and user).
pub async fn user(base: &str, name: &str) -> Value {
    post(
        base,
        "/v1/auth/register",
        None,
        json!({"username": name, "email": format!("{name}@example.org"), "password": "correct horse"}),
    )
    .await;
    post(
        base,
        "/v1/auth/login",
        None,
        json!({"login": name, "password": "correct horse"}),
    )
    .await
}

/// Opens the app with a signed-in session (tokens from the REST login).
pub async fn open_signed_in(c: &Client, base: &str, login: &Value, hash: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    let session = json!({
        "access_token": login["access_token"],
        "refresh_token": login["refresh_token"],
        "user": login["user"],
    });
    c.execute(
        "localStorage.setItem('convene.session', arguments[0]); location.hash = arguments[1];",
        vec![
            Value::String(session.to_string()),
            Value::String(hash.into()),
        ],
    )
    .await
    .unwrap();
}
