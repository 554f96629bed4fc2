//! Scenarios run on one node and across two (`m` serves the moderator, `w`
//! the waiters; pass the same node twice for one).

use std::time::Instant;

use convene_proto::signaling::{ClientMessage, DisconnectReason, ServerMessage};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use uuid::Uuid;

use super::{Client, Node};

fn joined(m: &ServerMessage) -> Option<String> {
    match m {
        ServerMessage::Joined { participant_id, .. } => Some(participant_id.clone()),
        _ => None,
    }
}

fn waiting_list(m: &ServerMessage) -> Option<Vec<Uuid>> {
    match m {
        ServerMessage::WaitingUpdated { entries } => {
            Some(entries.iter().map(|e| e.user_id).collect())
        }
        _ => None,
    }
}

fn position(m: &ServerMessage) -> Option<u32> {
    match m {
        ServerMessage::Waiting { position } => Some(*position),
        _ => None,
    }
}

async fn enter(node: &Node, access: &str, conf: Uuid) -> (Client, String) {
    let (token, waiting) = node.join_token(access, conf).await;
    assert!(!waiting);
    let mut c = node.connect().await;
    c.join(&token).await;
    let pid = c.expect("joined", joined).await;
    (c, pid)
}

async fn knock(node: &Node, access: &str, conf: Uuid) -> Client {
    let (token, waiting) = node.join_token(access, conf).await;
    assert!(waiting);
    let mut c = node.connect().await;
    c.join(&token).await;
    c
}

/// Every change of the waiting hall reaches the knocker and the moderator
/// once: a knock is both a REST call (whose control-plane event reaches the
/// room) and a socket entering the room, and neither may echo the other.
/// Each step waits for the frames of the previous one, so a duplicate shows
/// up where the next distinct frame is expected.
pub async fn each_waiting_change_is_told_once(m: &Node, w: &Node) {
    let (ada, _) = m.user("ada").await;
    let (bob, bob_id) = w.user("bob").await;
    let (cyd, cyd_id) = w.user("cyd").await;
    let conf = m.conference(&ada, &["bob", "cyd"], true).await;
    let (mut a, _) = enter(m, &ada, conf).await;
    assert_eq!(
        a.expect("the first list", waiting_list).await,
        Vec::<Uuid>::new()
    );

    let mut c = knock(w, &cyd, conf).await;
    assert_eq!(c.expect("cyd's position", position).await, 1);
    assert_eq!(a.expect("cyd waits", waiting_list).await, vec![cyd_id]);

    let mut b = knock(w, &bob, conf).await;
    assert_eq!(b.expect("bob's position", position).await, 2);
    assert_eq!(
        a.expect("bob waits too", waiting_list).await,
        vec![cyd_id, bob_id],
        "the list once per change"
    );

    c.send(&ClientMessage::Leave).await;
    let (rest, code) = c.closing().await;
    assert_eq!(code, Some(1000));
    assert!(
        rest.iter().all(|m| position(m).is_none()),
        "cyd's position did not change while she waited: {rest:?}"
    );
    assert_eq!(
        b.expect("bob moves up", position).await,
        1,
        "the position once per change"
    );
    assert_eq!(a.expect("cyd left", waiting_list).await, vec![bob_id]);

    b.send(&ClientMessage::Leave).await;
    let (rest, _) = b.closing().await;
    assert!(
        rest.iter().all(|m| position(m).is_none()),
        "nothing more for bob: {rest:?}"
    );
    assert_eq!(
        a.expect("nobody waits", waiting_list).await,
        Vec::<Uuid>::new(),
        "the list once per change"
    );
}

/// An SDP offer from a str0m peer that will never run ICE.
pub fn dead_offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

fn media_ended(m: &ServerMessage) -> Option<(String, DisconnectReason)> {
    match m {
        ServerMessage::MediaEnded {
            participant_id,
            reason,
        } => Some((participant_id.clone(), *reason)),
        _ => None,
    }
}

/// A participant whose ICE never completes (the SFU must run with a short
/// ICE timeout): it and the room hear that its media ended, it stays in the
/// room, and a new offer on the same socket starts a new media session.
/// `m` serves the observer, `w` the participant whose media dies.
pub async fn ice_timeout_is_told_and_a_new_offer_restarts_media(m: &Node, w: &Node) {
    let (ada, _) = m.user("ada").await;
    let (bob, _) = w.user("bob").await;
    let conf = m.conference(&ada, &["bob"], false).await;
    let (mut a, _) = enter(m, &ada, conf).await;
    let (mut b, b_pid) = enter(w, &bob, conf).await;

    b.send(&ClientMessage::Offer {
        sdp: dead_offer(),
        sources: Default::default(),
    })
    .await;
    b.expect("the SFU's answer", |m| {
        matches!(m, ServerMessage::Answer { .. }).then_some(())
    })
    .await;
    let (pid, reason) = b.expect("media_ended for bob", media_ended).await;
    assert_eq!(
        (pid.as_str(), reason),
        (b_pid.as_str(), DisconnectReason::IceTimeout)
    );

    let mut seen = Vec::new();
    let (pid, reason) = a
        .expect("media_ended for the room", |m| {
            seen.push(m.clone());
            media_ended(m)
        })
        .await;
    assert_eq!(
        (pid.as_str(), reason),
        (b_pid.as_str(), DisconnectReason::IceTimeout)
    );
    assert!(
        !seen.iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantLeft { participant_id } if *participant_id == b_pid
        )),
        "bob is still in the room: {seen:?}"
    );

    // Same socket, same participant: a new offer is a new media session.
    b.send(&ClientMessage::Offer {
        sdp: dead_offer(),
        sources: Default::default(),
    })
    .await;
    b.expect("an answer to the new offer", |m| match m {
        ServerMessage::Answer { .. } => Some(()),
        ServerMessage::Error { code, message } => panic!("new offer refused: {code:?} {message}"),
        _ => None,
    })
    .await;
}
