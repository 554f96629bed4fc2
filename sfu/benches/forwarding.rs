//! Forwarding-core throughput: one VP8 packet fanned out to N subscribers
//! (sequence rewriting, layer decision, action building), no I/O.
//!
//! `cargo bench -p convene-sfu --bench forwarding`

use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{TrackKind, VideoQuality};
use convene_sfu::core::{Action, Codec, CoreConfig, InboundRtp, ParticipantKey, Room};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use str0m::media::Mid;

fn room_with(subscribers: u64) -> Room {
    let t0 = Instant::now();
    let mut r = Room::new("bench".into(), CoreConfig::default());
    let publisher = ParticipantKey(0);
    r.add_participant(publisher, "pub".into(), "pub".into());
    let mut out = Vec::new();
    let tk = r
        .publish(
            publisher,
            Mid::from("0"),
            TrackKind::Video,
            vec![],
            &mut out,
        )
        .unwrap();
    for i in 1..=subscribers {
        let k = ParticipantKey(i);
        r.add_participant(k, format!("s{i}"), String::new());
        r.subscribe(k, "pub/0", VideoQuality::High, t0).unwrap();
        r.activate_subscription(
            k,
            tk,
            Mid::from("0"),
            vec![(96.into(), 97.into())],
            t0,
            &mut out,
        );
    }
    r
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("on_rtp_fanout");
    for n in [1u64, 10, 50] {
        let mut room = room_with(n);
        let payload: Arc<[u8]> = Arc::from(vec![0x10u8; 1100]);
        let mut out: Vec<Action> = Vec::with_capacity(n as usize + 8);
        let t0 = Instant::now();
        let mut seq = 1u64;
        // A keyframe first so every subscriber is forwarding.
        let mut pkt = InboundRtp {
            publisher: ParticipantKey(0),
            mid: Mid::from("0"),
            rid: None,
            pt: 96.into(),
            codec: Codec::Vp8,
            seq,
            timestamp: 0,
            marker: false,
            payload: Arc::from(vec![0x10u8, 0x00, 0x00]),
            audio_level: None,
            voice_activity: None,
            received_at: t0,
        };
        room.on_rtp(t0, &pkt, &mut out).unwrap();
        pkt.payload = payload;
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                seq += 1;
                pkt.seq = seq;
                pkt.timestamp = (seq / 4) as u32 * 3000;
                let now = t0 + Duration::from_micros(seq);
                out.clear();
                room.on_rtp(now, &pkt, &mut out).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
