//! Room-level forwarding tests with a virtual clock.

use super::*;

const PUB: ParticipantKey = ParticipantKey(1);
const SUB_A: ParticipantKey = ParticipantKey(2);
const SUB_B: ParticipantKey = ParticipantKey(3);

fn room() -> Room {
    let mut r = Room::new("room".into(), CoreConfig::default());
    r.add_participant(PUB, "alice".into(), "Alice".into());
    r.add_participant(SUB_A, "bob".into(), "Bob".into());
    r.add_participant(SUB_B, "carol".into(), "Carol".into());
    r
}

fn vp8(keyframe: bool) -> Arc<[u8]> {
    // S=1 PID=0; VP8 header P bit clear for a keyframe.
    Arc::from(vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0xaa, 0xbb])
}

#[allow(clippy::too_many_arguments)]
fn pkt(
    mid: &str,
    rid: Option<&str>,
    codec: Codec,
    pt: u8,
    seq: u64,
    ts: u32,
    payload: Arc<[u8]>,
    at: Instant,
) -> InboundRtp {
    InboundRtp {
        publisher: PUB,
        mid: mid.into(),
        rid: rid.map(Rid::from),
        pt: pt.into(),
        codec,
        seq,
        timestamp: ts,
        marker: false,
        payload,
        audio_level: None,
        voice_activity: None,
        received_at: at,
    }
}

