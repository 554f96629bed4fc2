//! Credentials over the REST API: forged and expired access and room
//! tokens, the internal token-verify endpoint, refresh-token rotation and
//! the login rate limit; run against SQLite and PostgreSQL alike.

use convene_control::RoomClaims;
use convene_testkit::{both_backends, Backend, TestApp};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

both_backends!(
    forged_and_expired_tokens_are_refused,
    refresh_tokens_rotate,
    login_rate_limit,
    internal_verify_endpoint,
);

async fn forged_and_expired_tokens_are_refused(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    let conf_id = app.conference(&alice, &team_id, false).await;

    // No token, garbage, wrong signature.
    app.call(Method::GET, "/v1/users/me", None, None)
        .await
        .assert_problem(401);
    app.get("/v1/users/me", "not.a.jwt")
        .await
        .assert_problem(401);
    let now = chrono::Utc::now().timestamp();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": alice_id, "name": "alice", "aud": "convene:api", "exp": now + 600, "iat": now, "jti": Uuid::new_v4()}),
        &jsonwebtoken::EncodingKey::from_secret(b"wrong secret"),
    )
    .unwrap();
    app.get("/v1/users/me", &forged).await.assert_problem(401);

    // Correct key but expired.
    let key = jsonwebtoken::EncodingKey::from_secret(
        app.control.config().jwt_secret.as_ref().unwrap().as_bytes(),
    );
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": alice_id, "name": "alice", "aud": "convene:api", "exp": now - 600, "iat": now - 1200, "jti": Uuid::new_v4()}),
        &key,
    )
    .unwrap();
    let r = app.get("/v1/users/me", &expired).await;
    r.assert_problem(401);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"));

    // Room tokens: forged, expired, and a room token used as access token.
    let join = app
        .post(
            &format!("/v1/conferences/{conf_id}/join"),
            &alice,
            json!({}),
        )
        .await;
    let room = join.ok(200)["token"].as_str().unwrap().to_string();
    app.get("/v1/users/me", &room).await.assert_problem(401);
    let mut claims: RoomClaims = app.control.verify_room_token(&room).await.unwrap();
    claims.exp = now - 600;
    claims.iat = now - 1200;
    let expired_room =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let err = app
        .control
        .verify_room_token(&expired_room)
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 401);
    // For a resume the same token is accepted (the seat is proven by the
    // resume token), over the internal API too; a forged one still is not.
    let resumed = app
        .control
        .verify_room_token_for_resume(&expired_room)
        .await
        .unwrap();
    assert_eq!(resumed.sub, claims.sub);
    let secret = app.control.config().internal_secret.clone().unwrap();
    for (allow_expired, status) in [(false, 401), (true, 200)] {
        let r = app
            .client
            .post(format!("{}/v1/internal/tokens/verify", app.base))
            .bearer_auth(&secret)
            .json(&json!({"token": expired_room, "allow_expired": allow_expired}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "allow_expired {allow_expired}");
    }
    claims.exp = now + 600;
    let forged_room = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"wrong secret"),
    )
    .unwrap();
    assert_eq!(
        app.control
            .verify_room_token(&forged_room)
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    // An access token is not a room token.
    assert!(app.control.verify_room_token(&alice).await.is_err());
}

