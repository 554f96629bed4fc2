//! The load generator against the peer SFU of `compare.sh`: a real Janus
//! Gateway (VideoRoom, HTTP API) started by `benches/janus-ns.sh` in a
//! private network namespace, 1 room x 1 publisher x 2 subscribers for ~3 s.
//! Checks that the Janus client (rooms, publisher configure, subscriber
//! offers, ICE from 127.0.0.2) gets media to both subscribers and that the
//! report names Janus's process. Skipped with a message when Janus is not
//! installed, unless `CI` is set (`.ci/run` installs Janus), and when the
//! sandbox forbids network namespaces.

use std::path::Path;
use std::process::Command;

fn janus_usable() -> Result<(), Unusable> {
    let installed = Command::new("sh")
        .args(["-c", "command -v janus"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        return Err(Unusable::Missing(
            "janus is not installed (apt-get install -y janus)".into(),
        ));
    }
    // The same unshare call as janus-ns.sh.
    let ns = Command::new("sh")
        .args([
            "-c",
            r#"if [ "$(id -u)" = 0 ]; then unshare --net true; else unshare --map-root-user --net true; fi"#,
        ])
        .output()
        .map_err(|e| Unusable::Missing(format!("unshare: {e}")))?;
    if !ns.status.success() {
        return Err(Unusable::Sandbox(format!(
            "network namespaces are not allowed here: {}",
            String::from_utf8_lossy(&ns.stderr).trim()
        )));
    }
    Ok(())
}

/// Why the test cannot run here.
enum Unusable {
    /// An install step is missing: a failure in CI.
    Missing(String),
    /// The sandbox forbids network namespaces (no capability to grant from
    /// `.ci/run`): skipped everywhere, loudly.
    Sandbox(String),
}

#[test]
fn janus_videoroom_one_publisher_two_subscribers() {
    match janus_usable() {
        Ok(()) => {}
        Err(Unusable::Missing(why)) => {
            assert!(std::env::var_os("CI").is_none(), "CI: {why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
        Err(Unusable::Sandbox(why)) => {
            eprintln!("SKIPPED (even in CI): {why}");
            return;
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("janus-ns.sh");
    let out = Command::new("timeout")
        .arg("120")
        .arg("bash")
        .arg(&script)
        .args([
            "bash",
            "-c",
            r#"exec "$0" "$@" --url "$JANUS_URL" --sfu-pid "$JANUS_PID""#,
        ])
        .arg(env!("CARGO_BIN_EXE_convene-load"))
        .args([
            "--target",
            "janus",
            "--bind-ip",
            "127.0.0.2",
            "--rooms",
            "1",
            "--publishers",
            "1",
            "--subscribers",
            "2",
            "--duration",
            "3s",
            "--settle",
            "1s",
            "--video-kbps",
            "600",
            "--json",
        ])
        .env("JANUS_PORT", "18188")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run janus-ns.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    println!("{v}");
    assert_eq!(v["target"], "janus");
    assert_eq!(v["peers_failed"], 0, "{v}\n{stderr}");
    assert_eq!(v["peers_joined"], 3, "{v}");
    assert_eq!(
        v["receivers_with_media"], 2,
        "both subscribers got media: {v}"
    );
    // Each subscriber receives the publisher's audio and video.
    assert_eq!(v["subscriber_streams"], 4, "{v}");
    assert!(v["packets_received"].as_u64().unwrap_or(0) > 100, "{v}");
    assert!(v["loss"].as_f64().unwrap_or(1.0) < 0.2, "{v}");
    // CPU and memory were read from Janus's own process (a few MiB would be
    // a shell that wrapped it).
    assert!(v["rss_mb"].as_f64().unwrap_or(0.0) > 8.0, "{v}");
}