fn forwards(out: &[Action]) -> Vec<&Forward> {
    out.iter()
        .filter_map(|a| match a {
            Action::Forward(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn events(out: &[Action]) -> Vec<&SfuEvent> {
    out.iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn audio_fans_out_with_each_subscribers_payload_type() {
    let t0 = Instant::now();
    let mut r = room();
    let mut out = vec![];
    let tk = r
        .publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    assert!(matches!(
        events(&out)[..],
        [SfuEvent::TrackPublished { .. }]
    ));
    let id = r.track(tk).unwrap().id.clone();
    assert_eq!(id, "alice/0");
    for (sub, pt) in [(SUB_A, 96u8), (SUB_B, 111u8)] {
        assert_eq!(
            r.subscribe(sub, &id, VideoQuality::High, t0).unwrap(),
            Some(tk)
        );
        assert!(r.activate_subscription(
            sub,
            tk,
            "5".into(),
            vec![(109.into(), pt.into())],
            t0,
            &mut out
        ));
    }
    out.clear();
    let payload: Arc<[u8]> = Arc::from(vec![1u8; 80]);
    for i in 0..10u64 {
        let p = pkt(
            "0",
            None,
            Codec::Opus,
            109,
            500 + i,
            i as u32 * 960,
            payload.clone(),
            t0,
        );
        assert_eq!(r.on_rtp(t0, &p, &mut out), Ok(2));
    }
    let f = forwards(&out);
    assert_eq!(f.len(), 20);
    let a: Vec<_> = f.iter().filter(|f| f.to == SUB_A).collect();
    let b: Vec<_> = f.iter().filter(|f| f.to == SUB_B).collect();
    assert!(a.iter().all(|f| *f.pt == 96));
    assert!(b.iter().all(|f| *f.pt == 111));
    for w in a.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    // Payload shared, not copied.
    assert!(Arc::ptr_eq(&a[0].payload, &payload));
    // An unmapped PT (codec the subscriber did not negotiate) is not sent.
    out.clear();
    let p = pkt("0", None, Codec::Opus, 63, 510, 9600, payload, t0);
    assert_eq!(r.on_rtp(t0, &p, &mut out), Ok(0));
}

#[test]
fn red_goes_as_is_to_red_subscribers_and_unwrapped_to_others() {
    let t0 = Instant::now();
    let mut r = room();
    let mut out = vec![];
    let tk = r
        .publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    // Publisher: Opus 111, RED 63. Bob negotiated both (his Opus is 109,
    // RED 120); Carol only Opus (96).
    let bob = vec![(111.into(), 109.into()), (63.into(), 120.into())];
    let carol = vec![(111.into(), 96.into())];
    for (sub, map) in [(SUB_A, bob), (SUB_B, carol)] {
        r.subscribe(sub, "alice/0", VideoQuality::High, t0).unwrap();
        assert!(r.activate_subscription(sub, tk, "5".into(), map, t0, &mut out));
    }
    out.clear();
    // One redundant block (3 bytes, 960 ticks back) and the primary.
    let red: Arc<[u8]> = Arc::from(vec![
        0x80 | 111,
        0x0f,
        0x00,
        0x03,
        111,
        1,
        2,
        3,
        7,
        8,
        9,
        10,
    ]);
    let p = pkt("0", None, Codec::Red, 63, 500, 9600, red.clone(), t0);
    assert_eq!(r.on_rtp(t0, &p, &mut out), Ok(2));
    let f = forwards(&out);
    let a = f.iter().find(|f| f.to == SUB_A).unwrap();
    let b = f.iter().find(|f| f.to == SUB_B).unwrap();
    assert_eq!((*a.pt, &a.payload[..]), (120, &red[..]));
    assert!(
        Arc::ptr_eq(&a.payload, &red),
        "RED forwarded without a copy"
    );
    assert_eq!((*b.pt, &b.payload[..]), (96, &[7u8, 8, 9, 10][..]));
    assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 0);

    // Malformed RED (block longer than the payload): Carol gets nothing
    // and the packet is reported; Bob still gets it as is.
    out.clear();
    let bad: Arc<[u8]> = Arc::from(vec![0x80 | 111, 0x0f, 0x03, 0xff, 111, 1, 2]);
    let p = pkt("0", None, Codec::Red, 63, 501, 10560, bad, t0);
    assert_eq!(r.on_rtp(t0, &p, &mut out), Err(DropReason::MalformedRed));
    let f = forwards(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].to, SUB_A);

    // A primary block of a codec Carol lacks is skipped, not an error.
    out.clear();
    let other: Arc<[u8]> = Arc::from(vec![0, 0xaa]);
    let p = pkt("0", None, Codec::Red, 63, 502, 11520, other, t0);
    assert_eq!(r.on_rtp(t0, &p, &mut out), Ok(1));
    assert_eq!(DropReason::MalformedRed.as_str(), "malformed_red");
}

#[test]
fn unknown_and_muted_tracks_are_dropped() {
    let t0 = Instant::now();
    let mut r = room();
    let mut out = vec![];
    let p = pkt("9", None, Codec::Opus, 111, 1, 0, Arc::from(vec![0u8]), t0);
    assert_eq!(r.on_rtp(t0, &p, &mut out), Err(DropReason::UnknownTrack));
    r.publish(PUB, "9".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    r.set_muted("alice/9", true, &mut out).unwrap();
    assert_eq!(r.on_rtp(t0, &p, &mut out), Err(DropReason::Muted));
}

#[test]
fn mute_gap_does_not_show_in_sequence_numbers() {
    let t0 = Instant::now();
    let mut r = room();
    let mut out = vec![];
    let tk = r
        .publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    r.subscribe(SUB_A, "alice/0", VideoQuality::High, t0)
        .unwrap();
    r.activate_subscription(
        SUB_A,
        tk,
        "0".into(),
        vec![(111.into(), 111.into())],
        t0,
        &mut out,
    );
    out.clear();
    let pl: Arc<[u8]> = Arc::from(vec![0u8; 10]);
    r.on_rtp(
        t0,
        &pkt("0", None, Codec::Opus, 111, 1, 0, pl.clone(), t0),
        &mut out,
    )
    .unwrap();
    r.set_muted("alice/0", true, &mut out).unwrap();
    for i in 2..50 {
        let _ = r.on_rtp(
            t0,
            &pkt("0", None, Codec::Opus, 111, i, 0, pl.clone(), t0),
            &mut out,
        );
    }
    r.set_muted("alice/0", false, &mut out).unwrap();
    let t1 = t0 + Duration::from_secs(1);
    r.on_rtp(
        t1,
        &pkt("0", None, Codec::Opus, 111, 50, 48_000, pl, t1),
        &mut out,
    )
    .unwrap();
    let f = forwards(&out);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].seq, f[0].seq + 1);
}

/// Publish a 3-layer VP8 track and subscribe SUB_A at `q`.
fn simulcast_room(q: VideoQuality, t0: Instant) -> (Room, TrackKey) {
    let mut out = vec![];
    simulcast_in(room(), q, t0, &mut out)
}

/// `r` with PUB publishing "alice/1" (rids q, h, f) and SUB_A subscribed at
/// `q` on its m-line "3".
fn simulcast_in(
    mut r: Room,
    q: VideoQuality,
    t0: Instant,
    out: &mut Vec<Action>,
) -> (Room, TrackKey) {
    let tk = r
        .publish(
            PUB,
            "1".into(),
            TrackKind::Video,
            vec!["q".into(), "h".into(), "f".into()],
            out,
        )
        .unwrap();
    r.subscribe(SUB_A, "alice/1", q, t0).unwrap();
    r.activate_subscription(
        SUB_A,
        tk,
        "3".into(),
        vec![(96.into(), 100.into())],
        t0,
        out,
    );
    (r, tk)
}

/// Send one frame (2 packets) on each of the three layers.
fn send_frame(r: &mut Room, frame: u64, keyframe: bool, at: Instant, out: &mut Vec<Action>) {
    for (l, rid) in ["q", "h", "f"].into_iter().enumerate() {
        let base_seq = 10_000 * (l as u64 + 1) + frame * 2;
        let ts = 1_000_000 * (l as u32 + 1) + frame as u32 * 3000;
        for k in 0..2 {
            let payload = if k == 0 {
                vp8(keyframe)
            } else {
                Arc::from(vec![0x00, 0xcc])
            };
            let p = pkt(
                "1",
                Some(rid),
                Codec::Vp8,
                96,
                base_seq + k,
                ts,
                payload,
                at,
            );
            let _ = r.on_rtp(at, &p, out);
        }
    }
}

#[test]
fn simulcast_low_request_gets_low_layer_then_switches_up_at_keyframe() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    let mut now = t0;
    // Delta frames first: nothing forwarded until a keyframe.
    send_frame(&mut r, 0, false, now, &mut out);
    r.tick(now, &mut out);
    assert!(forwards(&out).is_empty());
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::RequestKeyframe { rid: Some(rid), .. } if &**rid == "q")));
    out.clear();
    for f in 1..5 {
        now += Duration::from_millis(33);
        send_frame(&mut r, f, f == 1, now, &mut out);
    }
    let fw = forwards(&out);
    assert_eq!(fw.len(), 8, "4 frames x 2 packets of the low layer");
    assert!(fw
        .iter()
        .all(|f| f.timestamp >= 1_000_000 && f.timestamp < 2_000_000));
    assert!(fw.iter().all(|f| *f.pt == 100 && f.mid == Mid::from("3")));
    assert!(events(&out).iter().any(|e| matches!(
        e,
        SfuEvent::LayerChanged {
            quality: VideoQuality::Low,
            ..
        }
    )));
    let last_seq = fw.last().unwrap().seq;
    let last_ts = fw.last().unwrap().timestamp;

    // Ask for high: the low layer keeps flowing until a high keyframe.
    r.subscribe(SUB_A, "alice/1", VideoQuality::High, now)
        .unwrap();
    out.clear();
    r.tick(now, &mut out);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::RequestKeyframe { rid: Some(rid), .. } if &**rid == "f")));
    out.clear();
    now += Duration::from_millis(33);
    send_frame(&mut r, 5, false, now, &mut out);
    let fw = forwards(&out);
    assert_eq!(fw.len(), 2);
    assert!(
        fw.iter().all(|f| f.timestamp < 2_000_000),
        "still low layer"
    );
    assert_eq!(fw[0].seq, last_seq + 1);
    let last_seq = fw[1].seq;
    out.clear();
    now += Duration::from_millis(33);
    send_frame(&mut r, 6, true, now, &mut out);
    // Frame 6 goes out layer by layer: the low layer's packets still flow
    // (the high keyframe has not arrived yet), then the high keyframe switches.
    let fw = forwards(&out);
    assert_eq!(fw.len(), 4);
    for (i, f) in fw.iter().enumerate() {
        assert_eq!(
            f.seq,
            last_seq + 1 + i as u64,
            "continuous across the switch"
        );
    }
    let last_low_ts = fw[1].timestamp;
    assert!(last_low_ts.wrapping_sub(last_ts) < 90_000);
    let dt = fw[2].timestamp.wrapping_sub(last_low_ts);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        SfuEvent::LayerChanged {
            quality: VideoQuality::High,
            ..
        }
    )));
    out.clear();
    now += Duration::from_millis(33);
    send_frame(&mut r, 7, false, now, &mut out);
    let fw = forwards(&out);
    assert_eq!(fw.len(), 2, "only the high layer after the switch");
    assert!(fw
        .iter()
        .all(|f| f.timestamp.wrapping_sub(last_low_ts) < 90_000));
    assert!(dt < 90_000, "timestamp moves forward smoothly: {dt}");
}

