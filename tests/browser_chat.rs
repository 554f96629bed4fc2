//! Chat end to end in real headless Chromium: `convene up` as a process, two
//! browsers on the same chat. Ada types (bob sees "ada is typing…") and
//! sends; bob sees the message live over the user channel, his open view
//! marks it read and ada sees the read tick; ada edits it and bob sees the
//! edit.
//!
//! Same setup as `browser_e2e.rs` (Chromium and ChromeDriver; without them the
//! test prints why and passes, unless `CI` is set). Bounded: the whole
//! browser part must finish within two minutes.

use std::path::Path;
use std::time::{Duration, Instant};

mod browser;

/// How long one step (a message arriving, a tick turning) may take.
const STEP: Duration = Duration::from_secs(15);

use browser::{browser, open_signed_in, post, user};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

/// Polls a JavaScript expression until it is truthy; returns its value.
async fn until(c: &Client, what: &str, expr: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or(Value::Null);
        if !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0) {
            return v;
        }
        assert!(start.elapsed() < STEP, "{what}: not within {STEP:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of message `seq` as this browser shows it (empty if not shown).
fn message_text(seq: i64) -> String {
    format!(
        "(document.querySelector('[data-test=message][data-seq=\"{seq}\"] [data-test=message-text]') || {{}}).textContent || ''"
    )
}

/// Ada and bob on the same chat page: typing, a live message, the read tick,
/// an edit.
async fn scenario(a: Client, b: Client, base: String, ada: Value, bob: Value, hash: String) {
    open_signed_in(&a, &base, &ada, &hash).await;
    open_signed_in(&b, &base, &bob, &hash).await;
    for (c, who) in [(&a, "ada"), (&b, "bob")] {
        c.wait()
            .at_most(STEP)
            .for_element(Locator::Css("[data-test=chat-input]"))
            .await
            .unwrap();
        until(
            c,
            &format!("{who}'s user channel opens"),
            "window.conveneChannel && window.conveneChannel.ready",
        )
        .await;
    }
    // Each sees the other online.
    until(
        &a,
        "bob online for ada",
        "document.querySelector('[data-test=chat-members] [data-online=true]:not([data-user=\"' + window.conveneChannel.userId + '\"])')",
    )
    .await;

    // Typing shows on the other side, then the message arrives live.
    let input = a
        .find(Locator::Css("[data-test=chat-input]"))
        .await
        .unwrap();
    input.send_keys("hello bob").await.unwrap();
    until(
        &b,
        "bob sees ada typing",
        "document.querySelector('[data-test=typing]').textContent.includes('ada is typing')",
    )
    .await;
    a.find(Locator::Css("[data-test=chat-send]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let sent_at = Instant::now();
    until(
        &b,
        "bob sees the message",
        &format!("{} === 'hello bob'", message_text(1)),
    )
    .await;
    let delivered = sent_at.elapsed();

    // Bob's open view marks it read; ada's tick turns.
    let tick = until(
        &a,
        "ada sees the read tick",
        "(document.querySelector('[data-test=message][data-seq=\"1\"] [data-test=read-tick][data-read-by=\"1\"]') || {}).textContent",
    )
    .await;
    assert!(tick.as_str().unwrap().contains("read"), "{tick}");
    let read_at = sent_at.elapsed();

    // Ada edits in place; bob sees the new text.
    a.find(Locator::Css(
        "[data-test=message][data-seq=\"1\"] [data-test=edit-message]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let edit = a
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("[data-test=edit-input]"))
        .await
        .unwrap();
    edit.clear().await.unwrap();
    edit.send_keys("hello bob, edited").await.unwrap();
    a.find(Locator::Css("[data-test=edit-save]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &b,
        "bob sees the edit",
        &format!("{} === 'hello bob, edited'", message_text(1)),
    )
    .await;
    until(
        &b,
        "bob sees it marked edited",
        "document.querySelector('[data-test=message][data-seq=\"1\"] [data-test=edited]')",
    )
    .await;
    // Exactly one message on each side: the send was not duplicated by
    // the live event.
    for (c, who) in [(&a, "ada"), (&b, "bob")] {
        let n = c
            .execute(
                "return document.querySelectorAll('[data-test=message], [data-test=pending-message]').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(n, json!(1), "{who} shows {n} messages");
    }
    println!("browser chat: delivered in {delivered:?}, read tick after {read_at:?}");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chat-ada.png"), a.screenshot().await.unwrap()).unwrap();
    std::fs::write(dir.join("chat-bob.png"), b.screenshot().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arrives_live_is_read_and_its_edit_follows() {
    let Some(stack) =
        browser::start("browser chat test", "chat-secret-chat-secret-chat-secret").await
    else {
        return;
    };
    let (base, driver, chromium) = (
        stack.base.clone(),
        stack.driver.clone(),
        stack.chromium.clone(),
    );
    let work = &stack.work;

    let ada = user(&base, "ada").await;
    let bob = user(&base, "bob").await;
    let chat = post(
        &base,
        "/v1/chats",
        ada["access_token"].as_str(),
        json!({"title": "pair", "member_emails": ["bob@example.org"]}),
    )
    .await;
    let chat_id = chat["id"].as_str().unwrap().to_string();
    let hash = format!("#/chats/{chat_id}");

    let a = browser(&driver, &chromium, &work.path().join("profile-a")).await;
    let b = browser(&driver, &chromium, &work.path().join("profile-b")).await;
    // In a task, so a failed step still closes both browsers below.
    let mut run = tokio::spawn(scenario(a.clone(), b.clone(), base, ada, bob, hash));
    let result = tokio::time::timeout(Duration::from_secs(120), &mut run).await;
    run.abort();
    let _ = a.close().await;
    let _ = b.close().await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("the browser chat test did not finish within two minutes"),
    }
}
