//! Chat messages over real HTTP: dense ordering under concurrent senders,
//! idempotent sends, edit versions, read receipts and catch-up, and chat
//! events over Redis, on SQLite and PostgreSQL alike.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{id, new_chat, next_event, send, seqs};
use convene_control::ChatEvent;
use convene_testkit::{both_backends, redis_available, Backend, TestApp};
use serde_json::{json, Value};
use uuid::Uuid;

both_backends!(
    concurrent_senders_get_dense_seqs,
    idempotent_send_and_edit_versions,
    read_receipts_and_catch_up,
    chat_events_over_redis,
);

async fn concurrent_senders_get_dense_seqs(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let names = ["alice", "bob", "carol", "dave"];
    let mut tokens = Vec::new();
    for n in names {
        tokens.push(app.user(n).await.0);
    }
    let chat_id = new_chat(&app, &tokens[0], "Everyone", &names[1..]).await;

    let mut tasks = Vec::new();
    for (t, token) in tokens.iter().enumerate() {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/chats/{chat_id}/messages")),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..10 {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"text": format!("{t}-{i}"), "client_id": format!("c{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                let body: Value = r.json().await.unwrap();
                got.push(body["seq"].as_i64().unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let got = task.await.unwrap();
        // One sender's messages keep their send order.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        all.extend(got);
    }
    all.sort();
    assert_eq!(
        all,
        (1..=40).collect::<Vec<i64>>(),
        "no gaps, no duplicates"
    );

    // The stored history agrees, in both directions.
    let r = app
        .get(
            &format!("/v1/chats/{chat_id}/messages?after_seq=0&limit=100"),
            &tokens[1],
        )
        .await;
    assert_eq!(seqs(r.ok(200)), (1..=40).collect::<Vec<i64>>());
    assert_eq!(r.body["has_more"], false);
    let r = app
        .get(&format!("/v1/chats/{chat_id}/messages"), &tokens[1])
        .await;
    assert_eq!(seqs(r.ok(200)), (1..=40).rev().collect::<Vec<i64>>());
    let chat = app.get(&format!("/v1/chats/{chat_id}"), &tokens[2]).await;
    assert_eq!(chat.ok(200)["last_seq"], 40);
    assert_eq!(chat.body["last_message"]["seq"], 40);
    // Each member's own messages never count as unread.
    assert!(chat.body["unread_count"].as_i64().unwrap() <= 30);
}

async fn idempotent_send_and_edit_versions(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let (mallory, _) = app.user("mallory").await;
    let chat_id = new_chat(&app, &alice, "Pair", &["bob"]).await;
    let mut events = app.control.subscribe_chat(chat_id.parse().unwrap());

    let first = send(&app, &alice, &chat_id, "hello", "retry-1").await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["version"], 1);
    assert_eq!(first["sender"]["id"], alice_id.as_str());
    assert_eq!(first["client_id"], "retry-1");
    match next_event(&mut events).await {
        ChatEvent::MessageCreated {
            chat_id: c,
            message,
        } => {
            assert_eq!(c.to_string(), chat_id);
            assert_eq!(message.id.to_string(), id(&first));
            assert_eq!(message.text, "hello");
            assert_eq!(message.seq, 1);
        }
        other => panic!("{other:?}"),
    }

    // A retry returns the stored message with 200 and publishes nothing.
    let again = app
        .post(
            &format!("/v1/chats/{chat_id}/messages"),
            &alice,
            json!({"text": "hello", "client_id": "retry-1"}),
        )
        .await;
    assert_eq!(again.ok(200)["id"], first["id"]);
    assert_eq!(again.body["seq"], 1);
    // The same client_id from another sender is another message.
    let bobs = send(&app, &bob, &chat_id, "hi", "retry-1").await;
    assert_eq!(bobs["seq"], 2, "the retry consumed no seq");
    match next_event(&mut events).await {
        ChatEvent::MessageCreated { message, .. } => assert_eq!(message.seq, 2),
        other => panic!("{other:?}"),
    }
    // Concurrent retries of one send store it once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/chats/{chat_id}/messages")),
            alice.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"text": "once", "client_id": "burst"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body["id"].as_str().unwrap().to_string())
        }));
    }
    let mut statuses = Vec::new();
    let mut burst_ids = HashSet::new();
    for t in tasks {
        let (status, mid) = t.await.unwrap();
        statuses.push(status);
        burst_ids.insert(mid);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 201]);
    assert_eq!(burst_ids.len(), 1);
    let _ = next_event(&mut events).await;

    // Edits bump the version; only the author may edit.
    let mid = id(&first);
    for (text, version) in [("hello, world", 2), ("hello, world!", 3)] {
        let r = app
            .patch(
                &format!("/v1/messages/{mid}"),
                &alice,
                json!({"text": text}),
            )
            .await;
        assert_eq!(r.ok(200)["version"], version);
        assert_eq!(r.body["text"], text);
        assert_eq!(r.body["seq"], 1, "edits keep the seq");
        assert!(r.body["edited_at"].is_string());
        assert_eq!(
            next_event(&mut events).await,
            ChatEvent::MessageEdited {
                chat_id: chat_id.parse().unwrap(),
                message_id: mid.parse().unwrap(),
                seq: 1,
                version,
                text: text.into(),
            }
        );
    }
    app.patch(
        &format!("/v1/messages/{mid}"),
        &bob,
        json!({"text": "hacked"}),
    )
    .await
    .assert_problem(403);
    app.patch(
        &format!("/v1/messages/{mid}"),
        &mallory,
        json!({"text": "hacked"}),
    )
    .await
    .assert_problem(404);
    app.patch(
        &format!("/v1/messages/{}", Uuid::new_v4()),
        &alice,
        json!({"text": "x"}),
    )
    .await
    .assert_problem(404);
    let r = app
        .get(&format!("/v1/chats/{chat_id}/messages?after_seq=0"), &bob)
        .await;
    let items = r.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["text"], "hello, world!");
    assert_eq!(items[0]["version"], 3);

    // Outsiders can neither read nor post.
    app.get(&format!("/v1/chats/{chat_id}/messages"), &mallory)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/chats/{chat_id}/messages"),
        &mallory,
        json!({"text": "x", "client_id": "m"}),
    )
    .await
    .assert_problem(404);
    app.get(&format!("/v1/chats/{chat_id}"), &mallory)
        .await
        .assert_problem(404);
}