#[test]
fn bandwidth_estimate_limits_layer() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::High, t0);
    let mut out = vec![];
    let mut now = t0;
    // 1.2 s of frames so bitrates are measured (tiny payloads: ~1 kbit/s).
    for f in 0..40 {
        send_frame(&mut r, f, f % 10 == 0, now, &mut out);
        now += Duration::from_millis(30);
        r.tick(now, &mut out);
    }
    let t = r.track_by_id("alice/1").unwrap();
    assert!(t.layers.iter().all(|l| l.bitrate_bps > 0));
    let s = &t.subscriptions[0];
    assert_eq!(s.forwarder.selector.target(), Some(2));
    // An estimate below the high layer's rate moves the target down.
    let high = t.layers[2].bitrate_bps;
    r.set_bandwidth(SUB_A, high / 2);
    r.tick(now, &mut out);
    let s = &r.track_by_id("alice/1").unwrap().subscriptions[0];
    assert!(s.forwarder.selector.target() < Some(2));
}

/// Frames every 30 ms on all three layers (a keyframe every tenth), the
/// room ticked after each.
struct Frames(u64);

impl Frames {
    fn run(&mut self, r: &mut Room, ms: u64, now: &mut Instant, out: &mut Vec<Action>) {
        for _ in 0..ms / 30 {
            send_frame(r, self.0, self.0 % 10 == 0, *now, out);
            self.0 += 1;
            *now += Duration::from_millis(30);
            r.tick(*now, out);
        }
    }
}

