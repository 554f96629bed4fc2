//! Shared by the collaboration tests (`collab_*.rs`): reading ids and seqs
//! out of pages, walking cursors, and creating chats and messages over the
//! REST API of a [`TestApp`].
#![allow(dead_code)]

use std::time::Duration;

use convene_control::ChatEvent;
use convene_testkit::TestApp;
use serde_json::{json, Value};

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

pub fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(id).collect()
}

pub fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Follows `next_cursor` from `path` to the end; returns every item id.
pub async fn walk(app: &TestApp, path: &str, token: &str) -> (Vec<String>, usize) {
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

pub async fn new_chat(app: &TestApp, token: &str, title: &str, members: &[&str]) -> String {
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

pub async fn send(app: &TestApp, token: &str, chat_id: &str, text: &str, client_id: &str) -> Value {
    app.post(
        &format!("/v1/chats/{chat_id}/messages"),
        token,
        json!({"text": text, "client_id": client_id}),
    )
    .await
    .ok(201)
    .clone()
}

pub async fn next_event(sub: &mut convene_control::ChatSubscription) -> ChatEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("event in time")
        .expect("bus open")
}
