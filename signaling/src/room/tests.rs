//! `RoomState` on a virtual clock: no sockets, no Tokio, port calls
//! answered (or not) by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::SfuEvent;
use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage, WaitingEntryInfo};
use uuid::Uuid;

use super::effects::{
    BusOp, CallId, CallOutput, ControlCall, Effect, MediaCall, MetricUpdate, PortCall, RoomInput,
};
use super::error::RoomError;
use super::state::{Cluster, RoomState};
use crate::config::SignalingConfig;
use crate::connection::Ending;
use crate::ports::{Admission, HallEvent, PortError};
use crate::room_bus::{RoomEnvelope, RoomFrame};

struct Room {
    state: RoomState,
    conference: Uuid,
    now: Instant,
    next_enter: u64,
}

fn admission(conference: Uuid, name: &str, moderator: bool, waiting: bool) -> Admission {
    Admission {
        conference_id: conference,
        user_id: Uuid::new_v4(),
        name: name.into(),
        moderator,
        waiting,
        can_publish: true,
        can_subscribe: true,
        can_publish_data: true,
        expired: false,
    }
}

impl Room {
    fn new() -> Self {
        let conference = Uuid::new_v4();
        let now = Instant::now();
        let cluster = Cluster {
            shared: false,
            node: "node-a".into(),
            refresh_every: Duration::from_secs(10),
        };
        let config = Arc::new(SignalingConfig::default());
        Self {
            state: RoomState::new(conference, config, cluster, now),
            conference,
            now,
            next_enter: 1,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn apply(&mut self, input: RoomInput) -> Vec<Effect> {
        self.state.apply(input, self.now)
    }

    fn enter(&mut self, conn: u64, admission: Admission, resume: Option<String>) -> Vec<Effect> {
        let enter = self.next_enter;
        self.next_enter += 1;
        self.apply(RoomInput::Enter {
            enter,
            conn,
            ice_servers: Vec::new(),
            admission,
            resume_token: resume,
            started: self.now,
        })
    }

    fn client(&mut self, conn: u64, msg: ClientMessage) -> Vec<Effect> {
        self.apply(RoomInput::Client {
            conn,
            msg,
            at_ms: 1_000,
        })
    }

    fn done(&mut self, call: CallId, result: Result<CallOutput, PortError>) -> Vec<Effect> {
        self.apply(RoomInput::Done { call, result })
    }

    /// Joins a participant; returns its participant id and resume token.
    fn join(&mut self, conn: u64, name: &str, moderator: bool) -> (String, String, Vec<Effect>) {
        let fx = self.enter(
            conn,
            admission(self.conference, name, moderator, false),
            None,
        );
        let (pid, token) = sent(&fx, conn)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Joined {
                    participant_id,
                    resume_token,
                    ..
                } => Some((participant_id.clone(), resume_token.clone())),
                _ => None,
            })
            .expect("joined");
        (pid, token, fx)
    }
}

fn sent(fx: &[Effect], to: u64) -> Vec<&ServerMessage> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send { conn, msg } if *conn == to => Some(msg),
            _ => None,
        })
        .collect()
}

fn calls(fx: &[Effect]) -> Vec<(CallId, &PortCall)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Call { call, port } => Some((*call, port)),
            _ => None,
        })
        .collect()
}

fn only_call(fx: &[Effect]) -> (CallId, &PortCall) {
    let c = calls(fx);
    assert_eq!(c.len(), 1, "one call expected in {fx:?}");
    c[0]
}