#[test]
fn after_a_downgrade_the_layer_is_held_before_going_up_again() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::High, t0);
    let mut out = vec![];
    let mut now = t0;
    let target = |r: &Room| {
        r.track_by_id("alice/1").unwrap().subscriptions[0]
            .forwarder
            .selector
            .target()
    };
    let mut frames = Frames(0);
    frames.run(&mut r, 1200, &mut now, &mut out);
    assert_eq!(target(&r), Some(2));
    let high = r.track_by_id("alice/1").unwrap().layers[2].bitrate_bps;
    r.set_bandwidth(SUB_A, high / 2);
    frames.run(&mut r, 300, &mut now, &mut out);
    let down = target(&r);
    assert!(down < Some(2), "down at once");
    // The estimate comes straight back: the layer waits out the hold...
    r.set_bandwidth(SUB_A, 100_000_000);
    frames.run(&mut r, 2400, &mut now, &mut out);
    assert_eq!(target(&r), down, "held");
    // ...then goes up.
    frames.run(&mut r, 900, &mut now, &mut out);
    assert_eq!(target(&r), Some(2));
}

#[test]
fn video_pauses_when_even_the_lowest_layer_does_not_fit_and_resumes_at_a_keyframe() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::High, t0);
    r.config.video_pause_after = Some(Duration::from_secs(2));
    let mut out = vec![];
    let mut now = t0;
    let mut frames = Frames(0);
    frames.run(&mut r, 1200, &mut now, &mut out);
    assert!(!forwards(&out).is_empty(), "video flows with no estimate");
    let low = r.track_by_id("alice/1").unwrap().layers[0].bitrate_bps;
    assert!(low > 0);
    // Below the lowest layer: a short dip keeps the lowest layer...
    r.set_bandwidth(SUB_A, low / 2);
    out.clear();
    frames.run(&mut r, 1200, &mut now, &mut out);
    let t = r.track_by_id("alice/1").unwrap();
    assert_eq!(t.subscriptions[0].forwarder.selector.target(), Some(0));
    assert!(
        !forwards(&out).is_empty(),
        "the lowest layer during the grace"
    );
    // ...a lasting one pauses the video: nothing is forwarded.
    frames.run(&mut r, 1200, &mut now, &mut out);
    out.clear();
    frames.run(&mut r, 600, &mut now, &mut out);
    let t = r.track_by_id("alice/1").unwrap();
    assert_eq!(t.subscriptions[0].forwarder.selector.target(), None);
    assert!(
        forwards(&out).is_empty(),
        "paused: {} forwards",
        forwards(&out).len()
    );
    // Room again: video resumes, from a keyframe.
    r.set_bandwidth(SUB_A, 100_000_000);
    out.clear();
    frames.run(&mut r, 600, &mut now, &mut out);
    let t = r.track_by_id("alice/1").unwrap();
    assert_eq!(t.subscriptions[0].forwarder.selector.target(), Some(2));
    let fw = forwards(&out);
    assert!(!fw.is_empty(), "resumed");
    assert!(
        is_keyframe_start(Codec::Vp8, &fw[0].payload),
        "the picture restarts at a keyframe"
    );
}

