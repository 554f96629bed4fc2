//! Team collaboration over real HTTP: posts, comments, chats, message
//! ordering, idempotent sends, edits, read receipts and chat events, on
//! SQLite and PostgreSQL alike.

use std::collections::HashSet;
use std::time::Duration;

use convene_control::ChatEvent;
use convene_testkit::{both_backends, redis_available, Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

both_backends!(
    posts_and_comments,
    post_permissions,
    concurrent_senders_get_dense_seqs,
    idempotent_send_and_edit_versions,
    read_receipts_and_catch_up,
    chat_membership_rules,
    collab_bad_input_is_problem_json,
    chat_events_over_redis,
);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(id).collect()
}

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Follows `next_cursor` from `path` to the end; returns every item id.
async fn walk(app: &TestApp, path: &str, token: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            None => path.to_string(),
            Some(c) => format!("{path}{sep}cursor={c}"),
        };
        let r = app.get(&url, token).await;
        seen.extend(ids(r.ok(200)));
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (seen, pages),
        }
    }
}

async fn new_chat(app: &TestApp, token: &str, title: &str, members: &[&str]) -> String {
    let emails: Vec<String> = members.iter().map(|m| format!("{m}@example.com")).collect();
    let r = app
        .post(
            "/v1/chats",
            token,
            json!({"title": title, "member_emails": emails}),
        )
        .await;
    id(r.ok(201))
}

async fn send(app: &TestApp, token: &str, chat_id: &str, text: &str, client_id: &str) -> Value {
    app.post(
        &format!("/v1/chats/{chat_id}/messages"),
        token,
        json!({"text": text, "client_id": client_id}),
    )
    .await
    .ok(201)
    .clone()
}

async fn next_event(sub: &mut convene_control::ChatSubscription) -> ChatEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("event in time")
        .expect("bus open")
}

async fn posts_and_comments(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.max_page_limit = 3).await else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;

    let mut created = Vec::new();
    for i in 0..7 {
        let r = app
            .post(
                &format!("/v1/teams/{team_id}/posts"),
                &alice,
                json!({"title": format!("Post {i}"), "body": "Line 1\r\nLine 2"}),
            )
            .await;
        let p = r.ok(201);
        assert_eq!(p["author"]["id"], alice_id.as_str());
        assert_eq!(p["author"]["username"], "alice");
        assert_eq!(p["comment_count"], 0);
        assert_eq!(p["body"], "Line 1\nLine 2");
        assert!(p["edited_at"].is_null());
        // No pause: posts created in the same millisecond must still keep
        // their order (ids are time-ordered).
        created.push(id(p));
    }
    // Newest first, every post exactly once, limit capped at 3.
    let (seen, pages) = walk(&app, &format!("/v1/teams/{team_id}/posts?limit=50"), &bob).await;
    assert_eq!(pages, 3);
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Comments, oldest first, and the post's comment count.
    let post = &created[0];
    let mut comments = Vec::new();
    for i in 0..4 {
        let who = if i % 2 == 0 { &bob } else { &alice };
        let r = app
            .post(
                &format!("/v1/posts/{post}/comments"),
                who,
                json!({"body": format!("c{i}")}),
            )
            .await;
        comments.push(id(r.ok(201)));
    }
    let (seen, pages) = walk(&app, &format!("/v1/posts/{post}/comments"), &alice).await;
    assert_eq!(seen, comments);
    assert_eq!(pages, 2);
    let p = app.get(&format!("/v1/posts/{post}"), &bob).await;
    assert_eq!(p.ok(200)["comment_count"], 4);
    assert_eq!(p.body["title"], "Post 0");
    let page = app
        .get(&format!("/v1/teams/{team_id}/posts?limit=1"), &bob)
        .await;
    assert_eq!(page.ok(200)["items"][0]["comment_count"], 0);

    // Author edits: partial update, edited_at set.
    let r = app
        .patch(
            &format!("/v1/posts/{post}"),
            &alice,
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(r.ok(200)["title"], "Renamed");
    assert_eq!(r.body["body"], "Line 1\nLine 2");
    assert!(r.body["edited_at"].is_string());
    let r = app
        .patch(
            &format!("/v1/comments/{}", comments[0]),
            &bob,
            json!({"body": "fixed"}),
        )
        .await;
    assert_eq!(r.ok(200)["body"], "fixed");
    assert!(r.body["edited_at"].is_string());

    // Deleting comments and posts.
    app.delete(&format!("/v1/comments/{}", comments[1]), &alice)
        .await
        .ok(204);
    let p = app.get(&format!("/v1/posts/{post}"), &bob).await;
    assert_eq!(p.ok(200)["comment_count"], 3);
    app.delete(&format!("/v1/posts/{post}"), &alice)
        .await
        .ok(204);
    app.get(&format!("/v1/posts/{post}"), &alice)
        .await
        .assert_problem(404);
    // Its comments went with it.
    app.patch(
        &format!("/v1/comments/{}", comments[0]),
        &bob,
        json!({"body": "x"}),
    )
    .await
    .assert_problem(404);
}

