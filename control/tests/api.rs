//! End-to-end tests of the REST API over real HTTP, run against SQLite and
//! PostgreSQL alike.

use std::time::Duration;

use convene_control::{ConferenceEvent, RoomClaims};
use convene_testkit::{both_backends, Backend, TestApp};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

both_backends!(
    full_flow,
    other_team_conference_is_invisible,
    forged_and_expired_tokens_are_refused,
    member_cannot_moderate,
    removed_member_loses_tokens_and_access,
    bad_input_is_problem_json,
    pagination_walks_all_items,
    conflicts_and_last_admin,
    refresh_tokens_rotate,
    waiting_hall_details,
    login_rate_limit,
    ops_endpoints,
    internal_verify_endpoint,
    removed_participant_cannot_rejoin,
    waiters_without_heartbeat_expire,
);

async fn full_flow(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;

    // Team, join by code, accept.
    let team = app
        .post(
            "/v1/teams",
            &alice,
            json!({"name": "Acme", "description": "Rockets"}),
        )
        .await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    assert_eq!(team.body["role"], "admin");
    let code = team.body["join_code"].as_str().unwrap().to_string();

    let r = app
        .post("/v1/teams/join", &bob, json!({"code": code}))
        .await;
    assert_eq!(r.ok(202)["status"], "pending");
    let req_id = r.body["request"]["id"].as_str().unwrap().to_string();
    // Joining again while pending returns the same request.
    let again = app
        .post("/v1/teams/join", &bob, json!({"code": code.to_lowercase()}))
        .await;
    assert_eq!(again.ok(202)["request"]["id"], req_id.as_str());

    let reqs = app
        .get(&format!("/v1/teams/{team_id}/requests"), &alice)
        .await;
    assert_eq!(reqs.ok(200)["items"].as_array().unwrap().len(), 1);
    app.post(
        &format!("/v1/teams/{team_id}/requests/{req_id}/accept"),
        &alice,
        json!({}),
    )
    .await
    .ok(200);
    let member_again = app
        .post("/v1/teams/join", &bob, json!({"code": code}))
        .await;
    assert_eq!(member_again.ok(200)["status"], "member");

    // Bob sees the team, but not its join code.
    let seen = app.get(&format!("/v1/teams/{team_id}"), &bob).await;
    assert_eq!(seen.ok(200)["role"], "member");
    assert!(seen.body.get("join_code").is_none());

    // Conference with a waiting hall.
    let conf = app
        .post(
            &format!("/v1/teams/{team_id}/conferences"),
            &alice,
            json!({"title": "Planning", "starts_at": "2030-01-01T10:00:00Z", "waiting_hall": true}),
        )
        .await;
    let conf_id = conf.ok(201)["id"].as_str().unwrap().to_string();
    assert_eq!(conf.body["moderators"], json!([alice_id]));

    let mut events = app.control.bus().subscribe(conf_id.parse().unwrap());

    // Bob waits.
    let join = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    assert_eq!(join.ok(200)["waiting"], true);
    assert_eq!(join.body["position"], 1);
    assert_eq!(join.body["signaling_url"], "ws://localhost:8080/v1/ws");
    assert!(join.body["ice_servers"].is_array());
    let waiting_token = join.body["token"].as_str().unwrap().to_string();
    let claims = app.control.verify_room_token(&waiting_token).await.unwrap();
    assert!(claims.grants.waiting && !claims.grants.can_publish);
    assert_eq!(claims.sub.to_string(), bob_id);

    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, ConferenceEvent::WaitingJoined { position: 1, .. }),
        "{ev:?}"
    );

    // Reconnecting keeps the single entry.
    let join2 = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    assert_eq!(join2.ok(200)["waiting"], true);

    let list = app
        .get(&format!("/v1/conferences/{conf_id}/waiting"), &alice)
        .await;
    let entries = list.ok(200).as_array().unwrap().clone();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["user_id"], bob_id.as_str());
    assert_eq!(entries[0]["username"], "bob");
    assert_eq!(entries[0]["status"], "waiting");
    assert_eq!(entries[0]["position"], 1);

    // Alice admits; the event arrives on the bus.
    let admitted = app
        .post(
            &format!("/v1/conferences/{conf_id}/waiting/{bob_id}/admit"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(admitted.ok(200)["status"], "admitted");
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        ConferenceEvent::WaitingAdmitted {
            conference_id: conf_id.parse().unwrap(),
            user_id: bob_id.parse().unwrap()
        }
    );
    let list = app
        .get(&format!("/v1/conferences/{conf_id}/waiting"), &alice)
        .await;
    assert_eq!(list.ok(200)[0]["status"], "admitted");

    // A new join yields a room token.
    let join = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    assert_eq!(join.ok(200)["waiting"], false);
    let claims = app
        .control
        .verify_room_token(join.body["token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(claims.grants.can_publish && claims.grants.can_subscribe && !claims.grants.moderator);
    assert_eq!(claims.conf.to_string(), conf_id);

    // The moderator gets a moderator token straight away.
    let join = app
        .post(
            &format!("/v1/conferences/{conf_id}/join"),
            &alice,
            json!({}),
        )
        .await;
    let claims = app
        .control
        .verify_room_token(join.ok(200)["token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(claims.grants.moderator);

    // Ending invalidates tokens and further joins.
    app.post(&format!("/v1/conferences/{conf_id}/end"), &alice, json!({}))
        .await
        .ok(200);
    assert!(app
        .control
        .verify_room_token(join.body["token"].as_str().unwrap())
        .await
        .is_err());
    app.post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await
        .assert_problem(409);
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, ConferenceEvent::ConferenceEnded { .. }));
}

async fn other_team_conference_is_invisible(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (mallory, _) = app.user("mallory").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    let conf_id = app.conference(&alice, &team_id, false).await;

    app.get(&format!("/v1/conferences/{conf_id}"), &mallory)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/conferences/{conf_id}/join"),
        &mallory,
        json!({}),
    )
    .await
    .assert_problem(404);
    app.get(&format!("/v1/teams/{team_id}"), &mallory)
        .await
        .assert_problem(404);
    app.get(&format!("/v1/teams/{team_id}/members"), &mallory)
        .await
        .assert_problem(404);
    app.get(&format!("/v1/teams/{team_id}/conferences"), &mallory)
        .await
        .assert_problem(404);
    app.get(&format!("/v1/conferences/{conf_id}/waiting"), &mallory)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/teams/{team_id}/conferences"),
        &mallory,
        json!({"title": "x", "starts_at": "2030-01-01T00:00:00Z"}),
    )
    .await
    .assert_problem(404);
    let mine = app.get("/v1/teams", &mallory).await;
    assert!(mine.ok(200)["items"].as_array().unwrap().is_empty());
}

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

