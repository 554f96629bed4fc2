//! Room tests for a room across workers (remote publishers, far wants,
//! which instance announces speakers) and for declared track sources.

use super::*;
use crate::core::allocator::Priority;

fn wanted_layers(out: &[Action]) -> Vec<Vec<VideoQuality>> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            SfuEvent::WantedLayers { layers, .. } => Some(layers.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_remote_publishers_track_is_forwarded_but_announced_by_its_own_side() {
    let t0 = Instant::now();
    let mut r = Room::new("room".into(), CoreConfig::default());
    r.add_remote_participant(PUB, "alice".into(), "Alice".into());
    r.add_participant(SUB_A, "bob".into(), "Bob".into());
    let mut out = vec![];
    let (mut r, _) = simulcast_in(r, VideoQuality::Low, t0, &mut out);
    assert!(events(&out).is_empty(), "no TrackPublished here: {out:?}");
    assert_eq!(r.local_participant_count(), 1);
    send_frame(&mut r, 0, true, t0, &mut out);
    assert_eq!(forwards(&out).len(), 2, "the low layer's two packets");
    out.clear();
    r.tick(t0, &mut out);
    // Dynacast goes to the publisher's side, not to the listeners.
    assert!(wanted_layers(&out).is_empty());
    assert!(out.iter().any(|a| matches!(
        a,
        Action::FarWanted { publisher, track_id, layers }
            if *publisher == PUB && track_id == "alice/1" && layers == &[VideoQuality::Low]
    )));
    out.clear();
    r.set_muted("alice/1", true, &mut out).unwrap();
    let stop = r.remove_participant(PUB, &mut out);
    assert_eq!(stop, vec![(SUB_A, Mid::from("3"))]);
    assert!(
        events(&out).is_empty(),
        "no TrackMuted/TrackUnpublished: {out:?}"
    );
}

#[test]
fn far_wants_merge_into_the_announced_layers() {
    let t0 = Instant::now();
    let (mut r, _) = simulcast_room(VideoQuality::Low, t0);
    let mut out = vec![];
    send_frame(&mut r, 0, true, t0, &mut out);
    r.set_far_wanted("alice/1", 7, vec![VideoQuality::High]);
    out.clear();
    r.tick(t0, &mut out);
    assert_eq!(
        wanted_layers(&out),
        vec![vec![VideoQuality::Low, VideoQuality::High]]
    );
    r.forget_far(7);
    out.clear();
    r.tick(t0, &mut out);
    assert_eq!(wanted_layers(&out), vec![vec![VideoQuality::Low]]);
}

#[test]
fn a_room_instance_that_does_not_speak_for_the_room_announces_no_speakers() {
    let t0 = Instant::now();
    let mut r = room();
    r.set_speaker_events(false);
    let mut out = vec![];
    r.publish(PUB, "0".into(), TrackKind::Audio, vec![], &mut out)
        .unwrap();
    let pl: Arc<[u8]> = Arc::from(vec![0u8; 10]);
    for i in 0..30u64 {
        let now = t0 + Duration::from_millis(20 * i);
        let mut p = pkt("0", None, Codec::Opus, 111, i, 0, pl.clone(), now);
        p.audio_level = Some(-25);
        let _ = r.on_rtp(now, &p, &mut out);
        r.tick(now, &mut out);
    }
    assert!(!events(&out)
        .iter()
        .any(|e| matches!(e, SfuEvent::ActiveSpeakersChanged { .. })));
}

#[test]
fn a_declared_screen_share_goes_before_cameras() {
    let mut r = room();
    let mut out = vec![];
    let cam = r
        .publish_as(
            PUB,
            "1".into(),
            TrackKind::Video,
            vec![],
            TrackSource::Camera,
            &mut out,
        )
        .unwrap();
    let screen = r
        .publish_as(
            PUB,
            "2".into(),
            TrackKind::Video,
            vec![],
            TrackSource::ScreenShare,
            &mut out,
        )
        .unwrap();
    assert_eq!(r.track(cam).unwrap().priority, Priority::Camera);
    assert_eq!(r.track(screen).unwrap().priority, Priority::Screen);
    let sources: Vec<TrackSource> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            SfuEvent::TrackPublished { track, .. } => Some(track.source),
            _ => None,
        })
        .collect();
    assert_eq!(sources, vec![TrackSource::Camera, TrackSource::ScreenShare]);
}
