//! The user-level channel (`hello`): chat messages, edits, read receipts,
//! typing and presence over the signaling WebSocket, on SQLite and
//! PostgreSQL, and across two signaling nodes sharing Redis.

mod support;

use convene_control::{ChatEvent, Control, ControlConfig};
use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use convene_testkit::{self as common, Backend, TestDb};
use serde_json::json;
use support::node;

fn texts(v: &[(i64, String)]) -> Vec<&str> {
    v.iter().map(|(_, t)| t.as_str()).collect()
}

async fn live_delivery_edits_receipts_typing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let n = node(&db.url, None).await;
    let (ada, _ada_id) = n.user("ada").await;
    let (bob, bob_id) = n.user("bob").await;
    let chat = n.chat(&ada, &["bob"]).await;

    let (mut b, online) = n.hello(&bob).await;
    assert!(online.is_empty(), "ada is not connected yet: {online:?}");
    let (mut a, online) = n.hello(&ada).await;
    assert_eq!(online, vec![bob_id], "bob is online");

    // Concurrent senders: bob receives every message once, in seq order.
    let sends = (0..6).map(|i| {
        let n = &n;
        let (ada, bob) = (ada.clone(), bob.clone());
        async move {
            let who = if i % 2 == 0 { ada } else { bob };
            n.say(&who, chat, &format!("m{i}")).await
        }
    });
    futures::future::join_all(sends).await;
    let got = b.created_seqs(6).await;
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    let mut sorted = texts(&got);
    sorted.sort();
    assert_eq!(sorted, vec!["m0", "m1", "m2", "m3", "m4", "m5"]);
    let got_a = a.created_seqs(6).await;
    assert_eq!(got_a, got, "both members see the same order");

    // An edit by the author reaches the other member with its version.
    let first = n.say(&ada, chat, "typo").await;
    assert_eq!(b.created_seqs(1).await, vec![(7, "typo".to_string())]);
    n.call(
        reqwest::Method::PATCH,
        &format!("/v1/messages/{}", first.id),
        &ada,
        json!({"text": "fixed"}),
    )
    .await;
    match b.next_chat().await {
        ServerMessage::MessageEdited {
            message_id,
            seq,
            version,
            text,
            ..
        } => {
            assert_eq!((message_id, seq, version), (first.id, 7, 2));
            assert_eq!(text, "fixed");
        }
        other => panic!("expected message_edited, got {other:?}"),
    }

    // Read receipt from bob reaches ada.
    n.post(
        &format!("/v1/chats/{chat}/read"),
        &bob,
        json!({"up_to_message_id": first.id}),
    )
    .await;
    loop {
        match a.next_chat().await {
            ServerMessage::ReadReceipt {
                user_id, up_to_seq, ..
            } => {
                assert_eq!((user_id, up_to_seq), (bob_id, 7));
                break;
            }
            ServerMessage::MessageCreated { .. } | ServerMessage::MessageEdited { .. } => {}
            other => panic!("expected read_receipt, got {other:?}"),
        }
    }

    // Bob's other tabs learn his read position too.
    let own = b
        .expect("own read receipt", |m| match m {
            ServerMessage::ReadReceipt { user_id, .. } => Some(*user_id),
            _ => None,
        })
        .await;
    assert_eq!(own, bob_id);

    // Typing goes to the others, not back to the typist.
    b.send(&ClientMessage::Typing { chat_id: chat }).await;
    loop {
        match a.next().await {
            ServerMessage::Typing { chat_id, user_id } => {
                assert_eq!((chat_id, user_id), (chat, bob_id));
                break;
            }
            ServerMessage::Presence { .. } => {}
            other => panic!("expected typing, got {other:?}"),
        }
    }
    b.nothing_pending().await;

    // Not a member: typing and sync are refused, the socket stays.
    let (carl, _) = n.user("carl").await;
    let (mut c, _) = n.hello(&carl).await;
    c.send(&ClientMessage::Sync {
        chat_id: chat,
        after_seq: 0,
    })
    .await;
    match c.next().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("expected an error, got {other:?}"),
    }
    c.nothing_pending().await;

    // Presence: ada leaves, bob sees her go offline.
    drop(a);
    loop {
        match b.next().await {
            ServerMessage::Presence { online: false, .. } => break,
            ServerMessage::Presence { online: true, .. } => {}
            other => panic!("expected presence, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn live_delivery_edits_receipts_typing_sqlite() {
    live_delivery_edits_receipts_typing(Backend::Sqlite).await;
}

#[tokio::test]
async fn live_delivery_edits_receipts_typing_postgres() {
    live_delivery_edits_receipts_typing(Backend::Postgres).await;
}

async fn reconnect_catches_up(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let n = node(&db.url, None).await;
    let (ada, _) = n.user("ada").await;
    let (bob, _) = n.user("bob").await;
    let chat = n.chat(&ada, &["bob"]).await;
    let (mut b, _) = n.hello(&bob).await;
    n.say(&ada, chat, "one").await;
    n.say(&ada, chat, "two").await;
    assert_eq!(texts(&b.created_seqs(2).await), vec!["one", "two"]);
    drop(b);

    // Missed while away.
    n.say(&ada, chat, "three").await;
    n.say(&ada, chat, "four").await;
    let (mut b, _) = n.hello(&bob).await;
    b.send(&ClientMessage::Sync {
        chat_id: chat,
        after_seq: 2,
    })
    .await;
    assert_eq!(
        b.created_seqs(2).await,
        vec![(3, "three".to_string()), (4, "four".to_string())]
    );
    // Live delivery continues after the catch-up without repeats.
    n.say(&ada, chat, "five").await;
    assert_eq!(b.created_seqs(1).await, vec![(5, "five".to_string())]);
    b.nothing_pending().await;

    // A bad sync is an error, not a disconnect.
    b.send(&ClientMessage::Sync {
        chat_id: chat,
        after_seq: -1,
    })
    .await;
    match b.next().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadMessage),
        other => panic!("expected an error, got {other:?}"),
    }
    // A wrong access token is refused.
    let mut x = n.connect().await;
    x.send(&ClientMessage::Hello {
        access_token: "not-a-token".into(),
    })
    .await;
    match x.next().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn reconnect_catches_up_sqlite() {
    reconnect_catches_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn reconnect_catches_up_postgres() {
    reconnect_catches_up(Backend::Postgres).await;
}

/// Events that arrive out of order (as they can across nodes) still reach
/// the client in order: a second control plane on the same database writes
/// the messages without telling this node, then the events are replayed
/// scrambled on this node's bus.
#[tokio::test]
async fn out_of_order_events_are_delivered_in_order() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = node(&db.url, None).await;
    let (ada, ada_id) = n.user("ada").await;
    let (bob, _) = n.user("bob").await;
    let chat = n.chat(&ada, &["bob"]).await;
    let (mut b, _) = n.hello(&bob).await;
    n.say(&ada, chat, "one").await;
    assert_eq!(texts(&b.created_seqs(1).await), vec!["one"]);

    // The other writer: its events stay on its own in-process bus.
    let other = Control::start(ControlConfig::for_tests(db.url.clone()))
        .await
        .unwrap();
    let actor = other.actor(ada_id).await.unwrap();
    let send = |text: &'static str| {
        let other = other.clone();
        let actor = actor.clone();
        async move {
            other
                .send_message(
                    &actor,
                    chat,
                    serde_json::from_value(json!({"text": text, "client_id": text})).unwrap(),
                )
                .await
                .unwrap()
                .0
        }
    };
    let two = send("two").await;
    let three = send("three").await;
    let edited = other
        .edit_message(
            &actor,
            three.id,
            serde_json::from_value(json!({"text": "three!"})).unwrap(),
        )
        .await
        .unwrap();

    let bus = n.control.chat_bus();
    bus.publish(&ChatEvent::MessageEdited {
        chat_id: chat,
        message_id: three.id,
        seq: three.seq,
        version: edited.version,
        text: edited.text.clone(),
    })
    .await
    .unwrap();
    bus.publish(&ChatEvent::MessageCreated {
        chat_id: chat,
        message: three.clone(),
    })
    .await
    .unwrap();
    bus.publish(&ChatEvent::MessageCreated {
        chat_id: chat,
        message: two.clone(),
    })
    .await
    .unwrap();

    // The edit pulled in both messages first (the database has the edited
    // text), then the edit itself; the late creates are duplicates.
    let got = b.created_seqs(2).await;
    assert_eq!(got, vec![(2, "two".to_string()), (3, "three!".to_string())]);
    match b.next_chat().await {
        ServerMessage::MessageEdited { seq, version, .. } => assert_eq!((seq, version), (3, 2)),
        other => panic!("expected message_edited, got {other:?}"),
    }
    b.nothing_pending().await;
    other.close().await;
}

