//! Simulcast end to end with str0m client peers in RTP mode: the publisher
//! writes three rid streams (q, h, f); the subscriber asks for Low, then
//! High. The logic runs on the virtual network and clock
//! (`convene_sfu::sim`); the same scenario runs once over loopback UDP with
//! publisher and subscriber on two workers, for the sockets, the threads
//! and the relay between them.

mod common;

use std::time::{Duration, Instant};

use common::str0m_client::{self, answer_renegotiation, join};
use convene_peer::Handler;
use convene_sfu::sim::{ClientHook, SimNet};
use convene_sfu::{SfuConfig, SfuEvent, VideoQuality};
use str0m::change::SdpApi;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Event, Rtc};

const RIDS: [&str; 3] = ["q", "h", "f"];

/// What a client saw.
struct Seen {
    /// (layer marker byte, seq, keyframe) of received video packets.
    received: Vec<(u8, u16, bool)>,
    keyframe_wanted: [bool; 3],
}

impl Seen {
    fn new() -> Self {
        Self {
            received: Vec::new(),
            keyframe_wanted: [true; 3],
        }
    }

    fn on(&mut self, event: &Event) {
        match event {
            Event::RtpPacket(p) => {
                let layer = p.payload.get(2).copied().unwrap_or(255);
                let key = p.payload.get(1).is_some_and(|b| b & 1 == 0) && p.payload[0] & 0x10 != 0;
                self.received.push((layer, p.header.sequence_number, key));
            }
            Event::KeyframeRequest(r) => {
                if let Some(i) = r.rid.and_then(|rid| RIDS.iter().position(|x| **x == *rid)) {
                    self.keyframe_wanted[i] = true;
                }
            }
            _ => {}
        }
    }
}

impl Handler for Seen {
    fn event(&mut self, event: Event) {
        self.on(&event);
    }
}

impl ClientHook for Seen {
    fn event(&mut self, event: &Event) {
        self.on(event);
    }
}

type Client = str0m_client::Client<Seen>;

fn client() -> Client {
    Client::new(Rtc::builder(), Seen::new())
}

/// The publisher's offer: Opus, and VP8 with three send rids.
fn publisher_media(change: &mut SdpApi<'_>) -> (Mid, Mid) {
    let mut sim = Simulcast::new();
    for r in RIDS {
        sim.add_send_layer(SimulcastLayer::new(r));
    }
    let audio_mid = change.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("pub".into()),
        Some("mic".into()),
        None,
    );
    let mid = change.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("pub".into()),
        Some("cam".into()),
        Some(sim),
    );
    (audio_mid, mid)
}

/// Runs both peers' network loops for `d` (blocking; these tests have few
/// packets), with the publisher writing 30 fps frames on each layer.
struct Media {
    mid: Mid,
    audio_mid: Mid,
    frame: u64,
    seq: [u64; 3],
    next_frame: Instant,
}

impl Media {
    fn step(&mut self, publisher: &mut Client, now: Instant) {
        let Client { peer, seen } = publisher;
        if self.frame_due(&mut peer.rtc, &mut seen.keyframe_wanted, now) {
            publisher.drain();
        }
    }