async fn post_permissions(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (alice, _) = app.user("alice").await; // team admin
    let (bob, _) = app.user("bob").await; // member
    let (carol, _) = app.user("carol").await; // member
    let (mallory, _) = app.user("mallory").await; // outsider
    let team_id = app.team_with_member(&alice, &bob).await;
    let code = app
        .get(&format!("/v1/teams/{team_id}"), &alice)
        .await
        .ok(200)["join_code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post("/v1/teams/join", &carol, json!({"code": code}))
        .await;
    let req_id = r.ok(202)["request"]["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/v1/teams/{team_id}/requests/{req_id}/accept"),
        &alice,
        json!({}),
    )
    .await
    .ok(200);

    let post = id(app
        .post(
            &format!("/v1/teams/{team_id}/posts"),
            &bob,
            json!({"title": "Bob's", "body": ""}),
        )
        .await
        .ok(201));
    let comment = id(app
        .post(
            &format!("/v1/posts/{post}/comments"),
            &bob,
            json!({"body": "mine"}),
        )
        .await
        .ok(201));

    // Outsiders see nothing: 404 everywhere, never 403.
    for path in [
        format!("/v1/teams/{team_id}/posts"),
        format!("/v1/posts/{post}"),
        format!("/v1/posts/{post}/comments"),
    ] {
        app.get(&path, &mallory).await.assert_problem(404);
    }
    app.post(
        &format!("/v1/teams/{team_id}/posts"),
        &mallory,
        json!({"title": "spam"}),
    )
    .await
    .assert_problem(404);
    app.post(
        &format!("/v1/posts/{post}/comments"),
        &mallory,
        json!({"body": "spam"}),
    )
    .await
    .assert_problem(404);
    app.patch(
        &format!("/v1/posts/{post}"),
        &mallory,
        json!({"title": "x"}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("/v1/comments/{comment}"), &mallory)
        .await
        .assert_problem(404);

    // Members who are not the author: no edits, no deletes.
    app.patch(&format!("/v1/posts/{post}"), &carol, json!({"title": "x"}))
        .await
        .assert_problem(403);
    app.delete(&format!("/v1/posts/{post}"), &carol)
        .await
        .assert_problem(403);
    app.patch(
        &format!("/v1/comments/{comment}"),
        &carol,
        json!({"body": "x"}),
    )
    .await
    .assert_problem(403);
    app.delete(&format!("/v1/comments/{comment}"), &carol)
        .await
        .assert_problem(403);
    // Admins cannot edit someone else's words either, but may delete them.
    app.patch(&format!("/v1/posts/{post}"), &alice, json!({"title": "x"}))
        .await
        .assert_problem(403);
    app.delete(&format!("/v1/comments/{comment}"), &alice)
        .await
        .ok(204);
    app.delete(&format!("/v1/posts/{post}"), &alice)
        .await
        .ok(204);

    // A member who leaves the team loses access to its posts.
    let post = id(app
        .post(
            &format!("/v1/teams/{team_id}/posts"),
            &carol,
            json!({"title": "Carol's"}),
        )
        .await
        .ok(201));
    let carol_id = app.get("/v1/users/me", &carol).await.ok(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/v1/teams/{team_id}/members/{carol_id}"), &carol)
        .await
        .ok(204);
    app.get(&format!("/v1/posts/{post}"), &carol)
        .await
        .assert_problem(404);
    // The post stays, with its author.
    let p = app.get(&format!("/v1/posts/{post}"), &bob).await;
    assert_eq!(p.ok(200)["author"]["username"], "carol");
}

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

async fn chat_membership_rules(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.chat_max_members = 4;
        c.max_page_limit = 2;
    })
    .await
    else {
        return;
    };
    let (alice, alice_id) = app.user("alice").await;
    let (bob, bob_id) = app.user("bob").await;
    let (carol, carol_id) = app.user("carol").await;
    let (_dave, _) = app.user("dave").await;
    let (erin, _) = app.user("erin").await;

    // Direct chats: one per pair, whoever creates it.
    let direct = app
        .post(
            "/v1/chats",
            &alice,
            json!({"member_emails": ["bob@example.com"]}),
        )
        .await;
    let direct_id = id(direct.ok(201));
    assert_eq!(direct.body["kind"], "direct");
    let again = app
        .post(
            "/v1/chats",
            &bob,
            json!({"member_emails": ["ALICE@example.com"]}),
        )
        .await;
    assert_eq!(again.ok(200)["id"], direct_id.as_str());
    app.post(
        &format!("/v1/chats/{direct_id}/members"),
        &alice,
        json!({"email": "carol@example.com"}),
    )
    .await
    .assert_problem(409);
    app.delete(&format!("/v1/chats/{direct_id}/members/{bob_id}"), &bob)
        .await
        .assert_problem(409);

    // Unknown or invalid member emails: 422 naming the address.
    let r = app
        .post(
            "/v1/chats",
            &alice,
            json!({"title": "G", "member_emails": ["nobody@example.com"]}),
        )
        .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("nobody@example.com"),
        "{}",
        r.text
    );
    app.post(
        "/v1/chats",
        &alice,
        json!({"title": "G", "member_emails": ["not-an-email"]}),
    )
    .await
    .assert_problem(422);
    // Nobody to talk to and no title.
    app.post(
        "/v1/chats",
        &alice,
        json!({"member_emails": ["alice@example.com"]}),
    )
    .await
    .assert_problem(422);
    // Over the member limit (creator included).
    app.post(
        "/v1/chats",
        &alice,
        json!({"title": "Big", "member_emails": ["bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com"]}),
    )
    .await
    .assert_problem(422);

    // Group chat: creator + bob (duplicates and self ignored).
    let r = app
        .post(
            "/v1/chats",
            &alice,
            json!({"title": "Group", "member_emails": ["bob@example.com", "Bob@Example.com", "alice@example.com"]}),
        )
        .await;
    let group = id(r.ok(201));
    assert_eq!(r.body["kind"], "group");
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["created_by"], alice_id.as_str());
    send(&app, &alice, &group, "before carol", "a1").await;

    // Any member adds; new members see history but nothing unread.
    let r = app
        .post(
            &format!("/v1/chats/{group}/members"),
            &bob,
            json!({"email": "carol@example.com"}),
        )
        .await;
    assert_eq!(r.ok(201)["user_id"], carol_id.as_str());
    assert_eq!(r.body["last_read_seq"], 1);
    let c = app.get(&format!("/v1/chats/{group}"), &carol).await;
    assert_eq!(c.ok(200)["unread_count"], 0);
    assert_eq!(c.body["last_message"]["text"], "before carol");
    app.post(
        &format!("/v1/chats/{group}/members"),
        &bob,
        json!({"email": "carol@example.com"}),
    )
    .await
    .assert_problem(409);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &bob,
        json!({"email": "ghost@example.com"}),
    )
    .await
    .assert_problem(404);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &erin,
        json!({"email": "erin@example.com"}),
    )
    .await
    .assert_problem(404);
    app.post(
        &format!("/v1/chats/{group}/members"),
        &alice,
        json!({"email": "dave@example.com"}),
    )
    .await
    .ok(201);
    // Full at 4.
    app.post(
        &format!("/v1/chats/{group}/members"),
        &alice,
        json!({"email": "erin@example.com"}),
    )
    .await
    .assert_problem(409);

    // Only the creator removes others; anyone may leave.
    app.delete(&format!("/v1/chats/{group}/members/{carol_id}"), &bob)
        .await
        .assert_problem(403);
    app.delete(&format!("/v1/chats/{group}/members/{carol_id}"), &alice)
        .await
        .ok(204);
    app.get(&format!("/v1/chats/{group}"), &carol)
        .await
        .assert_problem(404);
    app.delete(&format!("/v1/chats/{group}/members/{bob_id}"), &bob)
        .await
        .ok(204);
    app.post(
        &format!("/v1/chats/{group}/messages"),
        &bob,
        json!({"text": "x", "client_id": "b"}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("/v1/chats/{group}/members/{bob_id}"), &alice)
        .await
        .assert_problem(404);

    // The chat list paginates (max page 2 here) and only shows my chats.
    new_chat(&app, &alice, "Third", &[]).await;
    let (seen, pages) = walk(&app, "/v1/chats", &alice).await;
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 3);
    let (seen, _) = walk(&app, "/v1/chats", &carol).await;
    assert!(seen.is_empty());
}

