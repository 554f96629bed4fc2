//! Splits one subscriber's downlink estimate over its video subscriptions.
//!
//! Audio is never limited: its measured rate comes off the estimate first.
//! Video gets the rest by priority (screen shares before cameras; within a
//! priority, in the order given): first every track's lowest layer, in
//! order, while it fits; then upgrades one layer at a time, round after
//! round, a priority's tracks finishing theirs before the next priority
//! upgrades. A track whose lowest layer does not fit gets
//! [`Allocation::Paused`]: the room stops its video (after a grace, see
//! `Room::tick`) instead of letting a queue grow. Upgrading above the layer
//! being sent needs headroom, so a subscriber on the edge does not flap.
//! LiveKit's `StreamAllocator` works the same way.

use convene_proto::sfu::VideoQuality;

use super::layer::LayerInfo;

/// Upgrading needs this much headroom over the layer's bitrate.
pub const UPGRADE_HEADROOM: f64 = 1.15;

/// Which video gets the downlink first. Lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Priority {
    Screen,
    #[default]
    Camera,
}

/// One video subscription asking for a share.
#[derive(Debug, Clone, Copy)]
pub struct VideoDemand<'a> {
    pub priority: Priority,
    /// The track's layers, lowest quality first.
    pub layers: &'a [LayerInfo],
    /// What the subscriber asked for.
    pub max_quality: VideoQuality,
    /// The layer being sent now, for the upgrade headroom.
    pub current: Option<usize>,
    /// Upgrades above `current` wait: the track was downgraded a moment
    /// ago (see `UPGRADE_HOLD` in the room), and going straight back up
    /// would flap between two layers on a wobbling estimate.
    pub hold: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Send this layer (an index into the demand's layers).
    Layer(usize),
    /// Nothing to send: the subscriber asked for none, or no layer is live.
    Off,
    /// Even the lowest layer does not fit the estimate.
    Paused,
}

impl<'a> VideoDemand<'a> {
    /// Layers the subscriber may get, lowest first: live, and at or below
    /// the requested quality; a track whose every live layer is above it
    /// (one encoding, say) still gets its lowest.
    fn candidates(&self) -> Vec<usize> {
        if self.max_quality == VideoQuality::Off {
            return Vec::new();
        }
        let live = || self.layers.iter().enumerate().filter(|(_, l)| l.active);
        let held = |i: usize| !self.hold || self.current.is_none_or(|c| i <= c);
        let within: Vec<usize> = live()
            .filter(|(i, l)| l.quality <= self.max_quality && held(*i))
            .map(|(i, _)| i)
            .collect();
        if within.is_empty() {
            live().map(|(i, _)| i).take(1).collect()
        } else {
            within
        }
    }

    /// What moving to layer `i` needs to fit: its rate, with headroom when
    /// it is above the layer sent now. Unmeasured layers (rate 0) fit.
    fn need(&self, i: usize) -> u64 {
        let rate = self.layers[i].bitrate_bps;
        if Some(i) > self.current {
            (rate as f64 * UPGRADE_HEADROOM) as u64
        } else {
            rate
        }
    }
}

