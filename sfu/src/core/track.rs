//! A track one participant publishes, with its simulcast layers and the
//! subscriptions it fans out to.

use std::time::{Duration, Instant};

use convene_proto::sfu::{TrackInfo, TrackKind, TrackSource, VideoQuality};
use str0m::media::{Mid, Rid};

use super::allocator::Priority;
use super::codec::Codec;
use super::layer::LayerInfo;
use super::pli::PliThrottle;
use super::subscription::Subscription;
use super::{ParticipantKey, TrackKey};

/// One encoding of a track: a simulcast layer, or the only encoding.
#[derive(Debug)]
pub struct Layer {
    /// Stable id for the munger: indices move as layers appear.
    pub source_id: u32,
    pub rid: Option<Rid>,
    pub quality: VideoQuality,
    pub pli: PliThrottle,
    pub last_packet_at: Option<Instant>,
    /// Paused by str0m's StreamPaused (no packets for its pause threshold).
    pub paused: bool,
    bytes_in_window: u64,
    window_start: Option<Instant>,
    pub bitrate_bps: u64,
}

impl Layer {
    pub fn new(
        source_id: u32,
        rid: Option<Rid>,
        quality: VideoQuality,
        pli_interval: Duration,
    ) -> Self {
        Self {
            source_id,
            rid,
            quality,
            pli: PliThrottle::new(pli_interval),
            last_packet_at: None,
            paused: false,
            bytes_in_window: 0,
            window_start: None,
            bitrate_bps: 0,
        }
    }

    pub fn on_packet(&mut self, bytes: usize, now: Instant) {
        self.last_packet_at = Some(now);
        self.paused = false;
        self.bytes_in_window += bytes as u64;
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        // A one second window smooths over keyframe bursts yet follows an
        // encoder that adapts its rate.
        if elapsed >= Duration::from_secs(1) {
            self.bitrate_bps =
                (self.bytes_in_window * 8 * 1000) / elapsed.as_millis().max(1) as u64;
            self.bytes_in_window = 0;
            self.window_start = Some(now);
        }
    }

    pub fn is_active(&self, now: Instant, timeout: Duration) -> bool {
        !self.paused
            && self
                .last_packet_at
                .is_some_and(|t| now.saturating_duration_since(t) < timeout)
    }
}

/// Which quality a rid stands for. Both common naming schemes are known
/// (`q`/`h`/`f` and `l`/`m`/`h`; "h" means half in the first and high in
/// the second, hence the look at the sibling rids); anything else ranks by
/// its position in the publisher's list.
pub fn quality_for_rid(rid: &str, all: &[&str]) -> VideoQuality {
    let qhf = all.iter().any(|r| *r == "q" || *r == "f");
    match rid {
        "q" | "l" | "low" | "0" => VideoQuality::Low,
        "h" if qhf => VideoQuality::Medium,
        "m" | "mid" | "medium" | "1" => VideoQuality::Medium,
        "f" | "h" | "high" | "full" | "2" => VideoQuality::High,
        _ => match all.iter().position(|r| *r == rid) {
            Some(0) if all.len() > 1 => VideoQuality::Low,
            Some(1) if all.len() > 2 => VideoQuality::Medium,
            _ => VideoQuality::High,
        },
    }
}

#[derive(Debug)]
pub struct PublishedTrack {
    pub key: TrackKey,
    pub id: String,
    pub publisher: ParticipantKey,
    pub mid: Mid,
    pub kind: TrackKind,
    /// Rids announced in the publisher's SDP (empty without simulcast).
    pub announced_rids: Vec<Rid>,
    pub codec: Option<Codec>,
    pub muted: bool,
    /// Sorted lowest quality first.
    pub layers: Vec<Layer>,
    pub subscriptions: Vec<Subscription>,
    /// Last dynacast set announced (or, for a relayed track, sent to the
    /// publisher's side).
    pub wanted: Vec<VideoQuality>,
    /// Layers wanted by subscribers elsewhere (other workers hosting the
    /// room), by who reported them; merged into the announced set.
    pub far_wanted: Vec<(usize, Vec<VideoQuality>)>,
    /// Reused for layer selection so ticks do not allocate.
    pub layer_info: Vec<LayerInfo>,
    /// What it carries, as the publisher declared it.
    pub source: TrackSource,
    /// Its claim on subscribers' downlinks: a screen share before cameras.
    pub priority: Priority,
}

