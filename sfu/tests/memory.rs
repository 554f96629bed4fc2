//! Heap bytes per subscriber stream, counted directly: an instrumented
//! allocator around the system one, and rooms of two sizes on the virtual
//! network (`convene_sfu::sim`) with the same media for the same virtual
//! time, counted after the clients' own sessions are dropped. The
//! difference between the rooms, divided by the streams added,
//! is what one more subscriber stream costs the SFU: its share of the
//! subscriber's session, its outgoing stream state and its retransmission
//! cache. The RSS slope of a real run (benches/README.md) adds allocator
//! slack on top.
//!
//! `cargo test --workspace --test memory -- --nocapture` prints the figures.

use std::alloc::System;
use std::time::Duration;

use convene_sfu::sim::SimNet;
use convene_sfu::SfuConfig;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MS: Duration = Duration::from_millis(1);
/// Video packets per frame at 30 fps: 240 packets/s of 1,100 bytes, about
/// 2.1 Mbit/s, a camera's top simulcast layer.
const PACKETS_PER_FRAME: usize = 8;
/// Long enough for a count-only cache of 500 packets to fill.
const MEDIA: Duration = Duration::from_millis(3000);

/// Publishers in each room, as in the load generator's comparison with
/// Janus: each subscriber receives 2 × (Opus + VP8) = 4 streams.
const PUBLISHERS: usize = 2;

/// Live heap bytes of a room with `PUBLISHERS` publishers (Opus + VP8) and
/// `subs` subscribers of all their tracks, after `MEDIA` of media.
fn room_heap(subs: usize, config: &SfuConfig) -> (i64, usize) {
    let region = Region::new(GLOBAL);
    let mut net = SimNet::new(SfuConfig {
        max_participants_per_room: 1000,
        ..config.clone()
    });
    for p in 0..PUBLISHERS {
        net.join("r", &format!("pub{p}"), true);
    }
    for i in 0..subs {
        net.join("r", &format!("s{i}"), false);
    }
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    assert!(net.clients.iter().all(|c| c.connected), "all connected");
    let mut tracks = Vec::new();
    for p in 0..PUBLISHERS {
        let id = format!("pub{p}");
        let c = net.client(&id);
        tracks.push(format!("{id}/{}", c.video_mid.expect("video")));
        tracks.push(format!("{id}/{}", c.audio_mid.expect("audio")));
    }
    for i in 0..subs {
        net.subscribe("r", &format!("s{i}"), tracks.clone());
    }
    net.run_for("r", Duration::from_millis(200), 5 * MS);
    let frames = MEDIA.as_millis() as usize / 33;
    for frame in 0..frames {
        for p in 0..PUBLISHERS {
            let id = format!("pub{p}");
            for k in 0..PACKETS_PER_FRAME {
                net.publish_packet(&id, true, frame == 0 && k == 0, 1100);
            }
            // Opus every 20 ms, near enough: 50 per second.
            net.publish_packet(&id, false, false, 120);
            if frame % 2 == 0 {
                net.publish_packet(&id, false, false, 120);
            }
        }
        net.run_for("r", 33 * MS, 11 * MS);
    }
    let received = net
        .clients
        .iter()
        .skip(PUBLISHERS)
        .filter(|c| {
            let video = c.received.iter().filter(|(_, _, len)| *len >= 1100);
            video.count() > frames * PUBLISHERS
        })
        .count();
    // The clients' own sessions live in this process too: drop them (the
    // worker does not notice) so what is left is the SFU's.
    net.clients.clear();
    let change = region.change();
    // (Reallocations are already in both totals.)
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    drop(net);
    (live, received)
}

fn bytes_per_stream(config: &SfuConfig) -> i64 {
    let (small, got_small) = room_heap(10, config);
    let (large, got_large) = room_heap(40, config);
    assert_eq!(
        got_small, 10,
        "every subscriber of the small room got video"
    );
    assert_eq!(
        got_large, 40,
        "every subscriber of the large room got video"
    );
    // 30 subscribers more, 2 streams (audio, video) per publisher each.
    (large - small) / (30 * 2 * PUBLISHERS as i64)
}

#[test]
fn bytes_per_subscriber_stream() {
    let count_only = SfuConfig {
        rtx_cache_min_ms: 3000,
        rtx_cache_max_ms: 3000,
        ..SfuConfig::for_tests()
    };
    let old = bytes_per_stream(&count_only);
    let new = bytes_per_stream(&SfuConfig::for_tests());
    println!(
        "heap per subscriber stream: {:.1} KB with a 3 s cache, {:.1} KB with the default \
         time-sized cache ({} ms minimum)",
        old as f64 / 1000.0,
        new as f64 / 1000.0,
        SfuConfig::for_tests().rtx_cache_min_ms,
    );
    assert!(
        new < 100_000,
        "a subscriber stream costs {new} bytes (goal < 100 KB)"
    );
    assert!(
        new < old,
        "the time-sized cache ({new} B) costs less than the 3 s one ({old} B)"
    );
}
