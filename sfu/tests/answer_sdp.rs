//! The SDP answer to a client's offer: directions that match what the SFU
//! sends (no phantom tracks for `addTrack` publishers) and ICE candidates in
//! every m-section.

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use convene_sfu::{SfuConfig, SfuEvent, SfuHandle, TrackKind, VideoQuality};
use tokio::sync::Mutex;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::media::Sample;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::sdp::description::session::SessionDescription;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

type Sample2 = (Arc<TrackLocalStaticSample>, Arc<TrackLocalStaticSample>);

fn tracks(stream: &str) -> Sample2 {
    let t = |mime: &str, id: &str| {
        Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: mime.to_owned(),
                ..Default::default()
            },
            id.into(),
            stream.into(),
        ))
    };
    (t(MIME_TYPE_OPUS, "audio"), t(MIME_TYPE_VP8, "video"))
}

fn parse(sdp: &str) -> SessionDescription {
    SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).expect("answer parses")
}

/// (mid, media type, direction attribute) of every m-section.
fn directions(sdp: &SessionDescription) -> Vec<(String, String, Vec<String>)> {
    sdp.media_descriptions
        .iter()
        .map(|m| {
            let mid = m.attribute("mid").flatten().unwrap_or_default().to_string();
            let dirs = ["sendrecv", "sendonly", "recvonly", "inactive"]
                .into_iter()
                .filter(|d| m.attribute(d).is_some())
                .map(String::from)
                .collect();
            (mid, m.media_name.media.clone(), dirs)
        })
        .collect()
}

fn assert_recvonly(answer: &str) {
    let d = directions(&parse(answer));
    let media: Vec<_> = d.iter().filter(|(_, t, _)| t != "application").collect();
    assert_eq!(media.len(), 2, "{d:?}");
    for (mid, _, dirs) in media {
        assert_eq!(dirs, &["recvonly"], "mid {mid} in\n{answer}");
    }
}

async fn start() -> (convene_sfu::Sfu, SfuHandle) {
    init_log();
    convene_sfu::start(SfuConfig::for_tests())
        .await
        .expect("start")
}

/// Join with an offer made from the client's current state; the answer SDP.
async fn join_with_answer(
    handle: &SfuHandle,
    room: &str,
    id: &str,
    pc: &RTCPeerConnection,
) -> String {
    let offer = full_offer(pc).await;
    let answer = handle
        .join(room, id, id, &offer, Default::default())
        .await
        .expect("join");
    pc.set_remote_description(RTCSessionDescription::answer(answer.clone()).expect("answer"))
        .await
        .expect("set remote answer");
    answer
}

/// Wait until `id` is connected and has published both its tracks.
async fn published(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<SfuEvent>,
    id: &str,
) -> HashMap<TrackKind, String> {
    let mut tracks = HashMap::new();
    let mut connected = false;
    while tracks.len() < 2 || !connected {
        let ev = wait_event(events, Duration::from_secs(10), |e| match e {
            SfuEvent::TrackPublished { .. } | SfuEvent::ParticipantConnected { .. } => {
                Some(e.clone())
            }
            _ => None,
        })
        .await;
        match ev {
            SfuEvent::TrackPublished { track, .. } if track.participant_id == id => {
                tracks.insert(track.kind, track.track_id);
            }
            SfuEvent::ParticipantConnected { participant_id, .. } => {
                connected |= participant_id == id;
            }
            _ => {}
        }
    }
    tracks
}

fn send_media(
    audio: Arc<TrackLocalStaticSample>,
    video: Arc<TrackLocalStaticSample>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut frame = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            if frame % 2 == 0 {
                let s = Sample {
                    data: Bytes::from(vec![0xf8u8; 60]),
                    duration: Duration::from_millis(20),
                    ..Default::default()
                };
                let _ = audio.write_sample(&s).await;
            }
            if frame % 3 == 0 {
                // VP8 payload header: P bit clear is a keyframe.
                let mut data = vec![0u8; 1200];
                data[0] = if (frame / 3) % 15 == 0 { 0x10 } else { 0x11 };
                let s = Sample {
                    data: Bytes::from(data),
                    duration: Duration::from_millis(33),
                    ..Default::default()
                };
                let _ = video.write_sample(&s).await;
            }
            frame += 1;
        }
    })
}

