//! A role change takes effect on room tokens already issued: a demoted
//! moderator (or a team admin made a member) who rejoins with the old token
//! is no moderator, and a promoted one is, without waiting for expiry.

use convene_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

both_backends!(
    verified_grants_follow_the_current_roles,
    the_join_answer_says_who_moderates
);

/// The grants the internal API's token check returns for `token`.
async fn verified_grants(app: &TestApp, token: &str) -> Value {
    let req = app
        .client
        .post(app.url("/v1/internal/tokens/verify"))
        .header("x-convene-internal-secret", "test-internal-secret")
        .json(&json!({ "token": token }));
    app.raw(req).await.ok(200)["grants"].clone()
}

async fn verified_grants_follow_the_current_roles(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team = app.team_with_member(&alice, &bob).await;
    let conf = app.conference(&alice, &team, false).await;
    let promote = |add: bool| {
        let key = if add {
            "add_moderators"
        } else {
            "remove_moderators"
        };
        json!({ key: [bob_id.clone()] })
    };
    app.patch(&format!("/v1/conferences/{conf}"), &alice, promote(true))
        .await
        .ok(200);
    let token = app.join(&conf, &bob).await.ok(200)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(verified_grants(&app, &token).await["moderator"], true);

    // Demoted: the same token no longer carries moderator rights...
    app.patch(&format!("/v1/conferences/{conf}"), &alice, promote(false))
        .await
        .ok(200);
    let grants = verified_grants(&app, &token).await;
    assert_eq!(grants["moderator"], false);
    assert_eq!(grants["can_publish"], true, "still a participant: {grants}");
    // ...and promoted again, it does at once.
    app.patch(&format!("/v1/conferences/{conf}"), &alice, promote(true))
        .await
        .ok(200);
    assert_eq!(verified_grants(&app, &token).await["moderator"], true);
    app.patch(&format!("/v1/conferences/{conf}"), &alice, promote(false))
        .await
        .ok(200);

    // A team admin moderates every conference of the team, until demoted.
    app.patch(
        &format!("/v1/teams/{team}/members/{bob_id}"),
        &alice,
        json!({"role": "admin"}),
    )
    .await
    .ok(200);
    assert_eq!(verified_grants(&app, &token).await["moderator"], true);
    app.patch(
        &format!("/v1/teams/{team}/members/{bob_id}"),
        &alice,
        json!({"role": "member"}),
    )
    .await
    .ok(200);
    assert_eq!(verified_grants(&app, &token).await["moderator"], false);
}

/// Team admins moderate every conference of their team without being named
/// in its moderators; the join answer tells the client so (the web client
/// used to decide from the named moderators alone).
async fn the_join_answer_says_who_moderates(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let (carol, _) = app.user("carol").await;
    let team = app.team_with_member(&alice, &bob).await;
    app.patch(
        &format!("/v1/teams/{team}/members/{bob_id}"),
        &alice,
        json!({"role": "admin"}),
    )
    .await
    .ok(200);
    let code = app.get(&format!("/v1/teams/{team}"), &alice).await.ok(200)["join_code"].clone();
    let req = app
        .post("/v1/teams/join", &carol, json!({"code": code}))
        .await;
    let req_id = req.ok(202)["request"]["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/v1/teams/{team}/requests/{req_id}/accept"),
        &alice,
        json!({}),
    )
    .await
    .ok(200);
    let conf = app.conference(&alice, &team, false).await;
    let moderators = app
        .get(&format!("/v1/conferences/{conf}"), &alice)
        .await
        .ok(200)["moderators"]
        .clone();
    assert!(
        !moderators.to_string().contains(&bob_id),
        "bob is not named: {moderators}"
    );
    assert_eq!(app.join(&conf, &alice).await.ok(200)["moderator"], true);
    assert_eq!(app.join(&conf, &bob).await.ok(200)["moderator"], true);
    assert_eq!(app.join(&conf, &carol).await.ok(200)["moderator"], false);
}
