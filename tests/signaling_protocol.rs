//! Protocol tests: WebSocket clients through the real signaling service, the
//! real control plane (SQLite file) and the real SFU on loopback UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene::inprocess::{InProcessControl, InProcessSfu};
use convene_control::{Control, ControlConfig};
use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use convene_signaling::{Signaling, SignalingConfig};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::rest::{serve_on, Rest};
use support::{Client, STEP};

struct Server {
    addr: SocketAddr,
    signaling: Signaling,
    /// The control plane's REST API on the same port.
    rest: Rest,
    control: Control,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
    _sfu: convene_sfu::Sfu,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tests talk to the control plane through the server itself.
impl std::ops::Deref for Server {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}

async fn start_at(dir: &std::path::Path, config: SignalingConfig) -> Server {
    let db = dir.join("convene.db");
    let mut cc = ControlConfig::for_tests(format!("sqlite://{}?mode=rwc", db.display()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cc.public_url = format!("http://{addr}");
    let control = Control::start(cc).await.expect("control starts");
    let (sfu, handle) = convene_sfu::start(convene_sfu::SfuConfig::for_tests())
        .await
        .expect("sfu starts");
    let signaling = Signaling::new(
        config,
        Arc::new(InProcessControl(control.clone())),
        Arc::new(InProcessSfu(handle)),
        Default::default(),
    )
    .unwrap();
    let app = control.router().merge(signaling.router());
    let task = serve_on(listener, app);
    Server {
        addr,
        signaling,
        rest: Rest::new(addr),
        control,
        _dir: None,
        task,
        _sfu: sfu,
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start_at(dir.path(), SignalingConfig::default()).await;
    srv._dir = Some(dir);
    srv
}

impl Server {
    /// The signaling service's open-connections gauge.
    fn open_connections(&self) -> f64 {
        self.signaling
            .registry()
            .gather()
            .iter()
            .filter(|f| f.name() == "convene_signaling_connections")
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_gauge().get_value())
            .sum()
    }

    async fn ws(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", self.addr))
            .await
            .expect("websocket connects");
        Client { ws }
    }
}

fn joined(m: &ServerMessage) -> Option<(String, String, usize)> {
    match m {
        ServerMessage::Joined {
            participant_id,
            resume_token,
            participants,
            ..
        } => Some((
            participant_id.clone(),
            resume_token.clone(),
            participants.len(),
        )),
        _ => None,
    }
}

fn error_code(m: &ServerMessage) -> Option<ErrorCode> {
    match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

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
async fn members_cannot_moderate() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let (bob, _) = srv.user("bob").await;
    let (carol, carol_id) = srv.user("carol").await;
    let conf = srv.conference(&alice, &["bob", "carol"], true).await;

    // Admit bob over REST so he is a plain participant.
    let (_, waiting) = srv.join_token(&bob, &conf).await;
    assert!(waiting);
    let (_, me) = srv.user_id_of(&bob).await;
    let (s, _) = srv
        .post(
            &format!("/v1/conferences/{conf}/waiting/{me}/admit"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (bob_room, waiting) = srv.join_token(&bob, &conf).await;
    assert!(!waiting);
    let mut b = srv.ws().await;
    b.join(&bob_room).await;
    b.expect("joined", joined).await;

    let (carol_t, _) = srv.join_token(&carol, &conf).await;
    let mut c = srv.ws().await;
    c.join(&carol_t).await;
    c.expect("waiting", |m| {
        matches!(m, ServerMessage::Waiting { .. }).then_some(())
    })
    .await;

    b.send(&ClientMessage::Admit {
        user_id: carol_id.parse().unwrap(),
    })
    .await;
    assert_eq!(b.expect("error", error_code).await, ErrorCode::Forbidden);
    b.send(&ClientMessage::EndConference).await;
    assert_eq!(b.expect("error", error_code).await, ErrorCode::Forbidden);
    // bob is not told about the waiting list.
    b.send(&ClientMessage::Ping).await;
    let next = b.next().await;
    assert_eq!(
        next,
        ServerMessage::Pong,
        "no waiting_updated leaks to members"
    );
}

impl Server {
    async fn user_id_of(&self, access: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("http://{}/v1/users/me", self.addr))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        (status, body["id"].as_str().unwrap().to_string())
    }
}

#[tokio::test]
async fn bad_tokens_and_frames_get_errors_and_keep_the_connection() {
    let srv = start().await;
    let mut c = srv.ws().await;

    c.send(&ClientMessage::Chat {
        text: "before join".into(),
    })
    .await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::NotJoined);

    c.join("not-a-jwt").await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::Unauthorized);

    // A token signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": uuid::Uuid::new_v4(), "name": "x", "conf": uuid::Uuid::new_v4(),
                "team": uuid::Uuid::new_v4(), "aud": "convene-room", "exp": 4_000_000_000u64,
                "iat": 1, "jti": uuid::Uuid::new_v4(),
                "grants": {"can_publish": true, "can_subscribe": true, "can_publish_data": true, "moderator": true, "waiting": false}}),
        &jsonwebtoken::EncodingKey::from_secret(b"someone else's secret"),
    )
    .unwrap();
    c.join(&forged).await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::Unauthorized);

    c.send_raw("{not json").await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::BadMessage);
    c.send_raw(r#"{"type":"self_destruct"}"#).await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::BadMessage);
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.expect("error", error_code).await, ErrorCode::BadMessage);

    // Still alive.
    c.send(&ClientMessage::Ping).await;
    assert_eq!(c.next().await, ServerMessage::Pong);

    // An oversized frame closes the connection with 1009.
    let big = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(100 * 1024));
    c.send_raw(&big).await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn a_frame_beyond_the_transport_limit_also_closes_with_1009() {
    let srv = start().await;
    let mut c = srv.ws().await;
    // Above the transport's own limit (four times --ws-max-frame-bytes),
    // where the WebSocket layer, not our check, refuses the frame.
    let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(1024 * 1024));
    c.send_raw(&huge).await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn expired_token_is_refused() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let conf = srv.conference(&alice, &[], false).await;
    let (token, _) = srv.join_token(&alice, &conf).await;
    // Re-sign the same claims with an expiry in the past, using the test secret.
    let mut claims: Value = {
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    claims["exp"] = json!(1_000);
    claims["iat"] = json!(900);
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-jwt-secret-which-is-long-enough"),
    )
    .unwrap();
    let mut c = srv.ws().await;
    c.join(&expired).await;
    assert_eq!(c.expect("error", error_code).await, ErrorCode::Unauthorized);
    // The genuine token still works on the same socket.
    c.join(&token).await;
    c.expect("joined", joined).await;
}

