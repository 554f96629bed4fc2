//! Chats over real HTTP: direct and group chats, membership (who may add,
//! remove and leave; the member limit), the chat list, and problem+json for
//! bad posts, messages and queries, on SQLite and PostgreSQL alike.

mod common;

use std::collections::HashSet;

use common::{id, new_chat, send, walk};
use convene_testkit::{both_backends, Backend, TestApp};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

both_backends!(chat_membership_rules, collab_bad_input_is_problem_json,);

async fn chat_membership_rules(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.chat_max_members = 4;
        c.max_page_limit = 2;
    })
    .await
    else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let (carol, carol_id) = app.user("carol").await;
    let (_dave, _) = app.user("dave").await;
    let (erin, _) = app.user("erin").await;

    // Direct chats: one per pair, whoever creates it.
    let direct = app
        .post(
            "/v1/chats",
            &alice,
            json!({"member_emails": ["bob@example.com"]}),
        )
        .await;
    let direct_id = id(direct.ok(201));
    assert_eq!(direct.body["kind"], "direct");
    let again = app
        .post(
            "/v1/chats",
            &bob,
            json!({"member_emails": ["ALICE@example.com"]}),
        )
        .await;
    assert_eq!(again.ok(200)["id"], direct_id.as_str());
    app.post(
        &format!("/v1/chats/{direct_id}/members"),
        &alice,
        json!({"email": "carol@example.com"}),
    )
    .await
    .assert_problem(409);
    app.delete(&format!("/v1/chats/{direct_id}/members/{bob_id}"), &bob)
        .await
        .assert_problem(409);

    // Unknown or invalid member emails: 422 naming the address.
    let r = app
        .post(
            "/v1/chats",
            &alice,
            json!({"title": "G", "member_emails": ["nobody@example.com"]}),
        )
        .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("nobody@example.com"),
        "{}",
        r.text
    );
    app.post(
        "/v1/chats",
        &alice,
        json!({"title": "G", "member_emails": ["not-an-email"]}),
    )
    .await
    .assert_problem(422);
    // Nobody to talk to and no title.
    app.post(
        "/v1/chats",
        &alice,
        json!({"member_emails": ["alice@example.com"]}),
    )
    .await
    .assert_problem(422);
    // Over the member limit (creator included).
    app.post(
        "/v1/chats",
        &alice,
        json!({"title": "Big", "member_emails": ["bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com"]}),
    )
    .await
    .assert_problem(422);

    // Group chat: creator + bob (duplicates and self ignored).
    let r = app
        .post(
            "/v1/chats",
            &alice,
            json!({"title": "Group", "member_emails": ["bob@example.com", "Bob@Example.com", "alice@example.com"]}),
        )
        .await;
    let group = id(r.ok(201));
    assert_eq!(r.body["kind"], "group");
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["created_by"], alice_id.as_str());
    send(&app, &alice, &group, "before carol", "a1").await;

    // Any member adds; new members see history but nothing unread.
    let r = app
        .post(
            &format!("/v1/chats/{group}/members"),
            &bob,
            json!({"email": "carol@example.com"}),
        )
        .await;
    assert_eq!(r.ok(201)["user_id"], carol_id.as_str());
    assert_eq!(r.body["last_read_seq"], 1);
    let c = app.get(&format!("/v1/chats/{group}"), &carol).await;
    assert_eq!(c.ok(200)["unread_count"], 0);
    assert_eq!(c.body["last_message"]["text"], "before carol");
    app.post(
        &format!("/v1/chats/{group}/members"),
        &bob,
        json!({"email": "carol@example.com"}),
    )
    .await
    .assert_problem(409);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &bob,
        json!({"email": "ghost@example.com"}),
    )
    .await
    .assert_problem(404);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &erin,
        json!({"email": "erin@example.com"}),
    )
    .await
    .assert_problem(404);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &alice,
        json!({"email": "dave@example.com"}),
    )
    .await
    .ok(201);
    // Full at 4.
    app.post(
        &format!("/v1/chats/{group}/members"),
        &alice,
        json!({"email": "erin@example.com"}),
    )
    .await
    .assert_problem(409);

    // Only the creator removes others; anyone may leave.
    app.delete(&format!("/v1/chats/{group}/members/{carol_id}"), &bob)
        .await
        .assert_problem(403);
    app.delete(&format!("/v1/chats/{group}/members/{carol_id}"), &alice)
        .await
        .ok(204);
    app.get(&format!("/v1/chats/{group}"), &carol)
        .await
        .assert_problem(404);
    app.delete(&format!("/v1/chats/{group}/members/{bob_id}"), &bob)
        .await
        .ok(204);
    app.post(
        &format!("/v1/chats/{group}/messages"),
        &bob,
        json!({"text": "x", "client_id": "b"}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("/v1/chats/{group}/members/{bob_id}"), &alice)
        .await
        .assert_problem(404);

    // The chat list paginates (max page 2 here) and only shows my chats.
    new_chat(&app, &alice, "Third", &[]).await;
    let (seen, pages) = walk(&app, "/v1/chats", &alice).await;
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 3);
    let (seen, _) = walk(&app, "/v1/chats", &carol).await;
    assert!(seen.is_empty());
}