#[test]
fn keyframe_requests_from_many_subscribers_are_merged() {
    let t0 = Instant::now();
    let (mut r, tk) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    r.subscribe(SUB_B, "alice/1", VideoQuality::Low, t0)
        .unwrap();
    r.activate_subscription(
        SUB_B,
        tk,
        "4".into(),
        vec![(96.into(), 96.into())],
        t0,
        &mut out,
    );
    send_frame(&mut r, 0, true, t0, &mut out);
    out.clear();
    let mut sent = 0;
    for i in 0..100u64 {
        let now = t0 + Duration::from_millis(10 * i);
        if r.on_keyframe_request(now, SUB_A, "3".into(), &mut out) {
            sent += 1;
        }
        if r.on_keyframe_request(now, SUB_B, "4".into(), &mut out) {
            sent += 1;
        }
    }
    // 1 s of requests from two subscribers, every 10 ms: 0 ms and 500 ms.
    assert_eq!(sent, 2);
}

#[test]
fn dynacast_reports_wanted_layers() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    send_frame(&mut r, 0, true, t0, &mut out);
    out.clear();
    r.tick(t0, &mut out);
    let wanted: Vec<_> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            SfuEvent::WantedLayers { layers, .. } => Some(layers.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(wanted, vec![vec![VideoQuality::Low]]);
    out.clear();
    r.tick(t0, &mut out);
    assert!(events(&out).is_empty(), "no repeat while unchanged");
}

#[test]
fn publisher_leaving_unpublishes_and_stops_subscriber_lines() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    let stop = r.remove_participant(PUB, &mut out);
    assert_eq!(stop, vec![(SUB_A, Mid::from("3"))]);
    assert!(events(&out).iter().any(
        |e| matches!(e, SfuEvent::TrackUnpublished { track_id, .. } if track_id == "alice/1")
    ));
    assert_eq!(r.track_count(), 0);
    assert_eq!(r.participant_count(), 2);
}

