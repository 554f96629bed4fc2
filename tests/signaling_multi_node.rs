//! Two signaling nodes sharing PostgreSQL, Redis and one SFU serve one
//! conference: participants on either node see each other, chat is in one
//! order everywhere, a waiter on one node is admitted by a moderator on the
//! other, and a dead node's participants expire. Waiting-hall changes are
//! told once on either node, and a media session that dies on one node is
//! told on the other.

mod support;

use convene_proto::signaling::{ClientMessage, ParticipantInfo, ServerMessage};
use convene_signaling::SignalingConfig;
use convene_testkit::{self as common, Backend, TestDb};
use support::{node_setup, node_with, scenarios, Client, Node, Setup};
use uuid::Uuid;

fn joined(m: &ServerMessage) -> Option<(String, Vec<ParticipantInfo>)> {
    match m {
        ServerMessage::Joined {
            participant_id,
            participants,
            ..
        } => Some((participant_id.clone(), participants.clone())),
        _ => None,
    }
}

fn participant_joined(m: &ServerMessage) -> Option<ParticipantInfo> {
    match m {
        ServerMessage::ParticipantJoined { participant } => Some(participant.clone()),
        _ => None,
    }
}

fn participant_left(m: &ServerMessage) -> Option<String> {
    match m {
        ServerMessage::ParticipantLeft { participant_id } => Some(participant_id.clone()),
        _ => None,
    }
}

fn chat(m: &ServerMessage) -> Option<(u64, String)> {
    match m {
        ServerMessage::Chat { seq, text, .. } => Some((*seq, text.clone())),
        _ => None,
    }
}

async fn two_nodes() -> Option<(Node, Node, String, TestDb)> {
    two_nodes_on(convene_sfu::SfuConfig::for_tests()).await
}

/// Two nodes sharing one SFU, started with `sfu`.
async fn two_nodes_on(sfu: convene_sfu::SfuConfig) -> Option<(Node, Node, String, TestDb)> {
    let redis = common::redis_available().await?;
    let db = TestDb::new(Backend::Postgres).await?;
    // Short claims so an expired node shows within the test.
    let config = SignalingConfig {
        presence_ttl_secs: 3,
        ..SignalingConfig::default()
    };
    let setup = Setup {
        signaling: config.clone(),
        sfu,
        ..Setup::default()
    };
    let a = node_setup(&db.url, Some(&redis), None, setup).await;
    let b = node_with(&db.url, Some(&redis), Some(a.sfu.clone()), config).await;
    Some((a, b, redis, db))
}

async fn enter(node: &Node, access: &str, conf: Uuid) -> (Client, String, Vec<ParticipantInfo>) {
    let (token, waiting) = node.join_token(access, conf).await;
    assert!(!waiting);
    let mut c = node.connect().await;
    c.join(&token).await;
    let (pid, others) = c.expect("joined", joined).await;
    (c, pid, others)
}