/// Two signaling nodes sharing PostgreSQL and Redis: a message from a user
/// on node A reaches a user on node B, typing crosses too, and presence is
/// shared.
#[tokio::test]
async fn two_nodes_share_chats_through_redis() {
    let Some(redis_url) = common::redis_available().await else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let a_node = node(&db.url, Some(&redis_url)).await;
    let b_node = node(&db.url, Some(&redis_url)).await;
    let (ada, ada_id) = a_node.user("ada").await;
    let (bob, bob_id) = b_node.user("bob").await;
    let chat = a_node.chat(&ada, &["bob"]).await;

    let (mut a, _) = a_node.hello(&ada).await;
    let (mut b, online) = b_node.hello(&bob).await;
    assert_eq!(
        online,
        vec![ada_id],
        "ada's presence on node A is seen on B"
    );
    match a.next().await {
        ServerMessage::Presence { user_id, online } => {
            assert_eq!((user_id, online), (bob_id, true));
        }
        other => panic!("expected presence, got {other:?}"),
    }

    a_node.say(&ada, chat, "hello from A").await;
    assert_eq!(
        b.created_seqs(1).await,
        vec![(1, "hello from A".to_string())]
    );
    b_node.say(&bob, chat, "hello from B").await;
    assert_eq!(
        a.created_seqs(2).await,
        vec![
            (1, "hello from A".to_string()),
            (2, "hello from B".to_string())
        ]
    );
    b.send(&ClientMessage::Typing { chat_id: chat }).await;
    loop {
        match a.next().await {
            ServerMessage::Typing { user_id, .. } => {
                assert_eq!(user_id, bob_id);
                break;
            }
            ServerMessage::MessageCreated { .. } | ServerMessage::Presence { .. } => {}
            other => panic!("expected typing, got {other:?}"),
        }
    }
}

