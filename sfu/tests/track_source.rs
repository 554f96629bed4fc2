//! What a track carries, as its publisher declares it with its offer
//! (`sources` by mid), on the virtual network (`convene_sfu::sim`): the
//! track is announced with its source, a screen share reaches subscribers
//! as a stream of its own (`{participant}|screen`, so viewers give it a
//! tile of its own), on one worker and across two.

use std::time::Duration;

use convene_sfu::sim::SimNet;
use convene_sfu::{SfuConfig, SfuEvent, TrackSource, TrackSources};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

const MS: Duration = Duration::from_millis(1);

/// A presenter with a microphone, a camera and a screen share, declared;
/// a viewer subscribed to all three.
fn presenter_and_viewer(workers: usize) -> SimNet {
    let mut net = SimNet::new(SfuConfig {
        workers,
        room_spread_after: 1,
        ..SfuConfig::for_tests()
    });
    let lines = [
        (MediaKind::Audio, TrackSource::Microphone),
        (MediaKind::Video, TrackSource::Camera),
        (MediaKind::Video, TrackSource::ScreenShare),
    ];
    net.join_declaring(
        "r",
        "ann",
        Rtc::builder(),
        (),
        |change| {
            lines
                .iter()
                .map(|(kind, _)| change.add_media(*kind, Direction::SendOnly, None, None, None))
                .collect::<Vec<_>>()
        },
        |mids| {
            mids.iter()
                .zip(lines)
                .map(|(mid, (_, source))| (mid.to_string(), source))
                .collect::<TrackSources>()
        },
    );
    net.join("r", "bob", false);
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    let tracks: Vec<String> = published(&net).into_iter().map(|(id, _)| id).collect();
    assert_eq!(tracks.len(), 3, "{tracks:?}");
    net.subscribe("r", "bob", tracks);
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    net
}

fn published(net: &SimNet) -> Vec<(String, TrackSource)> {
    net.seen
        .iter()
        .filter_map(|e| match e {
            SfuEvent::TrackPublished { track, .. } => Some((track.track_id.clone(), track.source)),
            _ => None,
        })
        .collect()
}

fn check(net: &SimNet) {
    let mut sources: Vec<TrackSource> = published(net).into_iter().map(|(_, s)| s).collect();
    sources.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        sources,
        vec![
            TrackSource::Camera,
            TrackSource::Microphone,
            TrackSource::ScreenShare
        ]
    );
    let (_, offer) = net
        .offers
        .iter()
        .rfind(|(to, _)| to == "bob")
        .expect("an offer to the viewer");
    let streams: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(streams.len(), 3, "{offer}");
    assert_eq!(
        streams.iter().filter(|s| **s == "ann|screen").count(),
        1,
        "the screen share is a stream of its own: {streams:?}"
    );
    assert_eq!(streams.iter().filter(|s| **s == "ann").count(), 2);
}

#[test]
fn a_declared_screen_share_is_announced_as_such_and_streams_apart() {
    let net = presenter_and_viewer(1);
    check(&net);
}

#[test]
fn the_same_across_two_workers() {
    let net = presenter_and_viewer(2);
    assert_ne!(
        net.worker_of_client("ann"),
        net.worker_of_client("bob"),
        "publisher and viewer on different workers"
    );
    check(&net);
}

#[test]
fn undeclared_tracks_are_unknown() {
    let mut net = SimNet::new(SfuConfig::for_tests());
    net.join("r", "pub", true);
    net.run_for("r", Duration::from_millis(300), 5 * MS);
    let sources: Vec<TrackSource> = published(&net).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sources, vec![TrackSource::Unknown; 2]);
}
