//! For the tests that drive a Python tool from one of the project's
//! virtualenvs against a real `convene up` (`tests/aiortc.rs`,
//! `tests/schemathesis.rs`): finding the tool, starting the server, child
//! processes killed on drop or after a deadline, and reading their logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The root of the repository (the `convene` package).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `program` of the virtualenv `venv` (a folder of the repository, as
/// `.ci/run` creates it from the file `requirements`), or the path in the
/// environment variable `env` when that is set; or why it is not there,
/// with the commands that create the virtualenv. `what` names the program
/// in that message.
pub fn venv_program(
    env: &str,
    venv: &str,
    program: &str,
    what: &str,
    requirements: &str,
) -> Result<PathBuf, String> {
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => repo().join(venv).join("bin").join(program),
    };
    if !path.exists() {
        return Err(format!(
            "no {what} at {} (set {env}, or create {venv}: \
             python3 -m venv {venv} && {venv}/bin/pip install -r {requirements})",
            path.display()
        ));
    }
    Ok(path)
}

/// `convene up` on `addr`, its data in `work/data` and its log in
/// `work/convene.log`, media on loopback only on ephemeral ports, and no
/// database, Redis or public URL from the caller's shell: the test adds the
/// settings it wants, then spawns it.
pub fn convene_up(work: &Path, addr: SocketAddr) -> Command {
    let log = std::fs::File::create(work.join("convene.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    cmd.args(["up", "--http-addr", &addr.to_string()])
        .args(["--udp-port", "0", "--sfu-bind-ip", "127.0.0.1"])
        .arg("--data-dir")
        .arg(work.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("CONVENE_PUBLIC_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// Waits for `child` to exit, killing it after `within`; `None` on timeout.
pub fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A file's content as text, empty when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}