async fn member_cannot_moderate(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let (carol, carol_id) = app.user("carol").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let r = app
        .post(
            &format!("/v1/teams/{team_id}/members"),
            &alice,
            json!({"email": "carol@example.com"}),
        )
        .await;
    assert_eq!(r.ok(201)["role"], "member");
    let conf_id = app.conference(&alice, &team_id, true).await;

    app.post(
        &format!("/v1/conferences/{conf_id}/join"),
        &carol,
        json!({}),
    )
    .await
    .ok(200);
    app.post(
        &format!("/v1/conferences/{conf_id}/waiting/{carol_id}/admit"),
        &bob,
        json!({}),
    )
    .await
    .assert_problem(403);
    app.post(
        &format!("/v1/conferences/{conf_id}/waiting/admit-all"),
        &bob,
        json!({}),
    )
    .await
    .assert_problem(403);
    app.get(&format!("/v1/conferences/{conf_id}/waiting"), &bob)
        .await
        .assert_problem(403);
    app.patch(
        &format!("/v1/conferences/{conf_id}"),
        &bob,
        json!({"title": "mine"}),
    )
    .await
    .assert_problem(403);
    app.post(&format!("/v1/conferences/{conf_id}/end"), &bob, json!({}))
        .await
        .assert_problem(403);
    // Team-admin-only operations.
    app.patch(&format!("/v1/teams/{team_id}"), &bob, json!({"name": "x"}))
        .await
        .assert_problem(403);
    app.post(
        &format!("/v1/teams/{team_id}/join-code/rotate"),
        &bob,
        json!({}),
    )
    .await
    .assert_problem(403);
    app.delete(&format!("/v1/teams/{team_id}/members/{carol_id}"), &bob)
        .await
        .assert_problem(403);
    app.get(&format!("/v1/teams/{team_id}/requests"), &bob)
        .await
        .assert_problem(403);

    // Promote bob to conference moderator: now he can admit.
    app.patch(
        &format!("/v1/conferences/{conf_id}"),
        &alice,
        json!({"add_moderators": [bob_id]}),
    )
    .await
    .ok(200);
    app.post(
        &format!("/v1/conferences/{conf_id}/waiting/{carol_id}/admit"),
        &bob,
        json!({}),
    )
    .await
    .ok(200);
}

