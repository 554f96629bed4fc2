//! Signaling as its own process would run it: on `RemoteControl` (the
//! control plane's internal HTTP API, conference events through Redis) and
//! `RemoteSfu` (the SFU's HTTP API and event stream), each service on its own
//! loopback port; and the user channel (chats) on `RemoteUsers`. Needs Redis on 127.0.0.1:6379 (`CONVENE_TEST_REDIS_URL`);
//! skipped without it unless `CI` is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use convene_control::{Control, ControlConfig};
use convene_proto::sfu::SfuEvent;
use convene_proto::signaling::{ClientMessage, ServerMessage};
use convene_signaling::remote::{RemoteControl, RemoteSfu, RemoteUsers};
use convene_signaling::{MediaPort, NodeOptions, Signaling, SignalingConfig};
use futures::StreamExt;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

mod support;

use convene_testkit::redis_available;
use support::rest::{serve, Rest};
use support::{Client, STEP};

const INTERNAL_SECRET: &str = "test-internal-secret";
const SFU_SECRET: &str = "test-sfu-secret";

/// The control plane (SQLite in a temporary directory, events on Redis) and
/// the SFU with its HTTP API, each on its own loopback port.
struct Services {
    control: Control,
    control_addr: SocketAddr,
    control_task: tokio::task::JoinHandle<()>,
    sfu: convene_sfu::Sfu,
    sfu_addr: SocketAddr,
    _sfu_handle: convene_sfu::SfuHandle,
    _dir: tempfile::TempDir,
}