fn error_to(fx: &[Effect], to: u64) -> (ErrorCode, String) {
    sent(fx, to)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Error { code, message } => Some((*code, message.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error to {to} in {fx:?}"))
}

fn entered(fx: &[Effect]) -> Option<&Result<(), RoomError>> {
    fx.iter().find_map(|e| match e {
        Effect::Entered { result, .. } => Some(result),
        _ => None,
    })
}

#[test]
fn join_and_leave_are_broadcast() {
    let mut room = Room::new();
    let (ada, _, fx) = room.join(1, "ada", false);
    assert_eq!(entered(&fx), Some(&Ok(())));
    assert!(fx.contains(&Effect::Metric(MetricUpdate::Participants(1))));

    let (bob, _, fx) = room.join(2, "bob", false);
    let joined = sent(&fx, 2);
    assert!(
        matches!(joined[0], ServerMessage::Joined { participants, .. }
        if participants.len() == 1 && participants[0].participant_id == ada)
    );
    assert!(sent(&fx, 1).iter().any(|m| matches!(m,
        ServerMessage::ParticipantJoined { participant } if participant.participant_id == bob)));

    let fx = room.client(2, ClientMessage::Leave);
    assert!(sent(&fx, 1).contains(&&ServerMessage::ParticipantLeft {
        participant_id: bob.clone()
    }));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Close {
            conn: 2,
            code: 1000,
            ..
        }
    )));
    assert!(fx.contains(&Effect::Metric(MetricUpdate::Participants(-1))));
    assert!(!room.state.is_empty());

    let fx = room.apply(RoomInput::Disconnected {
        conn: 1,
        ending: Ending::Clean,
    });
    assert!(fx.contains(&Effect::Metric(MetricUpdate::Participants(-1))));
    assert!(room.state.is_idle());
}

#[test]
fn knock_is_seen_by_the_moderator_and_admitted() {
    let mut room = Room::new();
    let (_, _, fx) = room.join(1, "mod", true);
    // A moderator's socket is shown the waiting list at once.
    let (list, port) = only_call(&fx);
    assert_eq!(port, &PortCall::Control(ControlCall::WaitingEntries));
    room.done(list, Ok(CallOutput::Entries(Vec::new())));

    let waiter = admission(room.conference, "wes", false, true);
    let user = waiter.user_id;
    let fx = room.enter(2, waiter, None);
    // Answered only once the control plane has the knock.
    assert_eq!(entered(&fx), None);
    let (touch, port) = only_call(&fx);
    assert_eq!(port, &PortCall::Control(ControlCall::TouchWaiting { user }));
    let fx = room.done(touch, Ok(CallOutput::Position(Some(1))));
    assert_eq!(sent(&fx, 2), vec![&ServerMessage::Waiting { position: 1 }]);
    assert_eq!(entered(&fx), Some(&Ok(())));
    let (list, _) = only_call(&fx);
    let entry = WaitingEntryInfo {
        user_id: user,
        name: "wes".into(),
        position: 1,
        since_ms: 5,
    };
    let fx = room.done(list, Ok(CallOutput::Entries(vec![entry.clone()])));
    assert_eq!(
        sent(&fx, 1),
        vec![&ServerMessage::WaitingUpdated {
            entries: vec![entry]
        }]
    );
    // The waiter was already told its position.
    assert!(sent(&fx, 2).is_empty());

    let fx = room.client(1, ClientMessage::Admit { user_id: user });
    let (admit, port) = only_call(&fx);
    assert!(matches!(port, PortCall::Control(ControlCall::Admit { user: u, .. }) if *u == user));
    let fx = room.done(admit, Ok(CallOutput::Done));
    assert_eq!(
        fx,
        vec![Effect::Metric(MetricUpdate::Admission("admitted"))]
    );

    // The control plane's event is what moves the waiter in.
    let fx = room.apply(RoomInput::Hall(HallEvent::Admitted { user_id: user }));
    let token_call = calls(&fx)
        .into_iter()
        .find(|(_, p)| matches!(p, PortCall::Control(ControlCall::AdmittedToken { .. })))
        .expect("room token asked for")
        .0;
    let mut admitted = admission(room.conference, "wes", false, false);
    admitted.user_id = user;
    let fx = room.done(
        token_call,
        Ok(CallOutput::Token {
            token: "room-token".into(),
            admission: Some(admitted),
        }),
    );
    let to_waiter = sent(&fx, 2);
    assert_eq!(
        to_waiter[0],
        &ServerMessage::Admitted {
            token: "room-token".into()
        }
    );
    assert!(matches!(to_waiter[1], ServerMessage::Joined { .. }));
    assert!(sent(&fx, 1)
        .iter()
        .any(|m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.user_id == user)));
}