async fn removed_member_loses_tokens_and_access(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let conf_id = app.conference(&alice, &team_id, false).await;
    let mut events = app.control.bus().subscribe(conf_id.parse().unwrap());

    let join = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    let token = join.ok(200)["token"].as_str().unwrap().to_string();
    app.control.verify_room_token(&token).await.unwrap();

    app.delete(&format!("/v1/teams/{team_id}/members/{bob_id}"), &alice)
        .await
        .ok(204);
    let err = app.control.verify_room_token(&token).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 401);
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, ConferenceEvent::ParticipantRemoved { .. }),
        "{ev:?}"
    );
    app.post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await
        .assert_problem(404);
    app.get(&format!("/v1/teams/{team_id}"), &bob)
        .await
        .assert_problem(404);

    // Re-added, bob gets a fresh token that verifies even within the same second.
    app.post(
        &format!("/v1/teams/{team_id}/members"),
        &alice,
        json!({"email": "bob@example.com"}),
    )
    .await
    .ok(201);
    let join = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    app.control
        .verify_room_token(join.ok(200)["token"].as_str().unwrap())
        .await
        .unwrap();
    // The old one stays dead.
    assert!(app.control.verify_room_token(&token).await.is_err());
}

async fn removed_participant_cannot_rejoin(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let conf_id = app.conference(&alice, &team_id, false).await;
    let join = app
        .post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await;
    let token = join.ok(200)["token"].as_str().unwrap().to_string();
    app.post(
        &format!("/v1/conferences/{conf_id}/participants/{bob_id}/remove"),
        &bob,
        json!({}),
    )
    .await
    .assert_problem(403);
    app.post(
        &format!("/v1/conferences/{conf_id}/participants/{bob_id}/remove"),
        &alice,
        json!({}),
    )
    .await
    .ok(204);
    assert_eq!(
        app.control
            .verify_room_token(&token)
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    app.post(&format!("/v1/conferences/{conf_id}/join"), &bob, json!({}))
        .await
        .assert_problem(403);
    // Still a team member, though.
    app.get(&format!("/v1/teams/{team_id}"), &bob).await.ok(200);
}

async fn bad_input_is_problem_json(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.max_body_bytes = 4096).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let send = |path: &str, body: &'static str, ct: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(&alice)
            .header("content-type", ct)
            .body(body)
    };
    // Malformed JSON, wrong types, missing fields, unknown fields, wrong content type.
    app.raw(send("/v1/teams", "{\"name\": ", "application/json"))
        .await
        .assert_problem(400);
    app.raw(send("/v1/teams", "{\"name\": 42}", "application/json"))
        .await
        .assert_problem(422);
    app.raw(send("/v1/teams", "{}", "application/json"))
        .await
        .assert_problem(422);
    app.raw(send(
        "/v1/teams",
        "{\"name\": \"a\", \"x\": 1}",
        "application/json",
    ))
    .await
    .assert_problem(422);
    app.raw(send("/v1/teams", "{\"name\": \"a\"}", "text/plain"))
        .await
        .assert_problem(415);
    app.raw(send("/v1/auth/register", "[1,2]", "application/json"))
        .await
        .assert_problem(422);
    // Overlong / invalid fields.
    app.post("/v1/teams", &alice, json!({"name": "x".repeat(101)}))
        .await
        .assert_problem(422);
    app.post("/v1/teams", &alice, json!({"name": "   "}))
        .await
        .assert_problem(422);
    let reg = |u: &str, e: &str, p: &str| json!({"username": u, "email": e, "password": p});
    for body in [
        reg("ab", "ab@example.com", "password1"),
        reg(&"u".repeat(33), "u@example.com", "password1"),
        reg("good_name", "not-an-email", "password1"),
        reg("good_name", "g@example.com", "short"),
        reg("good_name", "g@example.com", &"p".repeat(129)),
        reg("bad name!", "g@example.com", "password1"),
    ] {
        app.call(Method::POST, "/v1/auth/register", None, Some(body))
            .await
            .assert_problem(422);
    }
    // Too large.
    let big = json!({"name": "x", "description": "y".repeat(10_000)});
    app.post("/v1/teams", &alice, big).await.assert_problem(413);
    // Unknown ids, invalid UUIDs, unknown routes, wrong methods.
    let unknown = Uuid::new_v4();
    app.get(&format!("/v1/teams/{unknown}"), &alice)
        .await
        .assert_problem(404);
    app.get(&format!("/v1/conferences/{unknown}"), &alice)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/conferences/{unknown}/join"),
        &alice,
        json!({}),
    )
    .await
    .assert_problem(404);
    app.get("/v1/teams/not-a-uuid", &alice)
        .await
        .assert_problem(400);
    app.post("/v1/conferences/123/waiting/xyz/admit", &alice, json!({}))
        .await
        .assert_problem(400);
    app.get("/v1/nope", &alice).await.assert_problem(404);
    app.call(Method::GET, "/nope", None, None)
        .await
        .assert_problem(404);
    app.call(Method::PUT, "/v1/teams", Some(&alice), None)
        .await
        .assert_problem(405);
    app.get("/v1/teams?limit=abc", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/teams?cursor=%25%25", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/users?email=nobody@example.com", &alice)
        .await
        .assert_problem(404);
    app.get("/v1/users", &alice).await.assert_problem(400);
    app.post("/v1/teams/join", &alice, json!({"code": "NOPE"}))
        .await
        .assert_problem(404);
    app.post("/v1/teams/join", &alice, json!({"code": "x".repeat(10_00)}))
        .await
        .assert_problem(404);
    // Conference with a bad date.
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/v1/teams/{team_id}/conferences"),
        &alice,
        json!({"title": "t", "starts_at": "tomorrow"}),
    )
    .await
    .assert_problem(422);
    app.post(
        &format!("/v1/teams/{team_id}/conferences"),
        &alice,
        json!({"title": "t".repeat(201), "starts_at": "2030-01-01T00:00:00Z"}),
    )
    .await
    .assert_problem(422);
    let conf_id = app.conference(&alice, &team_id, true).await;
    app.post(
        &format!("/v1/conferences/{conf_id}/waiting/{unknown}/admit"),
        &alice,
        json!({}),
    )
    .await
    .assert_problem(404);
    app.raw(
        app.client
            .post(app.url(&format!("/v1/conferences/{conf_id}/waiting/{unknown}/deny")))
            .bearer_auth(&alice)
            .body("{oops"),
    )
    .await
    .assert_problem(400);
    app.patch(
        &format!("/v1/teams/{team_id}/members/{unknown}"),
        &alice,
        json!({"role": "owner"}),
    )
    .await
    .assert_problem(422);
    app.patch(
        &format!("/v1/conferences/{conf_id}"),
        &alice,
        json!({"add_moderators": [unknown]}),
    )
    .await
    .assert_problem(422);
    // The error type is stable.
    let r = app.get(&format!("/v1/teams/{unknown}"), &alice).await;
    assert_eq!(r.body["type"], "urn:convene:problem:not-found");
}