async fn services(redis: &str) -> Services {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("convene.db");
    let mut cc = ControlConfig::for_tests(format!("sqlite://{}?mode=rwc", db.display()));
    cc.redis_url = Some(redis.to_string());
    assert_eq!(cc.internal_secret.as_deref(), Some(INTERNAL_SECRET));
    let control = Control::start(cc).await.expect("control plane starts");
    let (control_addr, control_task) = serve(control.router()).await;

    // The SFU with its HTTP API.
    let sfu_config = convene_sfu::SfuConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_secret: Some(SFU_SECRET.to_string().into()),
        // The test's peer never sends media; let the SFU drop it soon, so
        // its event stream has something to carry.
        ice_timeout_ms: 2_000,
        ..convene_sfu::SfuConfig::for_tests()
    };
    let (sfu, sfu_handle) = convene_sfu::start(sfu_config).await.expect("SFU starts");
    let sfu_addr = sfu.http_addr().expect("SFU HTTP API bound");

    Services {
        control,
        control_addr,
        control_task,
        sfu,
        sfu_addr,
        _sfu_handle: sfu_handle,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_on_remote_ports_joins_through_the_waiting_hall() {
    let Some(redis) = redis_available().await else {
        return;
    };

    let Services {
        control,
        control_addr,
        control_task,
        sfu,
        sfu_addr,
        _sfu_handle,
        _dir,
    } = services(&redis).await;

    // Signaling on the remote ports only.
    let remote_control =
        RemoteControl::connect(&format!("http://{control_addr}"), INTERNAL_SECRET, &redis)
            .await
            .expect("remote control");
    let remote_sfu = RemoteSfu::new(&format!("http://{sfu_addr}"), SFU_SECRET).expect("remote SFU");
    tokio::time::timeout(STEP, remote_sfu.wait_connected())
        .await
        .expect("SFU event stream connects");
    let mut sfu_events = remote_sfu.events();
    let signaling = Signaling::new(
        SignalingConfig::default(),
        Arc::new(remote_control),
        Arc::new(remote_sfu.clone()),
        Default::default(),
    )
    .expect("signaling starts");
    let (sig_addr, sig_task) = serve(signaling.router()).await;

    // alice (moderator) and bob (member); a conference with a waiting hall.
    let rest = Rest::new(control_addr);
    let (alice, _) = rest.user("alice").await;
    let (bob, bob_id) = rest.user("bob").await;
    let conf = rest.conference(&alice, &["bob"], true).await;

    // bob knocks: a waiting-hall token, then the socket.
    let (token, waiting) = rest.join_token(&bob, &conf).await;
    assert!(waiting);
    let mut client = Client::connect(sig_addr).await;
    client.join(&token).await;
    let position = client
        .expect_ok("waiting", |m| match m {
            ServerMessage::Waiting { position } => Some(*position),
            _ => None,
        })
        .await;
    assert_eq!(position, 1);

    // alice admits bob over REST; the decision reaches signaling through
    // Redis and bob's socket is let in with a fresh room token.
    let (s, b) = rest
        .post(
            &format!("/v1/conferences/{conf}/waiting/{bob_id}/admit"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    client
        .expect_ok("admitted", |m| {
            matches!(m, ServerMessage::Admitted { .. }).then_some(())
        })
        .await;
    client
        .expect_ok("joined", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await;

    // An offer from a real str0m peer gets the SFU's answer through the
    // SFU's HTTP API.
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");
    client
        .send(&ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            sources: Default::default(),
        })
        .await;
    let answer = client
        .expect_ok("answer", |m| match m {
            ServerMessage::Answer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .await;
    let answer = SdpAnswer::from_sdp_string(&answer).expect("a valid SDP answer");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("the peer accepts the answer");

    // The SFU's events arrive over its event stream: the peer never
    // connects, so the SFU gives up on it after its ICE timeout.
    let gone = tokio::time::timeout(STEP, async {
        while let Some(ev) = sfu_events.next().await {
            if let SfuEvent::ParticipantDisconnected { room_id, .. } = ev {
                return room_id;
            }
        }
        panic!("SFU event stream ended");
    })
    .await
    .expect("ParticipantDisconnected from the SFU's event stream");
    assert_eq!(gone, conf);

    sig_task.abort();
    control_task.abort();
    sfu.shutdown().await;
    control.close().await;
}

/// Split mode: role changes made over REST reach signaling through Redis
/// and hold for a connected moderator's next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_grants_change_under_a_connected_socket_on_remote_ports() {
    let Some(redis) = redis_available().await else {
        return;
    };
    let svc = services(&redis).await;
    let remote_control = RemoteControl::connect(
        &format!("http://{}", svc.control_addr),
        INTERNAL_SECRET,
        &redis,
    )
    .await
    .expect("remote control");
    let remote_sfu =
        RemoteSfu::new(&format!("http://{}", svc.sfu_addr), SFU_SECRET).expect("remote SFU");
    let signaling = Signaling::new(
        SignalingConfig::default(),
        Arc::new(remote_control),
        Arc::new(remote_sfu),
        Default::default(),
    )
    .expect("signaling starts");
    let (sig_addr, sig_task) = serve(signaling.router()).await;
    let e = support::roles::Endpoints {
        rest: format!("http://{}", svc.control_addr),
        ws: format!("ws://{sig_addr}/v1/ws"),
    };
    support::roles::grants_change_under_a_connected_moderator(&e).await;
    sig_task.abort();
    svc.control_task.abort();
    svc.sfu.shutdown().await;
    svc.control.close().await;
}

impl Client {
    async fn hello(&mut self, token: &str) -> uuid::Uuid {
        self.send(&ClientMessage::Hello {
            access_token: token.to_string(),
        })
        .await;
        self.expect_ok("welcome", |m| match m {
            ServerMessage::Welcome { user_id, .. } => Some(*user_id),
            _ => None,
        })
        .await
    }

    /// The next `message_created` of `chat`: (seq, text).
    async fn message(&mut self, chat: uuid::Uuid) -> (i64, String) {
        self.expect_ok("message_created", |m| match m {
            ServerMessage::MessageCreated { chat_id, message } if *chat_id == chat => {
                Some((message.seq, message.text.clone()))
            }
            _ => None,
        })
        .await
    }
}

/// `convene signaling` as its own process serves `hello` and chats: access
/// tokens, chat lists and catch-up through the control plane's internal
/// API, live messages and typing through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_on_remote_user_port() {
    let Some(redis) = redis_available().await else {
        return;
    };
    let Services {
        control,
        control_addr,
        control_task,
        sfu,
        sfu_addr,
        _sfu_handle,
        _dir,
    } = services(&redis).await;
    let remote_control =
        RemoteControl::connect(&format!("http://{control_addr}"), INTERNAL_SECRET, &redis)
            .await
            .expect("remote control");
    let users = RemoteUsers::connect(remote_control.clone(), &redis)
        .await
        .expect("remote users");
    let remote_sfu = RemoteSfu::new(&format!("http://{sfu_addr}"), SFU_SECRET).expect("remote SFU");
    let signaling = Signaling::with_options(
        SignalingConfig::default(),
        Arc::new(remote_control),
        Arc::new(remote_sfu),
        Default::default(),
        NodeOptions {
            users: Some(Arc::new(users)),
            redis: Some(redis::Client::open(redis.as_str()).unwrap()),
        },
    )
    .await
    .expect("signaling starts");
    let (sig_addr, sig_task) = serve(signaling.router()).await;

    let rest = Rest::new(control_addr);
    let (alice, alice_id) = rest.user("alice").await;
    let (bob, bob_id) = rest.user("bob").await;
    let (s, chat) = rest
        .post(
            "/v1/chats",
            Some(&alice),
            json!({"member_emails": ["bob@example.org"]}),
        )
        .await;
    assert_eq!(s, 201, "{chat}");
    let chat_id: uuid::Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let send = |text: &'static str, client_id: &'static str| {
        let rest = &rest;
        let alice = &alice;
        async move {
            let (s, m) = rest
                .post(
                    &format!("/v1/chats/{chat_id}/messages"),
                    Some(alice),
                    json!({"text": text, "client_id": client_id}),
                )
                .await;
            assert_eq!(s, 201, "{m}");
        }
    };
    send("before bob connects", "m1").await;

    // A bad token is an error on the socket, which stays usable.
    let mut bob_ws = Client::connect(sig_addr).await;
    bob_ws
        .send(&ClientMessage::Hello {
            access_token: "not-a-token".into(),
        })
        .await;
    bob_ws
        .expect_ok("error for a bad token", |m| {
            matches!(m, ServerMessage::Error { .. }).then_some(())
        })
        .await;
    assert_eq!(bob_ws.hello(&bob).await.to_string(), bob_id);

    // Catch-up through the internal API.
    bob_ws
        .send(&ClientMessage::Sync {
            chat_id,
            after_seq: 0,
        })
        .await;
    assert_eq!(
        bob_ws.message(chat_id).await,
        (1, "before bob connects".to_string())
    );

    // Live: typing published by this node, a message from the control plane.
    let mut alice_ws = Client::connect(sig_addr).await;
    assert_eq!(alice_ws.hello(&alice).await.to_string(), alice_id);
    alice_ws.send(&ClientMessage::Typing { chat_id }).await;
    let typing = bob_ws
        .expect_ok("typing", |m| match m {
            ServerMessage::Typing {
                chat_id: c,
                user_id,
            } if *c == chat_id => Some(*user_id),
            _ => None,
        })
        .await;
    assert_eq!(typing.to_string(), alice_id);
    send("live", "m2").await;
    assert_eq!(bob_ws.message(chat_id).await, (2, "live".to_string()));

    sig_task.abort();
    control_task.abort();
    sfu.shutdown().await;
    control.close().await;
}
