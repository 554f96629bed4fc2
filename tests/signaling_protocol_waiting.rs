//! The waiting hall over the signaling protocol: knocking, the moderator's
//! live list, admit, deny with a reason, admit-all, lobby chat both ways
//! (rate limited), and a waiting entry that outlives a control-plane
//! restart. WebSocket clients through the real signaling service, control
//! plane (SQLite file) and SFU on loopback.

use std::time::Duration;

use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use convene_signaling::SignalingConfig;
use serde_json::json;

mod support;

use support::protocol::{error_code, joined, start, start_at};

#[tokio::test]
async fn waiting_hall_knock_live_update_and_admit() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let (bob, bob_id) = srv.user("bob").await;
    let conf = srv.conference(&alice, &["bob"], true).await;

    let (mod_token, waiting) = srv.join_token(&alice, &conf).await;
    assert!(!waiting, "the moderator goes straight in");
    let mut a = srv.ws().await;
    a.join(&mod_token).await;
    let (a_pid, _, others) = a.expect("joined", joined).await;
    assert_eq!(others, 0);

    let (bob_token, waiting) = srv.join_token(&bob, &conf).await;
    assert!(waiting, "bob must wait");
    let mut b = srv.ws().await;
    b.join(&bob_token).await;
    let pos = b
        .expect("waiting", |m| match m {
            ServerMessage::Waiting { position } => Some(*position),
            _ => None,
        })
        .await;
    assert_eq!(pos, 1);

    // The moderator sees bob in the list live.
    let entries = a
        .expect("waiting_updated with bob", |m| match m {
            ServerMessage::WaitingUpdated { entries } if !entries.is_empty() => {
                Some(entries.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(entries[0].user_id.to_string(), bob_id);
    assert_eq!(entries[0].name, "bob");

    // bob may not do room things while waiting.
    b.send(&ClientMessage::Chat {
        text: "let me in".into(),
    })
    .await;
    assert_eq!(b.expect("error", error_code).await, ErrorCode::Forbidden);

    a.send(&ClientMessage::Admit {
        user_id: bob_id.parse().unwrap(),
    })
    .await;
    b.expect("admitted", |m| {
        matches!(m, ServerMessage::Admitted { .. }).then_some(())
    })
    .await;
    let (b_pid, _, others) = b.expect("joined", joined).await;
    assert_eq!(others, 1, "bob sees alice");
    let seen = a
        .expect("participant_joined", |m| match m {
            ServerMessage::ParticipantJoined { participant } => {
                Some(participant.participant_id.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(seen, b_pid);
    assert_ne!(a_pid, b_pid);

    // The database agrees: bob's entry is admitted.
    let rest = srv
        .control
        .waiting_queue(conf.parse().unwrap())
        .await
        .unwrap();
    assert!(
        rest.iter().all(|e| e.position.is_none()),
        "nobody waits any more"
    );

    // Chat reaches both, in order, stamped with the sender.
    b.send(&ClientMessage::Chat { text: "hi".into() }).await;
    b.send(&ClientMessage::Chat {
        text: "there".into(),
    })
    .await;
    for client in [&mut a, &mut b] {
        let first = client
            .expect("chat", |m| match m {
                ServerMessage::Chat {
                    seq, text, from, ..
                } => Some((*seq, text.clone(), from.name.clone())),
                _ => None,
            })
            .await;
        let second = client
            .expect("chat", |m| match m {
                ServerMessage::Chat { seq, text, .. } => Some((*seq, text.clone())),
                _ => None,
            })
            .await;
        assert_eq!((first.1.as_str(), first.2.as_str()), ("hi", "bob"));
        assert_eq!(second.1, "there");
        assert_eq!(second.0, first.0 + 1);
    }
}

#[tokio::test]
async fn deny_with_reason_and_admit_all() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let (bob, bob_id) = srv.user("bob").await;
    let (carol, _) = srv.user("carol").await;
    let (dave, _) = srv.user("dave").await;
    let conf = srv
        .conference(&alice, &["bob", "carol", "dave"], true)
        .await;

    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;

    let mut waiters = Vec::new();
    for access in [&bob, &carol, &dave] {
        let (t, waiting) = srv.join_token(access, &conf).await;
        assert!(waiting);
        let mut c = srv.ws().await;
        c.join(&t).await;
        c.expect("waiting", |m| {
            matches!(m, ServerMessage::Waiting { .. }).then_some(())
        })
        .await;
        waiters.push(c);
    }
    a.expect("three waiting", |m| match m {
        ServerMessage::WaitingUpdated { entries } if entries.len() == 3 => Some(()),
        _ => None,
    })
    .await;

    // Denied with a reason: the waiter hears it and is let go.
    a.send(&ClientMessage::Deny {
        user_id: bob_id.parse().unwrap(),
        reason: "wrong meeting".into(),
    })
    .await;
    let reason = waiters[0]
        .expect("denied", |m| match m {
            ServerMessage::Denied { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "wrong meeting");
    assert!(waiters[0].closed().await.is_some());
    let (s, _) = srv
        .post(
            &format!("/v1/conferences/{conf}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "a denied user cannot knock again");

    a.send(&ClientMessage::AdmitAll).await;
    for w in &mut waiters[1..] {
        w.expect("admitted", |m| {
            matches!(m, ServerMessage::Admitted { .. }).then_some(())
        })
        .await;
        w.expect("joined", joined).await;
    }
}

#[tokio::test]
async fn waiting_entry_survives_a_control_plane_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, bob_id) = {
        let srv = start_at(dir.path(), SignalingConfig::default()).await;
        let (alice, _) = srv.user("alice").await;
        let (bob, bob_id) = srv.user("bob").await;
        let conf = srv.conference(&alice, &["bob"], true).await;
        let (t, waiting) = srv.join_token(&bob, &conf).await;
        assert!(waiting);
        let mut b = srv.ws().await;
        b.join(&t).await;
        b.expect("waiting", |m| {
            matches!(m, ServerMessage::Waiting { position: 1 }).then_some(())
        })
        .await;
        srv.control.close().await;
        (conf, bob_id)
    };
    // A new control plane on the same database still has bob waiting at 1,
    // and the first moderator to arrive sees him.
    let srv = start_at(dir.path(), SignalingConfig::default()).await;
    let (s, login) = srv
        .post(
            "/v1/auth/login",
            None,
            json!({"login": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 200);
    let alice = login["access_token"].as_str().unwrap().to_string();
    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;
    let entries = a
        .expect("waiting_updated", |m| match m {
            ServerMessage::WaitingUpdated { entries } => Some(entries.clone()),
            _ => None,
        })
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].user_id.to_string(), bob_id);
    assert_eq!(entries[0].position, 1);
}

#[tokio::test]
async fn lobby_chat_goes_both_ways() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let (bob, bob_id) = srv.user("bob").await;
    let conf = srv.conference(&alice, &["bob"], true).await;
    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;
    let mut b = srv.ws().await;
    b.join(&srv.join_token(&bob, &conf).await.0).await;
    b.expect("waiting", |m| {
        matches!(m, ServerMessage::Waiting { .. }).then_some(())
    })
    .await;

    b.send(&ClientMessage::LobbyMessage {
        text: "is this the standup?".into(),
        to: None,
    })
    .await;
    let (from, text) = a
        .expect("lobby_message", |m| match m {
            ServerMessage::LobbyMessage {
                from_name, text, ..
            } => Some((from_name.clone(), text.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("bob", "is this the standup?")
    );

    a.send(&ClientMessage::LobbyMessage {
        text: "yes, one minute".into(),
        to: Some(bob_id.parse().unwrap()),
    })
    .await;
    let text = b
        .expect("lobby_message", |m| match m {
            ServerMessage::LobbyMessage { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "yes, one minute");

    // Lobby messages are rate limited (10 a minute by default): of 12 more,
    // some are refused. Errors come from the room actor, so wait for one
    // rather than for a pong, which the connection answers by itself.
    for i in 0..12 {
        b.send(&ClientMessage::LobbyMessage {
            text: format!("ping {i}"),
            to: None,
        })
        .await;
    }
    assert_eq!(
        b.expect("rate_limited", |m| error_code(m)
            .filter(|c| *c == ErrorCode::RateLimited))
            .await,
        ErrorCode::RateLimited
    );
    // The moderator got no more than the allowed ten in that minute.
    let mut seen = 1; // bob's first message above
    loop {
        match tokio::time::timeout(Duration::from_millis(500), a.next()).await {
            Ok(ServerMessage::LobbyMessage { from_name, .. }) if from_name == "bob" => seen += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(seen, 10, "a waiter gets ten lobby messages a minute");
}
