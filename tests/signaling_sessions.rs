//! A session's life on one node, over real sockets: what keeps a socket
//! alive, resuming after a heartbeat close, a media session that dies under
//! a live socket, and the waiting hall telling each change once.

mod support;

use std::time::Duration;

use convene_proto::signaling::{ClientMessage, ServerMessage};
use convene_signaling::SignalingConfig;
use convene_testkit::{Backend, TestDb};
use futures::StreamExt;
use serde_json::json;
use support::{node_setup, scenarios, Client, Node, Setup};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn joined(m: &ServerMessage) -> Option<(String, String)> {
    match m {
        ServerMessage::Joined {
            participant_id,
            resume_token,
            ..
        } => Some((participant_id.clone(), resume_token.clone())),
        _ => None,
    }
}

fn left_or_joined(m: &ServerMessage) -> bool {
    matches!(
        m,
        ServerMessage::ParticipantLeft { .. } | ServerMessage::ParticipantJoined { .. }
    )
}

async fn one_node(db: &TestDb, setup: Setup) -> Node {
    node_setup(&db.url, None, None, setup).await
}

/// A node's setup with sockets closed after `secs` of silence.
fn heartbeat_timeout(secs: u64) -> Setup {
    Setup {
        signaling: SignalingConfig {
            heartbeat_timeout_secs: secs,
            ..SignalingConfig::default()
        },
        ..Setup::default()
    }
}

/// `access` joins `conf` on a new socket: the client, the room token it
/// joined with, and what `joined` told it (participant id, resume token).
async fn enter(n: &Node, access: &str, conf: Uuid) -> (Client, String, (String, String)) {
    let (token, _) = n.join_token(access, conf).await;
    let mut c = n.connect().await;
    c.join(&token).await;
    let seat = c.expect("joined", joined).await;
    (c, token, seat)
}

/// A new socket resumes the seat of `resume` with the room token `token`:
/// the client and the participant id it got back (a refusal fails the
/// test).
async fn resume_on_new_socket(n: &Node, token: &str, resume: String) -> (Client, String) {
    let mut c = n.connect().await;
    c.send(&ClientMessage::Join {
        token: token.to_string(),
        resume_token: Some(resume),
    })
    .await;
    let pid = c
        .expect("joined again", |m| match m {
            ServerMessage::Joined { participant_id, .. } => Some(participant_id.clone()),
            ServerMessage::Error { code, message } => panic!("resume refused: {code:?} {message}"),
            _ => None,
        })
        .await;
    (c, pid)
}

/// A client that only sends WebSocket Ping frames (what Python's
/// `websockets` does by default) stays connected past the heartbeat timeout,
/// and a waiter doing so keeps its waiting-hall entry past the control
/// plane's waiter TTL.
#[tokio::test]
async fn websocket_pings_alone_keep_a_participant_and_a_waiter() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(
        &db,
        Setup {
            signaling: SignalingConfig {
                heartbeat_timeout_secs: 2,
                waiting_heartbeat_timeout_secs: 3,
                ..SignalingConfig::default()
            },
            // Waiter entries are renewed at most every 5 s; 8 s leaves a
            // live waiter 3 s of slack on a loaded machine (6 s left one,
            // and a busy CI run lost the waiter).
            control: |c| c.waiting_ttl_secs = 8,
            ..Setup::default()
        },
    )
    .await;
    let (ada, _) = n.user("ada").await;
    let (bob, bob_id) = n.user("bob").await;
    let (wes, wes_id) = n.user("wes").await;
    let conf = n.conference(&ada, &["bob", "wes"], true).await;

    let (mut a, _, _) = enter(&n, &ada, conf).await;
    // bob is let in over REST, so he enters as a participant.
    let (_, waiting) = n.join_token(&bob, conf).await;
    assert!(waiting);
    n.post(
        &format!("/v1/conferences/{conf}/waiting/{bob_id}/admit"),
        &ada,
        json!({}),
    )
    .await;
    let (token, waiting) = n.join_token(&bob, conf).await;
    assert!(!waiting);
    let mut b = n.connect().await;
    b.join(&token).await;
    let (b_pid, _) = b.expect("joined", joined).await;
    let (token, waiting) = n.join_token(&wes, conf).await;
    assert!(waiting);
    let mut w = n.connect().await;
    w.join(&token).await;
    w.expect("waiting", |m| {
        matches!(m, ServerMessage::Waiting { .. }).then_some(())
    })
    .await;

    // Past the heartbeat timeouts and the waiter TTL (plus one sweep), bob
    // and wes send nothing but WebSocket pings and read nothing.
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut seen = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(300));
    while tokio::time::Instant::now() < until {
        every.tick().await;
        b.ws_ping().await;
        w.ws_ping().await;
        seen.extend(a.until_pong().await);
    }
    assert!(
        !seen.iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantLeft { participant_id } if *participant_id == b_pid
        )),
        "bob stayed in the room: {seen:?}"
    );
    let queue = n.control.waiting_queue(conf).await.unwrap();
    assert!(
        queue
            .iter()
            .any(|e| e.user_id == wes_id && e.position.is_some()),
        "wes still waits: {queue:?}"
    );
    // Both sockets are still open.
    b.until_pong().await;
    w.until_pong().await;
}

