//! Shared harness for the signaling integration tests: a node is a real
//! control plane + signaling service (+ SFU) on one loopback HTTP port.
#![allow(dead_code)]

pub mod protocol;
pub mod rest;
pub mod roles;
pub mod scenarios;
pub mod venv;

use std::sync::Arc;
use std::time::Duration;

use convene::inprocess::{InProcessControl, InProcessSfu, InProcessUsers};
use convene_control::{Control, ControlConfig};
use convene_proto::collab::ChatMessage;
use convene_proto::signaling::{ClientMessage, ServerMessage};
use convene_signaling::{NodeOptions, Signaling, SignalingConfig};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// Upper bound for one step, so a broken build fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// One node: control plane + signaling (+ its own SFU) on one HTTP port.
pub struct Node {
    pub base: String,
    pub ws: String,
    pub http: reqwest::Client,
    pub control: Control,
    pub sfu: convene_sfu::SfuHandle,
    pub signaling: Signaling,
    task: tokio::task::JoinHandle<()>,
    _sfu: Option<convene_sfu::Sfu>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A node with its own SFU, default limits, optional Redis.
pub async fn node(db_url: &str, redis: Option<&str>) -> Node {
    node_with(db_url, redis, None, SignalingConfig::default()).await
}

/// A node; `sfu` shares another node's SFU (several signaling nodes, one
/// media server), otherwise it starts its own.
pub async fn node_with(
    db_url: &str,
    redis: Option<&str>,
    sfu: Option<convene_sfu::SfuHandle>,
    config: SignalingConfig,
) -> Node {
    let setup = Setup {
        signaling: config,
        ..Setup::default()
    };
    node_setup(db_url, redis, sfu, setup).await
}

/// Everything a test may tune on a node.
pub struct Setup {
    pub signaling: SignalingConfig,
    /// For the node's own SFU (ignored when it shares another node's).
    pub sfu: convene_sfu::SfuConfig,
    /// Control-plane settings on top of the test defaults.
    pub control: fn(&mut ControlConfig),
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            signaling: SignalingConfig::default(),
            sfu: convene_sfu::SfuConfig::for_tests(),
            control: |_| {},
        }
    }
}

pub async fn node_setup(
    db_url: &str,
    redis: Option<&str>,
    sfu: Option<convene_sfu::SfuHandle>,
    setup: Setup,
) -> Node {
    let Setup {
        signaling: config,
        sfu: sfu_config,
        control: tweak,
    } = setup;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cc = ControlConfig::for_tests(db_url);
    cc.public_url = format!("http://{addr}");
    cc.redis_url = redis.map(str::to_string);
    tweak(&mut cc);
    let control = Control::start(cc).await.expect("control starts");
    let (owned, handle) = match sfu {
        Some(h) => (None, h),
        None => {
            let (sfu, handle) = convene_sfu::start(sfu_config).await.expect("sfu starts");
            (Some(sfu), handle)
        }
    };
    let options = NodeOptions {
        users: Some(Arc::new(InProcessUsers(control.clone()))),
        redis: redis.map(|u| redis::Client::open(u).unwrap()),
    };
    let signaling = Signaling::with_options(
        config,
        Arc::new(InProcessControl(control.clone())),
        Arc::new(InProcessSfu(handle.clone())),
        Default::default(),
        options,
    )
    .await
    .expect("signaling starts");
    let app = control.router().merge(signaling.router());
    let signaling = signaling.clone();
    let task = rest::serve_on(listener, app);
    Node {
        base: format!("http://{addr}"),
        ws: format!("ws://{addr}/v1/ws"),
        http: reqwest::Client::new(),
        control,
        sfu: handle,
        signaling,
        task,
        _sfu: owned,
    }
}

