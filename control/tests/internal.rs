//! The internal API a signaling service in another process uses
//! (`/v1/internal/conferences/...`): secret checks and the waiting-hall flow.

use convene_testkit::{both_backends, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    internal_endpoints_need_the_secret,
    internal_endpoints_take_a_bearer_secret,
    internal_waiting_hall_flow
);

const SECRET: &str = "test-internal-secret";

/// Calls of the internal API, on top of the test kit's REST client.
trait Internal {
    async fn internal(
        &self,
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: Option<Value>,
    ) -> Resp;
    async fn ipost(&self, path: &str, body: Option<Value>) -> Resp;
}

impl Internal for TestApp {
    async fn internal(
        &self,
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(s) = secret {
            req = req.header("x-convene-internal-secret", s);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.raw(req).await
    }

    async fn ipost(&self, path: &str, body: Option<Value>) -> Resp {
        self.internal(Method::POST, path, Some(SECRET), body).await
    }
}

async fn internal_endpoints_need_the_secret(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (_bob, bob_id) = app.user("bob").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    let conf = app.conference(&alice, &team_id, true).await;
    let base = format!("/v1/internal/conferences/{conf}");
    let moderator = json!({"moderator_id": alice_id});
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/waiting"), None),
        (Method::POST, format!("{base}/waiting/{bob_id}/touch"), None),
        (Method::POST, format!("{base}/waiting/{bob_id}/leave"), None),
        (
            Method::POST,
            format!("{base}/waiting/{bob_id}/admit"),
            Some(moderator.clone()),
        ),
        (
            Method::POST,
            format!("{base}/waiting/{bob_id}/deny"),
            Some(json!({"moderator_id": alice_id, "reason": "no"})),
        ),
        (
            Method::POST,
            format!("{base}/waiting/admit-all"),
            Some(moderator.clone()),
        ),
        (
            Method::POST,
            format!("{base}/participants/{bob_id}/move-to-waiting"),
            Some(moderator.clone()),
        ),
        (
            Method::POST,
            format!("{base}/participants/{bob_id}/remove"),
            Some(moderator.clone()),
        ),
        (
            Method::POST,
            format!("{base}/participants/{alice_id}/room-token"),
            None,
        ),
        (Method::POST, format!("{base}/end"), Some(moderator.clone())),
    ];
    for (method, path, body) in &calls {
        for secret in [None, Some("wrong"), Some("")] {
            let r = app
                .internal(method.clone(), path, secret, body.clone())
                .await;
            r.assert_problem(401);
            assert_eq!(
                r.body["type"], "urn:convene:problem:unauthorized",
                "{method} {path} with {secret:?}"
            );
        }
    }
    // Nothing happened: the conference still runs and alice gets a token.
    let r = app
        .ipost(&format!("{base}/participants/{alice_id}/room-token"), None)
        .await;
    assert!(r.ok(200)["token"].is_string());

    // Without a configured secret the internal API is off altogether.
    let Some(off) = TestApp::start_with(backend, |c| c.internal_secret = None).await else {
        return;
    };
    off.internal(Method::GET, &format!("{base}/waiting"), Some(SECRET), None)
        .await
        .assert_problem(403);
}

