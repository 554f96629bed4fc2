//! Codec passthrough beyond VP8: for VP9, H264, H265 and AV1, a webrtc-rs
//! publisher sends synthetic RTP with that codec's payload descriptor and a
//! webrtc-rs subscriber must receive it, negotiated as the same codec,
//! starting at a keyframe (so the SFU's per-codec keyframe detection is
//! exercised: a subscriber gets nothing until the first keyframe start),
//! with payloads untouched and gap-free sequence numbers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use convene_sfu::{SfuConfig, SfuEvent, TrackKind, VideoQuality};
use tokio::sync::Mutex;
use webrtc::api::media_engine::{MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_HEVC, MIME_TYPE_VP9};
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

/// One video frame as RTP payloads (the last one carries the marker bit).
type Frame = Vec<Vec<u8>>;

/// How a codec's frames look on the wire.
struct CodecCase {
    mime: &'static str,
    fmtp: &'static str,
    /// Frame `n` (keyframe or not) as RTP payloads.
    frame: fn(u16, bool) -> Frame,
}

/// Trailer making every payload unique, to check byte-exact passthrough.
fn tag(mut p: Vec<u8>, frame: u16, part: u8) -> Vec<u8> {
    p.extend_from_slice(&[0xaa; 200]);
    p.extend_from_slice(&frame.to_be_bytes());
    p.push(part);
    p
}

/// VP9 (RFC 9628): flexible-mode-free descriptor I|P|L|F|B|E|V|Z with a
/// 15-bit picture id, then the start of an uncompressed frame header.
fn vp9_frame(n: u16, key: bool) -> Frame {
    let pic = [0x80 | ((n >> 8) as u8 & 0x7f), n as u8];
    if key {
        // I=1 B=1 (P=0: not inter-predicted), then E=1 on the second packet.
        let mut a = vec![0x88, pic[0], pic[1]];
        // frame_marker=2 profile=0 show_existing=0 frame_type=0 (key),
        // sync code 0x49 0x83 0x42.
        a.extend_from_slice(&[0x82, 0x49, 0x83, 0x42, 0x00]);
        let b = vec![0x84, pic[0], pic[1]];
        vec![tag(a, n, 0), tag(b, n, 1)]
    } else {
        // I=1 P=1 B=1 E=1: a one-packet delta frame.
        let a = vec![0xcc, pic[0], pic[1], 0x86, 0x00];
        vec![tag(a, n, 0)]
    }
}

