//! Login rate limits: one budget per account whichever login names it, a
//! stranger's failures never lock the owner out of an address it logged in
//! from, and `X-Forwarded-For` only counts from a trusted proxy.

use convene_testkit::{both_backends, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::json;

both_backends!(
    username_and_email_share_one_budget,
    a_stranger_cannot_lock_the_owner_out,
    forwarded_for_is_ignored_from_untrusted_peers
);

async fn login(app: &TestApp, login: &str, password: &str, from: Option<&str>) -> Resp {
    let mut req = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"login": login, "password": password}));
    if let Some(addr) = from {
        req = req.header("x-forwarded-for", addr);
    }
    app.raw(req).await
}

async fn username_and_email_share_one_budget(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.login_max_attempts_per_account = 3;
        c.login_max_attempts_per_ip = 1_000;
        c.login_known_address_ttl_secs = 0;
    })
    .await
    else {
        return;
    };
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(
            json!({"username": "alice", "email": "alice@example.com", "password": "correct horse"}),
        ),
    )
    .await
    .ok(201);
    for _ in 0..3 {
        login(&app, "alice", "wrong", None)
            .await
            .assert_problem(401);
    }
    // The same account by its email: the same budget, already spent.
    login(&app, "Alice@Example.com", "wrong", None)
        .await
        .assert_problem(429);
}

async fn a_stranger_cannot_lock_the_owner_out(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.login_max_attempts_per_account = 3;
        c.login_max_attempts_per_ip = 1_000;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(
            json!({"username": "alice", "email": "alice@example.com", "password": "correct horse"}),
        ),
    )
    .await
    .ok(201);
    let home = "198.51.100.7";
    login(&app, "alice", "correct horse", Some(home))
        .await
        .ok(200);
    // A stranger guesses from several addresses until the account is held
    // (the owner's login took one attempt of the three).
    for n in 1..=2 {
        login(&app, "alice", "guess", Some(&format!("203.0.113.{n}")))
            .await
            .assert_problem(401);
    }
    let held = login(&app, "alice", "guess", Some("203.0.113.9")).await;
    held.assert_problem(429);
    assert!(held.headers.contains_key("retry-after"));
    // Even the right password from a new address waits...
    login(&app, "alice", "correct horse", Some("192.0.2.1"))
        .await
        .assert_problem(429);
    // ...but the owner's known address is not held by the stranger.
    login(&app, "alice", "correct horse", Some(home))
        .await
        .ok(200);
}

async fn forwarded_for_is_ignored_from_untrusted_peers(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.login_max_attempts_per_account = 1_000;
        c.login_max_attempts_per_ip = 3;
    })
    .await
    else {
        return;
    };
    // Without --trusted-proxies a client cannot pose as many addresses.
    for n in 1..=3 {
        login(
            &app,
            &format!("nobody{n}"),
            "x",
            Some(&format!("203.0.113.{n}")),
        )
        .await
        .assert_problem(401);
    }
    login(&app, "nobody9", "x", Some("203.0.113.9"))
        .await
        .assert_problem(429);
}