async fn collab_bad_input_is_problem_json(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| {
        c.message_max_chars = 10;
        c.post_title_max_chars = 5;
    })
    .await
    else {
        return;
    };
    let (alice, _) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let team_id = app.team_with_member(&alice, &bob).await;
    let chat_id = new_chat(&app, &alice, "", &["bob"]).await;
    let msgs = format!("/v1/chats/{chat_id}/messages");
    let posts = format!("/v1/teams/{team_id}/posts");

    for body in [
        json!({"text": "", "client_id": "a"}),
        json!({"text": "   ", "client_id": "a"}),
        json!({"text": "x".repeat(11), "client_id": "a"}),
        json!({"text": "ok", "client_id": ""}),
        json!({"text": "ok", "client_id": "c".repeat(65)}),
        json!({"text": "ok"}),
        json!({"text": 5, "client_id": "a"}),
        json!({"text": "ok", "client_id": "a", "extra": 1}),
        json!({"text": "bell\u{7}", "client_id": "a"}),
    ] {
        app.post(&msgs, &alice, body).await.assert_problem(422);
    }
    // Line breaks of any platform are fine.
    send(&app, &alice, &chat_id, "a\r\nb", "crlf").await;
    for body in [
        json!({"title": ""}),
        json!({"title": "toolong"}),
        json!({"body": "no title"}),
    ] {
        app.post(&posts, &alice, body).await.assert_problem(422);
    }
    app.raw(
        app.client
            .post(app.url(&posts))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body("{\"title\": "),
    )
    .await
    .assert_problem(400);
    app.raw(
        app.client
            .post(app.url(&msgs))
            .bearer_auth(&alice)
            .header("content-type", "text/plain")
            .body("hi"),
    )
    .await
    .assert_problem(415);

    // Query parameters.
    for q in [
        "before=1&after_seq=1",
        "before=abc",
        "after_seq=1.5",
        "limit=-1",
    ] {
        app.get(&format!("{msgs}?{q}"), &alice)
            .await
            .assert_problem(400);
    }
    app.get(&format!("{posts}?cursor=%%%"), &alice)
        .await
        .assert_problem(400);
    app.get("/v1/chats?cursor=bm9wZQ", &alice)
        .await
        .assert_problem(400);
    // Bad and unknown ids.
    app.get("/v1/posts/not-a-uuid", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/chats/not-a-uuid/messages", &alice)
        .await
        .assert_problem(400);
    app.get(&format!("/v1/posts/{}", Uuid::new_v4()), &alice)
        .await
        .assert_problem(404);
    app.post(
        &format!("/v1/chats/{chat_id}/read"),
        &alice,
        json!({"up_to_message_id": "nope"}),
    )
    .await
    .assert_problem(422);
    app.post(
        &format!("/v1/chats/{chat_id}/read"),
        &alice,
        json!({"up_to_message_id": Uuid::new_v4()}),
    )
    .await
    .assert_problem(404);
    // No token.
    app.call(Method::GET, "/v1/chats", None, None)
        .await
        .assert_problem(401);
    // Wrong method.
    app.call(Method::PUT, &msgs, Some(&alice), Some(json!({})))
        .await
        .assert_problem(405);

    // Every new route is documented.
    let doc = app.call(Method::GET, "/openapi.json", None, None).await;
    let paths = doc.ok(200)["paths"].as_object().unwrap();
    for p in [
        "/v1/teams/{id}/posts",
        "/v1/posts/{id}",
        "/v1/posts/{id}/comments",
        "/v1/comments/{id}",
        "/v1/chats",
        "/v1/chats/{id}",
        "/v1/chats/{id}/members",
        "/v1/chats/{id}/members/{user_id}",
        "/v1/chats/{id}/messages",
        "/v1/chats/{id}/read",
        "/v1/messages/{id}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["schemas"]["ChatEvent"].is_object());
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