/// A user connected before a chat exists gets it live: created with them,
/// or added later (with the history so far).
#[tokio::test]
async fn chats_created_or_joined_while_connected_arrive_live() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = node(&db.url, None).await;
    let (ada, _) = n.user("ada").await;
    let (bob, bob_id) = n.user("bob").await;
    let (carl, carl_id) = n.user("carl").await;
    let (mut b, _) = n.hello(&bob).await;
    let (mut c, _) = n.hello(&carl).await;

    let group = n
        .post(
            "/v1/chats",
            &ada,
            json!({"title": "crew", "member_emails": ["bob@example.org"]}),
        )
        .await;
    let chat: uuid::Uuid = group["id"].as_str().unwrap().parse().unwrap();
    match b.next_chat().await {
        ServerMessage::ChatMemberAdded { chat_id, user_id } => {
            assert_eq!((chat_id, user_id), (chat, bob_id))
        }
        other => panic!("expected chat_member_added, got {other:?}"),
    }
    n.say(&ada, chat, "first").await;
    assert_eq!(b.created_seqs(1).await, vec![(1, "first".to_string())]);

    n.post(
        &format!("/v1/chats/{chat}/members"),
        &ada,
        json!({"email": "carl@example.org"}),
    )
    .await;
    match c.next_chat().await {
        ServerMessage::ChatMemberAdded { chat_id, user_id } => {
            assert_eq!((chat_id, user_id), (chat, carl_id))
        }
        other => panic!("expected chat_member_added, got {other:?}"),
    }
    assert_eq!(
        c.created_seqs(1).await,
        vec![(1, "first".to_string())],
        "the history so far comes with it"
    );
    match b.next_chat().await {
        ServerMessage::ChatMemberAdded { user_id, .. } => assert_eq!(user_id, carl_id),
        other => panic!("expected chat_member_added, got {other:?}"),
    }
    n.say(&ada, chat, "second").await;
    assert_eq!(c.created_seqs(1).await, vec![(2, "second".to_string())]);
    c.nothing_pending().await;
}

fn presence(m: &ServerMessage) -> Option<(uuid::Uuid, bool)> {
    match m {
        ServerMessage::Presence { user_id, online } => Some((*user_id, *online)),
        _ => None,
    }
}

/// Two users online with no chat in common: when one creates a chat with
/// the other, each learns at once that the other is online (once), and
/// later presence changes travel through the new chat.
async fn a_new_chat_brings_the_members_presence(a_node: &support::Node, b_node: &support::Node) {
    let (ada, ada_id) = a_node.user("ada").await;
    let (bob, bob_id) = b_node.user("bob").await;
    let (mut a, online) = a_node.hello(&ada).await;
    assert!(online.is_empty(), "{online:?}");
    let (mut b, online) = b_node.hello(&bob).await;
    assert!(online.is_empty(), "{online:?}");

    let chat = a_node.chat(&ada, &["bob"]).await;
    for (client, me, other) in [(&mut a, ada_id, bob_id), (&mut b, bob_id, ada_id)] {
        client
            .expect("the new chat", |m| match m {
                ServerMessage::ChatMemberAdded { chat_id, user_id }
                    if (*chat_id, *user_id) == (chat, me) =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        assert_eq!(
            client.expect("the other's presence", presence).await,
            (other, true)
        );
        let rest = client.until_pong().await;
        assert!(
            !rest.iter().any(|m| presence(m).is_some()),
            "presence once: {rest:?}"
        );
    }

    b.ws.close(None).await.unwrap();
    assert_eq!(
        a.expect("bob goes offline", presence).await,
        (bob_id, false)
    );
}

#[tokio::test]
async fn a_new_chat_brings_the_members_presence_one_node() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = node(&db.url, None).await;
    a_new_chat_brings_the_members_presence(&n, &n).await;
}

#[tokio::test]
async fn a_new_chat_brings_the_members_presence_across_nodes() {
    let Some(redis_url) = common::redis_available().await else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let a_node = node(&db.url, Some(&redis_url)).await;
    let b_node = node(&db.url, Some(&redis_url)).await;
    a_new_chat_brings_the_members_presence(&a_node, &b_node).await;
}
