//! Simulcast end to end over loopback UDP, with str0m client peers in RTP
//! mode: the publisher writes three rid streams (q, h, f); the subscriber
//! asks for Low, then High.

mod common;

use std::time::{Duration, Instant};

use common::str0m_client::{self, answer_renegotiation, join};
use convene_peer::Handler;
use convene_sfu::{SfuConfig, SfuEvent, VideoQuality};
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

impl Handler for Seen {
    fn event(&mut self, event: Event) {
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

type Client = str0m_client::Client<Seen>;

fn client() -> Client {
    let seen = Seen {
        received: Vec::new(),
        keyframe_wanted: [true; 3],
    };
    Client::new(Rtc::builder(), seen)
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
        if now < self.next_frame {
            return;
        }
        self.next_frame = now + Duration::from_millis(33);
        let pt = publisher.pt_of(Codec::Vp8);
        for (i, rid) in RIDS.iter().enumerate() {
            let key = std::mem::take(&mut publisher.seen.keyframe_wanted[i]);
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
                let mut api = publisher.peer.rtc.direct_api();
                let stream = api
                    .stream_tx_by_mid(self.mid, Some(Rid::from(*rid)))
                    .expect("tx stream for rid");
                stream.write_rtp(
                    RtpWrite::new(pt, seq.into(), ts, now, payload)
                        .marker(k == 1)
                        .nackable(true),
                );
                publisher.drain();
            }
        }
        // One Opus packet per step, loud (-20 dBov) with voice activity,
        // so the room's speaker detection sees the publisher talking.
        let opus = publisher.pt_of(Codec::Opus);
        let ext = ExtensionValues {
            audio_level: Some(-20),
            voice_activity: Some(true),
            ..Default::default()
        };
        let mut api = publisher.peer.rtc.direct_api();
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
        publisher.drain();
        self.frame += 1;
    }
}

fn run_for(d: Duration, p: &mut Client, s: &mut Client, media: &mut Media) {
    str0m_client::run_for(d, &mut [p, s], |c, now| media.step(c[0], now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_gets_low_layer_then_switches_up_at_keyframe() {
    tokio::time::timeout(Duration::from_secs(60), run(SfuConfig::for_tests()))
        .await
        .expect("test timed out");
}

/// The same, with the subscriber on another worker than the publisher
/// (a room across workers, real sockets): layers, keyframe requests,
/// dynacast and speakers cross between the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_across_two_workers() {
    let config = SfuConfig {
        workers: 2,
        room_spread_after: 1,
        ..SfuConfig::for_tests()
    };
    tokio::time::timeout(Duration::from_secs(60), run(config))
        .await
        .expect("test timed out");
}

async fn run(config: SfuConfig) {
    common::init_log();
    let across = config.workers > 1;
    let (sfu, handle) = convene_sfu::start(config).await.unwrap();
    let mut events = handle.events();
    let room = "sim";

    // Publisher: one video m-line with three send rids.
    let mut publisher = client();
    let mut sim = Simulcast::new();
    for r in RIDS {
        sim.add_send_layer(SimulcastLayer::new(r));
    }
    let (audio_mid, mid) = join(&handle, room, "pub", &mut publisher, |change| {
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
    })
    .await;

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
    assert!(low.len() >= 20, "received {} packets", low.len());
    assert!(
        low.iter().all(|(l, _, _)| *l == 0),
        "only the low layer: {low:?}"
    );
    assert!(low[0].2, "starts at a keyframe");

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
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
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

    let m = sfu.metrics();
    assert!(m.layer_switches.get() >= 2);
    assert!(m.keyframe_requests.get() >= 2);
    // Across workers every packet crossed once (one subscriber); on one
    // worker nothing did.
    let relayed = m.packets_relayed.get();
    assert_eq!(relayed > 0, across, "{relayed} packets relayed");
    sfu.shutdown().await;
}
