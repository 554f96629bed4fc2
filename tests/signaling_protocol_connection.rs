//! One connection over the signaling protocol: bad tokens and frames get
//! errors and keep the socket, oversized frames close it with 1009, an
//! expired token is refused, a resume keeps the participant, and a silent
//! client is dropped (4001) and the room told. WebSocket clients through the
//! real signaling service, control plane (SQLite file) and SFU on loopback.

use std::time::Duration;

use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use convene_signaling::SignalingConfig;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::protocol::{error_code, joined, start, start_at};
use support::STEP;

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
    let msgs = a.until_pong().await;
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