/// `on_track` count and packets received per kind (audio 0, video 1).
fn count_tracks(pc: &RTCPeerConnection) -> (Arc<AtomicUsize>, Arc<[AtomicUsize; 2]>) {
    let ontrack = Arc::new(AtomicUsize::new(0));
    let packets: Arc<[AtomicUsize; 2]> = Default::default();
    let (o, p) = (ontrack.clone(), packets.clone());
    pc.on_track(Box::new(move |track, _, _| {
        o.fetch_add(1, Ordering::SeqCst);
        let p = p.clone();
        Box::pin(async move {
            let i = usize::from(track.kind() == RTPCodecType::Video);
            tokio::spawn(async move {
                while track.read_rtp().await.is_ok() {
                    p[i].fetch_add(1, Ordering::SeqCst);
                }
            });
        })
    }));
    (ontrack, packets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_track_publisher_gets_recvonly_answer_and_still_publishes() {
    tokio::time::timeout(Duration::from_secs(60), add_track_publisher())
        .await
        .expect("test timed out");
}

async fn add_track_publisher() {
    let (sfu, handle) = start().await;
    let peers: Arc<Mutex<HashMap<String, Arc<RTCPeerConnection>>>> = Default::default();
    let mut events = spawn_signaling(handle.clone(), peers.clone());
    let api = loopback_api();
    let room = "answer-sdp";

    // `add_track` makes sendrecv transceivers, as a browser's addTrack does.
    let publisher = new_pc(&api).await;
    let (audio, video) = tracks("pub");
    for t in [&audio, &video] {
        publisher
            .add_track(t.clone() as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .expect("add_track");
    }
    let (pub_ontrack, _) = count_tracks(&publisher);
    peers.lock().await.insert("pub".into(), publisher.clone());
    let answer = join_with_answer(&handle, room, "pub", &publisher).await;
    assert_recvonly(&answer);
    for t in publisher.get_transceivers().await {
        assert_eq!(
            t.current_direction(),
            RTCRtpTransceiverDirection::Sendonly,
            "transceiver {:?}",
            t.mid()
        );
    }
    let ids = published(&mut events, "pub").await;
    let media = send_media(audio.clone(), video.clone());

    // Alone in the room: nothing may show up as a remote track.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pub_ontrack.load(Ordering::SeqCst), 0, "phantom on_track");

    // A later client offer (same sendrecv transceivers) is answered the same.
    let offer = full_offer(&publisher).await;
    let again = handle
        .handle_offer(room, "pub", &offer)
        .await
        .expect("handle_offer");
    assert_recvonly(&again);
    publisher
        .set_remote_description(RTCSessionDescription::answer(again).expect("answer"))
        .await
        .expect("set remote");

    // The tracks from the sendrecv m-lines still reach a subscriber.
    let sub = new_pc(&api).await;
    sub.create_data_channel("convene", None).await.expect("dc");
    let (_, packets) = count_tracks(&sub);
    peers.lock().await.insert("sub".into(), sub.clone());
    join_with_answer(&handle, room, "sub", &sub).await;
    handle
        .subscribe(
            room,
            "sub",
            &[
                ids[&TrackKind::Audio].clone(),
                ids[&TrackKind::Video].clone(),
            ],
            VideoQuality::High,
        )
        .await
        .expect("subscribe");
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        while packets.iter().any(|p| p.load(Ordering::SeqCst) < 30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(got.is_ok(), "subscriber got {packets:?}");
    assert_eq!(pub_ontrack.load(Ordering::SeqCst), 0, "phantom on_track");

    media.abort();
    publisher.close().await.ok();
    sub.close().await.ok();
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_has_candidates_in_every_m_section() {
    tokio::time::timeout(Duration::from_secs(30), candidates())
        .await
        .expect("test timed out");
}

async fn candidates() {
    let (sfu, handle) = start().await;
    let api = loopback_api();
    // The common path: sendonly transceivers, plus a data channel, so the
    // answer has three bundled m-sections.
    let pc = new_pc(&api).await;
    let (audio, video) = tracks("c");
    for t in [audio, video] {
        pc.add_transceiver_from_track(
            t as Arc<dyn TrackLocal + Send + Sync>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            }),
        )
        .await
        .expect("transceiver");
    }
    pc.create_data_channel("convene", None).await.expect("dc");
    let answer = join_with_answer(&handle, "cands", "c", &pc).await;
    assert_recvonly(&answer);
    let sdp = parse(&answer);
    assert_eq!(sdp.media_descriptions.len(), 3, "{answer}");
    let host: Vec<String> = sdp.media_descriptions[0]
        .attributes
        .iter()
        .filter(|a| a.key == "candidate")
        .filter_map(|a| a.value.clone())
        .collect();
    assert!(
        host.iter().any(|c| c.contains("typ host")),
        "no host candidate in\n{answer}"
    );
    for m in &sdp.media_descriptions {
        let mid = m.attribute("mid").flatten().unwrap_or_default();
        let here: Vec<String> = m
            .attributes
            .iter()
            .filter(|a| a.key == "candidate")
            .filter_map(|a| a.value.clone())
            .collect();
        assert_eq!(here, host, "candidates of mid {mid} in\n{answer}");
        assert!(
            m.attribute("end-of-candidates").is_some(),
            "no end-of-candidates for mid {mid} in\n{answer}"
        );
    }
    pc.close().await.ok();
    sfu.shutdown().await;
}
