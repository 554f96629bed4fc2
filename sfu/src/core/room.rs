//! A room: the participants, their published tracks and who receives what.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{ActiveSpeaker, SfuEvent, TrackKind, TrackSource, VideoQuality};
use str0m::media::{Mid, Pt, Rid};

use super::codec::{is_keyframe_start, Codec};
use super::forwarder::LayerPacket;
use super::participant::Participant;
use super::red;
use super::speaker::SpeakerDetector;
use super::subscription::Subscription;
use super::track::PublishedTrack;
use super::{ParticipantKey, TrackKey};

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub pli_min_interval: Duration,
    pub speaker_interval: Duration,
    /// A layer without packets for this long is not selectable.
    pub layer_timeout: Duration,
    pub max_tracks_per_participant: usize,
    /// Video whose lowest layer does not fit the subscriber's estimate for
    /// this long is paused (audio goes on); None: never, the lowest layer
    /// is sent whatever the estimate.
    pub video_pause_after: Option<Duration>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            pli_min_interval: Duration::from_millis(500),
            speaker_interval: Duration::from_millis(300),
            layer_timeout: Duration::from_millis(1500),
            max_tracks_per_participant: 8,
            video_pause_after: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("unknown participant")]
    UnknownParticipant,
    #[error("unknown track {0}")]
    UnknownTrack(String),
    #[error("participant already publishes the maximum of {0} tracks")]
    TooManyTracks(usize),
    #[error("a participant cannot subscribe to its own track")]
    OwnTrack,
}

/// Why an incoming packet was not forwarded to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    UnknownTrack,
    Muted,
    /// An RFC 2198 RED payload that could not be unwrapped for a subscriber
    /// without RED (subscribers that negotiated RED still got it as is).
    MalformedRed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownTrack => "unknown_track",
            DropReason::Muted => "muted",
            DropReason::MalformedRed => "malformed_red",
        }
    }
}

/// A RED payload's primary block, re-typed: its payload type and bytes.
type Unwrapped = Result<(Pt, Arc<[u8]>), red::RedError>;

/// One received RTP packet, as the core needs it.
#[derive(Debug, Clone)]
pub struct InboundRtp {
    pub publisher: ParticipantKey,
    pub mid: Mid,
    pub rid: Option<Rid>,
    pub pt: Pt,
    pub codec: Codec,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub received_at: Instant,
}

/// A packet to write to one subscriber's m-line.
#[derive(Debug, Clone)]
pub struct Forward {
    pub to: ParticipantKey,
    pub mid: Mid,
    pub pt: Pt,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// Shared with every other subscriber of the packet: no copy per subscriber.
    pub payload: Arc<[u8]>,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    /// Video packets are kept for retransmission on NACK; audio is not
    /// (Opus FEC/RED does better than a late resend).
    pub nackable: bool,
    pub received_at: Instant,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Forward),
    RequestKeyframe {
        publisher: ParticipantKey,
        mid: Mid,
        rid: Option<Rid>,
    },
    Event(SfuEvent),
    /// The layers this room's subscribers want of a remote publisher's
    /// track changed: for the publisher's side, which announces dynacast.
    FarWanted {
        publisher: ParticipantKey,
        track_id: String,
        layers: Vec<VideoQuality>,
    },
}

#[derive(Debug)]
pub struct Room {
    id: String,
    config: CoreConfig,
    participants: HashMap<ParticipantKey, Participant>,
    tracks: HashMap<TrackKey, PublishedTrack>,
    by_publisher_mid: HashMap<(ParticipantKey, Mid), TrackKey>,
    by_subscriber_mid: HashMap<(ParticipantKey, Mid), TrackKey>,
    by_id: HashMap<String, TrackKey>,
    speakers: SpeakerDetector<TrackKey>,
    next_track: u64,
    /// When the periodic allocation last ran, and whether an estimate
    /// changed since (see [`Room::tick`]).
    allocated_at: Option<Instant>,
    allocation_due: bool,
    /// Whether this instance announces active speakers. A room across
    /// workers has an instance on each, all hearing the same audio; one
    /// of them speaks for the room.
    speaker_events: bool,
}