/// Shares `estimate_bps` (None: not known yet, nothing is limited) less
/// `audio_bps` over `demands`; one allocation per demand, in order.
pub fn allocate(
    estimate_bps: Option<u64>,
    audio_bps: u64,
    demands: &[VideoDemand<'_>],
) -> Vec<Allocation> {
    let candidates: Vec<Vec<usize>> = demands.iter().map(VideoDemand::candidates).collect();
    let Some(estimate) = estimate_bps else {
        return candidates
            .iter()
            .map(|c| c.last().map_or(Allocation::Off, |&i| Allocation::Layer(i)))
            .collect();
    };
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&d| demands[d].priority);
    let mut left = estimate.saturating_sub(audio_bps);
    // Position in `candidates[d]` of the layer given so far.
    let mut given: Vec<Option<usize>> = vec![None; demands.len()];
    for &d in &order {
        let Some(&lowest) = candidates[d].first() else {
            continue;
        };
        if demands[d].need(lowest) <= left {
            left -= demands[d].layers[lowest].bitrate_bps;
            given[d] = Some(0);
        }
    }
    let mut start = 0;
    while start < order.len() {
        let priority = demands[order[start]].priority;
        let end = order[start..]
            .iter()
            .position(|&d| demands[d].priority != priority)
            .map_or(order.len(), |n| start + n);
        loop {
            let mut upgraded = false;
            for &d in &order[start..end] {
                let Some(pos) = given[d] else { continue };
                let Some(&next) = candidates[d].get(pos + 1) else {
                    continue;
                };
                let rate_now = demands[d].layers[candidates[d][pos]].bitrate_bps;
                let extra = demands[d].need(next).saturating_sub(rate_now);
                if extra <= left {
                    left -= demands[d].layers[next].bitrate_bps.saturating_sub(rate_now);
                    given[d] = Some(pos + 1);
                    upgraded = true;
                }
            }
            if !upgraded {
                break;
            }
        }
        start = end;
    }
    (0..demands.len())
        .map(|d| match (given[d], candidates[d].is_empty()) {
            (Some(pos), _) => Allocation::Layer(candidates[d][pos]),
            (None, true) => Allocation::Off,
            (None, false) => Allocation::Paused,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoQuality::*;

    fn layers(rates: [u64; 3]) -> Vec<LayerInfo> {
        [Low, Medium, High]
            .into_iter()
            .zip(rates)
            .map(|(quality, bitrate_bps)| LayerInfo {
                quality,
                active: true,
                bitrate_bps,
            })
            .collect()
    }

    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn camera(layers: &[LayerInfo]) -> VideoDemand<'_> {
        VideoDemand {
            priority: Priority::Camera,
            layers,
            max_quality: High,
            current: None,
            hold: false,
        }
    }

    fn one(estimate: Option<u64>, d: VideoDemand<'_>) -> Allocation {
        allocate(estimate, 0, &[d])[0]
    }

    #[test]
    fn requested_quality_caps_the_layer() {
        let l = layers(RATES);
        for (q, want) in [
            (Low, Allocation::Layer(0)),
            (Medium, Allocation::Layer(1)),
            (High, Allocation::Layer(2)),
            (Off, Allocation::Off),
        ] {
            let d = VideoDemand {
                max_quality: q,
                ..camera(&l)
            };
            assert_eq!(one(None, d), want, "{q:?}");
            assert_eq!(one(Some(10_000_000), d), want, "{q:?} with room to spare");
        }
    }

    #[test]
    fn the_estimate_caps_the_layer_and_pauses_when_nothing_fits() {
        let l = layers(RATES);
        assert_eq!(one(Some(700_000), camera(&l)), Allocation::Layer(1));
        assert_eq!(one(Some(50_000), camera(&l)), Allocation::Paused);
    }

    #[test]
    fn upgrade_needs_headroom_but_staying_does_not() {
        let l = layers(RATES);
        assert_eq!(
            one(Some(520_000), camera(&l)),
            Allocation::Layer(0),
            "520k is not 15% above 500k"
        );
        assert_eq!(one(Some(600_000), camera(&l)), Allocation::Layer(1));
        let sending_medium = VideoDemand {
            current: Some(1),
            ..camera(&l)
        };
        assert_eq!(
            one(Some(510_000), sending_medium),
            Allocation::Layer(1),
            "the current layer stays while it fits"
        );
    }

    #[test]
    fn a_held_track_stays_at_or_below_its_layer_however_much_room_there_is() {
        let l = layers(RATES);
        let held = VideoDemand {
            current: Some(0),
            hold: true,
            ..camera(&l)
        };
        assert_eq!(one(Some(10_000_000), held), Allocation::Layer(0));
        assert_eq!(
            one(Some(50_000), held),
            Allocation::Paused,
            "down is never held"
        );
        let free = VideoDemand {
            hold: false,
            ..held
        };
        assert_eq!(one(Some(10_000_000), free), Allocation::Layer(2));
    }

    #[test]
    fn inactive_layers_are_skipped_and_none_live_is_off() {
        let mut l = layers([0, 0, 0]);
        l[2].active = false;
        assert_eq!(one(None, camera(&l)), Allocation::Layer(1));
        l[0].active = false;
        l[1].active = false;
        assert_eq!(one(Some(1_000_000), camera(&l)), Allocation::Off);
    }

    #[test]
    fn single_encoding_is_sent_whatever_the_requested_quality() {
        let l = vec![LayerInfo {
            quality: High,
            active: true,
            bitrate_bps: 0,
        }];
        let d = VideoDemand {
            max_quality: Low,
            ..camera(&l)
        };
        assert_eq!(one(Some(10_000), d), Allocation::Layer(0));
    }

    #[test]
    fn audio_comes_off_the_estimate_first() {
        let l = layers(RATES);
        assert_eq!(
            allocate(Some(700_000), 0, &[camera(&l)])[0],
            Allocation::Layer(1)
        );
        assert_eq!(
            allocate(Some(700_000), 200_000, &[camera(&l)])[0],
            Allocation::Layer(0)
        );
        assert_eq!(
            allocate(Some(200_000), 200_000, &[camera(&l)])[0],
            Allocation::Paused
        );
    }

    #[test]
    fn every_camera_gets_its_lowest_layer_before_any_upgrades() {
        let l = layers(RATES);
        let cams = [camera(&l), camera(&l), camera(&l)];
        // 3 x 150k = 450k, then 1 x 500k - 150k more (with headroom).
        let a = allocate(Some(900_000), 0, &cams);
        assert_eq!(
            a,
            vec![
                Allocation::Layer(1),
                Allocation::Layer(0),
                Allocation::Layer(0)
            ]
        );
        // Upgrades go round: both get medium before either gets high.
        let a = allocate(Some(1_300_000), 0, &cams[..2]);
        assert_eq!(a, vec![Allocation::Layer(1), Allocation::Layer(1)]);
    }

    #[test]
    fn screen_shares_go_first_and_upgrade_before_cameras() {
        let l = layers(RATES);
        let screen = VideoDemand {
            priority: Priority::Screen,
            ..camera(&l)
        };
        // Listed after the camera, served before it.
        let a = allocate(Some(180_000), 0, &[camera(&l), screen]);
        assert_eq!(a, vec![Allocation::Paused, Allocation::Layer(0)]);
        let a = allocate(Some(2_000_000), 0, &[camera(&l), screen]);
        assert_eq!(a, vec![Allocation::Layer(0), Allocation::Layer(2)]);
    }
}
