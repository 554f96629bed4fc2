//! The server of the protocol tests (`signaling_protocol_*.rs`): the real
//! signaling service, the real control plane (SQLite file) and the real SFU
//! on loopback UDP, all on one HTTP port; and readers for the frames those
//! tests look for.

use std::net::SocketAddr;
use std::sync::Arc;

use convene::inprocess::{InProcessControl, InProcessSfu};
use convene_control::{Control, ControlConfig};
use convene_proto::signaling::{ErrorCode, ServerMessage};
use convene_signaling::{Signaling, SignalingConfig};
use serde_json::Value;

use super::rest::{serve_on, Rest};
use super::Client;

/// A server for one test; it dereferences to its REST client.
pub struct Server {
    pub addr: SocketAddr,
    pub signaling: Signaling,
    /// The control plane's REST API on the same port.
    pub rest: Rest,
    pub control: Control,
    /// Kept until the server is dropped (a test may hand one in).
    pub _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
    _sfu: convene_sfu::Sfu,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tests talk to the control plane through the server itself.
impl std::ops::Deref for Server {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}

/// A server whose SQLite database lives in `dir`: a second one started on
/// the same `dir` finds the first one's state.
pub async fn start_at(dir: &std::path::Path, config: SignalingConfig) -> Server {
    let db = dir.join("convene.db");
    let mut cc = ControlConfig::for_tests(format!("sqlite://{}?mode=rwc", db.display()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cc.public_url = format!("http://{addr}");
    let control = Control::start(cc).await.expect("control starts");
    let (sfu, handle) = convene_sfu::start(convene_sfu::SfuConfig::for_tests())
        .await
        .expect("sfu starts");
    let signaling = Signaling::new(
        config,
        Arc::new(InProcessControl(control.clone())),
        Arc::new(InProcessSfu(handle)),
        Default::default(),
    )
    .unwrap();
    let app = control.router().merge(signaling.router());
    let task = serve_on(listener, app);
    Server {
        addr,
        signaling,
        rest: Rest::new(addr),
        control,
        _dir: None,
        task,
        _sfu: sfu,
    }
}

/// A server on a database of its own, removed when the server is dropped.
pub async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start_at(dir.path(), SignalingConfig::default()).await;
    srv._dir = Some(dir);
    srv
}

impl Server {
    /// The signaling service's open-connections gauge.
    pub fn open_connections(&self) -> f64 {
        self.signaling
            .registry()
            .gather()
            .iter()
            .filter(|f| f.name() == "convene_signaling_connections")
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_gauge().get_value())
            .sum()
    }

    /// A WebSocket client on this server's signaling endpoint.
    pub async fn ws(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", self.addr))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// `GET /v1/users/me` with `access`: (status, user id).
    pub async fn user_id_of(&self, access: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("http://{}/v1/users/me", self.addr))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        (status, body["id"].as_str().unwrap().to_string())
    }
}

/// A `joined` frame: (participant id, resume token, how many others are in
/// the room).
pub fn joined(m: &ServerMessage) -> Option<(String, String, usize)> {
    match m {
        ServerMessage::Joined {
            participant_id,
            resume_token,
            participants,
            ..
        } => Some((
            participant_id.clone(),
            resume_token.clone(),
            participants.len(),
        )),
        _ => None,
    }
}

/// The code of an `error` frame.
pub fn error_code(m: &ServerMessage) -> Option<ErrorCode> {
    match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}
