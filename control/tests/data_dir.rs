//! The embedded single-node default (`convene up` / `convene control`
//! without DATABASE_URL): state in a data directory only its owner can read,
//! and sessions that survive a restart without a configured JWT secret.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use convene_control::datadir::{apply_embedded, DATABASE_FILE, JWT_SECRET_FILE};
use convene_control::ControlConfig;
use convene_testkit::{TestApp, TestDb};

/// Octal, so a failure reads `755` rather than `493`.
fn mode(p: &Path) -> String {
    let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    format!("{:o}", meta.permissions().mode() & 0o777)
}

/// The test configuration, minus what the embedded default fills in.
fn embedded_config(dir: &Path) -> ControlConfig {
    let mut config = ControlConfig {
        database_url: None,
        jwt_secret: None,
        ..ControlConfig::for_tests("")
    };
    apply_embedded(&mut config, dir).expect("data directory");
    config
}

async fn start(dir: &Path) -> TestApp {
    let config = embedded_config(dir);
    let url = config.database_url.clone().unwrap();
    TestApp::serve(TestDb::external(url), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_database_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let app = start(&dir).await;
    // Writes so the WAL exists while we look.
    app.user("alice").await;

    assert_eq!(mode(&dir), "700", "data directory");
    let db = dir.join(DATABASE_FILE);
    assert_eq!(mode(&db), "600", "database");
    // Journal mode WAL with an open connection: both companions exist.
    for suffix in ["-wal", "-shm"] {
        let companion = dir.join(format!("{DATABASE_FILE}{suffix}"));
        assert_eq!(mode(&companion), "600", "{}", companion.display());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_survives_restart_without_configured_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let app = start(&dir).await;
    let (token, id) = app.user("alice").await;
    app.get("/v1/users/me", &token).await.ok(200);
    app.stop().await;

    let app = start(&dir).await;
    let me = app.get("/v1/users/me", &token).await;
    assert_eq!(me.ok(200)["id"], id.as_str());
    assert_eq!(mode(&dir.join(JWT_SECRET_FILE)), "600", "jwt-secret");
    app.stop().await;
}
