//! The REST API as HTTP: problem+json for bad input, cursor pagination,
//! conflicts and the last team admin, and the ops endpoints (health,
//! metrics, OpenAPI, CORS); run against SQLite and PostgreSQL alike.

use convene_testkit::{both_backends, Backend, TestApp};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

both_backends!(
    bad_input_is_problem_json,
    pagination_walks_all_items,
    conflicts_and_last_admin,
    ops_endpoints,
);

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
