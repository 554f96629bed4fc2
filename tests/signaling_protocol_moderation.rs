//! Moderation over the signaling protocol: members cannot moderate, a
//! moderator moves a participant back to the waiting hall or removes them
//! (their room token is revoked), and ending the conference reaches
//! everyone. WebSocket clients through the real signaling service, control
//! plane (SQLite file) and SFU on loopback.

use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use serde_json::json;

mod support;

use support::protocol::{error_code, joined, start, Server};
use support::Client;

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
