//! Team posts and comments over real HTTP: creating, paging, editing and
//! deleting them, and who may do which, on SQLite and PostgreSQL alike.

mod common;

use common::{id, walk};
use convene_testkit::{both_backends, Backend, TestApp};
use serde_json::json;

both_backends!(posts_and_comments, post_permissions,);

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
