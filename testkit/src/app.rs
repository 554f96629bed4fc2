//! A real control plane on a loopback port, and a small REST client for it.

use convene_control::{Control, ControlConfig};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{Backend, TestDb};

pub struct TestApp {
    pub control: Control,
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Declared last: the database outlives the server using it.
    pub db: TestDb,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Asserts an RFC 9457 problem with the given status.
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(ct, "application/problem+json", "body: {}", self.text);
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap_or_default()
                .starts_with("urn:convene:problem:"),
            "body: {}",
            self.text
        );
        assert!(self.body["title"].is_string());
        self
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.body
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> Option<TestApp> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut ControlConfig),
    ) -> Option<TestApp> {
        let db = TestDb::new(backend).await?;
        let mut config = ControlConfig::for_tests(db.url.clone());
        tweak(&mut config);
        Some(Self::serve(db, config).await)
    }

    pub async fn serve(db: TestDb, config: ControlConfig) -> TestApp {
        let control = Control::start(config).await.expect("control starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = control.router();
        let server = tokio::spawn(async move {
            convene_control::serve(listener, router, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            control,
            base,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            db,
        }
    }

    /// Wraps an already served control plane (a second replica); it owns
    /// no database.
    pub fn attach(control: Control, base: String) -> TestApp {
        TestApp {
            control,
            base,
            client: reqwest::Client::new(),
            shutdown: None,
            server: None,
            db: TestDb::none(),
        }
    }

    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.control.close().await;
        std::mem::replace(&mut self.db, TestDb::none())
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Registers and logs in; returns (access token, user id).
    pub async fn user(&self, name: &str) -> (String, String) {
        let email = format!("{name}@example.com");
        let r = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(serde_json::json!({"username": name, "email": email, "password": "correct horse"})),
            )
            .await;
        let id = r.ok(201)["id"].as_str().unwrap().to_string();
        let r = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(serde_json::json!({"login": name, "password": "correct horse"})),
            )
            .await;
        (r.ok(200)["access_token"].as_str().unwrap().to_string(), id)
    }

    /// Creates a team as `admin` and makes `member` join it (accepted).
    /// Returns the team id.
    pub async fn team_with_member(&self, admin: &str, member: &str) -> String {
        let team = self
            .post(
                "/v1/teams",
                admin,
                serde_json::json!({"name": "Team", "description": ""}),
            )
            .await;
        let team_id = team.ok(201)["id"].as_str().unwrap().to_string();
        let code = team.body["join_code"].as_str().unwrap().to_string();
        let r = self
            .post("/v1/teams/join", member, serde_json::json!({"code": code}))
            .await;
        let req_id = r.ok(202)["request"]["id"].as_str().unwrap().to_string();
        self.post(
            &format!("/v1/teams/{team_id}/requests/{req_id}/accept"),
            admin,
            serde_json::json!({}),
        )
        .await
        .ok(200);
        team_id
    }

    pub async fn join(&self, conf_id: &str, token: &str) -> Resp {
        self.post(
            &format!("/v1/conferences/{conf_id}/join"),
            token,
            serde_json::json!({}),
        )
        .await
    }

    pub async fn conference(&self, token: &str, team_id: &str, waiting_hall: bool) -> String {
        let r = self
            .post(
                &format!("/v1/teams/{team_id}/conferences"),
                token,
                serde_json::json!({"title": "Standup", "starts_at": "2030-01-01T10:00:00Z", "waiting_hall": waiting_hall}),
            )
            .await;
        r.ok(201)["id"].as_str().unwrap().to_string()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
