//! str0m events of one participant, turned into room calls and metrics.

use std::time::Instant;

use convene_proto::sfu::{DisconnectReason, SfuEvent};
use str0m::bwe::{Bitrate, BweKind};
use str0m::{Event, IceConnectionState};
use tracing::info;

use super::Worker;
use crate::core::ParticipantKey;

impl Worker {
    pub(super) fn on_event(&mut self, key: ParticipantKey, ev: Event, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !matches!(ev, Event::RtpPacket(_)) {
            tracing::trace!(participant = %peer.participant_id, "rtc event {ev:?}");
        }
        match ev {
            Event::Connected => {
                peer.connected = true;
                // Warm-up: start the estimate where the config says, and let
                // BWE probe towards the top layer instead of crawling up
                // from the lowest one.
                let initial = Bitrate::kbps(self.config.bwe_initial_kbps);
                peer.rtc.bwe().reset(initial);
                // No padding floor: an audio-only subscriber must not be
                // sent padding. The desired rate follows its subscriptions
                // (see `update_bwe_targets`).
                peer.rtc.bwe().set_bitrate(Bitrate::kbps(0), initial);
                info!(participant = %peer.participant_id, room = %peer.room, "connected");
                let e = SfuEvent::ParticipantConnected {
                    room_id: peer.room.clone(),
                    participant_id: peer.participant_id.clone(),
                };
                self.emit(e);
            }
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    peer.ice_connected_at.get_or_insert(now);
                }
                IceConnectionState::Disconnected => {
                    peer.dead.get_or_insert(DisconnectReason::IceTimeout);
                }
                _ => {}
            },
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                let rids = m
                    .simulcast
                    .map(|s| s.recv.iter().map(|l| l.rid).collect())
                    .unwrap_or_default();
                self.publish(key, m.mid, m.kind, rids);
            }
            Event::MediaChanged(m) => {
                if !m.direction.is_receiving() {
                    self.unpublish(key, m.mid);
                } else {
                    let kind = peer.rtc.media(m.mid).map(|x| x.kind());
                    if let Some(kind) = kind {
                        self.publish(key, m.mid, kind, Vec::new());
                    }
                }
            }
            Event::RtpPacket(p) => self.on_rtp(key, p, now),
            Event::KeyframeRequest(r) => {
                self.metrics.plis.inc();
                let room = &peer.room;
                if let Some(room) = self.rooms.get_mut(room) {
                    room.on_keyframe_request(now, key, r.mid, &mut self.scratch);
                }
            }
            Event::StreamPaused(p) => {
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.on_stream_paused(key, p.mid, p.rid, p.paused);
                }
            }
            Event::EgressBitrateEstimate(b) => {
                let bps = match b {
                    BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                    BweKind::Remb { estimate, .. } => estimate.as_u64(),
                    _ => return,
                };
                self.metrics.bwe_estimate_bps.observe(bps as f64);
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.set_bandwidth(key, bps);
                }
            }
            Event::ChannelOpen(id, _) => peer.channel = Some(id),
            Event::ChannelData(d) if peer.grants.can_publish_data => {
                self.data_out.push((key, d.data, d.binary));
            }
            Event::MediaEgressStats(s) => {
                let seen = match peer.nacks_seen.iter_mut().find(|(m, _)| *m == s.mid) {
                    Some((_, n)) => n,
                    None => {
                        peer.nacks_seen.push((s.mid, 0));
                        &mut peer.nacks_seen.last_mut().expect("just pushed").1
                    }
                };
                if s.nacks > *seen {
                    self.metrics.nacks.inc_by(s.nacks - *seen);
                    *seen = s.nacks;
                }
                let sized = peer.rtx_ages.iter().any(|(m, _)| *m == s.mid);
                if let (true, Some(rtt)) = (sized, s.rtt) {
                    self.size_rtx_cache(key, s.mid, Some(rtt));
                }
            }
            Event::MediaIngressStats(s) => {
                let seen = match peer
                    .nacks_sent
                    .iter_mut()
                    .find(|(m, r, _)| *m == s.mid && *r == s.rid)
                {
                    Some((_, _, n)) => n,
                    None => {
                        peer.nacks_sent.push((s.mid, s.rid, 0));
                        &mut peer.nacks_sent.last_mut().expect("just pushed").2
                    }
                };
                if s.nacks > *seen {
                    self.metrics.nacks_sent.inc_by(s.nacks - *seen);
                    *seen = s.nacks;
                }
            }
            Event::Closed => {
                peer.dead.get_or_insert(DisconnectReason::PeerClosed);
            }
            _ => {}
        }
        self.queue.extend(self.scratch.drain(..));
    }
}
