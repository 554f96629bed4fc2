//! Media: publishing, forwarding RTP to subscribers, the data channel
//! broadcast, and the periodic work (liveness, REMB caps, BWE targets).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{DisconnectReason, SfuEvent, TrackKind};
use str0m::bwe::Bitrate;
use str0m::media::{MediaKind, Mid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use tracing::{debug, info, warn};

use super::{Relay, Worker, REMB_INTERVAL};
use crate::core::{DropReason, Forward, InboundRtp, ParticipantKey, RtxCachePolicy};

/// Queued retransmissions are dropped when they exceed this share of a
/// stream's bytes (str0m's default, kept when resizing the cache).
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

impl Worker {
    pub(super) fn on_rtp(&mut self, key: ParticipantKey, p: RtpPacket, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let ssrc = p.header.ssrc;
        // The stream knows mid/rid even when the packet no longer carries
        // the header extensions (browsers stop sending them once acked).
        let ids = peer
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()));
        let Some((mid, rid)) = ids.or(p.header.ext_vals.mid.map(|m| (m, p.header.ext_vals.rid)))
        else {
            self.metrics.dropped.unknown_stream.inc();
            return;
        };
        let pt = p.header.payload_type;
        let inbound = InboundRtp {
            publisher: key,
            mid,
            rid,
            pt,
            codec: peer.codec_for_pt(pt),
            seq: *p.seq_no,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            payload: p.payload,
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            received_at: self.received_at.unwrap_or(now),
        };
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let relay = match room.on_rtp(now, &inbound, &mut self.scratch) {
            Ok(_) => true,
            Err(DropReason::Muted) => {
                self.metrics.dropped.muted.inc();
                false
            }
            Err(DropReason::UnknownTrack) => {
                self.metrics.dropped.unknown_track.inc();
                false
            }
            Err(DropReason::MalformedRed) => {
                // Subscribers with RED got it; so may those elsewhere.
                self.metrics.dropped.malformed_red.inc();
                true
            }
        };
        // A room across workers: one copy per other worker, sharing the
        // payload, however many subscribers each has.
        if let (true, Some(peers)) = (relay, self.room_peers.get(&peer.room)) {
            for &to in peers {
                self.relays.push_back((to, Relay::Rtp(inbound.clone())));
                self.metrics.packets_relayed.inc();
            }
        }
    }

    pub(super) fn publish(
        &mut self,
        key: ParticipantKey,
        mid: Mid,
        kind: MediaKind,
        rids: Vec<str0m::media::Rid>,
    ) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if !peer.grants.can_publish {
            warn!(participant = %peer.participant_id, "publishing not granted; ignoring m-line {mid}");
            return;
        }
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let kind = match kind {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => TrackKind::Video,
        };
        let before = room.track_count();
        let source = peer.source_of(mid);
        match room.publish_as(key, mid, kind, rids, source, &mut self.scratch) {
            Ok(_) => {
                if room.track_count() > before {
                    self.metrics.tracks.inc();
                    let room = peer.room.clone();
                    self.relay_track(&room, key, mid);
                }
            }
            Err(e) => warn!(participant = %peer.participant_id, "not published: {e}"),
        }
    }

    pub(super) fn unpublish(&mut self, key: ParticipantKey, mid: Mid) {
        let Some(room_id) = self.peers.get(&key).map(|p| p.room.clone()) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let before = room.track_count();
        let stop = room.unpublish(key, mid, &mut self.scratch);
        let removed = before - room.track_count();
        self.metrics.tracks.sub(removed as i64);
        self.stop_lines(stop);
        if removed > 0 {
            self.relay_to_room(&room_id, || Relay::Untrack {
                room: room_id.clone(),
                publisher: key,
                mid,
            });
        }
    }

    pub(super) fn stop_lines(&mut self, stop: Vec<(ParticipantKey, Mid)>) {
        for (sub, mid) in stop {
            if let Some(p) = self.peers.get_mut(&sub) {
                p.negotiation.stop(mid);
            }
        }
    }

    /// Run queued actions to completion (writes may cause more actions).
    pub(super) fn forward(&mut self, f: Forward, now: Instant) {
        let Some(peer) = self.peers.get_mut(&f.to) else {
            return;
        };
        if !peer.connected {
            self.metrics.dropped.not_connected.inc();
            return;
        }
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(f.mid, None) else {
            self.metrics.dropped.unknown_stream.inc();
            return;
        };
        // A pacer would hold forwarded media behind a leaky bucket (str0m
        // releases about one packet per timeout). Congestion is answered by
        // the layer choice instead; the queue stays empty.
        tx.set_unpaced(!self.config.pace_media);
        let len = f.payload.len() as u64;
        let first = !peer.media_started;
        peer.media_started = true;
        let ext = ExtensionValues {
            audio_level: f.audio_level,
            voice_activity: f.voice_activity,
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(f.pt, f.seq.into(), f.timestamp, f.received_at, f.payload)
                .marker(f.marker)
                .nackable(f.nackable)
                .ext_vals(ext),
        );
        self.metrics.packets_forwarded.inc();
        self.metrics.bytes_forwarded.inc_by(len);
        self.metrics
            .forwarding_latency
            .observe(now.saturating_duration_since(f.received_at).as_secs_f64());
        if first {
            // Once per session: `media_started` lives and dies with the Peer.
            if let Some(p) = self.peers.get(&f.to) {
                info!(participant = %p.participant_id, room = %p.room, "media started");
                let e = SfuEvent::MediaStarted {
                    room_id: p.room.clone(),
                    participant_id: p.participant_id.clone(),
                };
                self.emit(e);
            }
        }
        // str0m's send queue only becomes visible to its pacer in
        // `handle_timeout`: the written copies are released at the end of
        // the receive batch (`Worker::release_writes`), one handle_timeout
        // per subscriber for all the batch wrote to it.
        if let Some(p) = self.peers.get_mut(&f.to) {
            if !p.writes_pending {
                p.writes_pending = true;
                self.written.push(f.to);
            }
        }
    }

    /// Size subscriber `key`'s RTX cache on video m-line `mid` for a round
    /// trip of `rtt` (`core::rtx`): by time as well as by count.
    pub(super) fn size_rtx_cache(&mut self, key: ParticipantKey, mid: Mid, rtt: Option<Duration>) {
        let age = self.config.rtx_cache().age(rtt);
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let slot = p.rtx_ages.iter().position(|(m, _)| *m == mid);
        if let Some(i) = slot {
            if !RtxCachePolicy::should_resize(p.rtx_ages[i].1, age) {
                return;
            }
        }
        let mut api = p.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.set_rtx_cache(self.config.send_buffer_video, age, RTX_RATIO_CAP);
        match slot {
            Some(i) => p.rtx_ages[i].1 = age,
            None => p.rtx_ages.push((mid, age)),
        }
    }

    /// DataChannel room broadcast. The SFU stamps the sender so receivers
    /// can trust it: text becomes `{"from": id, "data": text}`, binary gets
    /// a one-byte id length and the id in front.
    pub(super) fn broadcast_data(
        &mut self,
        from: ParticipantKey,
        data: &[u8],
        binary: bool,
        now: Instant,
    ) {
        let Some(sender) = self.peers.get(&from) else {
            return;
        };
        let room = sender.room.clone();
        let id = sender.participant_id.clone();
        let stamped: Vec<u8> = if binary {
            let id = &id.as_bytes()[..id.len().min(255)];
            let mut v = Vec::with_capacity(1 + id.len() + data.len());
            v.push(id.len() as u8);
            v.extend_from_slice(id);
            v.extend_from_slice(data);
            v
        } else {
            let text = String::from_utf8_lossy(data);
            serde_json::json!({ "from": id, "data": text })
                .to_string()
                .into_bytes()
        };
        let targets: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(k, p)| **k != from && p.room == room && p.channel.is_some())
            .map(|(k, _)| *k)
            .collect();
        for k in targets {
            self.write_data(k, &stamped, binary, now);
        }
        if self.room_peers.get(&room).is_some_and(|p| !p.is_empty()) {
            let data: Arc<[u8]> = stamped.into();
            self.relay_to_room(&room, || Relay::Data {
                room: room.clone(),
                data: data.clone(),
                binary,
            });
        }
    }

    /// One data-channel message to participant `k`.
    pub(super) fn write_data(
        &mut self,
        k: ParticipantKey,
        data: &[u8],
        binary: bool,
        now: Instant,
    ) {
        if let Some(p) = self.peers.get_mut(&k) {
            if let Some(mut ch) = p.channel.and_then(|c| p.rtc.channel(c)) {
                if let Err(e) = ch.write(binary, data) {
                    debug!("data channel write failed: {e}");
                }
            }
            self.drain(k, now);
        }
    }

    pub(super) fn tick(&mut self, now: Instant) {
        for room in self.rooms.values_mut() {
            room.tick(now, &mut self.scratch);
        }
        self.queue.extend(self.scratch.drain(..));

        // Liveness.
        let ice_timeout = Duration::from_millis(self.config.ice_timeout_ms);
        let dtls_timeout = Duration::from_millis(self.config.dtls_timeout_ms);
        let mut dead = Vec::new();
        for (k, p) in &mut self.peers {
            if p.dead.is_none() {
                if !p.rtc.is_alive() {
                    p.dead = Some(DisconnectReason::PeerClosed);
                } else if !p.connected {
                    match p.ice_connected_at {
                        Some(t) if now.saturating_duration_since(t) > dtls_timeout => {
                            p.dead = Some(DisconnectReason::DtlsTimeout)
                        }
                        None if now.saturating_duration_since(p.joined_at) > ice_timeout => {
                            p.dead = Some(DisconnectReason::IceTimeout)
                        }
                        _ => {}
                    }
                }
            }
            if let Some(r) = p.dead {
                dead.push((*k, r));
            }
        }
        for (k, r) in dead {
            self.remove_peer(k, r);
        }

        // Subscriptions negotiated before the subscriber connected.
        let ready: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected && p.negotiation.has_deferred())
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            if let Some(lines) = self
                .peers
                .get_mut(&k)
                .map(|p| p.negotiation.take_deferred())
            {
                self.activate_all(k, lines, now);
            }
        }

        // Renegotiation for peers whose subscriptions changed.
        let keys: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.needs_negotiation())
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.negotiate(k, now);
        }

        if now.saturating_duration_since(self.last_remb) >= REMB_INTERVAL {
            self.last_remb = now;
            self.send_remb(now);
            self.update_bwe_targets(now);
        }
    }

    /// Cap publishers at the configured bitrate with REMB.
    fn send_remb(&mut self, now: Instant) {
        let cap = Bitrate::kbps(self.config.max_publisher_bitrate_kbps);
        let mut streams = Vec::new();
        for room in self.rooms.values() {
            for t in room.tracks() {
                if t.kind == TrackKind::Video {
                    for l in &t.layers {
                        streams.push((t.publisher, t.mid, l.rid));
                    }
                }
            }
        }
        for (k, mid, rid) in streams {
            if let Some(p) = self.peers.get_mut(&k) {
                if !p.connected {
                    continue;
                }
                if let Some(s) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    s.request_remb(cap);
                }
                self.drain(k, now);
            }
        }
    }

    /// Tell each subscriber's BWE what to probe for: the top layers of
    /// the video it subscribes to, so the estimate can grow into them.
    fn update_bwe_targets(&mut self, now: Instant) {
        let mut want: HashMap<ParticipantKey, u64> = HashMap::new();
        for room in self.rooms.values() {
            for t in room.tracks() {
                if t.kind != TrackKind::Video {
                    continue;
                }
                let top = t.layers.iter().map(|l| l.bitrate_bps).max().unwrap_or(0);
                for s in t.subscriptions.iter().filter(|s| s.out_mid.is_some()) {
                    *want.entry(s.subscriber).or_default() += top;
                }
            }
        }
        let floor = self.config.bwe_initial_kbps * 1000;
        for (k, bps) in want {
            if let Some(p) = self.peers.get_mut(&k) {
                if !p.connected {
                    continue;
                }
                // Headroom over the measured rate: encoders burst on keyframes.
                let desired = (bps + bps / 4).max(floor);
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(0), Bitrate::bps(desired));
                self.drain(k, now);
            }
        }
    }
}
