//! One client refreshing from several requests at once (each got a 401 for
//! the same expired access token) stays signed in; a replay after the
//! grace period still revokes the whole session.

use std::time::Duration;

use convene_testkit::{both_backends, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::json;

both_backends!(
    parallel_refreshes_keep_the_session,
    a_late_replay_revokes_the_family,
    logout_ends_the_session
);

async fn refresh(app: &TestApp, token: &str) -> Resp {
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

async fn login(app: &TestApp) -> String {
    app.user("alice").await;
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": "correct horse"})),
        )
        .await;
    r.ok(200)["refresh_token"].as_str().unwrap().to_string()
}

async fn parallel_refreshes_keep_the_session(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let token = login(&app).await;
    let answers = futures::future::join_all((0..4).map(|_| refresh(&app, &token))).await;
    let mut successors = Vec::new();
    for r in &answers {
        successors.push(r.ok(200)["refresh_token"].as_str().unwrap().to_string());
    }
    // Every answer carries a working token of its own: the family lives.
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), 4);
    for t in &successors {
        let next = refresh(&app, t).await;
        let access = next.ok(200)["access_token"].as_str().unwrap().to_string();
        app.get("/v1/users/me", &access).await.ok(200);
    }
}

async fn a_late_replay_revokes_the_family(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.refresh_reuse_grace_secs = 1).await else {
        return;
    };
    let first = login(&app).await;
    let second = refresh(&app, &first).await.ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Past the grace period the old token is a replay...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refresh(&app, &first).await.assert_problem(401);
    // ...and the session it belongs to is gone, the newest token included,
    // even right away (a revoked token is within nobody's grace).
    refresh(&app, &second).await.assert_problem(401);
    refresh(&app, &first).await.assert_problem(401);
}

async fn logout_ends_the_session(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let first = login(&app).await;
    // A second device of the same user, and a successor of the first.
    let other = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": "correct horse"})),
        )
        .await
        .ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let current = refresh(&app, &first).await.ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let logout = |token: String| {
        app.call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({ "refresh_token": token })),
        )
    };
    assert_eq!(logout(current.clone()).await.status.as_u16(), 204);
    refresh(&app, &current).await.assert_problem(401);
    // The whole family: an older token of the session cannot revive it.
    refresh(&app, &first).await.assert_problem(401);
    // The other device's session lives on.
    refresh(&app, &other).await.ok(200);
    // Unknown and repeated logouts say nothing more.
    assert_eq!(logout("not-a-token".into()).await.status.as_u16(), 204);
    assert_eq!(logout(current).await.status.as_u16(), 204);
    // A malformed body is a client error, not a silent success.
    let r = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({"token": 1})),
        )
        .await;
    assert!(r.status.is_client_error(), "malformed body: {}", r.status);
}