impl Node {
    /// A gauge or counter of this node's signaling metrics (summed over
    /// labels matching `label`, if given).
    pub fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let mut sum = 0.0;
        for family in self.signaling.registry().gather() {
            if family.name() != name {
                continue;
            }
            let gauge = family.get_field_type() == prometheus::proto::MetricType::GAUGE;
            for m in family.get_metric() {
                let wanted = label.is_none_or(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                });
                if wanted {
                    sum += if gauge {
                        m.get_gauge().get_value()
                    } else {
                        m.get_counter().get_value()
                    };
                }
            }
        }
        sum
    }

    /// Polls a condition until it holds (or the step's deadline passes).
    pub async fn until(&self, what: &str, mut cond: impl FnMut(&Node) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> Value {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, token, body).await
    }

    /// Registers and logs in; returns (access token, user id).
    pub async fn user(&self, name: &str) -> (String, Uuid) {
        let res = self
            .http
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"username": name, "email": format!("{name}@example.org"), "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
        self.login(name).await
    }

    pub async fn login(&self, name: &str) -> (String, Uuid) {
        let body: Value = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"login": name, "password": "correct horse"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["user"]["id"].as_str().unwrap().parse().unwrap(),
        )
    }

    pub async fn chat(&self, token: &str, with: &[&str]) -> Uuid {
        let emails: Vec<String> = with.iter().map(|n| format!("{n}@example.org")).collect();
        let chat = self
            .post(
                "/v1/chats",
                token,
                json!({"title": "", "member_emails": emails}),
            )
            .await;
        chat["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn say(&self, token: &str, chat: Uuid, text: &str) -> ChatMessage {
        let m = self
            .post(
                &format!("/v1/chats/{chat}/messages"),
                token,
                json!({"text": text, "client_id": Uuid::new_v4().to_string()}),
            )
            .await;
        serde_json::from_value(m).unwrap()
    }

    /// A team owned by `admin` with `members`, and a conference; returns its id.
    pub async fn conference(&self, admin: &str, members: &[&str], waiting_hall: bool) -> Uuid {
        let team = self
            .post(
                "/v1/teams",
                admin,
                json!({"name": "crew", "description": ""}),
            )
            .await;
        let team_id = team["id"].as_str().unwrap().to_string();
        for m in members {
            self.post(
                &format!("/v1/teams/{team_id}/members"),
                admin,
                json!({"email": format!("{m}@example.org")}),
            )
            .await;
        }
        let conf = self
            .post(
                &format!("/v1/teams/{team_id}/conferences"),
                admin,
                json!({"title": "standup", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": waiting_hall}),
            )
            .await;
        conf["id"].as_str().unwrap().parse().unwrap()
    }

    /// A join token: (token, must wait).
    pub async fn join_token(&self, access: &str, conf: Uuid) -> (String, bool) {
        let body = self
            .post(&format!("/v1/conferences/{conf}/join"), access, json!({}))
            .await;
        (
            body["token"].as_str().unwrap().to_string(),
            body["waiting"].as_bool().unwrap(),
        )
    }

    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(&self.ws)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    pub async fn hello(&self, token: &str) -> (Client, Vec<Uuid>) {
        let (ws, _) = tokio_tungstenite::connect_async(&self.ws)
            .await
            .expect("websocket connects");
        let mut c = Client { ws };
        c.send(&ClientMessage::Hello {
            access_token: token.to_string(),
        })
        .await;
        match c.next().await {
            ServerMessage::Welcome { online, .. } => (c, online),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// A socket to the signaling service listening on `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        let text = serde_json::to_string(msg).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// The next server message, skipping nothing but WebSocket control
    /// frames; a close is a failure.
    pub async fn next(&mut self) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("a message in time")
                .expect("socket open")
                .expect("frame");
            match frame {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("valid server message")
                }
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for the first message `pick` accepts, skipping others.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = tokio::time::timeout(left, self.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if let Some(v) = pick(&msg) {
                return v;
            }
        }
    }

    /// Like [`Client::expect`], but an `error` from the server while
    /// waiting is a failure rather than a message to skip.
    pub async fn expect_ok<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> T {
        self.expect(what, |m| {
            if let ServerMessage::Error { .. } = m {
                if let Some(v) = pick(m) {
                    return Some(v);
                }
                panic!("waiting for {what}, got {m:?}");
            }
            pick(m)
        })
        .await
    }

    pub async fn join(&mut self, token: &str) {
        self.send(&ClientMessage::Join {
            token: token.to_string(),
            resume_token: None,
        })
        .await;
    }

    /// A WebSocket-level Ping, as client libraries send to keep a socket up.
    pub async fn ws_ping(&mut self) {
        self.ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .unwrap();
    }

    /// Waits for the server to close the socket; the close code, if any.
    pub async fn closed(&mut self) -> Option<u16> {
        self.closing().await.1
    }

    /// The messages the server sent before it closed the socket, and the
    /// close code, if any.
    pub async fn closing(&mut self) -> (Vec<ServerMessage>, Option<u16>) {
        let deadline = tokio::time::Instant::now() + STEP;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next())
                .await
                .expect("close in time")
            {
                None | Some(Err(_)) => return (out, None),
                Some(Ok(Message::Close(f))) => return (out, f.map(|f| u16::from(f.code))),
                Some(Ok(Message::Text(t))) => {
                    out.push(serde_json::from_str(t.as_str()).expect("valid server message"))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Every message up to the pong answering a fresh ping. Only the
    /// connection answers pings, so this proves what the socket has queued,
    /// not what a room actor may still send.
    pub async fn until_pong(&mut self) -> Vec<ServerMessage> {
        self.send(&ClientMessage::Ping).await;
        let mut out = Vec::new();
        loop {
            match self.next().await {
                ServerMessage::Pong => return out,
                m => out.push(m),
            }
        }
    }

    /// The next message that is not presence or typing chatter.
    pub async fn next_chat(&mut self) -> ServerMessage {
        loop {
            match self.next().await {
                ServerMessage::Presence { .. } | ServerMessage::Typing { .. } => continue,
                m => return m,
            }
        }
    }

    pub async fn created_seqs(&mut self, n: usize) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next_chat().await {
                ServerMessage::MessageCreated { message, .. } => {
                    out.push((message.seq, message.text))
                }
                other => panic!("expected message_created, got {other:?}"),
            }
        }
        out
    }

    /// Proves nothing else is queued: a ping's pong is the next frame.
    pub async fn nothing_pending(&mut self) {
        self.send(&ClientMessage::Ping).await;
        loop {
            match self.next().await {
                ServerMessage::Pong => return,
                ServerMessage::Presence { .. } => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