/// Layer bitrates drift slowly: the periodic allocation runs this often,
/// and at once when an estimate changes.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(100);

impl Room {
    pub fn new(id: String, config: CoreConfig) -> Self {
        let speakers = SpeakerDetector::new(config.speaker_interval);
        Self {
            id,
            config,
            participants: HashMap::new(),
            tracks: HashMap::new(),
            by_publisher_mid: HashMap::new(),
            by_subscriber_mid: HashMap::new(),
            by_id: HashMap::new(),
            speakers,
            next_track: 1,
            allocated_at: None,
            allocation_due: false,
            speaker_events: true,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Participants hosted here (not relayed from another worker).
    pub fn local_participant_count(&self) -> usize {
        self.participants.values().filter(|p| !p.remote).count()
    }

    /// Whether this instance announces active speakers (see the field).
    pub fn set_speaker_events(&mut self, on: bool) {
        self.speaker_events = on;
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    pub fn participant(&self, key: ParticipantKey) -> Option<&Participant> {
        self.participants.get(&key)
    }

    pub fn track(&self, key: TrackKey) -> Option<&PublishedTrack> {
        self.tracks.get(&key)
    }

    pub fn track_by_id(&self, id: &str) -> Option<&PublishedTrack> {
        self.by_id.get(id).and_then(|k| self.tracks.get(k))
    }

    pub fn tracks(&self) -> impl Iterator<Item = &PublishedTrack> {
        self.tracks.values()
    }

    pub fn add_participant(&mut self, key: ParticipantKey, id: String, identity: String) {
        self.participants
            .insert(key, Participant::new(id, identity));
    }

    /// A publisher hosted by another worker, whose packets arrive relayed.
    /// The room forwards its tracks to local subscribers like any other,
    /// but announces nothing of it: its own worker does.
    pub fn add_remote_participant(&mut self, key: ParticipantKey, id: String, identity: String) {
        let mut p = Participant::new(id, identity);
        p.remote = true;
        self.participants.insert(key, p);
    }

    /// Remove a participant with its tracks and subscriptions. Returns the
    /// subscriber m-lines that carried its tracks, to be stopped.
    pub fn remove_participant(
        &mut self,
        key: ParticipantKey,
        out: &mut Vec<Action>,
    ) -> Vec<(ParticipantKey, Mid)> {
        let mut stop = Vec::new();
        let own: Vec<Mid> = self
            .tracks
            .values()
            .filter(|t| t.publisher == key)
            .map(|t| t.mid)
            .collect();
        for mid in own {
            stop.extend(self.unpublish(key, mid, out));
        }
        let keys: Vec<TrackKey> = self.tracks.keys().copied().collect();
        for tk in keys {
            self.remove_subscription(key, tk);
        }
        self.participants.remove(&key);
        stop
    }

    /// A publisher's m-line started receiving media.
    pub fn publish(
        &mut self,
        publisher: ParticipantKey,
        mid: Mid,
        kind: TrackKind,
        rids: Vec<Rid>,
        out: &mut Vec<Action>,
    ) -> Result<TrackKey, CoreError> {
        self.publish_as(publisher, mid, kind, rids, TrackSource::Unknown, out)
    }

    /// [`Room::publish`] with what the track carries, as its publisher
    /// declared it.
    pub fn publish_as(
        &mut self,
        publisher: ParticipantKey,
        mid: Mid,
        kind: TrackKind,
        rids: Vec<Rid>,
        source: TrackSource,
        out: &mut Vec<Action>,
    ) -> Result<TrackKey, CoreError> {
        if let Some(k) = self.by_publisher_mid.get(&(publisher, mid)) {
            return Ok(*k);
        }
        let max = self.config.max_tracks_per_participant;
        let p = self
            .participants
            .get_mut(&publisher)
            .ok_or(CoreError::UnknownParticipant)?;
        if p.tracks.len() >= max {
            return Err(CoreError::TooManyTracks(max));
        }
        let key = TrackKey(self.next_track);
        self.next_track += 1;
        let id = format!("{}/{}", p.id, mid);
        let mut track = PublishedTrack::new(key, id.clone(), publisher, mid, kind, rids);
        track.set_source(source);
        p.tracks.push(key);
        if !p.remote {
            out.push(Action::Event(SfuEvent::TrackPublished {
                room_id: self.id.clone(),
                track: track.info(&p.id),
            }));
        }
        self.by_publisher_mid.insert((publisher, mid), key);
        self.by_id.insert(id, key);
        self.tracks.insert(key, track);
        Ok(key)
    }

    /// Remove a published track. Returns the subscriber m-lines to stop.
    pub fn unpublish(
        &mut self,
        publisher: ParticipantKey,
        mid: Mid,
        out: &mut Vec<Action>,
    ) -> Vec<(ParticipantKey, Mid)> {
        let Some(key) = self.by_publisher_mid.remove(&(publisher, mid)) else {
            return Vec::new();
        };
        let Some(track) = self.tracks.remove(&key) else {
            return Vec::new();
        };
        self.by_id.remove(&track.id);
        self.speakers.remove(key);
        let mut stop = Vec::new();
        for s in &track.subscriptions {
            if let Some(m) = s.out_mid {
                self.by_subscriber_mid.remove(&(s.subscriber, m));
                stop.push((s.subscriber, m));
            }
        }
        let (participant_id, remote) = match self.participants.get_mut(&publisher) {
            Some(p) => {
                p.tracks.retain(|t| *t != key);
                (p.id.clone(), p.remote)
            }
            None => (String::new(), false),
        };
        if !remote {
            out.push(Action::Event(SfuEvent::TrackUnpublished {
                room_id: self.id.clone(),
                participant_id,
                track_id: track.id,
            }));
        }
        stop
    }

    /// Request (or update) a subscription. Returns `Some(track)` when the
    /// subscription is new and needs an m-line at the subscriber.
    pub fn subscribe(
        &mut self,
        subscriber: ParticipantKey,
        track_id: &str,
        max_quality: VideoQuality,
        now: Instant,
    ) -> Result<Option<TrackKey>, CoreError> {
        let key = *self
            .by_id
            .get(track_id)
            .ok_or_else(|| CoreError::UnknownTrack(track_id.to_string()))?;
        let track = self.tracks.get_mut(&key).expect("by_id and tracks agree");
        if track.publisher == subscriber {
            return Err(CoreError::OwnTrack);
        }
        if !self.participants.contains_key(&subscriber) {
            return Err(CoreError::UnknownParticipant);
        }
        if let Some(s) = track
            .subscriptions
            .iter_mut()
            .find(|s| s.subscriber == subscriber)
        {
            s.forwarder.selector.set_max_quality(max_quality);
            return Ok(None);
        }
        track
            .subscriptions
            .push(Subscription::new(subscriber, max_quality, now));
        Ok(Some(key))
    }

    /// The subscriber's m-line for a subscription is negotiated: start
    /// forwarding (from the next keyframe, for video).
    pub fn activate_subscription(
        &mut self,
        subscriber: ParticipantKey,
        track: TrackKey,
        out_mid: Mid,
        pt_map: Vec<(Pt, Pt)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(t) = self.tracks.get_mut(&track) else {
            return false;
        };
        let Some(s) = t
            .subscriptions
            .iter_mut()
            .find(|s| s.subscriber == subscriber)
        else {
            return false;
        };
        s.out_mid = Some(out_mid);
        s.forwarder.pt_map = pt_map;
        self.by_subscriber_mid.insert((subscriber, out_mid), track);
        if t.kind == TrackKind::Video {
            self.reallocate(now, Some(&[subscriber]));
            let t = self.tracks.get_mut(&track).expect("found above");
            let s = t
                .subscriptions
                .iter()
                .find(|s| s.subscriber == subscriber)
                .expect("found above");
            if let Some(target) = s.forwarder.selector.target() {
                let layer = &mut t.layers[target];
                if layer.pli.request(now) {
                    out.push(Action::RequestKeyframe {
                        publisher: t.publisher,
                        mid: t.mid,
                        rid: layer.rid,
                    });
                }
            }
        }
        true
    }

    /// Drop a subscription. Returns the subscriber m-line to stop, if one
    /// was negotiated.
    pub fn unsubscribe(&mut self, subscriber: ParticipantKey, track_id: &str) -> Option<Mid> {
        let key = *self.by_id.get(track_id)?;
        self.remove_subscription(subscriber, key)
    }

    fn remove_subscription(&mut self, subscriber: ParticipantKey, key: TrackKey) -> Option<Mid> {
        let t = self.tracks.get_mut(&key)?;
        let i = t
            .subscriptions
            .iter()
            .position(|s| s.subscriber == subscriber)?;
        let s = t.subscriptions.swap_remove(i);
        if let Some(m) = s.out_mid {
            self.by_subscriber_mid.remove(&(subscriber, m));
        }
        s.out_mid
    }

    pub fn set_muted(
        &mut self,
        track_id: &str,
        muted: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), CoreError> {
        let key = *self
            .by_id
            .get(track_id)
            .ok_or_else(|| CoreError::UnknownTrack(track_id.to_string()))?;
        let t = self.tracks.get_mut(&key).expect("by_id and tracks agree");
        if t.muted == muted {
            return Ok(());
        }
        t.muted = muted;
        for s in &mut t.subscriptions {
            // Skipped packets must not look like loss to the subscriber.
            s.forwarder.resync();
            if !muted && t.kind == TrackKind::Video {
                // Resume at a keyframe: the decoder's references are stale.
                if let Some(c) = s.forwarder.selector.current() {
                    s.forwarder.selector.layer_stopped(c);
                }
            }
        }
        if !self
            .participants
            .get(&t.publisher)
            .is_some_and(|p| p.remote)
        {
            out.push(Action::Event(SfuEvent::TrackMuted {
                room_id: self.id.clone(),
                track_id: track_id.to_string(),
                muted,
            }));
        }
        Ok(())
    }

    /// Fan one received packet out. Returns how many subscribers get it.
    ///
    /// A RED packet goes as is to subscribers that negotiated RED and as its
    /// primary Opus block to the others. When that block cannot be found
    /// the result is `Err(MalformedRed)`, though the packet may still have
    /// been forwarded (in `out`) to subscribers with RED.
    pub fn on_rtp(
        &mut self,
        now: Instant,
        p: &InboundRtp,
        out: &mut Vec<Action>,
    ) -> Result<usize, DropReason> {
        let (key, li, keyframe, new_layer) = self.observe(now, p)?;
        let track = self.tracks.get_mut(&key).ok_or(DropReason::UnknownTrack)?;
        let video = track.kind == TrackKind::Video;
        if new_layer && video {
            // A subscriber waiting for any picture should not wait for the
            // next tick to learn this layer exists.
            let subs: Vec<ParticipantKey> = track
                .subscriptions
                .iter()
                .filter(|s| s.out_mid.is_some())
                .map(|s| s.subscriber)
                .collect();
            self.reallocate(now, Some(&subs));
        }
        let Room {
            tracks,
            participants,
            id: room_id,
            ..
        } = self;
        let track = tracks.get_mut(&key).ok_or(DropReason::UnknownTrack)?;
        let source = track.layers[li].source_id;
        let packet = LayerPacket {
            layer: li,
            quality: track.layers[li].quality,
            source,
            video,
            keyframe,
            seq: p.seq,
            timestamp: p.timestamp,
            clock_rate: p.codec.clock_rate(),
            now,
        };
        let mut forwarded = 0;
        // RED unwrapped for subscribers without RED: parsed on first need,
        // then one payload shared by all of them.
        let mut unwrapped: Option<Unwrapped> = None;
        let mut red_failed = false;
        for s in &mut track.subscriptions {
            let Some(out_mid) = s.out_mid else { continue };
            let (pt, payload) = match s.forwarder.map_pt(p.pt) {
                Some(pt) => (pt, &p.payload),
                None if p.codec == Codec::Red => {
                    let u = unwrapped.get_or_insert_with(|| {
                        red::primary(&p.payload)
                            .map(|r| (Pt::new_with_value(r.pt), Arc::from(&p.payload[r.range])))
                    });
                    match u {
                        Ok((inner, data)) => match s.forwarder.map_pt(*inner) {
                            Some(pt) => (pt, &*data),
                            None => continue,
                        },
                        Err(_) => {
                            red_failed = true;
                            continue;
                        }
                    }
                }
                None => continue,
            };
            let Some(f) = s.forwarder.forward(&packet) else {
                continue;
            };
            if let (Some(quality), Some(sub)) = (f.switched_to, participants.get(&s.subscriber)) {
                out.push(Action::Event(SfuEvent::LayerChanged {
                    room_id: room_id.clone(),
                    subscriber_id: sub.id.clone(),
                    track_id: track.id.clone(),
                    quality,
                }));
            }
            out.push(Action::Forward(Forward {
                to: s.subscriber,
                mid: out_mid,
                pt,
                seq: f.seq,
                timestamp: f.timestamp,
                marker: p.marker,
                payload: payload.clone(),
                audio_level: p.audio_level,
                voice_activity: p.voice_activity,
                nackable: video,
                received_at: p.received_at,
            }));
            forwarded += 1;
        }
        if red_failed {
            return Err(DropReason::MalformedRed);
        }
        Ok(forwarded)
    }

    /// Account one received packet to its track and layer (rates, speaker
    /// levels, keyframes): the track, the layer's index, whether the packet
    /// starts a keyframe and whether the layer is new.
    fn observe(
        &mut self,
        now: Instant,
        p: &InboundRtp,
    ) -> Result<(TrackKey, usize, bool, bool), DropReason> {
        let key = *self
            .by_publisher_mid
            .get(&(p.publisher, p.mid))
            .ok_or(DropReason::UnknownTrack)?;
        let track = self.tracks.get_mut(&key).ok_or(DropReason::UnknownTrack)?;
        track.codec = Some(p.codec);
        let layers_before = track.layers.len();
        let li = track.layer_index(p.rid, self.config.pli_min_interval);
        let new_layer = track.layers.len() != layers_before;
        let layer = &mut track.layers[li];
        layer.on_packet(p.payload.len(), now);
        let video = track.kind == TrackKind::Video;
        if let (false, Some(level)) = (video, p.audio_level) {
            self.speakers.observe(key, level, p.voice_activity, now);
        }
        if track.muted {
            return Err(DropReason::Muted);
        }
        let keyframe = video && is_keyframe_start(p.codec, &p.payload);
        if keyframe {
            layer.pli.keyframe_received();
        }
        Ok((key, li, keyframe, new_layer))
    }

    /// A subscriber asked for a keyframe (PLI/FIR) on one of its m-lines.
    /// Requests from all subscribers of a layer are merged by its throttle.
    pub fn on_keyframe_request(
        &mut self,
        now: Instant,
        subscriber: ParticipantKey,
        out_mid: Mid,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(key) = self.by_subscriber_mid.get(&(subscriber, out_mid)) else {
            return false;
        };
        let Some(t) = self.tracks.get_mut(key) else {
            return false;
        };
        if t.kind != TrackKind::Video || t.layers.is_empty() {
            return false;
        }
        let Some(s) = t.subscriptions.iter().find(|s| s.subscriber == subscriber) else {
            return false;
        };
        let li = s
            .forwarder
            .selector
            .current()
            .or(s.forwarder.selector.target())
            .unwrap_or(0);
        let Some(layer) = t.layers.get_mut(li) else {
            return false;
        };
        if layer.pli.request(now) {
            out.push(Action::RequestKeyframe {
                publisher: t.publisher,
                mid: t.mid,
                rid: layer.rid,
            });
            return true;
        }
        false
    }

    /// str0m reported a publisher stream paused or resumed.
    pub fn on_stream_paused(
        &mut self,
        publisher: ParticipantKey,
        mid: Mid,
        rid: Option<Rid>,
        paused: bool,
    ) {
        let Some(key) = self.by_publisher_mid.get(&(publisher, mid)) else {
            return;
        };
        if let Some(t) = self.tracks.get_mut(key) {
            if let Some(l) = t.layers.iter_mut().find(|l| l.rid == rid) {
                l.paused = paused;
            }
        }
    }

    /// The subscriber's egress bandwidth estimate changed.
    pub fn set_bandwidth(&mut self, subscriber: ParticipantKey, bps: u64) {
        if let Some(p) = self.participants.get_mut(&subscriber) {
            self.allocation_due |= p.bwe_bps != Some(bps);
            p.bwe_bps = Some(bps);
        }
    }

    /// Periodic work: layer selection, deferred keyframe requests, dynacast
    /// and active speakers. Call every few tens of milliseconds.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let periodic = self
            .allocated_at
            .is_none_or(|at| now.saturating_duration_since(at) >= ALLOCATION_INTERVAL);
        if periodic || self.allocation_due {
            self.allocated_at = Some(now);
            self.allocation_due = false;
            self.reallocate(now, None);
        }
        for t in self.tracks.values_mut() {
            if t.kind != TrackKind::Video {
                continue;
            }
            let mut wanted = [false; 4];
            for s in &mut t.subscriptions {
                if s.out_mid.is_none() {
                    continue;
                }
                if let Some(target) = s.forwarder.selector.target() {
                    wanted[t.layers[target].quality as usize] = true;
                    if s.forwarder.selector.needs_keyframe() && !t.muted {
                        let layer = &mut t.layers[target];
                        if layer.pli.request(now) {
                            out.push(Action::RequestKeyframe {
                                publisher: t.publisher,
                                mid: t.mid,
                                rid: layer.rid,
                            });
                        }
                    }
                }
            }
            for layer in &mut t.layers {
                if layer.pli.poll(now) {
                    out.push(Action::RequestKeyframe {
                        publisher: t.publisher,
                        mid: t.mid,
                        rid: layer.rid,
                    });
                }
            }
            if !t.announced_rids.is_empty() {
                dynacast::announce(t, wanted, &self.participants, &self.id, out);
            }
        }
        let ranking = self.speakers.poll(now).filter(|_| self.speaker_events);
        if let Some(ranking) = ranking {
            let speakers = ranking
                .iter()
                .filter_map(|s| {
                    let t = self.tracks.get(&s.key)?;
                    let p = self.participants.get(&t.publisher)?;
                    Some(ActiveSpeaker {
                        participant_id: p.id.clone(),
                        track_id: t.id.clone(),
                        level: s.level,
                    })
                })
                .collect();
            out.push(Action::Event(SfuEvent::ActiveSpeakersChanged {
                room_id: self.id.clone(),
                speakers,
            }));
        }
    }
}

#[path = "room_allocation.rs"]
mod allocation;

#[path = "room_dynacast.rs"]
mod dynacast;

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