impl PublishedTrack {
    pub fn new(
        key: TrackKey,
        id: String,
        publisher: ParticipantKey,
        mid: Mid,
        kind: TrackKind,
        announced_rids: Vec<Rid>,
    ) -> Self {
        Self {
            key,
            id,
            publisher,
            mid,
            kind,
            announced_rids,
            codec: None,
            muted: false,
            layers: Vec::new(),
            subscriptions: Vec::new(),
            wanted: Vec::new(),
            far_wanted: Vec::new(),
            layer_info: Vec::new(),
            source: TrackSource::Unknown,
            priority: Priority::Camera,
        }
    }

    /// Index of the layer for `rid`, creating it on first sight.
    ///
    /// A browser may announce simulcast and still send packets without a
    /// rid (one encoding, or rid header extension dropped): those form their
    /// own layer rather than being discarded.
    pub fn layer_index(&mut self, rid: Option<Rid>, pli_interval: Duration) -> usize {
        if let Some(i) = self.layers.iter().position(|l| l.rid == rid) {
            return i;
        }
        let quality = match &rid {
            None => VideoQuality::High,
            Some(r) => {
                let names: Vec<&str> = self.announced_rids.iter().map(|r| &**r).collect();
                quality_for_rid(r, &names)
            }
        };
        let layer = Layer::new(self.layers.len() as u32, rid, quality, pli_interval);
        let at = self
            .layers
            .iter()
            .position(|l| l.quality > quality)
            .unwrap_or(self.layers.len());
        self.layers.insert(at, layer);
        if at + 1 < self.layers.len() {
            for s in &mut self.subscriptions {
                s.forwarder.selector.layer_inserted(at);
            }
        }
        at
    }

    pub fn info(&self, participant_id: &str) -> TrackInfo {
        let mut layers: Vec<VideoQuality> = self
            .announced_rids
            .iter()
            .map(|r| {
                let names: Vec<&str> = self.announced_rids.iter().map(|r| &**r).collect();
                quality_for_rid(r, &names)
            })
            .collect();
        layers.sort();
        TrackInfo {
            track_id: self.id.clone(),
            participant_id: participant_id.to_string(),
            kind: self.kind,
            layers,
            muted: self.muted,
            source: self.source,
        }
    }

    /// Declare what the track carries; a screen share goes before cameras.
    pub fn set_source(&mut self, source: TrackSource) {
        self.source = source;
        self.priority = if source.is_screen() {
            Priority::Screen
        } else {
            Priority::Camera
        };
    }

    pub fn refresh_layer_info(&mut self, now: Instant, timeout: Duration) {
        self.layer_info.clear();
        self.layer_info
            .extend(self.layers.iter().map(|l| LayerInfo {
                quality: l.quality,
                active: l.is_active(now, timeout),
                bitrate_bps: l.bitrate_bps,
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_names_map_to_qualities() {
        let qhf = ["q", "h", "f"];
        assert_eq!(quality_for_rid("q", &qhf), VideoQuality::Low);
        assert_eq!(quality_for_rid("h", &qhf), VideoQuality::Medium);
        assert_eq!(quality_for_rid("f", &qhf), VideoQuality::High);
        let lmh = ["l", "m", "h"];
        assert_eq!(quality_for_rid("l", &lmh), VideoQuality::Low);
        assert_eq!(quality_for_rid("m", &lmh), VideoQuality::Medium);
        assert_eq!(quality_for_rid("h", &lmh), VideoQuality::High);
        let other = ["a", "b", "c"];
        assert_eq!(quality_for_rid("a", &other), VideoQuality::Low);
        assert_eq!(quality_for_rid("c", &other), VideoQuality::High);
    }

    #[test]
    fn layers_stay_sorted_whatever_the_arrival_order() {
        let mut t = PublishedTrack::new(
            TrackKey(1),
            "p/0".into(),
            ParticipantKey(1),
            Mid::from("0"),
            TrackKind::Video,
            vec!["q".into(), "h".into(), "f".into()],
        );
        let d = Duration::from_millis(500);
        t.layer_index(Some("f".into()), d);
        t.layer_index(Some("q".into()), d);
        t.layer_index(Some("h".into()), d);
        let q: Vec<_> = t.layers.iter().map(|l| l.quality).collect();
        assert_eq!(
            q,
            vec![VideoQuality::Low, VideoQuality::Medium, VideoQuality::High]
        );
        assert_eq!(t.layer_index(Some("h".into()), d), 1);
    }
}
