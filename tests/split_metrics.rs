//! The services as separate processes: runs the real `convene control`,
//! `convene sfu` and `convene signaling` binaries (and `convene up`) on
//! loopback ports, waits for their `/healthz`, and checks every metrics
//! endpoint with `promtool check metrics` (Debian package `prometheus`).
//! Skipped without promtool, and the signaling part without Redis on
//! 127.0.0.1:6379, unless `CI` is set.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use convene_testkit::{free_tcp_addr, redis_reachable, skip_or_fail};

const INTERNAL_SECRET: &str = "split-test-internal-secret";
const SFU_SECRET: &str = "split-test-sfu-secret";

fn promtool_available() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `convene` child process, killed when dropped.
struct Service {
    name: &'static str,
    child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &'static str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    cmd.args(args)
        // The test decides every setting; nothing from the caller's shell.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Service {
        name,
        child: cmd.spawn().expect("convene starts"),
    }
}

/// Polls `/healthz` until it answers 200; fails if the process exits first.
async fn wait_healthy(svc: &mut Service, addr: SocketAddr, log: &Path) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Some(status) = svc.child.try_wait().unwrap() {
            panic!(
                "convene {} exited with {status}:\n{}",
                svc.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "convene {} never became healthy:\n{}",
        svc.name,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Fetches one metrics endpoint and runs `promtool check metrics` on it.
async fn check_metrics(url: &str, must_contain: &str) {
    let res = reqwest::get(url).await.expect("metrics answer");
    assert_eq!(res.status(), 200, "{url}");
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{url}: {ct}");
    let text = res.text().await.unwrap();
    assert!(
        text.contains(must_contain),
        "{url} lacks {must_contain}:\n{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics rejects {url} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_and_valid_metrics() {
    if !promtool_available() {
        skip_or_fail("promtool not found (Debian: apt-get install prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let control_addr = free_tcp_addr().to_string();
    let mut control = spawn(
        "control",
        &["control", "--http-addr", &control_addr, "--data-dir", data],
        &[
            ("CONVENE_INTERNAL_SECRET", INTERNAL_SECRET),
            ("CONVENE_JWT_SECRET", "split-test-jwt-secret"),
        ],
        &log("control"),
    );
    let sfu_addr = free_tcp_addr().to_string();
    let mut sfu = spawn(
        "sfu",
        &[
            "sfu",
            "--udp-port",
            "0",
            "--sfu-bind-ip",
            "127.0.0.1",
            "--sfu-public-ip",
            "127.0.0.1",
            "--sfu-workers",
            "1",
            "--sfu-http-addr",
            &sfu_addr,
        ],
        &[("CONVENE_SFU_HTTP_SECRET", SFU_SECRET)],
        &log("sfu"),
    );
    wait_healthy(&mut control, control_addr.parse().unwrap(), &log("control")).await;
    wait_healthy(&mut sfu, sfu_addr.parse().unwrap(), &log("sfu")).await;
    check_metrics(&format!("http://{control_addr}/metrics"), "convene_http_").await;
    check_metrics(&format!("http://{sfu_addr}/metrics"), "convene_sfu_").await;

    // The SFU's HTTP API refuses callers without the secret.
    let r = reqwest::get(format!("http://{sfu_addr}/v1/events"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Signaling needs Redis for the control plane's events.
    match redis_reachable().await {
        Some(redis) => {
            let sig_addr = free_tcp_addr().to_string();
            let control_url = format!("http://{control_addr}");
            let sfu_url = format!("http://{sfu_addr}");
            let mut signaling = spawn(
                "signaling",
                &[
                    "signaling",
                    "--http-addr",
                    &sig_addr,
                    "--control-url",
                    &control_url,
                    "--sfu-url",
                    &sfu_url,
                    "--redis-url",
                    &redis,
                ],
                &[
                    ("CONVENE_INTERNAL_SECRET", INTERNAL_SECRET),
                    ("CONVENE_SFU_HTTP_SECRET", SFU_SECRET),
                ],
                &log("signaling"),
            );
            wait_healthy(&mut signaling, sig_addr.parse().unwrap(), &log("signaling")).await;
            check_metrics(&format!("http://{sig_addr}/metrics"), "convene_signaling_").await;
            // The web client is served next to the WebSocket.
            let index = reqwest::get(format!("http://{sig_addr}/")).await.unwrap();
            assert_eq!(index.status(), 200);
        }
        None => skip_or_fail("Redis not reachable: `convene signaling` not checked"),
    }

    // `convene up` serves the same metrics in one process.
    let up_addr = free_tcp_addr().to_string();
    let up_data = dir.path().join("up-data");
    let mut up = spawn(
        "up",
        &[
            "up",
            "--http-addr",
            &up_addr,
            "--data-dir",
            up_data.to_str().unwrap(),
            "--udp-port",
            "0",
            "--sfu-workers",
            "1",
        ],
        &[],
        &log("up"),
    );
    wait_healthy(&mut up, up_addr.parse().unwrap(), &log("up")).await;
    check_metrics(&format!("http://{up_addr}/metrics"), "convene_http_").await;
    check_metrics(&format!("http://{up_addr}/metrics/media"), "convene_sfu_").await;
}
