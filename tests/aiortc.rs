//! An independent WebRTC client against a real `convene up`: the Python
//! aiortc client of `tests/aiortc/client.py`, which knows convene only from
//! docs/protocol.md and the README (REST API and WebSocket signaling), runs
//! one scenario per test on loopback and reports one JSON line.
//!
//! Needs a Python with aiortc: `CONVENE_AIORTC_PYTHON`, or
//! `<repo>/.venv-aiortc/bin/python` (`.ci/run` creates it from
//! `tests/aiortc/requirements.txt`). Without it the tests print why and pass,
//! unless `CI` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::venv::{convene_up, read_lossy, repo, tail, venv_program, wait_child, Killed};

/// Each scenario encodes and decodes two video streams in Python: on two
/// cores they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The client's own deadline; the test kills it a little after that.
const CLIENT_DEADLINE_SECS: u64 = 60;

fn skip_or_fail(test: &str, why: &str) {
    convene_testkit::skip_or_fail(&format!("{test}: {why}"));
}

use convene_testkit::free_tcp_addr as free_tcp;

/// The Python to use, or why there is none.
fn python() -> Result<PathBuf, String> {
    let py = venv_program(
        "CONVENE_AIORTC_PYTHON",
        ".venv-aiortc",
        "python",
        "Python",
        "tests/aiortc/requirements.txt",
    )?;
    let mut child = Command::new(&py)
        .args(["-c", "import aiortc, av, websockets"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{} does not run: {e}", py.display()))?;
    match wait_child(&mut child, Duration::from_secs(60)) {
        Some(status) if status.success() => Ok(py),
        Some(status) => {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            Err(format!(
                "{} cannot import aiortc ({status}): {}",
                py.display(),
                tail(&err, 5)
            ))
        }
        None => Err(format!("{} took over 60 s to import aiortc", py.display())),
    }
}

/// `GET /healthz` over plain TCP: true on a 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let n = s.read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")
}

/// `convene up` on free loopback ports with a temporary data dir (SQLite).
struct Server {
    work: tempfile::TempDir,
    base: String,
    child: Killed,
}

impl Server {
    fn start() -> Server {
        let work = tempfile::tempdir().unwrap();
        let http = free_tcp();
        let child = convene_up(work.path(), http)
            .env("CONVENE_JWT_SECRET", "aiortc-secret-aiortc-secret-aiortc")
            .env("RUST_LOG", "info")
            .spawn()
            .expect("convene up starts");
        let mut server = Server {
            work,
            base: format!("http://{http}"),
            child: Killed(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(http) {
            if let Some(status) = server.child.0.try_wait().unwrap() {
                panic!("convene up exited with {status}:\n{}", server.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "convene up not healthy within 30 s:\n{}",
                server.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&read_lossy(&self.work.path().join("convene.log")), lines)
    }
}

/// Runs one scenario of the aiortc client against a fresh server and returns
/// its JSON result; panics with the client's and the server's log tails when
/// it failed. `None` when skipped.
fn scenario(name: &str) -> Option<Value> {
    let test = format!("aiortc {name}");
    let py = match python() {
        Ok(py) => py,
        Err(why) => {
            skip_or_fail(&test, &why);
            return None;
        }
    };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    let out_path = server.work.path().join("client.out");
    let err_path = server.work.path().join("client.err");
    let started = Instant::now();
    let mut child = Command::new(&py)
        .arg(repo().join("tests/aiortc/client.py"))
        .args(["--base", &server.base, "--scenario", name])
        .args(["--deadline", &CLIENT_DEADLINE_SECS.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("the aiortc client starts");
    let status = wait_child(&mut child, Duration::from_secs(CLIENT_DEADLINE_SECS + 30));
    let elapsed = started.elapsed();
    let stdout = read_lossy(&out_path);
    let report = || {
        format!(
            "--- client stdout:\n{}\n--- client stderr (tail):\n{}\n--- convene log (tail):\n{}",
            tail(&stdout, 5),
            tail(&read_lossy(&err_path), 60),
            server.log_tail(60)
        )
    };
    let Some(status) = status else {
        panic!(
            "{test}: the client was still running after {elapsed:?}, killed\n{}",
            report()
        );
    };
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    println!("{test}: {result}");
    assert!(
        status.success() && result["ok"] == Value::Bool(true),
        "{test} failed ({status}) after {elapsed:?}: {}\n{}",
        result["error"],
        report()
    );
    Some(result)
}

fn frames(v: &Value, side: &str, kind: &str) -> u64 {
    v[side][kind].as_u64().unwrap_or(0)
}

#[test]
fn admit_both_decode_each_other() {
    let Some(r) = scenario("admit") else { return };
    for side in ["bob_from_ada", "ada_from_bob"] {
        assert!(frames(&r, side, "video_frames") >= 30, "{side}: {r}");
        assert!(frames(&r, side, "audio_frames") >= 25, "{side}: {r}");
    }
    assert!(r["first_video_after_admit_ms"].as_u64().is_some(), "{r}");
}

#[test]
fn deny_keeps_the_waiter_out() {
    let Some(r) = scenario("deny") else { return };
    let seen: Vec<&str> = r["bob_messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(seen.contains(&"denied"), "{r}");
    assert!(!seen.contains(&"joined"), "{r}");
}

#[test]
fn resume_after_a_broken_socket_keeps_the_participant() {
    let Some(r) = scenario("resume") else { return };
    assert!(r["resume_ms"].as_u64().is_some(), "{r}");
}

#[test]
fn new_session_after_media_ended() {
    let Some(r) = scenario("new_session") else {
        return;
    };
    assert_eq!(r["media_ended_reason"], "peer_closed", "{r}");
}
