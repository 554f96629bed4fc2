//! Per-packet costs on the SFU's receive path, in packets per second.
//!
//! `cargo bench -p convene-benches --bench micro`
//!
//! * `rtp_header_parse`: the RTP fixed header, CSRCs and one-byte header
//!   extensions of a 1200-byte video packet. The SFU's own header parsing
//!   happens inside str0m (`RtpHeader::parse` is crate-private there), so
//!   this uses webrtc-rs's `rtp` crate on the same bytes as a stand-in.
//! * `sfu_classify_and_keyframe`: what convene-sfu itself reads per
//!   datagram and per video packet, through its public API: RFC 7983
//!   classification (`convene_sfu::demux::classify`) and the VP8 keyframe
//!   check (`convene_sfu::core::codec::is_keyframe_start`).
//! * `layer_selector`: `convene_sfu::core::LayerSelector` deciding about
//!   packets of three simulcast layers, re-targeting on a bandwidth change
//!   every 100 packets.
//! * `load_stamp_read`: the load generator's own per-packet work on receive.
//!
//! The forwarding fan-out itself is measured by `sfu/benches/forwarding.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use convene_benches::payload::{self, Stamp, StreamId};
use convene_sfu::core::codec::{is_keyframe_start, Codec};
use convene_sfu::core::{
    allocate, Allocation, Decision, LayerInfo, LayerSelector, Priority, VideoDemand,
};
use convene_sfu::demux::{classify, PacketClass};
use convene_sfu::VideoQuality;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use webrtc_util::marshal::Unmarshal;

/// Packets per benchmark iteration.
const BATCH: usize = 64;

/// A VP8 RTP packet as a browser sends it: version 2, marker, PT 96, one-byte
/// extensions (abs-send-time, transport-wide seq, mid), 1160-byte payload.
fn rtp_packet(seq: u16, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x90, 0x80 | 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    // RFC 8285 one-byte header extensions: 0xBEDE, length in words.
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x03]);
    p.extend_from_slice(&[0x12, 0x01, 0x02, 0x03]); // id 1, abs-send-time (3 bytes)
    p.extend_from_slice(&[0x31, 0x00, 0x2a]); // id 3, twcc seq (2 bytes)
    p.extend_from_slice(&[0x40, b'1']); // id 4, mid "1"
    p.extend_from_slice(&[0x00, 0x00, 0x00]); // padding to the word
    let mut payload = payload::vp8_packet(payload::MAX_VIDEO_PAYLOAD, true, keyframe, seq);
    payload::write_stamp(
        &mut payload,
        Stamp {
            stream: StreamId::video(0, 2),
            seq: u32::from(seq),
            sent_us: 1,
        },
    );
    p.extend_from_slice(&payload);
    p
}

/// Criterion prints elements/s; also print a plain packets/s figure from a
/// short timed loop so the number is visible at a glance.
fn packets_per_sec(name: &str, mut f: impl FnMut() -> usize) {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_millis(300) {
        n += f();
    }
    let pps = n as f64 / start.elapsed().as_secs_f64();
    println!("{name}: {:.1} M packets/s", pps / 1e6);
}

fn rtp_header_parse(c: &mut Criterion) {
    let packets: Vec<Vec<u8>> = (0..BATCH as u16).map(|s| rtp_packet(s, s == 0)).collect();
    let parse_all = || {
        let mut ok = 0;
        for p in &packets {
            let mut buf: &[u8] = p;
            if let Ok(pkt) = rtp::packet::Packet::unmarshal(&mut buf) {
                ok += usize::from(black_box(pkt.header.sequence_number) < u16::MAX);
            }
        }
        ok
    };
    assert_eq!(parse_all(), BATCH, "sample packets parse");
    packets_per_sec("rtp_header_parse (webrtc-rs rtp)", parse_all);
    let mut g = c.benchmark_group("rtp_header_parse");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("rtp_crate_unmarshal", |b| b.iter(parse_all));
    g.finish();
}

fn sfu_classify_and_keyframe(c: &mut Criterion) {
    let packets: Vec<Vec<u8>> = (0..BATCH as u16)
        .map(|s| rtp_packet(s, s % 32 == 0))
        .collect();
    // The payload starts after the 12-byte header and 16 bytes of extensions.
    let payload_at = 12 + 4 + 12;
    let run = || {
        let mut keys = 0;
        for p in &packets {
            if classify(black_box(p)) == PacketClass::Rtp
                && is_keyframe_start(Codec::Vp8, &p[payload_at..])
            {
                keys += 1;
            }
        }
        assert_eq!(keys, 2);
        BATCH
    };
    packets_per_sec("sfu_classify_and_keyframe", run);
    let mut g = c.benchmark_group("sfu_classify_and_keyframe");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("classify+vp8_keyframe", |b| b.iter(run));
    g.finish();
}

fn layer_selector(c: &mut Criterion) {
    let layers: Vec<LayerInfo> = [
        (VideoQuality::Low, 150_000),
        (VideoQuality::Medium, 450_000),
        (VideoQuality::High, 1_500_000),
    ]
    .into_iter()
    .map(|(quality, bitrate_bps)| LayerInfo {
        quality,
        active: true,
        bitrate_bps,
    })
    .collect();
    let mut sel = LayerSelector::new(VideoQuality::High);
    let target = |budget: u64| {
        let d = VideoDemand {
            priority: Priority::Camera,
            layers: &layers,
            max_quality: VideoQuality::High,
            current: None,
            hold: false,
        };
        match allocate(Some(budget), 0, &[d])[0] {
            Allocation::Layer(l) => Some(l),
            _ => None,
        }
    };
    sel.set_target(target(2_000_000));
    let mut i = 0u64;
    let mut run = || {
        let mut forwarded = 0;
        for _ in 0..BATCH {
            i += 1;
            // A keyframe on every layer each 90 packets; the budget swings
            // between medium and high every 100 packets.
            let layer = (i % 3) as usize;
            let key = i % 90 < 3;
            if i % 100 == 0 {
                let budget = if (i / 100) % 2 == 0 {
                    2_000_000
                } else {
                    600_000
                };
                sel.set_target(target(budget));
            }
            if sel.on_packet(layer, key) != Decision::Drop {
                forwarded += 1;
            }
        }
        black_box(forwarded);
        BATCH
    };
    packets_per_sec("layer_selector", &mut run);
    let mut g = c.benchmark_group("layer_selector");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("on_packet_3_layers", |b| b.iter(&mut run));
    g.finish();
}

fn load_stamp_read(c: &mut Criterion) {
    let packets: Vec<Vec<u8>> = (0..BATCH as u16).map(|s| rtp_packet(s, false)).collect();
    let run = || {
        let mut ok = 0;
        for p in &packets {
            ok += usize::from(payload::read_stamp(black_box(p)).is_ok());
        }
        ok
    };
    assert_eq!(run(), BATCH);
    packets_per_sec("load_stamp_read", run);
    let mut g = c.benchmark_group("load_stamp_read");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("read_stamp", |b| b.iter(run));
    g.finish();
}

criterion_group!(
    benches,
    rtp_header_parse,
    sfu_classify_and_keyframe,
    layer_selector,
    load_stamp_read
);
criterion_main!(benches);