#[tokio::test]
async fn participants_and_chat_span_two_nodes() {
    let Some((a_node, b_node, redis_url, _db)) = two_nodes().await else {
        return;
    };
    let (ada, _) = a_node.user("ada").await;
    let (bob, _) = b_node.user("bob").await;
    let (cy, _) = b_node.user("cyd").await;
    let conf = a_node.conference(&ada, &["bob", "cyd"], false).await;

    let (mut a, a_pid, others) = enter(&a_node, &ada, conf).await;
    assert!(others.is_empty());
    let (mut b, b_pid, others) = enter(&b_node, &bob, conf).await;
    assert_eq!(
        others
            .iter()
            .map(|p| p.participant_id.clone())
            .collect::<Vec<_>>(),
        vec![a_pid.clone()],
        "bob on node B sees ada from node A"
    );
    assert_eq!(
        a.expect("bob joined", participant_joined)
            .await
            .participant_id,
        b_pid
    );
    let (mut c, c_pid, others) = enter(&b_node, &cy, conf).await;
    assert_eq!(others.len(), 2);
    assert_eq!(
        a.expect("cy joined", participant_joined)
            .await
            .participant_id,
        c_pid
    );
    assert_eq!(
        b.expect("cy joined", participant_joined)
            .await
            .participant_id,
        c_pid
    );

    // Chat from both nodes, interleaved: everyone sees one numbered order.
    for i in 0..4 {
        let (who, text) = if i % 2 == 0 {
            (&mut a, format!("a{i}"))
        } else {
            (&mut b, format!("b{i}"))
        };
        who.send(&ClientMessage::Chat { text }).await;
    }
    let mut seen = Vec::new();
    for client in [&mut a, &mut b, &mut c] {
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(client.expect("chat", chat).await);
        }
        seen.push(got);
    }
    let seqs: Vec<u64> = seen[0].iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "dense: {seqs:?}");
    assert_eq!(seen[0], seen[1], "node A and node B agree on the order");
    assert_eq!(seen[1], seen[2]);

    // A moderator on A mutes a participant on B: the request crosses nodes.
    a.send(&ClientMessage::MuteParticipant {
        participant_id: c_pid.clone(),
        video: false,
    })
    .await;
    c.expect("mute request", |m| {
        matches!(m, ServerMessage::MuteRequested { video: false }).then_some(())
    })
    .await;

    // Leaving on B is seen on A.
    b.send(&ClientMessage::Leave).await;
    assert_eq!(a.expect("bob left", participant_left).await, b_pid);

    // A node that dies stops renewing its claims: a participant claimed by a
    // node that no longer exists disappears for everyone else.
    let ghost = ParticipantInfo {
        participant_id: "p-ghost".into(),
        user_id: Uuid::new_v4(),
        name: "ghost".into(),
        moderator: false,
    };
    let claim = serde_json::json!({
        "node": "node-dead",
        "participant": ghost,
        "expires_ms": chrono::Utc::now().timestamp_millis() + 4000,
    });
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HSET")
        .arg(format!("convene:room:{conf}:members"))
        .arg("p-ghost")
        .arg(claim.to_string())
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        a.expect("ghost appears", participant_joined)
            .await
            .participant_id,
        "p-ghost"
    );
    assert_eq!(a.expect("ghost expires", participant_left).await, "p-ghost");
}

#[tokio::test]
async fn waiter_on_one_node_is_admitted_by_a_moderator_on_the_other() {
    let Some((a_node, b_node, _redis, _db)) = two_nodes().await else {
        return;
    };
    let (ada, _) = a_node.user("ada").await;
    let (wes, wes_id) = b_node.user("wes").await;
    let conf = a_node.conference(&ada, &["wes"], true).await;
    let (mut a, a_pid, _) = enter(&a_node, &ada, conf).await;

    let (token, waiting) = b_node.join_token(&wes, conf).await;
    assert!(waiting);
    let mut w = b_node.connect().await;
    w.join(&token).await;
    w.expect("waiting", |m| match m {
        ServerMessage::Waiting { position } => Some(*position),
        _ => None,
    })
    .await;
    a.expect("wes in the list", |m| match m {
        ServerMessage::WaitingUpdated { entries }
            if entries.iter().any(|e| e.user_id == wes_id) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;

    // Lobby chat both ways across nodes.
    w.send(&ClientMessage::LobbyMessage {
        text: "hi, it's wes".into(),
        to: None,
    })
    .await;
    let text = a
        .expect("lobby message", |m| match m {
            ServerMessage::LobbyMessage { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "hi, it's wes");
    a.send(&ClientMessage::LobbyMessage {
        text: "one moment".into(),
        to: Some(wes_id),
    })
    .await;
    let text = w
        .expect("lobby reply", |m| match m {
            ServerMessage::LobbyMessage { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "one moment");

    a.send(&ClientMessage::Admit { user_id: wes_id }).await;
    w.expect("admitted", |m| {
        matches!(m, ServerMessage::Admitted { .. }).then_some(())
    })
    .await;
    let (w_pid, others) = w.expect("joined", joined).await;
    assert_eq!(
        others
            .iter()
            .map(|p| p.participant_id.clone())
            .collect::<Vec<_>>(),
        vec![a_pid],
        "the admitted waiter sees the moderator on the other node"
    );
    assert_eq!(
        a.expect("wes joined", participant_joined)
            .await
            .participant_id,
        w_pid
    );
}

#[tokio::test]
async fn each_waiting_change_is_told_once_across_nodes() {
    let Some((a_node, b_node, _redis, _db)) = two_nodes().await else {
        return;
    };
    scenarios::each_waiting_change_is_told_once(&a_node, &b_node).await;
}

#[tokio::test]
async fn ice_timeout_on_one_node_is_told_on_the_other() {
    let sfu = convene_sfu::SfuConfig {
        ice_timeout_ms: 1_000,
        ..convene_sfu::SfuConfig::for_tests()
    };
    let Some((a_node, b_node, _redis, _db)) = two_nodes_on(sfu).await else {
        return;
    };
    scenarios::ice_timeout_is_told_and_a_new_offer_restarts_media(&a_node, &b_node).await;
}
