//! Signaling frames are untrusted input: arbitrary text, JSON of every
//! message type with fields of the wrong shape, unknown types, deep or
//! huge-numbered JSON. Each is answered with an `error` (or ignored), the
//! connection lives on, and a `ping` still gets its `pong`.
//!
//! `PROPTEST_CASES` raises the frame count for a longer run.

mod support;

use convene_proto::signaling::{ClientMessage, ServerMessage};
use convene_signaling::SignalingConfig;
use convene_testkit::{Backend, TestDb};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use support::Client;

const TYPES: &[&str] = &[
    "join",
    "ping",
    "offer",
    "answer",
    "candidate",
    "subscribe",
    "unsubscribe",
    "mute",
    "chat",
    "lobby_message",
    "admit",
    "deny",
    "admit_all",
    "move_to_waiting",
    "remove",
    "mute_participant",
    "end_conference",
    "hello",
    "sync",
    "typing",
    "nope",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,30}".prop_map(Value::String),
        Just(json!("00000000-0000-0000-0000-000000000000")),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn frame() -> impl Strategy<Value = String> {
    let typed = (
        0..TYPES.len(),
        proptest::collection::btree_map(
            prop_oneof![
                Just("token".to_string()),
                Just("sdp".to_string()),
                Just("text".to_string()),
                Just("track_ids".to_string()),
                Just("user_id".to_string()),
                Just("chat_id".to_string()),
                Just("after_seq".to_string()),
                "[a-z_]{1,12}",
            ],
            json_value(),
            0..5,
        ),
    )
        .prop_map(|(t, fields)| {
            let mut obj: serde_json::Map<String, Value> = fields.into_iter().collect();
            // `ping` is what the test itself sends to check the connection.
            let ty = if TYPES[t] == "ping" {
                "leave_not"
            } else {
                TYPES[t]
            };
            obj.insert("type".into(), json!(ty));
            Value::Object(obj).to_string()
        });
    prop_oneof![
        3 => typed,
        1 => ".{0,200}",
        1 => "[\\[\\]{}\",:0-9a-z ]{0,200}",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_frames_get_errors_and_the_connection_lives() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let config = SignalingConfig {
        messages_per_sec: 1_000_000,
        message_burst: 1_000_000,
        ..SignalingConfig::default()
    };
    let node = support::node_with(&db.url, None, None, config).await;
    let (ws, _) = tokio_tungstenite::connect_async(&node.ws)
        .await
        .expect("websocket connects");
    let mut c = Client { ws };
    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::deterministic();
    let strategy = frame();
    let mut errors = 0;
    for _ in 0..cases {
        let f = strategy.new_tree(&mut runner).expect("a frame").current();
        c.send_raw(&f).await;
        c.send(&ClientMessage::Ping).await;
        // Everything up to the pong must be an error; a close would fail
        // `next` itself.
        loop {
            match c.next().await {
                ServerMessage::Pong => break,
                ServerMessage::Error { .. } => errors += 1,
                other => panic!("after {f:?}: unexpected {other:?}"),
            }
        }
    }
    eprintln!("{cases} arbitrary frames: {errors} answered with an error");
    assert!(errors > 0);
}
