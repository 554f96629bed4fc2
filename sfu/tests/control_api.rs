//! Control API behaviour that needs no media: limits, errors, timeouts,
//! room closing, and malformed datagrams on the media port.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use convene_sfu::{DisconnectReason, Grants, SfuConfig, SfuError, SfuEvent, VideoQuality};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

/// An offer from a throwaway str0m peer (never connected).
fn offer(audio: bool) -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    if audio {
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    } else {
        change.add_channel("x".into());
    }
    let (offer, _) = change.apply().unwrap();
    offer.to_sdp_string()
}

/// An offer with `n` audio m-lines.
fn offer_with_lines(n: usize) -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    for _ in 0..n {
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    }
    let (offer, _) = change.apply().unwrap();
    offer.to_sdp_string()
}

#[tokio::test]
async fn an_offer_with_too_many_m_lines_is_refused() {
    let cfg = SfuConfig {
        max_offer_media_lines: 6,
        ..SfuConfig::for_tests()
    };
    let (sfu, h) = convene_sfu::start(cfg).await.unwrap();
    let g = Grants::default();
    match h.join("r", "a", "A", &offer_with_lines(7), g).await {
        Err(SfuError::Sdp(m)) => assert!(m.contains("7 m-lines"), "{m}"),
        other => panic!("expected an SDP error, got {other:?}"),
    }
    // Refused before anything was created: the same id may join.
    assert!(h.join("r", "a", "A", &offer_with_lines(6), g).await.is_ok());
    // A renegotiation is held to the same bound.
    match h.handle_offer("r", "a", &offer_with_lines(7)).await {
        Err(SfuError::Sdp(m)) => assert!(m.contains("at most 6"), "{m}"),
        other => panic!("expected an SDP error, got {other:?}"),
    }
    sfu.shutdown().await;
}

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<SfuEvent>,
    mut f: impl FnMut(&SfuEvent) -> bool,
) -> SfuEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.unwrap();
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

#[tokio::test]
async fn limits_and_errors() {
    let cfg = SfuConfig {
        max_participants_per_room: 2,
        ..SfuConfig::for_tests()
    };
    let (sfu, h) = convene_sfu::start(cfg).await.unwrap();
    let g = Grants::default();
    assert!(h.join("r", "a", "A", &offer(true), g).await.is_ok());
    assert!(matches!(
        h.join("r", "a", "A", &offer(true), g).await,
        Err(SfuError::DuplicateParticipant(_))
    ));
    assert!(h.join("r", "b", "B", &offer(false), g).await.is_ok());
    assert!(matches!(
        h.join("r", "c", "C", &offer(false), g).await,
        Err(SfuError::RoomFull(_))
    ));
    // Another room is independent.
    assert!(h.join("r2", "c", "C", &offer(false), g).await.is_ok());
    assert!(matches!(
        h.join("r3", "d", "D", "not sdp", g).await,
        Err(SfuError::Sdp(_))
    ));
    assert!(matches!(
        h.subscribe("r", "b", &["nope/0".into()], VideoQuality::High)
            .await,
        Err(SfuError::Core(_))
    ));
    assert!(matches!(
        h.handle_answer("r", "b", "v=0").await,
        Err(SfuError::Sdp(_)) | Err(SfuError::NoPendingOffer)
    ));
    assert!(matches!(
        h.remove_participant("r", "zz").await,
        Err(SfuError::UnknownParticipant(_))
    ));
    assert!(matches!(
        h.close_room("nope").await,
        Err(SfuError::UnknownRoom(_))
    ));
    assert_eq!(sfu.metrics().participants.get(), 3);
    assert_eq!(sfu.metrics().rooms.get(), 2);

    let mut ev = h.events();
    h.close_room("r").await.unwrap();
    for _ in 0..2 {
        let e = next_event(&mut ev, |e| {
            matches!(e, SfuEvent::ParticipantDisconnected { .. })
        })
        .await;
        assert!(matches!(
            e,
            SfuEvent::ParticipantDisconnected {
                reason: DisconnectReason::RoomClosed,
                ..
            }
        ));
    }
    assert_eq!(sfu.metrics().rooms.get(), 1);
    sfu.shutdown().await;
}

#[tokio::test]
async fn participant_that_never_connects_times_out() {
    let cfg = SfuConfig {
        ice_timeout_ms: 300,
        ..SfuConfig::for_tests()
    };
    let (sfu, h) = convene_sfu::start(cfg).await.unwrap();
    let mut ev = h.events();
    h.join("r", "ghost", "G", &offer(false), Grants::default())
        .await
        .unwrap();
    let e = next_event(&mut ev, |e| {
        matches!(e, SfuEvent::ParticipantDisconnected { .. })
    })
    .await;
    assert!(matches!(
        e,
        SfuEvent::ParticipantDisconnected {
            reason: DisconnectReason::IceTimeout,
            ..
        }
    ));
    assert_eq!(sfu.metrics().participants.get(), 0);
    sfu.shutdown().await;
}

