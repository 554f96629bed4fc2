//! Interop with webrtc-rs as independent client peers over real UDP on
//! loopback: one publisher (Opus + VP8), two subscribers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use convene_sfu::{SfuConfig, SfuEvent, TrackKind, VideoQuality};
use tokio::sync::Mutex;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::media::Sample;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

/// Sequence numbers received, audio at 0, video at 1.
type Received = Arc<parking_lot::Mutex<[Vec<u16>; 2]>>;

fn idx(kind: RTPCodecType) -> usize {
    usize::from(kind == RTPCodecType::Video)
}

/// Record the RTP sequence numbers a peer receives, per media kind.
fn record_tracks(pc: &webrtc::peer_connection::RTCPeerConnection) -> Received {
    let rec: Received = Default::default();
    let r = rec.clone();
    pc.on_track(Box::new(move |track, _, _| {
        let r = r.clone();
        Box::pin(async move {
            let kind = track.kind();
            tokio::spawn(async move {
                while let Ok((pkt, _)) = track.read_rtp().await {
                    r.lock()[idx(kind)].push(pkt.header.sequence_number);
                }
            });
        })
    }));
    rec
}

fn count(rec: &Received, kind: RTPCodecType) -> usize {
    rec.lock()[idx(kind)].len()
}

async fn wait_for_packets(rec: &Received, audio: usize, video: usize, timeout: Duration) {
    let r = tokio::time::timeout(timeout, async {
        loop {
            if count(rec, RTPCodecType::Audio) >= audio && count(rec, RTPCodecType::Video) >= video
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "timed out: audio {} video {}",
        count(rec, RTPCodecType::Audio),
        count(rec, RTPCodecType::Video)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_to_two_subscribers_over_udp() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("test timed out");
}

async fn run() {
    init_log();
    let (sfu, handle) = convene_sfu::start(SfuConfig::for_tests())
        .await
        .expect("start");
    let peers: Arc<Mutex<HashMap<String, Arc<_>>>> = Default::default();
    let mut events = spawn_signaling(handle.clone(), peers.clone());
    let api = loopback_api();
    let room = "room-1";

    // Publisher: send-only Opus and VP8.
    let publisher = new_pc(&api).await;
    let audio = Arc::new(TrackLocalStaticSample::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            ..Default::default()
        },
        "audio".into(),
        "pub".into(),
    ));
    let video = Arc::new(TrackLocalStaticSample::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.to_owned(),
            ..Default::default()
        },
        "video".into(),
        "pub".into(),
    ));
    for t in [
        audio.clone() as Arc<dyn TrackLocal + Send + Sync>,
        video.clone() as Arc<dyn TrackLocal + Send + Sync>,
    ] {
        publisher
            .add_transceiver_from_track(
                t,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("transceiver");
    }
    let pub_dc = publisher
        .create_data_channel("convene", None)
        .await
        .expect("publisher dc");
    join(&handle, room, "pub", &publisher).await;
    // str0m reports the publisher's m-lines once DTLS is up, so
    // ParticipantConnected comes first, then one TrackPublished per m-line.
    let mut tracks = HashMap::new();
    let mut connected = false;
    while tracks.len() < 2 || !connected {
        let ev = wait_event(&mut events, Duration::from_secs(10), |e| match e {
            SfuEvent::TrackPublished { .. } | SfuEvent::ParticipantConnected { .. } => {
                Some(e.clone())
            }
            _ => None,
        })
        .await;
        match ev {
            SfuEvent::TrackPublished { track, .. } => {
                tracks.insert(track.kind, track.track_id);
            }
            SfuEvent::ParticipantConnected { participant_id, .. } => {
                connected |= participant_id == "pub";
            }
            _ => {}
        }
    }

    // Media source: 50 audio frames/s, 30 video frames/s with a keyframe
    // every 15 frames (VP8 payload header P bit clear = keyframe).
    let media = tokio::spawn({
        let (audio, video) = (audio.clone(), video.clone());
        async move {
            let mut frame = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                if frame % 2 == 0 {
                    let data = Bytes::from(vec![0xf8u8; 60]);
                    let _ = audio
                        .write_sample(&Sample {
                            data,
                            duration: Duration::from_millis(20),
                            ..Default::default()
                        })
                        .await;
                }
                if frame % 3 == 0 {
                    let key = (frame / 3) % 15 == 0;
                    let mut data = vec![0u8; 2500];
                    data[0] = if key { 0x10 } else { 0x11 };
                    let _ = video
                        .write_sample(&Sample {
                            data: Bytes::from(data),
                            duration: Duration::from_millis(33),
                            ..Default::default()
                        })
                        .await;
                }
                frame += 1;
            }
        }
    });

    // Two subscribers, each starting with only a data channel.
    let mut recs = Vec::new();
    let messages: Arc<parking_lot::Mutex<Vec<String>>> = Default::default();
    for id in ["sub-a", "sub-b"] {
        let pc = new_pc(&api).await;
        let dc = pc.create_data_channel("convene", None).await.expect("dc");
        let m = messages.clone();
        let who = id.to_string();
        dc.on_message(Box::new(move |msg| {
            m.lock()
                .push(format!("{who} {}", String::from_utf8_lossy(&msg.data)));
            Box::pin(async {})
        }));
        let rec = record_tracks(&pc);
        peers.lock().await.insert(id.to_string(), pc.clone());
        join(&handle, room, id, &pc).await;
        handle
            .subscribe(
                room,
                id,
                &[
                    tracks[&TrackKind::Audio].clone(),
                    tracks[&TrackKind::Video].clone(),
                ],
                VideoQuality::High,
            )
            .await
            .expect("subscribe");
        recs.push((id, pc, rec));
    }
    for (_, _, rec) in &recs {
        wait_for_packets(rec, 40, 40, Duration::from_secs(15)).await;
    }
    for (id, _, rec) in &recs {
        let r = rec.lock();
        for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
            let seqs = &r[idx(kind)];
            assert!(continuous(seqs), "{id} {kind}: {seqs:?}");
        }
    }
    // Media flows to both subscribers: one MediaStarted each (the
    // publisher subscribes to nothing and gets none).
    let mut started: Vec<String> = Vec::new();
    wait_event(&mut events, Duration::from_secs(10), |e| {
        if let SfuEvent::MediaStarted {
            room_id,
            participant_id,
        } = e
        {
            assert_eq!(room_id, room);
            started.push(participant_id.clone());
        }
        (started.len() >= 2).then_some(())
    })
    .await;
    started.sort();
    assert_eq!(started, ["sub-a", "sub-b"]);

    // DataChannel broadcast: the publisher's message reaches both
    // subscribers, stamped with the sender by the SFU.
    let dc_ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let _ = pub_dc.send_text("hello room").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let m = messages.lock();
            if ["sub-a", "sub-b"]
                .iter()
                .all(|s| m.iter().any(|x| x.starts_with(s)))
            {
                return m.clone();
            }
        }
    })
    .await
    .expect("data channel messages");
    assert!(
        dc_ok
            .iter()
            .any(|m| m == r#"sub-b {"data":"hello room","from":"pub"}"#),
        "{dc_ok:?}"
    );

    // One subscriber leaves; the other keeps receiving without a gap.
    let (_, pc_a, _) = &recs[0];
    handle
        .remove_participant(room, "sub-a")
        .await
        .expect("remove");
    pc_a.close().await.expect("close");
    let rec_b = recs[1].2.clone();
    let (a0, v0) = (
        count(&rec_b, RTPCodecType::Audio),
        count(&rec_b, RTPCodecType::Video),
    );
    wait_for_packets(&rec_b, a0 + 25, v0 + 25, Duration::from_secs(10)).await;
    {
        let r = rec_b.lock();
        assert!(continuous(&r[0]));
        assert!(continuous(&r[1]));
    }

    // ICE restart from the remaining subscriber (client-initiated offer):
    // media keeps flowing over the new credentials.
    let pc_b = recs[1].1.clone();
    let offer = pc_b
        .create_offer(Some(RTCOfferOptions {
            ice_restart: true,
            ..Default::default()
        }))
        .await
        .expect("restart offer");
    let mut gathered = pc_b.gathering_complete_promise().await;
    pc_b.set_local_description(offer).await.expect("set local");
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let sdp = pc_b.local_description().await.expect("local").sdp;
    let answer = handle
        .handle_offer(room, "sub-b", &sdp)
        .await
        .expect("handle_offer");
    pc_b.set_remote_description(RTCSessionDescription::answer(answer).expect("answer"))
        .await
        .expect("set remote");
    let (a1, v1) = (
        count(&rec_b, RTPCodecType::Audio),
        count(&rec_b, RTPCodecType::Video),
    );
    wait_for_packets(&rec_b, a1 + 25, v1 + 25, Duration::from_secs(10)).await;

    // The publisher leaves: both its tracks are unpublished.
    while let Ok(e) = events.try_recv() {
        if let SfuEvent::MediaStarted { participant_id, .. } = e {
            started.push(participant_id);
        }
    }
    media.abort();
    handle
        .remove_participant(room, "pub")
        .await
        .expect("remove pub");
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let id = wait_event(&mut events, Duration::from_secs(10), |e| match e {
            SfuEvent::TrackUnpublished {
                track_id,
                participant_id,
                ..
            } if participant_id == "pub" => Some(track_id.clone()),
            SfuEvent::MediaStarted { participant_id, .. } => {
                started.push(participant_id.clone());
                None
            }
            _ => None,
        })
        .await;
        gone.push(id);
    }
    gone.sort();
    let mut want: Vec<_> = tracks.values().cloned().collect();
    want.sort();
    assert_eq!(gone, want);
    // Still exactly once per session, across the other subscriber's
    // departure and an ICE restart.
    assert_eq!(started, ["sub-a", "sub-b"], "MediaStarted events");

    let m = sfu.metrics();
    let fwd = m.packets_forwarded.get();
    assert!(fwd > 200, "forwarded {fwd}");
    let lat = &m.forwarding_latency;
    eprintln!(
        "forwarded {fwd} packets, {} bytes; mean receive->send latency {:.1} us over {} samples; dropped: malformed {} unknown_peer {} not_connected {}",
        m.bytes_forwarded.get(),
        lat.get_sample_sum() / lat.get_sample_count().max(1) as f64 * 1e6,
        lat.get_sample_count(),
        m.dropped.malformed.get(),
        m.dropped.unknown_peer.get(),
        m.dropped.not_connected.get(),
    );
    publisher.close().await.ok();
    recs[1].1.close().await.ok();
    sfu.shutdown().await;
}