#[test]
fn a_silent_socket_resumes_within_the_grace_and_leaves_after_it() {
    let mut room = Room::new();
    let grace = SignalingConfig::default().resume_grace();
    let (ada, token, _) = room.join(1, "ada", false);
    room.join(2, "bob", false);

    let fx = room.apply(RoomInput::Disconnected {
        conn: 1,
        ending: Ending::Silent,
    });
    assert!(
        sent(&fx, 2).is_empty(),
        "nobody is told of a resumable loss"
    );
    assert_eq!(room.state.poll_timeout(), Some(room.now + grace));

    room.advance(grace - Duration::from_secs(1));
    let mut ada_again = admission(room.conference, "ada", false, false);
    ada_again.user_id = room.state.participants[&ada].admission.user_id;
    let fx = room.enter(3, ada_again.clone(), Some(token.clone()));
    assert!(matches!(sent(&fx, 3)[0],
        ServerMessage::Joined { participant_id, .. } if *participant_id == ada));
    assert_eq!(room.state.poll_timeout(), None);

    // Lost again; this time the grace runs out.
    room.apply(RoomInput::Disconnected {
        conn: 3,
        ending: Ending::Lost,
    });
    room.advance(grace - Duration::from_millis(1));
    let fx = room.apply(RoomInput::Timeout);
    assert!(sent(&fx, 2).is_empty());
    room.advance(Duration::from_millis(1));
    let fx = room.apply(RoomInput::Timeout);
    assert_eq!(
        sent(&fx, 2),
        vec![&ServerMessage::ParticipantLeft {
            participant_id: ada.clone()
        }]
    );
    // The resume token died with the participant.
    let fx = room.enter(4, ada_again, Some(token));
    assert_eq!(entered(&fx), Some(&Err(RoomError::ResumeExpired)));
    assert_eq!(RoomError::ResumeExpired.code(), ErrorCode::NotFound);
}

#[test]
fn an_expired_room_token_resumes_a_live_seat_and_nothing_else() {
    let mut room = Room::new();
    let (ada, token, _) = room.join(1, "ada", false);
    room.apply(RoomInput::Disconnected {
        conn: 1,
        ending: Ending::Silent,
    });
    // A long meeting: the token ada joined with has expired meanwhile.
    let mut stale = admission(room.conference, "ada", false, false);
    stale.user_id = room.state.participants[&ada].admission.user_id;
    stale.expired = true;
    let fx = room.enter(2, stale.clone(), Some(token));
    assert!(matches!(sent(&fx, 2)[0],
        ServerMessage::Joined { participant_id, .. } if *participant_id == ada));
    // Without a resume token it admits nobody, seat or not.
    let fx = room.enter(3, stale.clone(), None);
    let refused = entered(&fx).expect("answered").clone().unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unauthorized, "{refused}");
    // Nor does a resume token of a seat that is gone.
    let fx = room.enter(4, stale, Some("not-a-seat".into()));
    assert_eq!(entered(&fx), Some(&Err(RoomError::ResumeExpired)));
}

#[test]
fn a_slow_sfu_answer_does_not_hold_anyone_else() {
    let mut room = Room::new();
    let (ada, _, _) = room.join(1, "ada", false);
    let (bob, _, _) = room.join(2, "bob", false);

    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "offer-1".into(),
            sources: Default::default(),
        },
    );
    let (join, port) = only_call(&fx);
    assert!(matches!(port, PortCall::Media(MediaCall::Join(r)) if r.participant_id == ada));

    // Ada's second offer waits behind her first; Bob's does not.
    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "offer-2".into(),
            sources: Default::default(),
        },
    );
    assert!(calls(&fx).is_empty());
    let fx = room.client(
        2,
        ClientMessage::Offer {
            sdp: "bob".into(),
            sources: Default::default(),
        },
    );
    assert!(
        matches!(only_call(&fx).1, PortCall::Media(MediaCall::Join(r)) if r.participant_id == bob)
    );

    // Chat flows while Ada's answer is out.
    let fx = room.client(2, ClientMessage::Chat { text: "hi".into() });
    let frame = fx
        .iter()
        .find_map(|e| match e {
            Effect::Bus(BusOp::PublishChat { frame, report: 2 }) => Some(frame.clone()),
            _ => None,
        })
        .expect("chat published");
    let fx = room.apply(RoomInput::Frame(RoomEnvelope {
        conference: room.conference,
        node: "node-a".into(),
        frame,
        seq: 1,
    }));
    for conn in [1, 2] {
        assert!(matches!(sent(&fx, conn)[..],
            [ServerMessage::Chat { seq: 1, text, .. }] if text == "hi"));
    }

    // The answer arrives; the queued offer is a renegotiation now.
    let fx = room.done(join, Ok(CallOutput::Answer("answer-1".into())));
    assert_eq!(
        sent(&fx, 1),
        vec![&ServerMessage::Answer {
            sdp: "answer-1".into()
        }]
    );
    assert!(matches!(only_call(&fx).1,
        PortCall::Media(MediaCall::Offer(r)) if r.offer_sdp == "offer-2"));
}