async fn collab_bad_input_is_problem_json(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.message_max_chars = 10;
        c.post_title_max_chars = 5;
    })
    .await
    else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let chat_id = new_chat(&app, &alice, "", &["bob"]).await;
    let msgs = format!("/v1/chats/{chat_id}/messages");
    let posts = format!("/v1/teams/{team_id}/posts");

    for body in [
        json!({"text": "", "client_id": "a"}),
        json!({"text": "   ", "client_id": "a"}),
        json!({"text": "x".repeat(11), "client_id": "a"}),
        json!({"text": "ok", "client_id": ""}),
        json!({"text": "ok", "client_id": "c".repeat(65)}),
        json!({"text": "ok"}),
        json!({"text": 5, "client_id": "a"}),
        json!({"text": "ok", "client_id": "a", "extra": 1}),
        json!({"text": "bell\u{7}", "client_id": "a"}),
    ] {
        app.post(&msgs, &alice, body).await.assert_problem(422);
    }
    // Line breaks of any platform are fine.
    send(&app, &alice, &chat_id, "a\r\nb", "crlf").await;
    for body in [
        json!({"title": ""}),
        json!({"title": "toolong"}),
        json!({"body": "no title"}),
    ] {
        app.post(&posts, &alice, body).await.assert_problem(422);
    }
    app.raw(
        app.client
            .post(app.url(&posts))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body("{\"title\": "),
    )
    .await
    .assert_problem(400);
    app.raw(
        app.client
            .post(app.url(&msgs))
            .bearer_auth(&alice)
            .header("content-type", "text/plain")
            .body("hi"),
    )
    .await
    .assert_problem(415);

    // Query parameters.
    for q in [
        "before=1&after_seq=1",
        "before=abc",
        "after_seq=1.5",
        "limit=-1",
    ] {
        app.get(&format!("{msgs}?{q}"), &alice)
            .await
            .assert_problem(400);
    }
    app.get(&format!("{posts}?cursor=%%%"), &alice)
        .await
        .assert_problem(400);
    app.get("/v1/chats?cursor=bm9wZQ", &alice)
        .await
        .assert_problem(400);
    // Bad and unknown ids.
    app.get("/v1/posts/not-a-uuid", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/chats/not-a-uuid/messages", &alice)
        .await
        .assert_problem(400);
    app.get(&format!("/v1/posts/{}", Uuid::new_v4()), &alice)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/chats/{chat_id}/read"),
        &alice,
        json!({"up_to_message_id": "nope"}),
    )
    .await
    .assert_problem(422);
    app.post(
        &format!("/v1/chats/{chat_id}/read"),
        &alice,
        json!({"up_to_message_id": Uuid::new_v4()}),
    )
    .await
    .assert_problem(404);
    // No token.
    app.call(Method::GET, "/v1/chats", None, None)
        .await
        .assert_problem(401);
    // Wrong method.
    app.call(Method::PUT, &msgs, Some(&alice), Some(json!({})))
        .await
        .assert_problem(405);

    // Every new route is documented.
    let doc = app.call(Method::GET, "/openapi.json", None, None).await;
    let paths = doc.ok(200)["paths"].as_object().unwrap();
    for p in [
        "/v1/teams/{id}/posts",
        "/v1/posts/{id}",
        "/v1/posts/{id}/comments",
        "/v1/comments/{id}",
        "/v1/chats",
        "/v1/chats/{id}",
        "/v1/chats/{id}/members",
        "/v1/chats/{id}/members/{user_id}",
        "/v1/chats/{id}/messages",
        "/v1/chats/{id}/read",
        "/v1/messages/{id}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["schemas"]["ChatEvent"].is_object());
}