/// `Authorization: Bearer <secret>` is the convention; the legacy header
/// above still works for one release. A wrong or missing bearer secret is
/// 401 problem+json on every internal route, and the route does nothing.
async fn internal_endpoints_take_a_bearer_secret(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let team = app.post("/v1/teams", &alice, json!({"name": "A"})).await;
    let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
    let conf = app.conference(&alice, &team_id, false).await;
    let chat = app
        .post(
            "/v1/chats",
            &alice,
            json!({"title": "c", "member_emails": []}),
        )
        .await;
    let chat_id = chat.ok(201)["id"].as_str().unwrap().to_string();
    let conf_base = format!("/v1/internal/conferences/{conf}");
    let user_base = format!("/v1/internal/users/{alice_id}");
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{conf_base}/waiting"), None),
        (
            Method::POST,
            format!("{conf_base}/participants/{alice_id}/room-token"),
            None,
        ),
        (
            Method::POST,
            "/v1/internal/users/authenticate".into(),
            Some(json!({"access_token": alice})),
        ),
        (Method::GET, format!("{user_base}/chats"), None),
        (Method::GET, format!("{user_base}/chats/{chat_id}"), None),
        (
            Method::GET,
            format!("{user_base}/chats/{chat_id}/messages?after_seq=0&limit=10"),
            None,
        ),
    ];
    let with_authorization = |method: &Method, path: &str, value: Option<String>, body| {
        let mut req = app.client.request(method.clone(), app.url(path));
        if let Some(v) = value {
            req = req.header("authorization", v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req
    };
    for (method, path, body) in &calls {
        for value in [
            None,
            Some("Bearer wrong".to_string()),
            Some("Bearer ".to_string()),
            Some(format!("Bearer {SECRET}x")),
            Some(SECRET.to_string()),
            Some(format!("Basic {SECRET}")),
        ] {
            let r = app
                .raw(with_authorization(
                    method,
                    path,
                    value.clone(),
                    body.clone(),
                ))
                .await;
            r.assert_problem(401);
            assert_eq!(
                r.body["type"], "urn:convene:problem:unauthorized",
                "{method} {path} with {value:?}"
            );
        }
        let ok = app
            .raw(with_authorization(
                method,
                path,
                Some(format!("Bearer {SECRET}")),
                body.clone(),
            ))
            .await;
        ok.ok(200);
    }
}

async fn internal_waiting_hall_flow(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let conf = app.conference(&alice, &team_id, true).await;
    let base = format!("/v1/internal/conferences/{conf}");
    let as_alice = || Some(json!({"moderator_id": alice_id}));
    let as_bob = || Some(json!({"moderator_id": bob_id}));

    // bob knocks through the REST API.
    assert_eq!(app.join(&conf, &bob).await.ok(200)["waiting"], true);
    let list = app
        .internal(Method::GET, &format!("{base}/waiting"), Some(SECRET), None)
        .await;
    let list = list.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user_id"], bob_id.as_str());
    assert_eq!(list[0]["position"], 1);
    let touch = |user: &str| format!("{base}/waiting/{user}/touch");
    assert_eq!(
        app.ipost(&touch(&bob_id), None).await.ok(200)["position"],
        1
    );
    assert!(app.ipost(&touch(&alice_id), None).await.ok(200)["position"].is_null());

    // Still waiting: no room token yet.
    let token_path = format!("{base}/participants/{bob_id}/room-token");
    app.ipost(&token_path, None).await.assert_problem(403);

    // Moderation is checked against the named moderator.
    app.ipost(&format!("{base}/waiting/{bob_id}/admit"), as_bob())
        .await
        .assert_problem(403);
    let admitted = app
        .ipost(&format!("{base}/waiting/{bob_id}/admit"), as_alice())
        .await;
    assert_eq!(admitted.ok(200)["status"], "admitted");
    let token = app.ipost(&token_path, None).await;
    let token = token.ok(200)["token"].as_str().unwrap().to_string();
    let claims = app
        .ipost("/v1/internal/tokens/verify", Some(json!({"token": token})))
        .await;
    assert_eq!(claims.ok(200)["sub"], bob_id.as_str());
    assert_eq!(claims.body["grants"]["waiting"], false);

    // Back to the waiting hall, then out of it by leaving.
    let moved = app
        .ipost(
            &format!("{base}/participants/{bob_id}/move-to-waiting"),
            as_alice(),
        )
        .await;
    assert_eq!(moved.ok(200)["status"], "waiting");
    assert_eq!(
        app.ipost(&touch(&bob_id), None).await.ok(200)["position"],
        1
    );
    let left = app
        .ipost(&format!("{base}/waiting/{bob_id}/leave"), None)
        .await;
    assert_eq!(left.status.as_u16(), 204, "{}", left.text);
    assert!(app.ipost(&touch(&bob_id), None).await.ok(200)["position"].is_null());

    // Knock again; admit everyone.
    assert_eq!(app.join(&conf, &bob).await.ok(200)["waiting"], true);
    let all = app
        .ipost(&format!("{base}/waiting/admit-all"), as_alice())
        .await;
    assert_eq!(all.ok(200).as_array().unwrap().len(), 1);

    // Denied: no token, not even through the REST join.
    app.ipost(
        &format!("{base}/participants/{bob_id}/move-to-waiting"),
        as_alice(),
    )
    .await
    .ok(200);
    let denied = app
        .ipost(
            &format!("{base}/waiting/{bob_id}/deny"),
            Some(json!({"moderator_id": alice_id, "reason": "not today"})),
        )
        .await;
    assert_eq!(denied.ok(200)["status"], "denied");
    assert_eq!(denied.body["reason"], "not today");
    app.ipost(&token_path, None).await.assert_problem(403);

    // Removal and the end of the conference.
    let removed = app
        .ipost(&format!("{base}/participants/{bob_id}/remove"), as_alice())
        .await;
    assert_eq!(removed.status.as_u16(), 204, "{}", removed.text);
    app.ipost(&format!("{base}/end"), as_bob())
        .await
        .assert_problem(403);
    let ended = app.ipost(&format!("{base}/end"), as_alice()).await;
    assert_eq!(ended.status.as_u16(), 204, "{}", ended.text);
    let r = app
        .ipost(&format!("{base}/participants/{alice_id}/room-token"), None)
        .await;
    r.assert_problem(409);
    assert_eq!(r.body["type"], "urn:convene:problem:conference-ended");

    // Unknown ids are problems too.
    let nobody = uuid::Uuid::new_v4();
    app.ipost(
        &format!("{base}/waiting/{nobody}/deny"),
        Some(json!({"moderator_id": alice_id})),
    )
    .await
    .assert_problem(404);
}