#[test]
fn refusals_carry_their_wire_codes() {
    let mut room = Room::new();
    room.join(1, "ada", false);

    let fx = room.client(
        1,
        ClientMessage::Admit {
            user_id: Uuid::new_v4(),
        },
    );
    assert_eq!(
        error_to(&fx, 1),
        (ErrorCode::Forbidden, "moderators only".into())
    );
    assert!(fx.contains(&Effect::Metric(MetricUpdate::Error(ErrorCode::Forbidden))));

    let fx = room.client(1, ClientMessage::Chat { text: "  ".into() });
    assert_eq!(error_to(&fx, 1).0, ErrorCode::BadMessage);
    let long = "x".repeat(SignalingConfig::default().max_chat_chars + 1);
    let fx = room.client(1, ClientMessage::Chat { text: long });
    assert_eq!(error_to(&fx, 1).0, ErrorCode::LimitExceeded);
    let fx = room.client(
        1,
        ClientMessage::Mute {
            track_id: "t-1".into(),
            muted: true,
        },
    );
    assert_eq!(
        error_to(&fx, 1),
        (ErrorCode::NotFound, "no track t-1 of yours".into())
    );
    let fx = room.client(
        1,
        ClientMessage::Join {
            token: "again".into(),
            resume_token: None,
        },
    );
    assert_eq!(error_to(&fx, 1).0, ErrorCode::BadMessage);

    // A port's refusal keeps the port's code.
    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "bad".into(),
            sources: Default::default(),
        },
    );
    let (join, _) = only_call(&fx);
    let fx = room.done(join, Err(PortError::Invalid("no m-lines".into())));
    assert_eq!(
        error_to(&fx, 1),
        (ErrorCode::BadSdp, "invalid: no m-lines".into())
    );

    // Waiters may only wait.
    let waiter = admission(room.conference, "wes", false, true);
    let fx = room.enter(2, waiter, None);
    let (touch, _) = only_call(&fx);
    room.done(touch, Ok(CallOutput::Position(Some(1))));
    let fx = room.client(
        2,
        ClientMessage::Chat {
            text: "let me in".into(),
        },
    );
    assert_eq!(error_to(&fx, 2).0, ErrorCode::Forbidden);
}

#[test]
fn a_knock_the_control_plane_forgot_is_refused() {
    let mut room = Room::new();
    let fx = room.enter(1, admission(room.conference, "wes", false, true), None);
    let (touch, _) = only_call(&fx);
    let fx = room.done(touch, Ok(CallOutput::Position(None)));
    assert_eq!(entered(&fx), Some(&Err(RoomError::NoLongerWaiting)));
    assert_eq!(RoomError::NoLongerWaiting.code(), ErrorCode::Forbidden);
    assert!(room.state.is_idle());
}