#[test]
fn subscriber_leaving_does_not_disturb_others() {
    let t0 = Instant::now();
    let (mut r, tk) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    r.subscribe(SUB_B, "alice/1", VideoQuality::Low, t0)
        .unwrap();
    r.activate_subscription(
        SUB_B,
        tk,
        "4".into(),
        vec![(96.into(), 96.into())],
        t0,
        &mut out,
    );
    send_frame(&mut r, 0, true, t0, &mut out);
    assert!(r.remove_participant(SUB_A, &mut out).is_empty());
    out.clear();
    send_frame(&mut r, 1, false, t0, &mut out);
    let fw = forwards(&out);
    assert_eq!(fw.len(), 2);
    assert!(fw.iter().all(|f| f.to == SUB_B));
}

#[test]
fn track_limit_is_enforced() {
    let mut r = Room::new(
        "r".into(),
        CoreConfig {
            max_tracks_per_participant: 1,
            ..CoreConfig::default()
        },
    );
    r.add_participant(PUB, "alice".into(), "A".into());
    let mut out = vec![];
    r.publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    assert_eq!(
        r.publish(PUB, "1".into(), TrackKind::Video, vec![], &mut out),
        Err(CoreError::TooManyTracks(1))
    );
}

#[test]
fn active_speakers_from_audio_levels() {
    let t0 = Instant::now();
    let mut r = room();
    let mut out = vec![];
    r.publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    out.clear();
    let pl: Arc<[u8]> = Arc::from(vec![0u8; 10]);
    for i in 0..30u64 {
        let now = t0 + Duration::from_millis(20 * i);
        let mut p = pkt("0", None, Codec::Opus, 111, i, 0, pl.clone(), now);
        p.audio_level = Some(-25);
        let _ = r.on_rtp(now, &p, &mut out);
        r.tick(now, &mut out);
    }
    let ev: Vec<_> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            SfuEvent::ActiveSpeakersChanged { speakers, .. } => Some(speakers.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0][0].participant_id, "alice");
}

/// A room across workers (remote publishers, far wants, the speaker role)
/// and declared track sources.
#[path = "room_relay_tests.rs"]
mod relay;

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any packet stream (arbitrary payloads, sequence numbers,
        /// timestamps, rids, payload types) is handled without panicking,
        /// and distinct input packets never share an output sequence number.
        #[test]
        fn arbitrary_packets_never_panic(
            packets in proptest::collection::vec(
                (any::<u16>(), any::<u32>(), 0u8..4, any::<bool>(),
                 proptest::collection::vec(any::<u8>(), 0..40), 95u8..98),
                1..200,
            )
        ) {
            let t0 = Instant::now();
            let mut r = room();
            let mut out = vec![];
            let tk = r
                .publish(PUB, "1".into(), TrackKind::Video, vec!["q".into(), "h".into(), "f".into()], &mut out)
                .unwrap();
            r.subscribe(SUB_A, "alice/1", VideoQuality::High, t0).unwrap();
            r.activate_subscription(SUB_A, tk, "3".into(), vec![(96.into(), 100.into())], t0, &mut out);
            out.clear();
            let mut now = t0;
            let mut sent = std::collections::HashSet::new();
            for (seq, ts, rid, marker, payload, pt) in packets {
                // A repeated (layer, seq) is a retransmission and rightly
                // maps to the same output number; the property is about
                // distinct packets.
                if !sent.insert((rid, seq)) {
                    continue;
                }
                now += Duration::from_millis(3);
                let rid = ["q", "h", "f"].get(rid as usize).copied();
                let mut p = pkt("1", rid, Codec::Vp8, pt, 100_000 + seq as u64, ts, Arc::from(payload), now);
                p.marker = marker;
                let _ = r.on_rtp(now, &p, &mut out);
                r.tick(now, &mut out);
                let _ = r.on_keyframe_request(now, SUB_A, "3".into(), &mut out);
            }
            let fw = forwards(&out);
            let mut seen = std::collections::HashSet::new();
            for f in fw {
                prop_assert!(seen.insert(f.seq), "duplicate output seq {}", f.seq);
            }
        }

        #[test]
        fn keyframe_parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for c in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::H265, Codec::Av1, Codec::Opus] {
                let _ = is_keyframe_start(c, &bytes);
            }
        }
    }
}
