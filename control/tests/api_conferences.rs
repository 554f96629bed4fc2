//! Conferences over the REST API, end to end over real HTTP: the whole
//! flow from team to ended conference, the waiting hall (queue positions,
//! leave, deny, admit-all, turning the hall off) and waiters that expire
//! without heartbeats; run against SQLite and PostgreSQL alike.

use std::time::Duration;

use convene_control::ConferenceEvent;
use convene_testkit::{both_backends, Backend, TestApp};
use serde_json::json;
use uuid::Uuid;

both_backends!(
    full_flow,
    waiting_hall_details,
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
