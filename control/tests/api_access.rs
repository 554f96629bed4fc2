//! Who may see and do what over the REST API: other teams' conferences are
//! invisible, members cannot moderate, and removed members and participants
//! lose their tokens and their way back in; run against SQLite and PostgreSQL alike.

use std::time::Duration;

use convene_control::ConferenceEvent;
use convene_testkit::{both_backends, Backend, TestApp};
use serde_json::json;

both_backends!(
    other_team_conference_is_invisible,
    member_cannot_moderate,
    removed_member_loses_tokens_and_access,
    removed_participant_cannot_rejoin,
);

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