#[test]
fn what_an_admitted_waiter_sends_meanwhile_waits_for_its_seat() {
    let mut room = Room::new();
    let waiter = admission(room.conference, "wes", false, true);
    let user = waiter.user_id;
    let fx = room.enter(1, waiter.clone(), None);
    let (touch, _) = only_call(&fx);
    room.done(touch, Ok(CallOutput::Position(Some(1))));
    let fx = room.apply(RoomInput::Hall(HallEvent::Admitted { user_id: user }));
    let token_call = calls(&fx)
        .into_iter()
        .find(|(_, p)| matches!(p, PortCall::Control(ControlCall::AdmittedToken { .. })))
        .unwrap()
        .0;
    // Sent while the token is out: applied as the participant it becomes.
    assert!(room
        .client(
            1,
            ClientMessage::Chat {
                text: "hello".into()
            }
        )
        .is_empty());
    // And a removal decided meanwhile applies after the admission.
    assert!(room
        .apply(RoomInput::Hall(HallEvent::Removed { user_id: user }))
        .is_empty());
    let mut admitted = waiter;
    admitted.waiting = false;
    let fx = room.done(
        token_call,
        Ok(CallOutput::Token {
            token: "t".into(),
            admission: Some(admitted),
        }),
    );
    let chat = fx.iter().position(|e| {
        matches!(e, Effect::Bus(BusOp::PublishChat { frame: RoomFrame::Chat { text, .. }, report: 1 }) if text == "hello")
    });
    let removed = fx.iter().position(|e| {
        matches!(
            e,
            Effect::Send {
                conn: 1,
                msg: ServerMessage::Removed { .. }
            }
        )
    });
    assert!(
        chat.is_some() && removed.is_some() && chat < removed,
        "{fx:?}"
    );
    // Only the waiting-list read from the knock is still out.
    assert_eq!(room.state.calls_in_flight(), 1);
}

#[test]
fn moderator_grants_follow_the_control_plane_while_connected() {
    let mut room = Room::new();
    let (ada, ada_token, fx) = room.join(1, "ada", true);
    let (list, _) = only_call(&fx);
    room.done(list, Ok(CallOutput::Entries(Vec::new())));
    let (bob, _, _) = room.join(2, "bob", false);
    let user = |room: &Room, pid: &str| room.state.participants[pid].admission.user_id;
    let (ada_user, bob_user) = (user(&room, &ada), user(&room, &bob));

    // Demoted: everyone is told, ada included, and her powers are gone.
    let fx = room.apply(RoomInput::Hall(HallEvent::ModeratorChanged {
        user_id: ada_user,
        moderator: false,
    }));
    assert!(calls(&fx).is_empty());
    for conn in [1, 2] {
        assert!(matches!(sent(&fx, conn)[..],
            [ServerMessage::ParticipantUpdated { participant }]
            if participant.participant_id == ada && !participant.moderator));
    }
    let refused = [
        ClientMessage::Admit { user_id: bob_user },
        ClientMessage::AdmitAll,
        ClientMessage::MuteParticipant {
            participant_id: bob.clone(),
            video: false,
        },
        ClientMessage::Remove {
            participant_id: bob.clone(),
        },
        ClientMessage::LobbyMessage {
            text: "wait".into(),
            to: None,
        },
    ];
    for msg in refused {
        let fx = room.client(1, msg);
        assert_eq!(error_to(&fx, 1).0, ErrorCode::Forbidden);
        assert!(calls(&fx).is_empty() && sent(&fx, 2).is_empty(), "{fx:?}");
    }
    // The same grant again changes nothing.
    let fx = room.apply(RoomInput::Hall(HallEvent::ModeratorChanged {
        user_id: ada_user,
        moderator: false,
    }));
    assert!(fx.is_empty(), "{fx:?}");

    // Promoted: bob sees the waiting list at once and may decide.
    let fx = room.apply(RoomInput::Hall(HallEvent::ModeratorChanged {
        user_id: bob_user,
        moderator: true,
    }));
    assert!(matches!(sent(&fx, 1)[..],
        [ServerMessage::ParticipantUpdated { participant }]
        if participant.participant_id == bob && participant.moderator));
    let (list, port) = only_call(&fx);
    assert_eq!(port, &PortCall::Control(ControlCall::WaitingEntries));
    let entry = WaitingEntryInfo {
        user_id: Uuid::new_v4(),
        name: "wes".into(),
        position: 1,
        since_ms: 5,
    };
    let fx = room.done(list, Ok(CallOutput::Entries(vec![entry.clone()])));
    assert_eq!(
        sent(&fx, 2),
        vec![&ServerMessage::WaitingUpdated {
            entries: vec![entry.clone()]
        }]
    );
    let fx = room.client(
        2,
        ClientMessage::Admit {
            user_id: entry.user_id,
        },
    );
    assert!(matches!(only_call(&fx).1,
        PortCall::Control(ControlCall::Admit { moderator, user })
        if *moderator == bob_user && *user == entry.user_id));

    // A grant missed while the socket was away comes with the resume: the
    // token is verified afresh, so its grant is the current one.
    room.apply(RoomInput::Disconnected {
        conn: 1,
        ending: Ending::Lost,
    });
    room.advance(Duration::from_secs(2));
    let mut again = admission(room.conference, "ada", true, false);
    again.user_id = ada_user;
    let fx = room.enter(3, again, Some(ada_token));
    assert_eq!(entered(&fx), Some(&Ok(())));
    assert!(sent(&fx, 2).iter().any(|m| matches!(m,
        ServerMessage::ParticipantUpdated { participant }
        if participant.participant_id == ada && participant.moderator)));
    let fx = room.client(3, ClientMessage::AdmitAll);
    assert!(matches!(only_call(&fx).1,
        PortCall::Control(ControlCall::AdmitAll { moderator }) if *moderator == ada_user));
}