async fn refresh_tokens_rotate(backend: Backend) {
    // No grace for reuse here: this is about replays (tests/refresh.rs has
    // the parallel refreshes of one client).
    let Some(app) = TestApp::start_with(backend, |c| c.refresh_reuse_grace_secs = 0).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(login.ok(200)["token_type"], "Bearer");
    assert_eq!(login.headers["cache-control"], "no-store");
    assert!(login.body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(login.body["user"]["username"], "alice");
    let r1 = login.body["refresh_token"].as_str().unwrap().to_string();
    let refreshed = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    let r2 = refreshed.ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(r1, r2);
    app.get(
        "/v1/users/me",
        refreshed.body["access_token"].as_str().unwrap(),
    )
    .await
    .ok(200);
    // Reusing r1 fails and revokes the family, so r2 dies too.
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await
    .assert_problem(401);
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r2})),
    )
    .await
    .assert_problem(401);
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": "made-up"})),
    )
    .await
    .assert_problem(401);
    // Wrong password.
    app.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"login": "alice", "password": "wrong password"})),
    )
    .await
    .assert_problem(401);
    app.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"login": "nobody", "password": "wrong password"})),
    )
    .await
    .assert_problem(401);
    // Lookup by email finds only people one already shares a team or a
    // chat with (and oneself); a stranger's account looks exactly like an
    // unknown address.
    let (tok, id) = app.user("bob").await;
    let stranger = app.get("/v1/users?email=ALICE@example.com", &tok).await;
    stranger.assert_problem(404);
    let unknown = app.get("/v1/users?email=nobody@example.com", &tok).await;
    unknown.assert_problem(404);
    assert_eq!(stranger.body, unknown.body);
    app.team_with_member(&alice, &tok).await;
    let r = app.get("/v1/users?email=ALICE@example.com", &tok).await;
    assert_eq!(r.ok(200)["username"], "alice");
    let r = app.get("/v1/users?email=BOB@example.com", &tok).await;
    assert_eq!(r.ok(200)["id"], id.as_str());
    let me = app.get("/v1/users/me", &tok).await;
    assert_eq!(me.ok(200)["id"], id.as_str());
}

async fn login_rate_limit(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.login_max_attempts_per_account = 3;
        c.login_max_attempts_per_ip = 6;
    })
    .await
    else {
        return;
    };
    app.user("alice").await; // one (successful) attempt from this IP
    let bad = json!({"login": "alice", "password": "wrong password"});
    for _ in 0..3 {
        app.call(Method::POST, "/v1/auth/login", None, Some(bad.clone()))
            .await
            .assert_problem(401);
    }
    let r = app
        .call(Method::POST, "/v1/auth/login", None, Some(bad.clone()))
        .await;
    r.assert_problem(429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry));
    // Even the right password is refused while limited.
    app.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"login": "alice", "password": "correct horse"})),
    )
    .await
    .assert_problem(429);
    // Per-IP limit: other accounts from the same address are limited too.
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "someone", "password": "x"})),
        )
        .await;
    r.assert_problem(429);
    assert!(r.headers.contains_key("retry-after"));
}

async fn internal_verify_endpoint(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    let conf_id = app.conference(&alice, &team_id, false).await;
    let token = app
        .post(
            &format!("/v1/conferences/{conf_id}/join"),
            &alice,
            json!({}),
        )
        .await
        .ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let verify = |secret: Option<&str>, token: &str| {
        let mut r = app
            .client
            .post(app.url("/v1/internal/tokens/verify"))
            .json(&json!({"token": token}));
        if let Some(s) = secret {
            r = r.header("x-convene-internal-secret", s);
        }
        r
    };
    let ok = app.raw(verify(Some("test-internal-secret"), &token)).await;
    assert_eq!(ok.ok(200)["sub"], alice_id.as_str());
    assert_eq!(ok.body["grants"]["moderator"], true);
    app.raw(verify(Some("wrong"), &token))
        .await
        .assert_problem(403);
    app.raw(verify(None, &token)).await.assert_problem(403);
    app.raw(verify(Some("test-internal-secret"), "garbage"))
        .await
        .assert_problem(401);
    // The same with the secret as a bearer credential.
    let bearer = |secret: &str| {
        app.client
            .post(app.url("/v1/internal/tokens/verify"))
            .bearer_auth(secret)
            .json(&json!({"token": token}))
    };
    assert_eq!(
        app.raw(bearer("test-internal-secret")).await.ok(200)["sub"],
        alice_id.as_str()
    );
    app.raw(bearer("wrong")).await.assert_problem(403);
}