#[tokio::test]
async fn resume_keeps_the_participant() {
    let srv = start().await;
    let (alice, _) = srv.user("alice").await;
    let (bob, _) = srv.user("bob").await;
    let conf = srv.conference(&alice, &["bob"], false).await;

    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;

    let bob_token = srv.join_token(&bob, &conf).await.0;
    let mut b = srv.ws().await;
    b.join(&bob_token).await;
    let (b_pid, resume, _) = b.expect("joined", joined).await;
    a.expect("participant_joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(())
    })
    .await;

    // The socket breaks without a close frame.
    drop(b);
    let mut b2 = srv.ws().await;
    b2.send(&ClientMessage::Join {
        token: bob_token.clone(),
        resume_token: Some(resume),
    })
    .await;
    let (pid2, _, others) = b2.expect("joined", joined).await;
    assert_eq!(pid2, b_pid, "same participant after resume");
    assert_eq!(others, 1);

    // alice saw no second participant and no departure.
    a.send(&ClientMessage::Ping).await;
    let msgs = collect_until_pong(&mut a).await;
    assert!(
        msgs.iter().all(|m| !matches!(
            m,
            ServerMessage::ParticipantJoined { .. } | ServerMessage::ParticipantLeft { .. }
        )),
        "{msgs:?}"
    );

    // A clean leave is seen at once.
    b2.send(&ClientMessage::Leave).await;
    let left = a
        .expect("participant_left", |m| match m {
            ServerMessage::ParticipantLeft { participant_id } => Some(participant_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(left, b_pid);
}

async fn collect_until_pong(c: &mut Client) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    loop {
        let m = c.next().await;
        if m == ServerMessage::Pong {
            return out;
        }
        out.push(m);
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

/// alice moderates, bob knocked and was admitted over the socket. Returns
/// (alice's client, bob's client, bob's participant id, bob's user id, bob's
/// room token, the conference id, bob's access token).
async fn room_with_bob(srv: &Server) -> (Client, Client, String, String, String, String, String) {
    let (alice, _) = srv.user("alice").await;
    let (bob, bob_id) = srv.user("bob").await;
    let conf = srv.conference(&alice, &["bob"], true).await;
    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;
    let (_, me) = srv.user_id_of(&bob).await;
    let (s, _) = srv
        .post(
            &format!("/v1/conferences/{conf}/waiting/{me}/admit"),
            Some(&alice),
            json!({}),
        )
        .await;
    // bob never knocked: admitting an unknown entry is a 404.
    assert_eq!(s, 404);
    let (t, waiting) = srv.join_token(&bob, &conf).await;
    assert!(waiting);
    let mut b = srv.ws().await;
    b.join(&t).await;
    b.expect("waiting", |m| {
        matches!(m, ServerMessage::Waiting { .. }).then_some(())
    })
    .await;
    a.send(&ClientMessage::Admit {
        user_id: bob_id.parse().unwrap(),
    })
    .await;
    let room_token = b
        .expect("admitted", |m| match m {
            ServerMessage::Admitted { token } => Some(token.clone()),
            _ => None,
        })
        .await;
    let (b_pid, _, _) = b.expect("joined", joined).await;
    a.expect("participant_joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(())
    })
    .await;
    (a, b, b_pid, bob_id, room_token, conf, bob)
}

#[tokio::test]
async fn moderator_moves_a_participant_back_to_the_waiting_hall() {
    let srv = start().await;
    let (mut a, mut b, b_pid, bob_id, room_token, _conf, _bob) = room_with_bob(&srv).await;

    a.send(&ClientMessage::MoveToWaiting {
        participant_id: b_pid.clone(),
    })
    .await;
    b.expect("moved_to_waiting", |m| {
        (*m == ServerMessage::MovedToWaiting).then_some(())
    })
    .await;
    let pos = b
        .expect("waiting", |m| match m {
            ServerMessage::Waiting { position } => Some(*position),
            _ => None,
        })
        .await;
    assert_eq!(pos, 1);
    a.expect("participant_left", |m| match m {
        ServerMessage::ParticipantLeft { participant_id } if *participant_id == b_pid => Some(()),
        _ => None,
    })
    .await;
    let entries = a
        .expect("waiting_updated with bob", |m| match m {
            ServerMessage::WaitingUpdated { entries } if !entries.is_empty() => {
                Some(entries.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(entries[0].user_id.to_string(), bob_id);

    // The room token bob had is revoked.
    let mut again = srv.ws().await;
    again.join(&room_token).await;
    assert_eq!(
        again.expect("error", error_code).await,
        ErrorCode::Unauthorized
    );

    // Admitted again, on the same socket.
    a.send(&ClientMessage::Admit {
        user_id: bob_id.parse().unwrap(),
    })
    .await;
    b.expect("admitted", |m| {
        matches!(m, ServerMessage::Admitted { .. }).then_some(())
    })
    .await;
    b.expect("joined", joined).await;
}

#[tokio::test]
async fn removed_participant_cannot_come_back_and_end_reaches_everyone() {
    let srv = start().await;
    let (mut a, mut b, b_pid, _bob_id, room_token, conf, bob) = room_with_bob(&srv).await;

    a.send(&ClientMessage::Remove {
        participant_id: b_pid.clone(),
    })
    .await;
    b.expect("removed", |m| {
        matches!(m, ServerMessage::Removed { .. }).then_some(())
    })
    .await;
    assert!(b.closed().await.is_some());
    a.expect("participant_left", |m| match m {
        ServerMessage::ParticipantLeft { participant_id } if *participant_id == b_pid => Some(()),
        _ => None,
    })
    .await;
    let mut again = srv.ws().await;
    again.join(&room_token).await;
    assert_eq!(
        again.expect("error", error_code).await,
        ErrorCode::Unauthorized
    );
    let (s, _) = srv
        .post(
            &format!("/v1/conferences/{conf}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "a removed user cannot ask for a new token");

    a.send(&ClientMessage::EndConference).await;
    a.expect("conference_ended", |m| {
        (*m == ServerMessage::ConferenceEnded).then_some(())
    })
    .await;
    assert!(a.closed().await.is_some());
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

/// A silent socket is closed with 4001 and, like a dropped one, its
/// participant leaves once the resume grace has passed without a resume.
#[tokio::test]
async fn silent_client_is_dropped_and_the_room_told() {
    let dir = tempfile::tempdir().unwrap();
    let config = SignalingConfig {
        heartbeat_timeout_secs: 1,
        resume_grace_secs: 1,
        ..SignalingConfig::default()
    };
    let mut srv = start_at(dir.path(), config).await;
    srv._dir = Some(dir);
    let (alice, _) = srv.user("alice").await;
    let (bob, _) = srv.user("bob").await;
    let conf = srv.conference(&alice, &["bob"], false).await;
    let mut a = srv.ws().await;
    a.join(&srv.join_token(&alice, &conf).await.0).await;
    a.expect("joined", joined).await;
    let mut b = srv.ws().await;
    b.join(&srv.join_token(&bob, &conf).await.0).await;
    let (b_pid, _, _) = b.expect("joined", joined).await;

    // alice keeps pinging; bob says nothing (nor answers the server's
    // pings: his socket is not read until the server has closed it) and is
    // closed with 4001.
    let deadline = tokio::time::Instant::now() + STEP;
    while srv.open_connections() > 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "bob never dropped");
        a.send(&ClientMessage::Ping).await;
        a.expect("pong", |m| (*m == ServerMessage::Pong).then_some(()))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.closed().await, Some(4001));
    let left = tokio::time::timeout(STEP, async {
        loop {
            a.send(&ClientMessage::Ping).await;
            let m = a.next().await;
            if let ServerMessage::ParticipantLeft { participant_id } = m {
                return participant_id;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("bob left once the grace passed");
    assert_eq!(left, b_pid);
}