#[test]
fn when_the_sfu_loses_every_session_the_room_says_so_and_media_can_rejoin() {
    let mut room = Room::new();
    let (ada, _, _) = room.join(1, "ada", false);
    let (bob, _, _) = room.join(2, "bob", false);
    for (conn, pid) in [(1, &ada), (2, &bob)] {
        let fx = room.client(
            conn,
            ClientMessage::Offer {
                sdp: "o".into(),
                sources: Default::default(),
            },
        );
        let (call, port) = only_call(&fx);
        assert!(matches!(port, PortCall::Media(MediaCall::Join(r)) if r.participant_id == *pid));
        room.done(call, Ok(CallOutput::Answer("a".into())));
    }
    let track = convene_proto::sfu::TrackInfo {
        track_id: format!("{ada}/0"),
        participant_id: ada.clone(),
        kind: convene_proto::sfu::TrackKind::Audio,
        layers: Vec::new(),
        muted: false,
        source: Default::default(),
    };
    room.apply(RoomInput::Sfu(SfuEvent::TrackPublished {
        room_id: room.conference.to_string(),
        track,
    }));

    // The SFU restarted under a remote signaling node.
    let fx = room.apply(RoomInput::Sfu(SfuEvent::SessionsLost));
    for conn in [1, 2] {
        let ended: Vec<&String> = sent(&fx, conn)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::MediaEnded { participant_id, .. } => Some(participant_id),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 2, "both sessions ended, told to {conn}");
    }
    assert!(sent(&fx, 2).iter().any(|m| matches!(m,
        ServerMessage::TrackUnpublished { track_id } if *track_id == format!("{ada}/0"))));

    // A new offer joins the (new) SFU afresh rather than renegotiating.
    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "o2".into(),
            sources: Default::default(),
        },
    );
    assert!(matches!(only_call(&fx).1,
        PortCall::Media(MediaCall::Join(r)) if r.participant_id == ada));
}

#[test]
fn an_offer_declares_what_its_m_lines_carry() {
    let mut room = Room::new();
    let (ada, _, _) = room.join(1, "ada", false);
    let sources: convene_proto::sfu::TrackSources = [
        ("0".to_string(), convene_proto::sfu::TrackSource::Microphone),
        (
            "1".to_string(),
            convene_proto::sfu::TrackSource::ScreenShare,
        ),
    ]
    .into_iter()
    .collect();
    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "o".into(),
            sources: sources.clone(),
        },
    );
    let (call, port) = only_call(&fx);
    assert!(matches!(port,
        PortCall::Media(MediaCall::Join(r)) if r.participant_id == ada && r.sources == sources));
    room.done(call, Ok(CallOutput::Answer("a".into())));
    // A renegotiation carries them too.
    let fx = room.client(
        1,
        ClientMessage::Offer {
            sdp: "o2".into(),
            sources: sources.clone(),
        },
    );
    assert!(matches!(only_call(&fx).1,
        PortCall::Media(MediaCall::Offer(r)) if r.sources == sources));
}
