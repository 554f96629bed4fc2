//! Moderator grants changing under connected sockets, through REST only:
//! the same scenario runs on the in-process node and on signaling over the
//! remote ports (events through Redis).

use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use serde_json::{json, Value};
use uuid::Uuid;

use super::Client;

/// The control plane's REST API and the signaling WebSocket.
pub struct Endpoints {
    pub rest: String,
    pub ws: String,
}

impl Endpoints {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.rest))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, token, body).await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> Value {
        self.call(reqwest::Method::PATCH, path, Some(token), body)
            .await
    }

    async fn user(&self, name: &str) -> (String, Uuid) {
        self.post(
            "/v1/auth/register",
            None,
            json!({"username": name, "email": format!("{name}@example.org"), "password": "correct horse"}),
        )
        .await;
        let b = self
            .post(
                "/v1/auth/login",
                None,
                json!({"login": name, "password": "correct horse"}),
            )
            .await;
        (
            b["access_token"].as_str().unwrap().to_string(),
            b["user"]["id"].as_str().unwrap().parse().unwrap(),
        )
    }

    /// Joins over REST and enters on a new socket; the socket and whether
    /// it waits.
    async fn enter(&self, access: &str, conf: &str) -> (Client, bool) {
        let grant = self
            .post(
                &format!("/v1/conferences/{conf}/join"),
                Some(access),
                json!({}),
            )
            .await;
        let (ws, _) = tokio_tungstenite::connect_async(&self.ws)
            .await
            .expect("websocket connects");
        let mut c = Client { ws };
        c.join(grant["token"].as_str().unwrap()).await;
        (c, grant["waiting"].as_bool().unwrap())
    }
}

fn joined(m: &ServerMessage) -> Option<String> {
    match m {
        ServerMessage::Joined { participant_id, .. } => Some(participant_id.clone()),
        _ => None,
    }
}

/// The next `participant_updated` about `pid`: its moderator flag.
async fn updated(c: &mut Client, pid: &str) -> bool {
    c.expect_ok("participant_updated", |m| match m {
        ServerMessage::ParticipantUpdated { participant } if participant.participant_id == pid => {
            Some(participant.moderator)
        }
        _ => None,
    })
    .await
}

async fn refused(c: &mut Client, msg: ClientMessage) {
    c.send(&msg).await;
    let code = c
        .expect("a refusal", |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::Forbidden, "{msg:?}");
}

/// bob moderates a conference of ada's team; while his socket stays open
/// he is demoted and promoted through REST, as a named moderator and as a
/// team admin, and each change holds for his very next message.
pub async fn grants_change_under_a_connected_moderator(e: &Endpoints) {
    let (ada, _) = e.user("ada").await;
    let (bob, bob_id) = e.user("bob").await;
    let (cy, cy_id) = e.user("cyn").await;
    let team = e
        .post(
            "/v1/teams",
            Some(&ada),
            json!({"name": "crew", "description": ""}),
        )
        .await;
    let team = team["id"].as_str().unwrap().to_string();
    for m in ["bob", "cyn"] {
        e.post(
            &format!("/v1/teams/{team}/members"),
            Some(&ada),
            json!({"email": format!("{m}@example.org")}),
        )
        .await;
    }
    let conf = e
        .post(
            &format!("/v1/teams/{team}/conferences"),
            Some(&ada),
            json!({"title": "standup", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": true}),
        )
        .await;
    let conf = conf["id"].as_str().unwrap().to_string();
    let path = format!("/v1/conferences/{conf}");
    e.patch(&path, &ada, json!({"add_moderators": [bob_id]}))
        .await;

    let (mut a, waiting) = e.enter(&ada, &conf).await;
    assert!(!waiting);
    let ada_pid = a.expect_ok("joined", joined).await;
    let (mut b, waiting) = e.enter(&bob, &conf).await;
    assert!(!waiting);
    let bob_pid = b.expect_ok("joined", joined).await;
    let (mut c, waiting) = e.enter(&cy, &conf).await;
    assert!(waiting);
    b.expect_ok("cy on the waiting list", |m| match m {
        ServerMessage::WaitingUpdated { entries } => {
            entries.iter().any(|w| w.user_id == cy_id).then_some(())
        }
        _ => None,
    })
    .await;

    // No longer a named moderator: told at once, refused at once.
    e.patch(&path, &ada, json!({"remove_moderators": [bob_id]}))
        .await;
    assert!(!updated(&mut b, &bob_pid).await);
    assert!(!updated(&mut a, &bob_pid).await);
    refused(&mut b, ClientMessage::Admit { user_id: cy_id }).await;
    refused(
        &mut b,
        ClientMessage::MuteParticipant {
            participant_id: ada_pid.clone(),
            video: false,
        },
    )
    .await;
    refused(
        &mut b,
        ClientMessage::LobbyMessage {
            text: "one minute".into(),
            to: None,
        },
    )
    .await;

    // Made team admin: a moderator of every conference of the team.
    let member = format!("/v1/teams/{team}/members/{bob_id}");
    e.patch(&member, &ada, json!({"role": "admin"})).await;
    assert!(updated(&mut b, &bob_pid).await);
    b.send(&ClientMessage::Admit { user_id: cy_id }).await;
    c.expect_ok("admitted", |m| {
        matches!(m, ServerMessage::Admitted { .. }).then_some(())
    })
    .await;
    let cy_pid = c.expect_ok("joined", joined).await;

    // Back to member, and not a named moderator: powers gone again.
    e.patch(&member, &ada, json!({"role": "member"})).await;
    assert!(!updated(&mut b, &bob_pid).await);
    refused(
        &mut b,
        ClientMessage::Remove {
            participant_id: cy_pid.clone(),
        },
    )
    .await;

    // Named moderator again: the mute request reaches its target.
    e.patch(&path, &ada, json!({"add_moderators": [bob_id]}))
        .await;
    assert!(updated(&mut b, &bob_pid).await);
    b.send(&ClientMessage::MuteParticipant {
        participant_id: cy_pid,
        video: false,
    })
    .await;
    c.expect_ok("mute_requested", |m| {
        matches!(m, ServerMessage::MuteRequested { .. }).then_some(())
    })
    .await;
}
