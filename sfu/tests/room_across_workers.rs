//! A room across two workers, on the virtual network and clock
//! (`convene_sfu::sim`): the room outgrows its first worker
//! (`room_spread_after`), its later subscribers land on the second, and
//! the publisher's packets cross to it once each, however many subscribers
//! are there. Keyframe requests cross back; mute, leave and unsubscribe
//! follow; listeners hear of each track once.

use std::time::Duration;

use convene_sfu::sim::SimNet;
use convene_sfu::{SfuConfig, SfuEvent};

const MS: Duration = Duration::from_millis(1);

/// One publisher and five subscribers; three of the room fit on a worker.
fn room() -> SimNet {
    let mut net = SimNet::new(SfuConfig {
        workers: 2,
        room_spread_after: 3,
        ..SfuConfig::for_tests()
    });
    net.join("r", "pub", true);
    for i in 0..5 {
        net.join("r", &format!("s{i}"), false);
    }
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    assert!(net.clients.iter().all(|c| c.connected), "all connected");
    let placed: Vec<usize> = net.clients.iter().map(|c| c.worker).collect();
    assert_eq!(placed, vec![0, 0, 0, 1, 1, 1], "pub, s0, s1 | s2, s3, s4");
    net
}

fn cam(net: &SimNet) -> String {
    format!("pub/{}", net.client("pub").video_mid.expect("video"))
}

/// Sequence numbers of the video (payload ≥ 1000 bytes) `id` received.
fn video(net: &SimNet, id: &str) -> Vec<u16> {
    net.client(id)
        .received
        .iter()
        .filter(|(_, _, len)| *len >= 1000)
        .map(|(_, seq, _)| *seq)
        .collect()
}

fn frames(net: &mut SimNet, n: usize, keyframe_first: bool) {
    for frame in 0..n {
        net.publish_packet("pub", true, keyframe_first && frame == 0, 1000);
        net.run_for("r", 33 * MS, 11 * MS);
    }
}

#[test]
fn each_packet_crosses_to_the_other_worker_once_and_reaches_every_subscriber() {
    let mut net = room();
    let cam = cam(&net);
    // Far subscribers first, video without a keyframe: their keyframe
    // request must cross back to the publisher.
    for i in 2..5 {
        net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
    }
    net.run_for("r", Duration::from_millis(200), 5 * MS);
    frames(&mut net, 5, false);
    assert!(
        net.client("pub").keyframe_requests >= 1,
        "a far subscriber's keyframe request reached the publisher"
    );
    assert!(video(&net, "s2").is_empty(), "nothing before a keyframe");
    for i in 0..2 {
        net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
    }
    net.run_for("r", Duration::from_millis(200), 5 * MS);
    let crossed = net.relayed_rtp[1];
    assert_eq!(crossed, 5);

    frames(&mut net, 60, true);
    for i in 0..5 {
        let v = video(&net, &format!("s{i}"));
        assert!(v.len() >= 55, "s{i} got {} of 60", v.len());
        assert!(
            v.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "s{i}: continuous sequence numbers"
        );
    }
    // 60 packets, three subscribers over there: 60 crossings, not 180.
    assert_eq!(net.relayed_rtp[1] - crossed, 60);
    assert_eq!(net.relayed_rtp[0], 0, "nothing is published on worker 1");
    assert_eq!(net.metrics.packets_relayed.get(), 65);

    // Listeners hear of each track once, from the publisher's worker.
    let published = net
        .seen
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackPublished { .. }))
        .count();
    assert_eq!(published, 2, "audio and video, once each");
}

#[test]
fn mute_unsubscribe_and_leave_follow_the_room_across_workers() {
    let mut net = room();
    let cam = cam(&net);
    for i in 0..5 {
        net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
    }
    net.run_for("r", Duration::from_millis(200), 5 * MS);
    frames(&mut net, 10, true);
    let got = |net: &SimNet| {
        (0..5)
            .map(|i| video(net, &format!("s{i}")).len())
            .collect::<Vec<_>>()
    };
    let before = got(&net);
    assert!(before.iter().all(|n| *n >= 9), "media flows: {before:?}");

    // A server-side mute on the publisher's worker stops the far copies.
    net.set_mute("r", &cam, true);
    frames(&mut net, 10, false);
    assert_eq!(got(&net), before, "nothing forwarded while muted");
    let muted = net
        .seen
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackMuted { muted: true, .. }))
        .count();
    assert_eq!(muted, 1, "one TrackMuted for the room");
    net.set_mute("r", &cam, false);
    frames(&mut net, 10, true);
    let after = got(&net);
    assert!(
        after.iter().zip(&before).all(|(a, b)| a >= &(b + 9)),
        "resumed everywhere: {before:?} -> {after:?}"
    );

    // The far worker's subscribers leave: it detaches, nothing crosses.
    for i in 2..5 {
        net.leave("r", &format!("s{i}"));
    }
    net.run_for("r", Duration::from_millis(100), 5 * MS);
    let relayed = net.relayed_rtp[1];
    frames(&mut net, 10, false);
    assert_eq!(net.relayed_rtp[1], relayed, "no copies for an empty worker");
    assert!(video(&net, "s0").len() >= after[0] + 9, "near ones go on");

    // The publisher leaves: one TrackUnpublished per track.
    net.leave("r", "pub");
    net.run_for("r", Duration::from_millis(100), 5 * MS);
    let unpublished = net
        .seen
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackUnpublished { .. }))
        .count();
    assert_eq!(unpublished, 2);
}

#[test]
fn a_newcomer_on_the_second_worker_sees_tracks_published_before_it_came() {
    let mut net = SimNet::new(SfuConfig {
        workers: 2,
        room_spread_after: 1,
        ..SfuConfig::for_tests()
    });
    net.join("r", "pub", true);
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    // Published before worker 1 hosted anyone of the room.
    frames(&mut net, 5, true);
    net.join("r", "late", false);
    assert_eq!(net.worker_of_client("late"), 1);
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    let cam = cam(&net);
    net.subscribe("r", "late", vec![cam]);
    net.run_for("r", Duration::from_millis(200), 5 * MS);
    frames(&mut net, 30, true);
    let v = video(&net, "late");
    assert!(v.len() >= 25, "late got {} of 30", v.len());
}
