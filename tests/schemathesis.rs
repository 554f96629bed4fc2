//! schemathesis against a real `convene up`: generated requests for every
//! operation of `/openapi.json`, as a logged-in user, checking that nothing
//! answers 5xx and that every response (status, content type, body)
//! conforms to the schema.
//!
//! Needs schemathesis: `CONVENE_SCHEMATHESIS` (the `schemathesis` command),
//! or `<repo>/.venv-schemathesis/bin/schemathesis` (`.ci/run` creates it
//! from `tests/schemathesis/requirements.txt`). Without it the test prints
//! why and passes, unless `CI` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convene_testkit::free_tcp_addr as free_tcp;
use serde_json::{json, Value};

mod support;

use support::venv::{convene_up, read_lossy, tail, venv_program, wait_child, Killed};

/// Time schemathesis gets for the whole run; the test kills it a little
/// after that.
const RUN_SECS: u64 = 150;

/// Generated cases per operation and phase: enough to reach past the
/// validation of every field, few enough to stay within `RUN_SECS` on two
/// cores.
const MAX_EXAMPLES: u32 = 25;

/// The schemathesis command, or why there is none.
fn schemathesis() -> Result<PathBuf, String> {
    venv_program(
        "CONVENE_SCHEMATHESIS",
        ".venv-schemathesis",
        "schemathesis",
        "schemathesis",
        "tests/schemathesis/requirements.txt",
    )
}

/// One HTTP/1.0 request over plain TCP: (status, JSON body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.to_string();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nhost: localhost\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `convene up` on free loopback ports with a temporary data dir (SQLite).
struct Server {
    work: tempfile::TempDir,
    addr: SocketAddr,
    _child: Killed,
}

impl Server {
    fn start() -> Server {
        let work = tempfile::tempdir().unwrap();
        let addr = free_tcp();
        let mut child = convene_up(work.path(), addr)
            .env(
                "CONVENE_JWT_SECRET",
                "schemathesis-secret-schemathesis-secret",
            )
            // Generated registrations and logins come by the hundred: cheap
            // hashes keep the run about the API, not about Argon2.
            .env("CONVENE_ARGON2_MEMORY_KIB", "1024")
            .env("CONVENE_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("convene up starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "convene up exited with {status}:\n{}",
                    tail(&read_lossy(&work.path().join("convene.log")), 40)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && http(addr, "GET", "/healthz", None, &Value::Null).0 == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "convene up not healthy within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Server {
            work,
            addr,
            _child: Killed(child),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&read_lossy(&self.work.path().join("convene.log")), lines)
    }
}

#[test]
fn rest_api_conforms_to_its_openapi_document() {
    let cmd = match schemathesis() {
        Ok(cmd) => cmd,
        Err(why) => {
            convene_testkit::skip_or_fail(&format!("schemathesis: {why}"));
            return;
        }
    };
    let server = Server::start();
    let addr = server.addr;
    let (s, _) = http(
        addr,
        "POST",
        "/v1/auth/register",
        None,
        &json!({"username": "fuzz", "email": "fuzz@example.org", "password": "correct horse"}),
    );
    assert_eq!(s, 201);
    let (s, login) = http(
        addr,
        "POST",
        "/v1/auth/login",
        None,
        &json!({"login": "fuzz", "password": "correct horse"}),
    );
    assert_eq!(s, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_string();
    // Something to find: a team with a conference and a post, so that
    // listing operations return items to check against the schema.
    let (s, team) = http(
        addr,
        "POST",
        "/v1/teams",
        Some(&token),
        &json!({"name": "crew", "description": ""}),
    );
    assert_eq!(s, 201, "{team}");
    let team = team["id"].as_str().unwrap().to_string();
    let (s, conf) = http(
        addr,
        "POST",
        &format!("/v1/teams/{team}/conferences"),
        Some(&token),
        &json!({"title": "standup", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": true}),
    );
    assert_eq!(s, 201, "{conf}");

    let report = server.work.path().join("report");
    let out_path = server.work.path().join("schemathesis.out");
    let started = Instant::now();
    let mut child = Command::new(&cmd)
        .arg("run")
        .arg(format!("http://{addr}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // The internal API takes the internal secret, not a user's token;
        // it is not exposed by `convene up`.
        .args(["--exclude-path-regex", "^/v1/internal/"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--max-time", &RUN_SECS.to_string()])
        // One worker: Python 3.11's `ast.parse` (which hypothesis calls to
        // describe filters) is not thread-safe and fails at random with
        // "AST constructor recursion depth mismatch" under two.
        .args(["--workers", "1", "--seed", "1", "--no-shrink"])
        .args(["--request-timeout", "20"])
        .arg("--report-dir")
        .arg(&report)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(server.work.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("schemathesis starts");
    let status = wait_child(&mut child, Duration::from_secs(RUN_SECS + 60));
    let out = read_lossy(&out_path);
    println!(
        "schemathesis ran {:?}:\n{}",
        started.elapsed(),
        tail(&out, 30)
    );
    let Some(status) = status else {
        panic!(
            "schemathesis still running after {:?}, killed:\n{}",
            started.elapsed(),
            tail(&out, 80)
        );
    };
    assert!(
        status.success(),
        "schemathesis found problems ({status}):\n{}\n--- convene log (tail):\n{}",
        tail(&out, 200),
        server.log_tail(40)
    );
}
