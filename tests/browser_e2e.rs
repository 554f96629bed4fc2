//! End to end in real headless Chromium: `convene up` as a process, two
//! browsers with fake camera and microphone, a waiting hall, a moderator who
//! clicks Admit, and media that actually decodes on both sides; then a
//! screen share, which the other side shows as a tile of its own.
//!
//! Needs Chromium and ChromeDriver (`apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the test prints why and passes,
//! unless `CI` is set.

use std::path::Path;
use std::time::{Duration, Instant};

mod browser;

use browser::{browser, open_signed_in, post, user};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

/// The text of the element matching `css`. The page re-renders as state
/// arrives (the waiting position is refreshed), so an element found a moment
/// ago may be gone: find it again then.
async fn text_of(c: &Client, css: &str) -> String {
    let mut last = None;
    for _ in 0..20 {
        let found = c.wait().for_element(Locator::Css(css)).await;
        match found {
            Ok(e) => match e.text().await {
                Ok(t) => return t,
                Err(err) => last = Some(err),
            },
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no text for {css}: {last:?}");
}

async fn stats(c: &Client) -> Value {
    c.execute(
        "return window.conveneRoom ? window.conveneRoom.stats() : null;",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

/// Asserts the room's side panel fits: no control sticks out of its card and
/// the page needs no horizontal scrollbar.
async fn assert_side_panel_fits(c: &Client, what: &str) {
    let found = c
        .execute(
            r#"
            const out = [];
            const doc = document.documentElement;
            if (doc.scrollWidth > doc.clientWidth) out.push(`page ${doc.scrollWidth} > ${doc.clientWidth}`);
            for (const card of document.querySelectorAll('.side .card')) {
              const box = card.getBoundingClientRect();
              for (const el of card.querySelectorAll('button, span, li')) {
                const r = el.getBoundingClientRect();
                if (r.right > box.right + 0.5 || r.left < box.left - 0.5)
                  out.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${r.left}..${r.right} outside ${box.left}..${box.right}`);
              }
            }
            return out;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(found, json!([]), "{what}: the side panel overflows");
}

/// Waits until this browser decodes video frames and receives audio from the
/// other; returns the stats and how long it took.
async fn until_media(c: &Client, within: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let s = stats(c).await;
        let frames = s["videoFramesDecoded"].as_u64().unwrap_or(0);
        let audio = s["audioPacketsReceived"].as_u64().unwrap_or(0);
        if frames > 0 && audio > 0 {
            return (s, start.elapsed());
        }
        assert!(start.elapsed() < within, "no media within {within:?}: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_admits_a_waiter_and_both_see_and_hear_each_other() {
    let Some(stack) = browser::start(
        "browser end-to-end test",
        "e2e-secret-e2e-secret-e2e-secret",
    )
    .await
    else {
        return;
    };
    let (base, driver, chromium) = (
        stack.base.clone(),
        stack.driver.clone(),
        stack.chromium.clone(),
    );
    let work = &stack.work;

    // Accounts, team and conference through the REST API.
    let ada = user(&base, "ada").await;
    // A long (but valid) name: the moderator's side panel must still fit
    // its buttons next to it.
    let bob = user(&base, "bartholomew.van-der-berg").await;
    let ada_t = ada["access_token"].as_str().unwrap();
    let team = post(
        &base,
        "/v1/teams",
        Some(ada_t),
        json!({"name": "crew", "description": ""}),
    )
    .await;
    let team_id = team["id"].as_str().unwrap();
    post(
        &base,
        &format!("/v1/teams/{team_id}/members"),
        Some(ada_t),
        json!({"email": "bartholomew.van-der-berg@example.org"}),
    )
    .await;
    let conf = post(
        &base,
        &format!("/v1/teams/{team_id}/conferences"),
        Some(ada_t),
        json!({"title": "e2e", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": true}),
    )
    .await;
    let conf_id = conf["id"].as_str().unwrap();

    let a = browser(&driver, &chromium, &work.path().join("profile-a")).await;
    let b = browser(&driver, &chromium, &work.path().join("profile-b")).await;
    let result = async {
        // The window size at which the side panel was seen to overflow.
        a.set_window_size(1400, 900).await.unwrap();
        open_signed_in(&a, &base, &ada, &format!("#/conf/{conf_id}")).await;
        a.wait().for_element(Locator::Css("#join")).await.unwrap().click().await.unwrap();
        a.wait().for_element(Locator::Css("[data-test=room]")).await.unwrap();

        open_signed_in(&b, &base, &bob, &format!("#/conf/{conf_id}")).await;
        b.wait().for_element(Locator::Css("#join")).await.unwrap().click().await.unwrap();
        b.wait().for_element(Locator::Css("[data-test=waiting]")).await.unwrap();
        let position = text_of(&b, "#position").await;
        assert_eq!(position, "1");

        // The moderator sees bob in the waiting list and admits him.
        let admit = a.wait().for_element(Locator::Css("#waiting-list .waiter .admit")).await.unwrap();
        assert_side_panel_fits(&a, "with a waiter").await;
        let admitted_at = Instant::now();
        admit.click().await.unwrap();
        b.wait().for_element(Locator::Css("[data-test=room]")).await.unwrap();
        let join_latency = admitted_at.elapsed();

        let (a_stats, a_ttff) = until_media(&a, Duration::from_secs(60)).await;
        let (b_stats, b_ttff) = until_media(&b, Duration::from_secs(60)).await;
        a.wait().for_element(Locator::Css("#people li button")).await.unwrap();
        assert_side_panel_fits(&a, "with a participant").await;
        println!(
            "browser e2e: admit→room {join_latency:?}; time to first frame after room: ada {a_ttff:?}, bob {:?}; \
             ada joinMs {}, bob joinMs {}; ada {a_stats}; bob {b_stats}",
            b_ttff + join_latency,
            a_stats["joinMs"],
            b_stats["joinMs"]
        );

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let png = a.screenshot().await.unwrap();
        std::fs::write(dir.join("conference.png"), png).unwrap();

        // bob shares his screen (headless Chromium's fake capture): ada
        // gets it as a stream of its own, in its own tile, decoding.
        b.wait().for_element(Locator::Css("#share")).await.unwrap().click().await.unwrap();
        let start = Instant::now();
        let screen = loop {
            let v = a
                .execute(
                    r#"
                    const v = document.querySelector('.tile.screen video');
                    if (!v) return null;
                    return {
                      width: v.videoWidth,
                      name: v.parentElement.querySelector('.name').textContent,
                      cameras: document.querySelectorAll('#grid .tile:not(.screen)').length,
                    };"#,
                    vec![],
                )
                .await
                .unwrap();
            if v["width"].as_u64().unwrap_or(0) > 0 {
                break v;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no screen-share tile decoding: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            screen["name"].as_str().is_some_and(|n| n.ends_with("(screen)")),
            "{screen}"
        );
        assert_eq!(screen["cameras"], json!(2), "ada's own tile and bob's camera beside it: {screen}");
        println!("browser e2e: screen share decoding at ada after {:?}: {screen}", start.elapsed());
        let png = a.screenshot().await.unwrap();
        std::fs::write(dir.join("screen-share.png"), png).unwrap();
    }
    .await;
    let _ = a.close().await;
    let _ = b.close().await;
    result
}