/// H264 (RFC 6184), packetization-mode=1: a keyframe is a STAP-A with
/// SPS+PPS followed by an IDR slice in two FU-A fragments; a delta frame is
/// one non-IDR slice NAL unit.
fn h264_frame(n: u16, key: bool) -> Frame {
    if key {
        let sps = [0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        // An SEI NAL unit carries the per-frame tag inside the STAP-A.
        let sei = tag(vec![0x06], n, 0);
        let mut stap = vec![0x78];
        for nal in [&sps[..], &pps[..], &sei[..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        // FU indicator: NRI=3, type 28; FU header S/E + type 5 (IDR).
        let fu_start = vec![0x7c, 0x85, 0x88, 0x84];
        let fu_end = vec![0x7c, 0x45, 0x21];
        vec![stap, tag(fu_start, n, 1), tag(fu_end, n, 2)]
    } else {
        vec![tag(vec![0x41, 0x9a, 0x02], n, 0)]
    }
}

/// H.265 (RFC 7798): a keyframe is an aggregation packet (type 48) with
/// VPS, SPS, PPS and an SEI carrying the tag, then an IDR_W_RADL (19) in
/// two fragmentation units (type 49); a delta frame is one TRAIL_R (1).
fn h265_frame(n: u16, key: bool) -> Frame {
    let hdr = |t: u8| [t << 1, 0x01];
    if key {
        let vps = [hdr(32)[0], 1, 0x0c, 0x01, 0xff, 0xff];
        let sps = [hdr(33)[0], 1, 0x01, 0x01, 0x60, 0x00];
        let pps = [hdr(34)[0], 1, 0xc1, 0x72];
        let sei = tag(hdr(39).to_vec(), n, 0);
        let mut ap = hdr(48).to_vec();
        for nal in [&vps[..], &sps[..], &pps[..], &sei[..]] {
            ap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            ap.extend_from_slice(nal);
        }
        let fu = hdr(49);
        let fu_start = vec![fu[0], fu[1], 0x80 | 19, 0xaf, 0x08];
        let fu_end = vec![fu[0], fu[1], 0x40 | 19, 0x21];
        vec![ap, tag(fu_start, n, 1), tag(fu_end, n, 2)]
    } else {
        let mut p = hdr(1).to_vec();
        p.extend_from_slice(&[0xd0, 0x04]);
        vec![tag(p, n, 0)]
    }
}

/// AV1 (AV1 RTP spec §4.4): aggregation header Z|Y|W|N; a keyframe starts a
/// new coded video sequence (N=1) with a sequence header OBU then a frame
/// OBU; a delta frame is one frame OBU with N=0.
fn av1_frame(n: u16, key: bool) -> Frame {
    if key {
        // W=2: first OBU length-prefixed, the last one takes the rest.
        let seq_hdr = [0x08, 0x00, 0x00, 0x00, 0x24, 0x4f, 0x7e, 0x7f];
        let mut a = vec![0x28, seq_hdr.len() as u8];
        a.extend_from_slice(&seq_hdr);
        a.extend_from_slice(&[0x30, 0x10]); // OBU_FRAME, key frame
        vec![tag(a, n, 0)]
    } else {
        vec![tag(vec![0x10, 0x30, 0x30], n, 0)]
    }
}

const KEYFRAME_EVERY: u16 = 10;
/// Packets the subscriber must get (several keyframe intervals).
const WANT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp9_passthrough() {
    case(CodecCase {
        mime: MIME_TYPE_VP9,
        fmtp: "profile-id=0",
        frame: vp9_frame,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_passthrough() {
    case(CodecCase {
        mime: MIME_TYPE_H264,
        fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        frame: h264_frame,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_passthrough() {
    case(CodecCase {
        mime: MIME_TYPE_HEVC,
        fmtp: "",
        frame: h265_frame,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_passthrough() {
    case(CodecCase {
        mime: MIME_TYPE_AV1,
        fmtp: "profile-id=0",
        frame: av1_frame,
    })
    .await;
}

async fn case(c: CodecCase) {
    tokio::time::timeout(Duration::from_secs(20), run(c))
        .await
        .expect("test timed out");
}

/// What the subscriber got: negotiated (mime, pt) and the packets.
#[derive(Default)]
struct Received {
    codec: Option<(String, u8)>,
    packets: Vec<(u16, u8, Bytes)>,
}

async fn run(c: CodecCase) {
    init_log();
    let (sfu, handle) = convene_sfu::start(SfuConfig::for_tests())
        .await
        .expect("start");
    let peers: Arc<Mutex<HashMap<String, Arc<_>>>> = Default::default();
    let mut events = spawn_signaling(handle.clone(), peers.clone());
    let api = loopback_api();
    let room = "codecs";

    // Publisher: one send-only video track of the codec under test.
    let publisher = new_pc(&api).await;
    let video = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: c.mime.to_owned(),
            clock_rate: 90_000,
            sdp_fmtp_line: c.fmtp.to_owned(),
            ..Default::default()
        },
        "video".into(),
        "pub".into(),
    ));
    let sender = publisher
        .add_transceiver_from_track(
            video.clone(),
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            }),
        )
        .await
        .expect("transceiver")
        .sender()
        .await;
    // Drain RTCP so the interceptors keep working.
    tokio::spawn(async move { while sender.read_rtcp().await.is_ok() {} });
    join(&handle, room, "pub", &publisher).await;
    let mut track_id = None;
    let mut connected = false;
    while track_id.is_none() || !connected {
        let ev = wait_event(&mut events, Duration::from_secs(10), |e| match e {
            SfuEvent::TrackPublished { .. } | SfuEvent::ParticipantConnected { .. } => {
                Some(e.clone())
            }
            _ => None,
        })
        .await;
        match ev {
            SfuEvent::TrackPublished { track, .. } => {
                assert_eq!(track.kind, TrackKind::Video);
                track_id = Some(track.track_id);
            }
            SfuEvent::ParticipantConnected { participant_id, .. } => {
                connected |= participant_id == "pub";
            }
            _ => {}
        }
    }
    let track_id = track_id.expect("track");

    // Media: 30 frames/s, a keyframe every KEYFRAME_EVERY frames. Every
    // payload sent is kept, to compare with what arrives.
    let sent: Arc<parking_lot::Mutex<Vec<(Bytes, bool)>>> = Default::default();
    let media = tokio::spawn({
        let (video, sent, frame) = (video.clone(), sent.clone(), c.frame);
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            let (mut seq, mut n) = (1000u16, 0u16);
            loop {
                tick.tick().await;
                let key = n % KEYFRAME_EVERY == 0;
                let parts = frame(n, key);
                let last = parts.len() - 1;
                for (i, p) in parts.into_iter().enumerate() {
                    let payload = Bytes::from(p);
                    sent.lock().push((payload.clone(), key && i == 0));
                    let pkt = Packet {
                        header: Header {
                            version: 2,
                            marker: i == last,
                            sequence_number: seq,
                            timestamp: u32::from(n).wrapping_mul(3000),
                            ..Default::default()
                        },
                        payload,
                    };
                    let _ = video.write_rtp(&pkt).await;
                    seq = seq.wrapping_add(1);
                }
                n = n.wrapping_add(1);
            }
        }
    });

    // Subscriber: starts with a data channel only, gets the video m-line
    // through SFU-initiated renegotiation.
    let sub = new_pc(&api).await;
    let _dc = sub.create_data_channel("convene", None).await.expect("dc");
    let rec: Arc<parking_lot::Mutex<Received>> = Default::default();
    {
        let r = rec.clone();
        sub.on_track(Box::new(move |track, _, _| {
            let r = r.clone();
            Box::pin(async move {
                tokio::spawn(async move {
                    while let Ok((pkt, _)) = track.read_rtp().await {
                        let mut r = r.lock();
                        if r.codec.is_none() {
                            let codec = track.codec();
                            r.codec = Some((codec.capability.mime_type, codec.payload_type));
                        }
                        r.packets.push((
                            pkt.header.sequence_number,
                            pkt.header.payload_type,
                            pkt.payload,
                        ));
                    }
                });
            })
        }));
    }
    peers.lock().await.insert("sub".into(), sub.clone());
    join(&handle, room, "sub", &sub).await;
    handle
        .subscribe(room, "sub", &[track_id], VideoQuality::High)
        .await
        .expect("subscribe");

    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if rec.lock().packets.len() >= WANT {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    media.abort();
    check(&c, got.is_ok(), &rec.lock(), &sent.lock(), &sfu);
    publisher.close().await.ok();
    sub.close().await.ok();
    sfu.shutdown().await;
}

fn check(
    c: &CodecCase,
    in_time: bool,
    r: &Received,
    sent: &[(Bytes, bool)],
    sfu: &convene_sfu::Sfu,
) {
    assert!(
        in_time,
        "{}: timed out with {} packets (forwarded {})",
        c.mime,
        r.packets.len(),
        sfu.metrics().packets_forwarded.get()
    );

    // Negotiated as the published codec, and every packet carries its PT.
    let (mime, pt) = r.codec.clone().expect("codec");
    assert!(mime.eq_ignore_ascii_case(c.mime), "{mime} != {}", c.mime);
    assert!(r.packets.iter().all(|p| p.1 == pt), "payload types vary");

    // Gap-free numbering.
    let seqs: Vec<u16> = r.packets.iter().map(|p| p.0).collect();
    assert!(continuous(&seqs), "{}: {seqs:?}", c.mime);

    // Forwarding starts at the first packet of a keyframe, and payloads
    // arrive byte for byte as a contiguous run of what was sent.
    let first = &r.packets[0].2;
    let start = sent
        .iter()
        .position(|(p, _)| p == first)
        .expect("first received payload was never sent");
    assert!(
        sent[start].1,
        "{}: first forwarded packet (sent #{start}) is not a keyframe start",
        c.mime
    );
    for (i, (_, _, p)) in r.packets.iter().enumerate() {
        assert_eq!(
            sent.get(start + i).map(|s| &s.0),
            Some(p),
            "{}: payload {i} differs",
            c.mime
        );
    }
    eprintln!(
        "{}: negotiated pt {pt}, {} packets, first at sent #{start}",
        c.mime,
        r.packets.len()
    );
}