async fn pagination_walks_all_items(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.max_page_limit = 3).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let mut created = Vec::new();
    for i in 0..7 {
        let r = app
            .post("/v1/teams", &alice, json!({"name": format!("T{i}")}))
            .await;
        created.push(r.ok(201)["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/teams?limit=100".to_string(),
            Some(c) => format!("/v1/teams?limit=100&cursor={c}"),
        };
        let r = app.get(&path, &alice).await;
        let items = r.ok(200)["items"].as_array().unwrap().clone();
        assert!(items.len() <= 3, "limit is capped");
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut a = created.clone();
    a.sort();
    let mut b = seen.clone();
    b.sort();
    assert_eq!(a, b, "every team exactly once");

    let r = app.get("/v1/teams?limit=2", &alice).await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 2);
    // Members and conferences paginate the same way.
    let team_id = &created[0];
    for _ in 0..4 {
        app.conference(&alice, team_id, false).await;
    }
    let r = app
        .get(&format!("/v1/teams/{team_id}/conferences?limit=3"), &alice)
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 3);
    let c = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = app
        .get(
            &format!("/v1/teams/{team_id}/conferences?limit=3&cursor={c}"),
            &alice,
        )
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 1);
    assert!(r.body["next_cursor"].is_null());
    let r = app
        .get(&format!("/v1/teams/{team_id}/members"), &alice)
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 1);
}

