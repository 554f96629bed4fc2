//! The room's side of bandwidth allocation: each subscriber's live video
//! subscriptions gathered, shared out by the allocator (`allocator.rs`),
//! and the result applied to their layer selectors, with the pause grace
//! and the upgrade hold.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convene_proto::sfu::TrackKind;

use super::Room;
use crate::core::allocator::{allocate, Allocation, VideoDemand};
use crate::core::{ParticipantKey, TrackKey};

/// After a downgrade a subscription is not upgraded again for this long: a
/// wobbling estimate would otherwise switch layers several times a second,
/// each upgrade costing a keyframe (LiveKit holds similarly).
const UPGRADE_HOLD: Duration = Duration::from_secs(3);

impl Room {
    /// Layer targets for the video subscriptions of `only` (every
    /// subscriber when None): each subscriber's estimate shared over its
    /// subscriptions by the allocator (`allocator.rs`).
    pub(super) fn reallocate(&mut self, now: Instant, only: Option<&[ParticipantKey]>) {
        let wanted = |k: &ParticipantKey| only.is_none_or(|o| o.contains(k));
        // Subscriber -> (track, subscription index) of its live video
        // subscriptions, and the audio it receives.
        let mut video: HashMap<ParticipantKey, Vec<(TrackKey, usize)>> = HashMap::new();
        let mut audio: HashMap<ParticipantKey, u64> = HashMap::new();
        for t in self.tracks.values_mut() {
            if t.kind == TrackKind::Video {
                t.refresh_layer_info(now, self.config.layer_timeout);
            }
            let rate: u64 = t.layers.iter().map(|l| l.bitrate_bps).sum();
            for (i, s) in t.subscriptions.iter().enumerate() {
                if s.out_mid.is_none() || !wanted(&s.subscriber) {
                    continue;
                }
                match t.kind {
                    TrackKind::Video => video.entry(s.subscriber).or_default().push((t.key, i)),
                    TrackKind::Audio => *audio.entry(s.subscriber).or_default() += rate,
                }
            }
        }
        for (subscriber, subs) in video {
            let estimate = self.participants.get(&subscriber).and_then(|p| p.bwe_bps);
            let allocations = {
                let demands: Vec<VideoDemand<'_>> = subs
                    .iter()
                    .map(|(tk, i)| {
                        let t = &self.tracks[tk];
                        let s = &t.subscriptions[*i];
                        let hold = s
                            .forwarder
                            .downgraded_at
                            .is_some_and(|at| now.saturating_duration_since(at) < UPGRADE_HOLD);
                        VideoDemand {
                            priority: t.priority,
                            layers: &t.layer_info,
                            max_quality: s.forwarder.selector.max_quality(),
                            current: s.forwarder.selector.current(),
                            hold,
                        }
                    })
                    .collect();
                let audio = audio.get(&subscriber).copied().unwrap_or(0);
                allocate(estimate, audio, &demands)
            };
            for ((tk, i), a) in subs.into_iter().zip(allocations) {
                let t = self.tracks.get_mut(&tk).expect("collected above");
                let lowest_live = t.layer_info.iter().position(|l| l.active);
                let f = &mut t.subscriptions[i].forwarder;
                let target = match a {
                    Allocation::Layer(l) => {
                        f.starved_since = None;
                        Some(l)
                    }
                    Allocation::Off => None,
                    Allocation::Paused => {
                        let since = *f.starved_since.get_or_insert(now);
                        let after = self.config.video_pause_after;
                        if after.is_some_and(|a| now.saturating_duration_since(since) >= a) {
                            None
                        } else {
                            // A short dip keeps the picture (lowest layer).
                            f.selector.current().min(lowest_live).or(lowest_live)
                        }
                    }
                };
                let down = match (target, f.selector.current()) {
                    (Some(t), Some(c)) => t < c,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if down {
                    f.downgraded_at = Some(now);
                }
                f.selector.set_target(target);
            }
        }
    }
}
