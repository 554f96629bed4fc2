//! Password hashing is bounded (503 + `Retry-After` when every slot stays
//! busy) and registration is rate-limited per client IP (429 + `Retry-After`).

use std::net::IpAddr;
use std::time::Duration;

use convene_testkit::{both_backends, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::json;

both_backends!(hashing_flood_gets_503_not_500, register_rate_limit_per_ip);

fn register_body(name: &str) -> serde_json::Value {
    json!({"username": name, "email": format!("{name}@example.com"), "password": "correct horse"})
}

async fn hashing_flood_gets_503_not_500(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        // Costly enough that one slot cannot serve the burst within the wait.
        c.argon2_memory_kib = 8 * 1024;
        c.argon2_iterations = 2;
        c.password_hash_concurrency = Some(1);
        c.password_hash_wait_ms = 50;
        c.login_max_attempts_per_ip = 1_000;
    })
    .await
    else {
        return;
    };
    // Users to log in during the flood, and one who only reads.
    let mut logins = Vec::new();
    for i in 0..8 {
        let name = format!("known{i}");
        app.call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(register_body(&name)),
        )
        .await
        .ok(201);
        logins.push(name);
    }
    let (reader, _) = app.user("reader").await;

    let registrations = (0..24).map(|i| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(register_body(&format!("flood{i}"))),
            )
            .await
        }
    });
    let login_calls = logins.iter().map(|name| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"login": name, "password": "correct horse"})),
            )
            .await
        }
    });
    let others = async {
        // Someone else's requests go through while the flood runs.
        let teams = app.get("/v1/teams", &reader).await;
        let health = app.raw(app.client.get(app.url("/healthz"))).await;
        (teams, health)
    };
    let (registered, logged_in, (teams, health)) =
        tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(
                futures::future::join_all(registrations),
                futures::future::join_all(login_calls),
                others
            )
        })
        .await
        .expect("the flood is answered");
    teams.ok(200);
    assert_eq!(health.status.as_u16(), 200);

    let busy = |rs: &[Resp]| rs.iter().filter(|r| r.status.as_u16() == 503).count();
    for r in registered.iter() {
        assert!(
            matches!(r.status.as_u16(), 201 | 503),
            "register: {}",
            r.text
        );
    }
    for r in logged_in.iter() {
        assert!(matches!(r.status.as_u16(), 200 | 503), "login: {}", r.text);
    }
    assert!(
        registered.iter().any(|r| r.status.as_u16() == 201),
        "some registrations get a slot"
    );
    assert!(
        busy(&registered) > 0,
        "registrations beyond the bound get 503"
    );
    assert!(
        busy(&logged_in) > 0,
        "logins share the bound and get 503 too"
    );
    for r in registered.iter().chain(logged_in.iter()) {
        if r.status.as_u16() == 503 {
            r.assert_problem(503);
            assert_eq!(r.body["type"], "urn:convene:problem:overloaded");
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
    }

    // Once the flood is over, everyone gets in again.
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(register_body("after")),
    )
    .await
    .ok(201);
}

async fn register_rate_limit_per_ip(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.register_max_per_ip = 3).await else {
        return;
    };
    // Failed attempts count too: each may cost a hash, and a 409 tells
    // whether a name is taken.
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(register_body("ada")),
    )
    .await
    .ok(201);
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(register_body("ada")),
    )
    .await
    .assert_problem(409);
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(register_body("bob")),
    )
    .await
    .ok(201);
    let r = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(register_body("cyd")),
        )
        .await;
    r.assert_problem(429);
    assert_eq!(r.body["type"], "urn:convene:problem:rate-limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "retry-after {retry}");

    // Another address has its own allowance (127.0.0.2 is loopback on Linux).
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let client = reqwest::Client::builder()
        .local_address(other)
        .build()
        .unwrap();
    let r = app
        .raw(
            client
                .post(app.url("/v1/auth/register"))
                .json(&register_body("cyd")),
        )
        .await;
    if cfg!(target_os = "linux") {
        r.ok(201);
    }
}
