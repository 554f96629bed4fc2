//! State that must outlive a process (waiting hall on disk) and state shared
//! between processes through Redis (event bus, membership cache).

use std::time::Duration;

use convene_control::{Actor, ConferenceEvent, Control, ControlConfig};
use convene_testkit::{redis_available, Backend, TestApp, TestDb};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_entry_survives_restart() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (alice, _) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let conf_id = app.conference(&alice, &team_id, true).await;
    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["waiting"], true);
    let alice_id = app.get("/v1/users/me", &alice).await.ok(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = app.stop().await;

    // A new control plane on the same file sees the same queue.
    let config = ControlConfig::for_tests(db.url.clone());
    let app = TestApp::serve(db, config).await;
    let list = app
        .get(&format!("/v1/conferences/{conf_id}/waiting"), &alice)
        .await;
    let entries = list.ok(200).as_array().unwrap().clone();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["user_id"], bob_id.as_str());
    assert_eq!(entries[0]["status"], "waiting");

    // Rejoining after the restart still does not duplicate the entry.
    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["position"], 1);
    // The service layer works in-process on the same state.
    let actor = app.control.actor(alice_id.parse().unwrap()).await.unwrap();
    let conf: Uuid = conf_id.parse().unwrap();
    assert_eq!(
        app.control.list_waiting(&actor, conf).await.unwrap().len(),
        1
    );
    app.control
        .admit(&actor, conf, bob_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(app.join(&conf_id, &bob).await.ok(200)["waiting"], false);
}

/// Two control planes sharing a database and a Redis, like two replicas.
async fn two_replicas() -> Option<(TestApp, TestApp)> {
    let redis = redis_available().await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let mut config = ControlConfig::for_tests(db.url.clone());
    config.redis_url = Some(redis);
    let b_config = config.clone();
    let a = TestApp::serve(db, config).await;
    let b = {
        // The second replica borrows the first one's database.
        let control = Control::start(b_config).await.expect("second replica");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = control.router();
        tokio::spawn(convene_control::serve(
            listener,
            router,
            std::future::pending(),
        ));
        TestApp::attach(control, base)
    };
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_delivers_across_instances() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    assert!(a.control.bus().is_redis());
    let (alice, alice_id) = a.user("alice").await;
    let (bob, bob_id) = a.user("bob").await;
    let team_id = a.team_with_member(&alice, &bob).await;
    let conf_id = a.conference(&alice, &team_id, true).await;
    let conf: Uuid = conf_id.parse().unwrap();

    // Subscribed on B, changes made through A.
    let mut on_b = b.control.bus().subscribe(conf);
    let mut on_a = a.control.bus().subscribe(conf);
    a.join(&conf_id, &bob).await.ok(200);
    let ev = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        ConferenceEvent::WaitingJoined {
            conference_id: conf,
            user_id: bob_id.parse().unwrap(),
            username: "bob".into(),
            position: 1
        }
    );
    // Exactly once locally too (no double delivery through Redis).
    let ev_a = tokio::time::timeout(Duration::from_secs(5), on_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev_a, ev);

    // And the other way round, through the service layer on B.
    let actor = Actor::new(alice_id.parse().unwrap(), "alice");
    b.control
        .admit(&actor, conf, bob_id.parse().unwrap())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), on_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, ConferenceEvent::WaitingAdmitted { .. }));
    let extra = tokio::time::timeout(Duration::from_millis(300), on_a.recv()).await;
    assert!(extra.is_err(), "unexpected {extra:?}");
    let ev = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, ConferenceEvent::WaitingAdmitted { .. }));

    // Other conferences' events do not leak in.
    let other: Uuid = a.conference(&alice, &team_id, false).await.parse().unwrap();
    b.control
        .bus()
        .publish(&ConferenceEvent::ConferenceEnded {
            conference_id: other,
        })
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), on_b.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_membership_cache_invalidates() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let (alice, _) = a.user("alice").await;
    let (bob, bob_id) = a.user("bob").await;
    let team_id = a.team_with_member(&alice, &bob).await;

    // Warm the cache on both replicas.
    a.get(&format!("/v1/teams/{team_id}"), &bob).await.ok(200);
    b.get(&format!("/v1/teams/{team_id}"), &bob).await.ok(200);
    let team: Uuid = team_id.parse().unwrap();
    assert!(b
        .control
        .membership(team, bob_id.parse().unwrap())
        .await
        .unwrap()
        .is_some());

    // Removed through A, refused by B immediately.
    a.delete(&format!("/v1/teams/{team_id}/members/{bob_id}"), &alice)
        .await
        .ok(204);
    b.get(&format!("/v1/teams/{team_id}"), &bob)
        .await
        .assert_problem(404);
    a.get(&format!("/v1/teams/{team_id}"), &bob)
        .await
        .assert_problem(404);

    // Negative entries are invalidated as well when the user comes back.
    b.post(
        &format!("/v1/teams/{team_id}/members"),
        &alice,
        json!({"email": "bob@example.com"}),
    )
    .await
    .ok(201);
    a.get(&format!("/v1/teams/{team_id}"), &bob).await.ok(200);

    // Role changes are visible at once, too.
    a.patch(
        &format!("/v1/teams/{team_id}/members/{bob_id}"),
        &alice,
        json!({"role": "admin"}),
    )
    .await
    .ok(200);
    let t = b.get(&format!("/v1/teams/{team_id}"), &bob).await;
    assert_eq!(t.ok(200)["role"], "admin");
}