async fn conflicts_and_last_admin(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let dup = |u: &str, e: &str| json!({"username": u, "email": e, "password": "password1"});
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(dup("ALICE", "other@example.com")),
    )
    .await
    .assert_problem(409);
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(dup("other", "Alice@Example.com")),
    )
    .await
    .assert_problem(409);

    let team_id = app.team_with_member(&alice, &bob).await;
    app.post(
        &format!("/v1/teams/{team_id}/members"),
        &alice,
        json!({"email": "bob@example.com"}),
    )
    .await
    .assert_problem(409);
    // The only admin can neither leave nor be demoted.
    let r = app
        .delete(&format!("/v1/teams/{team_id}/members/{alice_id}"), &alice)
        .await;
    r.assert_problem(409);
    assert_eq!(r.body["type"], "urn:convene:problem:last-admin");
    app.patch(
        &format!("/v1/teams/{team_id}/members/{alice_id}"),
        &alice,
        json!({"role": "member"}),
    )
    .await
    .assert_problem(409);
    // With a second admin both work.
    let r = app
        .patch(
            &format!("/v1/teams/{team_id}/members/{bob_id}"),
            &alice,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.ok(200)["role"], "admin");
    app.delete(&format!("/v1/teams/{team_id}/members/{alice_id}"), &alice)
        .await
        .ok(204);
    app.get(&format!("/v1/teams/{team_id}"), &alice)
        .await
        .assert_problem(404);
    let t = app.get(&format!("/v1/teams/{team_id}"), &bob).await;
    assert!(t.ok(200)["join_code"].is_string());
    // Rotating the join code kills the old one.
    let old = t.body["join_code"].as_str().unwrap().to_string();
    let rotated = app
        .post(
            &format!("/v1/teams/{team_id}/join-code/rotate"),
            &bob,
            json!({}),
        )
        .await;
    assert_ne!(rotated.ok(200)["join_code"].as_str().unwrap(), old);
    app.post("/v1/teams/join", &alice, json!({"code": old}))
        .await
        .assert_problem(404);
    // Rename, then delete.
    let r = app
        .patch(
            &format!("/v1/teams/{team_id}"),
            &bob,
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(r.ok(200)["name"], "Renamed");
    app.delete(&format!("/v1/teams/{team_id}"), &bob)
        .await
        .ok(204);
    app.get(&format!("/v1/teams/{team_id}"), &bob)
        .await
        .assert_problem(404);
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

async fn waiting_hall_details(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let (carol, carol_id) = app.user("carol").await;
    let (dave, dave_id) = app.user("dave").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    for email in ["carol@example.com", "dave@example.com"] {
        app.post(
            &format!("/v1/teams/{team_id}/members"),
            &alice,
            json!({"email": email}),
        )
        .await
        .ok(201);
    }
    let conf_id = app.conference(&alice, &team_id, true).await;
    let conf: Uuid = conf_id.parse().unwrap();
    let mut events = app.control.bus().subscribe(conf);

    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["position"], 1);
    assert_eq!(app.join(&conf_id, &carol).await.ok(200)["position"], 2);
    let dave_join = app.join(&conf_id, &dave).await;
    assert_eq!(dave_join.ok(200)["position"], 3);
    let dave_waiting_token = dave_join.body["token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        events.recv().await.unwrap();
    }

    // Bob leaves: carol moves up; bob re-entering goes to the back.
    app.post(
        &format!("/v1/conferences/{conf_id}/waiting/leave"),
        &bob,
        json!({}),
    )
    .await
    .ok(204);
    assert!(matches!(
        events.recv().await.unwrap(),
        ConferenceEvent::WaitingLeft { .. }
    ));
    let list = app
        .get(&format!("/v1/conferences/{conf_id}/waiting"), &alice)
        .await;
    let entries = list.ok(200).as_array().unwrap().clone();
    let pos = |uid: &str| entries.iter().find(|e| e["user_id"] == uid).unwrap()["position"].clone();
    assert_eq!(pos(&carol_id), 1);
    assert_eq!(pos(&bob_id), serde_json::Value::Null);
    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["position"], 3);
    events.recv().await.unwrap();

    // Deny dave: his waiting token is revoked, a new join is 403.
    let denied = app
        .post(
            &format!("/v1/conferences/{conf_id}/waiting/{dave_id}/deny"),
            &alice,
            json!({"reason": "not today"}),
        )
        .await;
    assert_eq!(denied.ok(200)["status"], "denied");
    assert_eq!(denied.body["reason"], "not today");
    match events.recv().await.unwrap() {
        ConferenceEvent::WaitingDenied { reason, .. } => {
            assert_eq!(reason.as_deref(), Some("not today"))
        }
        other => panic!("{other:?}"),
    }
    assert!(app
        .control
        .verify_room_token(&dave_waiting_token)
        .await
        .is_err());
    let r = app.join(&conf_id, &dave).await;
    r.assert_problem(403);
    assert!(r.body["detail"].as_str().unwrap().contains("not today"));

    // Admit all: carol and bob.
    let all = app
        .post(
            &format!("/v1/conferences/{conf_id}/waiting/admit-all"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(all.ok(200).as_array().unwrap().len(), 2);
    let mut admitted = Vec::new();
    for _ in 0..2 {
        match events.recv().await.unwrap() {
            ConferenceEvent::WaitingAdmitted { user_id, .. } => admitted.push(user_id.to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, vec![carol_id.clone(), bob_id.clone()]);
    assert_eq!(app.join(&conf_id, &carol).await.ok(200)["waiting"], false);

    // Turning the hall off admits whoever still waits and publishes an update.
    let conf2 = app.conference(&alice, &team_id, true).await;
    let mut ev2 = app.control.bus().subscribe(conf2.parse().unwrap());
    app.post(&format!("/v1/conferences/{conf2}/join"), &bob, json!({}))
        .await
        .ok(200);
    ev2.recv().await.unwrap();
    let r = app
        .patch(
            &format!("/v1/conferences/{conf2}"),
            &alice,
            json!({"waiting_hall": false, "title": "Open"}),
        )
        .await;
    assert_eq!(r.ok(200)["waiting_hall"], false);
    assert!(matches!(
        ev2.recv().await.unwrap(),
        ConferenceEvent::WaitingAdmitted { .. }
    ));
    assert!(matches!(
        ev2.recv().await.unwrap(),
        ConferenceEvent::ConferenceUpdated { .. }
    ));
    // A conference keeps at least one moderator.
    let alice_id = app.get("/v1/users/me", &alice).await.ok(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.patch(
        &format!("/v1/conferences/{conf2}"),
        &alice,
        json!({"remove_moderators": [alice_id]}),
    )
    .await
    .assert_problem(409);
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

async fn ops_endpoints(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await
    else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    app.get(&format!("/v1/teams/{team_id}"), &alice)
        .await
        .ok(200);
    app.get("/definitely/unknown", &alice)
        .await
        .assert_problem(404);

    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        200
    );
    let m = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains("convene_http_requests_total"), "{}", m.text);
    assert!(m.text.contains("route=\"/v1/teams/{id}\""), "{}", m.text);
    assert!(!m.text.contains(&team_id), "raw ids must not be labels");
    assert!(m.text.contains("route=\"unmatched\""));
    assert!(m
        .text
        .contains("convene_http_request_duration_seconds_bucket"));

    let spec = app.call(Method::GET, "/openapi.json", None, None).await;
    let paths = spec.ok(200)["paths"].as_object().unwrap();
    for p in [
        "/v1/auth/register",
        "/v1/teams/{id}/members/{user_id}",
        "/v1/conferences/{id}/join",
        "/v1/conferences/{id}/waiting/{user_id}/admit",
        "/v1/internal/tokens/verify",
        "/v1/internal/conferences/{id}/waiting/{user_id}/admit",
        "/v1/internal/users/authenticate",
        "/v1/internal/users/{user_id}/chats/{chat_id}/messages",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }

    // CORS preflight from an allowed origin.
    let pre = app
        .raw(
            app.client
                .request(Method::OPTIONS, app.url("/v1/teams"))
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
    assert_eq!(
        pre.headers["access-control-allow-origin"].to_str().unwrap(),
        "https://app.example"
    );

    // readyz turns 503 once the database is gone.
    app.control.close().await;
    app.call(Method::GET, "/readyz", None, None)
        .await
        .assert_problem(503);
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

/// A waiter whose signaling node stopped sending heartbeats leaves the hall
/// (no ghost waiters), with the usual event so moderators' lists update.
async fn waiters_without_heartbeat_expire(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.waiting_ttl_secs = 1).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let conf_id = app.conference(&alice, &team_id, true).await;
    let conf: Uuid = conf_id.parse().unwrap();
    let bob_uuid: Uuid = bob_id.parse().unwrap();
    let mut events = app.control.bus().subscribe(conf);
    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["position"], 1);
    assert!(matches!(
        events.recv().await.unwrap(),
        ConferenceEvent::WaitingJoined { .. }
    ));
    // A heartbeat answers with the queue position while the entry lives.
    assert_eq!(
        app.control.touch_waiting(conf, bob_uuid).await.unwrap(),
        Some(1)
    );

    let left = tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("the sweeper expires the waiter")
        .unwrap();
    assert_eq!(
        left,
        ConferenceEvent::WaitingLeft {
            conference_id: conf,
            user_id: bob_uuid
        }
    );
    let list = app
        .get(&format!("/v1/conferences/{conf_id}/waiting"), &alice)
        .await;
    let entry = list.ok(200).as_array().unwrap()[0].clone();
    assert_eq!(entry["status"], "left");
    assert_eq!(entry["position"], serde_json::Value::Null);
    assert_eq!(
        app.control.touch_waiting(conf, bob_uuid).await.unwrap(),
        None
    );
}