async fn read_receipts_and_catch_up(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let chat_id = new_chat(&app, &alice, "", &["bob"]).await;
    let mut msgs = Vec::new();
    for i in 1..=5 {
        msgs.push(send(&app, &bob, &chat_id, &format!("m{i}"), &format!("k{i}")).await);
    }
    let unread = |list: &Value| -> i64 {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == chat_id.as_str())
            .unwrap()["unread_count"]
            .as_i64()
            .unwrap()
    };
    let list = app.get("/v1/chats", &alice).await;
    assert_eq!(unread(list.ok(200)), 5);
    assert_eq!(list.body["items"][0]["kind"], "direct");
    assert_eq!(list.body["items"][0]["last_message"]["text"], "m5");
    assert_eq!(
        list.body["items"][0]["members"].as_array().unwrap().len(),
        2
    );
    // The sender has read their own messages.
    let list = app.get("/v1/chats", &bob).await;
    assert_eq!(unread(list.ok(200)), 0);
    assert_eq!(list.body["items"][0]["last_read_seq"], 5);

    let mut events = app.control.subscribe_chat(chat_id.parse().unwrap());
    let read_path = format!("/v1/chats/{chat_id}/read");
    let read = |mid: &Value| app.post(&read_path, &alice, json!({"up_to_message_id": mid["id"]}));
    let r = read(&msgs[2]).await;
    assert_eq!(r.ok(200)["last_read_seq"], 3);
    assert_eq!(r.body["unread_count"], 2);
    assert_eq!(
        next_event(&mut events).await,
        ChatEvent::ReadReceipt {
            chat_id: chat_id.parse().unwrap(),
            user_id: alice_id.parse().unwrap(),
            up_to_seq: 3
        }
    );
    assert_eq!(unread(app.get("/v1/chats", &alice).await.ok(200)), 2);
    // Never backwards, and no event for a no-op.
    let r = read(&msgs[0]).await;
    assert_eq!(r.ok(200)["last_read_seq"], 3);
    assert_eq!(r.body["unread_count"], 2);
    let r = read(&msgs[2]).await;
    assert_eq!(r.ok(200)["last_read_seq"], 3);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err(),
        "no receipt for a position that did not move"
    );
    let r = read(&msgs[4]).await;
    assert_eq!(r.ok(200)["unread_count"], 0);
    assert_eq!(unread(app.get("/v1/chats", &alice).await.ok(200)), 0);
    let chat = app.get(&format!("/v1/chats/{chat_id}"), &bob).await;
    let members = chat.ok(200)["members"].as_array().unwrap().clone();
    let alice_member = members
        .iter()
        .find(|m| m["user_id"] == alice_id.as_str())
        .unwrap();
    assert_eq!(alice_member["last_read_seq"], 5);

    // Catch-up after a reconnect: ascending from after_seq, paged.
    let base = format!("/v1/chats/{chat_id}/messages");
    let r = app
        .get(&format!("{base}?after_seq=2&limit=2"), &alice)
        .await;
    assert_eq!(seqs(r.ok(200)), vec![3, 4]);
    assert_eq!(r.body["has_more"], true);
    let r = app
        .get(&format!("{base}?after_seq=4&limit=2"), &alice)
        .await;
    assert_eq!(seqs(r.ok(200)), vec![5]);
    assert_eq!(r.body["has_more"], false);
    let r = app.get(&format!("{base}?after_seq=5"), &alice).await;
    assert_eq!(seqs(r.ok(200)), Vec::<i64>::new());
    // History: newest first, then older pages by `before`.
    let r = app.get(&format!("{base}?limit=2"), &alice).await;
    assert_eq!(seqs(r.ok(200)), vec![5, 4]);
    assert_eq!(r.body["has_more"], true);
    let r = app.get(&format!("{base}?limit=2&before=4"), &alice).await;
    assert_eq!(seqs(r.ok(200)), vec![3, 2]);
    let r = app.get(&format!("{base}?limit=2&before=2"), &alice).await;
    assert_eq!(seqs(r.ok(200)), vec![1]);
    assert_eq!(r.body["has_more"], false);

    // Reading a message of another chat is a 404.
    let other = new_chat(&app, &alice, "Other", &["bob"]).await;
    let foreign = send(&app, &bob, &other, "elsewhere", "x").await;
    app.post(
        &format!("/v1/chats/{chat_id}/read"),
        &alice,
        json!({"up_to_message_id": foreign["id"]}),
    )
    .await
    .assert_problem(404);
    // The chat list puts the most recently active chat first.
    let list = app.get("/v1/chats", &alice).await;
    assert_eq!(list.ok(200)["items"][0]["id"], other.as_str());
    assert_eq!(list.body["items"][0]["unread_count"], 1);
}