/// Arbitrary bytes at the media port, from unknown and from a routed
/// address, are dropped and counted; the SFU keeps serving.
/// A STUN binding request naming `ufrag` (no valid integrity: enough for
/// the edge to route the sender's address, rejected by str0m).
fn stun_with_username(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:x");
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[1; 12]);
    m.extend_from_slice(&attrs);
    m
}

/// Arbitrary bytes at the media port, from an unknown address and from an
/// address routed to a participant (so they reach str0m), are dropped and
/// counted; the SFU keeps serving.
#[tokio::test]
async fn garbage_datagrams_are_dropped_not_fatal() {
    let (sfu, h) = convene_sfu::start(SfuConfig::for_tests()).await.unwrap();
    let target = sfu.local_addr();
    let answer = h
        .join("r", "victim", "V", &offer(true), Grants::default())
        .await
        .unwrap();
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag in answer")
        .trim()
        .to_string();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let routed = UdpSocket::bind("127.0.0.1:0").unwrap();
    routed.send_to(&stun_with_username(&ufrag), target).unwrap();
    // Deterministic pseudo-random bytes (xorshift), every first-byte class.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..4000u32 {
        let len = (next() % 1400) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = buf.first_mut() {
            *b = [0x00, 0x01, 22, 0x80, 0x90, 0xff][(i % 6) as usize];
        }
        if buf.len() >= 8 && i % 3 == 0 {
            // Looks like STUN with the magic cookie.
            buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        }
        let from = if i % 2 == 0 { &stranger } else { &routed };
        from.send_to(&buf, target).unwrap();
        if i % 100 == 99 {
            // Let the worker keep up, so the kernel's receive buffer does
            // not overflow on a busy machine: wait (bounded) until this
            // batch has been read.
            let sent = u64::from(i) + 2; // + the STUN request above
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while sfu.metrics().packets_received.get() < sent && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    // Everything sent has been read (bounded wait), so the counters below
    // are final.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while sfu.metrics().packets_received.get() < 4001 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Still alive and serving.
    assert!(h
        .join("r", "a", "A", &offer(true), Grants::default())
        .await
        .is_ok());
    let m = sfu.metrics();
    assert!(m.packets_received.get() > 3000);
    assert!(m.dropped.malformed.get() > 0);
    assert!(m.dropped.unknown_peer.get() > 0);
    sfu.shutdown().await;
}

/// One HTTP/1.1 exchange on a fresh connection; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: sfu\r\nauthorization: Bearer {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("http response in time")
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn http_control_api_with_shared_secret() {
    use convene_proto::sfu::{JoinRequest, SfuRequest, SfuResponse};
    let cfg = SfuConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_secret: Some(convene_sfu::config::Secret("s3cret".into())),
        ..SfuConfig::for_tests()
    };
    let (sfu, _h) = convene_sfu::start(cfg).await.unwrap();
    let addr = sfu.http_addr().expect("http enabled");
    let join = serde_json::to_string(&SfuRequest::Join(JoinRequest {
        room_id: "r".into(),
        participant_id: "a".into(),
        identity: "A".into(),
        offer_sdp: offer(true),
        grants: Grants::default(),
        sources: Default::default(),
    }))
    .unwrap();

    let (status, _) = http(addr, "POST", "/v1/request", "wrong", &join).await;
    assert_eq!(status, 401);
    let (status, _) = http(addr, "GET", "/v1/events", "wrong", "").await;
    assert_eq!(status, 401);

    // Events stream (SSE), open before the join: its response head arrives
    // once the handler has subscribed, so no event can be missed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nhost: sfu\r\nauthorization: Bearer s3cret\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains("\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("event stream head in time");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let sse = tokio::spawn(async move {
        while !seen.contains("participant_disconnected") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    });

    let (status, body) = http(addr, "POST", "/v1/request", "s3cret", &join).await;
    assert_eq!(status, 200, "{body}");
    match serde_json::from_str::<SfuResponse>(&body).unwrap() {
        SfuResponse::Answer { answer_sdp } => assert!(answer_sdp.contains("a=ice-lite")),
        other => panic!("unexpected {other:?}"),
    }
    let (status, body) = http(addr, "POST", "/v1/request", "s3cret", &join).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("duplicate_participant"));
    let remove = r#"{"type":"remove_participant","room_id":"r","participant_id":"a"}"#;
    let (status, body) = http(addr, "POST", "/v1/request", "s3cret", remove).await;
    assert_eq!(status, 200, "{body}");
    let seen = tokio::time::timeout(Duration::from_secs(10), sse)
        .await
        .expect("sse in time")
        .unwrap();
    assert!(seen.contains("text/event-stream"));
    assert!(seen.contains(r#""reason":"removed""#), "{seen}");
    sfu.shutdown().await;
}
