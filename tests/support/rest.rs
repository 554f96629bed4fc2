//! Serving a router on a loopback port, and a REST client for the control
//! plane that hands back the status with the body (tests assert on both).

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Serve `app` on `listener` until the task is aborted.
pub fn serve_on(listener: TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = convene_control::serve(listener, app, std::future::pending()).await;
    })
}

/// Serve `app` on a fresh loopback port.
pub async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(listener, app))
}

pub struct Rest {
    pub base: String,
    pub http: reqwest::Client,
}

impl Rest {
    /// The control plane at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Rest {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers and logs in; returns (access token, user id).
    pub async fn user(&self, name: &str) -> (String, String) {
        let (s, b) = self
            .post(
                "/v1/auth/register",
                None,
                json!({"username": name, "email": format!("{name}@example.org"), "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self
            .post(
                "/v1/auth/login",
                None,
                json!({"login": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        (
            b["access_token"].as_str().unwrap().to_string(),
            b["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// A team owned by `admin` with `members` added, and a conference
    /// (with a waiting hall if asked); returns the conference id.
    pub async fn conference(&self, admin: &str, members: &[&str], waiting_hall: bool) -> String {
        let (s, team) = self
            .post(
                "/v1/teams",
                Some(admin),
                json!({"name": "crew", "description": ""}),
            )
            .await;
        assert_eq!(s, 201, "{team}");
        let team_id = team["id"].as_str().unwrap();
        for m in members {
            let (s, b) = self
                .post(
                    &format!("/v1/teams/{team_id}/members"),
                    Some(admin),
                    json!({"email": format!("{m}@example.org")}),
                )
                .await;
            assert!(s == 201 || s == 200, "{s} {b}");
        }
        let (s, conf) = self
            .post(
                &format!("/v1/teams/{team_id}/conferences"),
                Some(admin),
                json!({"title": "standup", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": waiting_hall}),
            )
            .await;
        assert_eq!(s, 201, "{conf}");
        conf["id"].as_str().unwrap().to_string()
    }

    /// A join token: (token, must wait).
    pub async fn join_token(&self, access: &str, conf: &str) -> (String, bool) {
        let (s, body) = self
            .post(
                &format!("/v1/conferences/{conf}/join"),
                Some(access),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        (
            body["token"].as_str().unwrap().to_string(),
            body["waiting"].as_bool().unwrap(),
        )
    }
}