async fn chat_events_over_redis(backend: Backend) {
    let Some(redis) = redis_available().await else {
        return;
    };
    let Some(app) = TestApp::start_with(backend, |c| c.redis_url = Some(redis)).await else {
        return;
    };
    assert!(app.control.chat_bus().is_redis());
    let (alice, _) = app.user("alice").await;
    let (_bob, bob_id) = app.user("bob").await;
    let (_carol, carol_id) = app.user("carol").await;
    let chat_id = new_chat(&app, &alice, "Redis", &["bob"]).await;
    let other_id = new_chat(&app, &alice, "Elsewhere", &["bob"]).await;
    let chat: Uuid = chat_id.parse().unwrap();
    let mut events = app.control.subscribe_chat(chat);

    // Another chat's traffic does not leak in.
    send(&app, &alice, &other_id, "not here", "o").await;
    let m = send(&app, &alice, &chat_id, "via redis", "r1").await;
    match next_event(&mut events).await {
        ChatEvent::MessageCreated {
            chat_id: c,
            message,
        } => {
            assert_eq!(c, chat);
            assert_eq!(message.id.to_string(), id(&m));
            assert_eq!(message.sender.username, "alice");
        }
        other => panic!("{other:?}"),
    }
    app.post(
        &format!("/v1/chats/{chat_id}/members"),
        &alice,
        json!({"email": "carol@example.com"}),
    )
    .await
    .ok(201);
    assert_eq!(
        next_event(&mut events).await,
        ChatEvent::MemberAdded {
            chat_id: chat,
            user_id: carol_id.parse().unwrap()
        }
    );
    app.delete(&format!("/v1/chats/{chat_id}/members/{carol_id}"), &alice)
        .await
        .ok(204);
    assert_eq!(
        next_event(&mut events).await,
        ChatEvent::MemberRemoved {
            chat_id: chat,
            user_id: carol_id.parse().unwrap()
        }
    );
    assert!(app
        .control
        .is_chat_member(chat, bob_id.parse().unwrap())
        .await
        .unwrap());
    assert!(!app
        .control
        .is_chat_member(chat, carol_id.parse().unwrap())
        .await
        .unwrap());
    let extra = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(extra.is_err(), "unexpected {extra:?}");
}