/// A client that sends nothing at all but whose WebSocket stack answers the
/// server's pings (browsers, `websockets`, tungstenite while it reads) stays
/// connected past the heartbeat timeout.
#[tokio::test]
async fn answering_server_pings_keeps_a_silent_client() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(&db, heartbeat_timeout(2)).await;
    let (ada, _) = n.user("ada").await;
    let conf = n.conference(&ada, &[], false).await;
    let (mut a, _, _) = enter(&n, &ada, conf).await;

    // Three heartbeat timeouts of reading only: tungstenite answers each
    // ping while it reads, and nothing else goes out.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, a.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
            Ok(None | Some(Err(_))) => panic!("socket broke"),
            Ok(Some(Ok(_))) => {}
        }
    }
    assert!(pings >= 3, "the server pinged {pings} times");
    a.until_pong().await;
    assert_eq!(n.metric("convene_signaling_participants", None), 1.0);
}

/// A socket closed for silence (4001) keeps its participant for the resume
/// grace like a dropped one: `join` with the room token and the resume
/// token gets the same participant back, and the room sees no departure.
#[tokio::test]
async fn a_heartbeat_close_can_be_resumed() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(&db, heartbeat_timeout(2)).await;
    let (ada, _) = n.user("ada").await;
    let (bob, _) = n.user("bob").await;
    let conf = n.conference(&ada, &["bob"], false).await;
    let (mut a, _, _) = enter(&n, &ada, conf).await;
    let (mut b, bob_token, (b_pid, resume)) = enter(&n, &bob, conf).await;
    a.expect("bob joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(())
    })
    .await;
    let open = n.metric("convene_signaling_connections", None);
    assert_eq!(open, 2.0);

    // bob goes silent: his socket is not even read (which would answer the
    // server's pings) until the server has closed it.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + support::STEP;
    while n.metric("convene_signaling_connections", None) > 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "bob never dropped");
        seen.extend(a.until_pong().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.closed().await, Some(4001));

    let (mut b2, pid) = resume_on_new_socket(&n, &bob_token, resume).await;
    assert_eq!(pid, b_pid, "same participant after the resume");

    // Room messages reach ada in the room's order: nothing about bob
    // leaving or joining came before his chat after the resume.
    b2.send(&ClientMessage::Chat {
        text: "back".into(),
    })
    .await;
    a.expect("bob's chat", |m| {
        seen.push(m.clone());
        matches!(m, ServerMessage::Chat { text, .. } if text == "back").then_some(())
    })
    .await;
    assert!(!seen.iter().any(left_or_joined), "{seen:?}");
}

/// A resume after the room token's lifetime keeps the seat: the token the
/// client joined with has expired, the resume token proves the seat. A
/// fresh join with that token is still refused.
#[tokio::test]
async fn a_resume_after_the_room_token_expired_keeps_the_seat() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(
        &db,
        Setup {
            control: |c| c.room_token_ttl = 1,
            ..Setup::default()
        },
    )
    .await;
    let (ada, _) = n.user("ada").await;
    let conf = n.conference(&ada, &[], false).await;
    let (mut a, token, (pid, resume)) = enter(&n, &ada, conf).await;
    // The meeting goes on past the token's lifetime (and the verifier's
    // leeway).
    let deadline = tokio::time::Instant::now() + support::STEP;
    while n.control.verify_room_token(&token).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token never expired"
        );
        a.until_pong().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection breaks without a close frame.
    drop(a);
    // The resumed socket stays open while a fresh join is tried.
    let (_again, back) = resume_on_new_socket(&n, &token, resume).await;
    assert_eq!(back, pid, "the same seat");
    let mut fresh = n.connect().await;
    fresh.join(&token).await;
    let code = fresh
        .expect("refused", |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            ServerMessage::Joined { .. } => panic!("an expired token joined"),
            _ => None,
        })
        .await;
    assert_eq!(code, convene_proto::signaling::ErrorCode::Unauthorized);
}

#[tokio::test]
async fn ice_timeout_is_told_and_a_new_offer_restarts_media() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(
        &db,
        Setup {
            sfu: convene_sfu::SfuConfig {
                ice_timeout_ms: 1_000,
                ..convene_sfu::SfuConfig::for_tests()
            },
            ..Setup::default()
        },
    )
    .await;
    scenarios::ice_timeout_is_told_and_a_new_offer_restarts_media(&n, &n).await;
}

#[tokio::test]
async fn each_waiting_change_is_told_once() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(&db, Setup::default()).await;
    scenarios::each_waiting_change_is_told_once(&n, &n).await;
}

/// A moderator demoted or promoted over REST while connected gains or loses
/// the powers for the very next message (in-process control-plane events).
#[tokio::test]
async fn moderator_grants_change_under_a_connected_socket() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = one_node(&db, Setup::default()).await;
    let e = support::roles::Endpoints {
        rest: n.base.clone(),
        ws: n.ws.clone(),
    };
    support::roles::grants_change_under_a_connected_moderator(&e).await;
}