    /// Write the next frame on every layer (and an Opus packet) when one
    /// is due; true when it did.
    fn frame_due(&mut self, rtc: &mut Rtc, keyframe_wanted: &mut [bool; 3], now: Instant) -> bool {
        if now < self.next_frame {
            return false;
        }
        self.next_frame = now + Duration::from_millis(33);
        let pt = pt_of(rtc, Codec::Vp8);
        for (i, rid) in RIDS.iter().enumerate() {
            let key = std::mem::take(&mut keyframe_wanted[i]);
            for k in 0..2u8 {
                // VP8 descriptor: S bit on the first packet; payload header
                // P bit clear on a keyframe. Byte 2 tags the layer.
                let mut payload = vec![
                    if k == 0 { 0x10 } else { 0x00 },
                    if key { 0x00 } else { 0x01 },
                    i as u8,
                ];
                payload.resize(200 * (i + 1), 0xab);
                let seq = self.seq[i];
                self.seq[i] += 1;
                let ts = (self.frame * 3000) as u32 + 1_000_000 * i as u32;
                let mut api = rtc.direct_api();
                let stream = api
                    .stream_tx_by_mid(self.mid, Some(Rid::from(*rid)))
                    .expect("tx stream for rid");
                stream.write_rtp(
                    RtpWrite::new(pt, seq.into(), ts, now, payload)
                        .marker(k == 1)
                        .nackable(true),
                );
            }
        }
        // One Opus packet per step, loud (-20 dBov) with voice activity,
        // so the room's speaker detection sees the publisher talking.
        let opus = pt_of(rtc, Codec::Opus);
        let ext = ExtensionValues {
            audio_level: Some(-20),
            voice_activity: Some(true),
            ..Default::default()
        };
        let mut api = rtc.direct_api();
        if let Some(stream) = api.stream_tx_by_mid(self.audio_mid, None) {
            stream.write_rtp(
                RtpWrite::new(
                    opus,
                    (5000 + self.frame).into(),
                    (self.frame * 1584) as u32,
                    now,
                    vec![0xf8u8; 40],
                )
                .ext_vals(ext),
            );
        }
        self.frame += 1;
        true
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> str0m::media::Pt {
    rtc.codec_config()
        .find(|p| p.spec().codec == codec)
        .expect("codec negotiated")
        .pt()
}

fn run_for(d: Duration, p: &mut Client, s: &mut Client, media: &mut Media) {
    str0m_client::run_for(d, &mut [p, s], |c, now| media.step(c[0], now));
}

#[test]
fn subscriber_gets_low_layer_then_switches_up_at_keyframe() {
    const ROOM: &str = "sim";
    const STEP: Duration = Duration::from_millis(2);
    let mut net = SimNet::with_hooks(SfuConfig::for_tests());
    let (audio_mid, mid) = net.join_with(ROOM, "pub", Rtc::builder(), Seen::new(), publisher_media);
    net.join_with(ROOM, "sub", Rtc::builder(), Seen::new(), |change| {
        change.add_channel("convene".into());
    });
    let mut media = Media {
        mid,
        audio_mid,
        frame: 0,
        seq: [100, 20_000, 65_000],
        next_frame: net.now,
    };
    let mut run_for = |net: &mut SimNet<Seen>, d: Duration| {
        let end = net.now + d;
        while net.now < end {
            let now = net.now;
            let c = net.client_mut("pub");
            media.frame_due(&mut c.rtc, &mut c.hook.keyframe_wanted, now);
            net.run_for(ROOM, STEP, STEP);
        }
    };
    run_for(&mut net, Duration::from_millis(600));
    let track_id = format!("pub/{mid}");
    net.subscribe_at(ROOM, "sub", vec![track_id.clone()], VideoQuality::Low);
    run_for(&mut net, Duration::from_millis(1200));
    let low = net.client("sub").hook.received.clone();
    net.subscribe_at(ROOM, "sub", vec![track_id], VideoQuality::High);
    run_for(&mut net, Duration::from_millis(1500));
    let all = net.client("sub").hook.received.clone();
    check(&low, &all, &net.seen);
    let m = &net.metrics;
    assert!(m.layer_switches.get() >= 2);
    assert!(m.keyframe_requests.get() >= 2);
    assert_eq!(m.packets_relayed.get(), 0, "one worker: nothing crosses");
}

/// The same over loopback UDP, with the subscriber on another worker than
/// the publisher (a room across workers): layers, keyframe requests,
/// dynacast and speakers cross between the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_across_two_workers_on_real_sockets() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("test timed out");
}

async fn run() {
    common::init_log();
    let config = SfuConfig {
        workers: 2,
        room_spread_after: 1,
        ..SfuConfig::for_tests()
    };
    let (sfu, handle) = convene_sfu::start(config).await.unwrap();
    let mut events = handle.events();
    let room = "sim";

    let mut publisher = client();
    let (audio_mid, mid) = join(&handle, room, "pub", &mut publisher, publisher_media).await;

    // Subscriber: just a data channel to start with.
    let mut subscriber = client();
    join(&handle, room, "sub", &mut subscriber, |change| {
        change.add_channel("convene".into());
    })
    .await;

    let mut media = Media {
        mid,
        audio_mid,
        frame: 0,
        seq: [100, 20_000, 65_000],
        next_frame: Instant::now(),
    };
    run_for(
        Duration::from_millis(600),
        &mut publisher,
        &mut subscriber,
        &mut media,
    );

    let track_id = format!("pub/{mid}");
    handle
        .subscribe(
            room,
            "sub",
            std::slice::from_ref(&track_id),
            VideoQuality::Low,
        )
        .await
        .unwrap();
    // Answer the SFU's renegotiation offer.
    let mut seen = answer_renegotiation(
        &handle,
        &mut events,
        room,
        "sub",
        &mut subscriber,
        Duration::from_secs(5),
    )
    .await;

    run_for(
        Duration::from_millis(1200),
        &mut publisher,
        &mut subscriber,
        &mut media,
    );
    let low: Vec<_> = subscriber.seen.received.clone();

    // Raise the cap: the SFU asks for a high keyframe and switches there.
    handle
        .subscribe(
            room,
            "sub",
            std::slice::from_ref(&track_id),
            VideoQuality::High,
        )
        .await
        .unwrap();
    run_for(
        Duration::from_millis(1500),
        &mut publisher,
        &mut subscriber,
        &mut media,
    );
    let all = subscriber.seen.received.clone();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    check(&low, &all, &seen);
    let m = sfu.metrics();
    assert!(m.layer_switches.get() >= 2);
    assert!(m.keyframe_requests.get() >= 2);
    // Every packet crossed to the subscriber's worker.
    assert!(m.packets_relayed.get() > 0);
    sfu.shutdown().await;
}

/// What the subscriber must have seen: `low` after asking for Low, `all`
/// after asking for High too; `seen` the SFU's events along the way.
fn check(low: &[(u8, u16, bool)], all: &[(u8, u16, bool)], seen: &[SfuEvent]) {
    assert!(low.len() >= 20, "received {} packets", low.len());
    assert!(
        low.iter().all(|(l, _, _)| *l == 0),
        "only the low layer: {low:?}"
    );
    assert!(low[0].2, "starts at a keyframe");

    let first_high = all
        .iter()
        .position(|(l, _, _)| *l == 2)
        .expect("switched to high");
    assert!(all[first_high].2, "switch happens at a keyframe");
    assert!(
        all[first_high..].iter().all(|(l, _, _)| *l == 2),
        "no flapping back"
    );
    assert!(all.len() - first_high >= 20);
    let seqs: Vec<u16> = all.iter().map(|(_, s, _)| *s).collect();
    assert!(
        common::continuous(&seqs),
        "continuous across the switch: {seqs:?}"
    );

    // Events along the way: layer changes, dynacast, active speakers.
    let has = |f: &dyn Fn(&SfuEvent) -> bool| seen.iter().any(f);
    assert!(has(&|e| matches!(
        e,
        SfuEvent::LayerChanged {
            quality: VideoQuality::Low,
            ..
        }
    )));
    assert!(has(&|e| matches!(
        e,
        SfuEvent::LayerChanged {
            quality: VideoQuality::High,
            ..
        }
    )));
    assert!(has(
        &|e| matches!(e, SfuEvent::WantedLayers { layers, .. } if layers == &[VideoQuality::Low])
    ));
    assert!(has(
        &|e| matches!(e, SfuEvent::WantedLayers { layers, .. } if layers == &[VideoQuality::High])
    ));
    assert!(
        has(
            &|e| matches!(e, SfuEvent::ActiveSpeakersChanged { speakers, .. }
            if speakers.first().is_some_and(|s| s.participant_id == "pub"))
        ),
        "{seen:?}"
    );
}
