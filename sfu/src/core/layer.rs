//! Simulcast layer selection for one subscription.
//!
//! The selector decides a *target* layer from what the subscriber asked for
//! and what its downlink can carry, but the *current* layer only changes at a
//! keyframe of the target: switching mid-GOP would hand the decoder delta
//! frames that reference pictures it never saw.

use convene_proto::sfu::VideoQuality;

/// What the selector knows about one published layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    pub quality: VideoQuality,
    /// Receiving packets recently (not paused by the publisher or the network).
    pub active: bool,
    /// Measured bitrate; 0 when not yet measured.
    pub bitrate_bps: u64,
}

/// What to do with one incoming packet of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Forward, and this packet starts the new current layer.
    SwitchAndForward,
    Drop,
}

/// Upgrading needs this much headroom over the layer's bitrate so that a
/// subscriber on the edge does not flap between two layers.
const UPGRADE_HEADROOM: f64 = 1.15;

#[derive(Debug, Clone)]
pub struct LayerSelector {
    max_quality: VideoQuality,
    current: Option<usize>,
    target: Option<usize>,
}

impl LayerSelector {
    pub fn new(max_quality: VideoQuality) -> Self {
        Self {
            max_quality,
            current: None,
            target: None,
        }
    }

    pub fn max_quality(&self) -> VideoQuality {
        self.max_quality
    }

    pub fn set_max_quality(&mut self, q: VideoQuality) {
        self.max_quality = q;
    }

    pub fn current(&self) -> Option<usize> {
        self.current
    }

    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// True while waiting for a keyframe on the target layer.
    pub fn needs_keyframe(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    /// Recompute the target. `layers` is ordered lowest quality first;
    /// `budget_bps` is this subscription's share of the subscriber's
    /// estimated downlink (None when unknown). Returns true when the target
    /// changed.
    pub fn update(&mut self, layers: &[LayerInfo], budget_bps: Option<u64>) -> bool {
        let new = self.choose(layers, budget_bps);
        let changed = new != self.target;
        self.target = new;
        if new.is_none() {
            // Off: stop immediately, no keyframe needed to stop.
            self.current = None;
        }
        changed
    }

    fn choose(&self, layers: &[LayerInfo], budget_bps: Option<u64>) -> Option<usize> {
        if self.max_quality == VideoQuality::Off {
            return None;
        }
        let active = || layers.iter().enumerate().filter(|(_, l)| l.active);
        let lowest = active().map(|(i, _)| i).next();
        let fits = |i: usize, l: &LayerInfo| match budget_bps {
            None => true,
            Some(_) if l.bitrate_bps == 0 => true,
            Some(b) => {
                let need = if Some(i) > self.current {
                    l.bitrate_bps as f64 * UPGRADE_HEADROOM
                } else {
                    l.bitrate_bps as f64
                };
                b as f64 >= need
            }
        };
        active()
            .filter(|(_, l)| l.quality <= self.max_quality)
            .filter(|(i, l)| fits(*i, l))
            .map(|(i, _)| i)
            .next_back()
            // Nothing fits: the lowest layer is still better than a frozen picture.
            .or(lowest)
    }

    /// Decide about one packet of `layer`. `keyframe_start` is true for the
    /// first packet of a keyframe.
    pub fn on_packet(&mut self, layer: usize, keyframe_start: bool) -> Decision {
        if self.target == Some(layer) && self.current != Some(layer) && keyframe_start {
            self.current = Some(layer);
            return Decision::SwitchAndForward;
        }
        if self.current == Some(layer) {
            Decision::Forward
        } else {
            Decision::Drop
        }
    }

    /// A layer was inserted at `at` (layers are kept sorted and appear in
    /// arrival order): indices at or above it moved up by one.
    pub fn layer_inserted(&mut self, at: usize) {
        for i in [&mut self.current, &mut self.target].into_iter().flatten() {
            if *i >= at {
                *i += 1;
            }
        }
    }

    /// The current layer stopped (publisher paused it): forget it so the
    /// subscriber switches as soon as the target's keyframe arrives.
    pub fn layer_stopped(&mut self, layer: usize) {
        if self.current == Some(layer) {
            self.current = None;
        }
    }
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

    #[test]
    fn requested_quality_caps_the_layer() {
        let l = layers([150_000, 500_000, 1_500_000]);
        let mut s = LayerSelector::new(Low);
        s.update(&l, None);
        assert_eq!(s.target(), Some(0));
        s.set_max_quality(Medium);
        s.update(&l, None);
        assert_eq!(s.target(), Some(1));
        s.set_max_quality(High);
        s.update(&l, None);
        assert_eq!(s.target(), Some(2));
        s.set_max_quality(Off);
        s.update(&l, None);
        assert_eq!(s.target(), None);
    }

    #[test]
    fn bandwidth_estimate_caps_the_layer() {
        let l = layers([150_000, 500_000, 1_500_000]);
        let mut s = LayerSelector::new(High);
        s.update(&l, Some(700_000));
        assert_eq!(s.target(), Some(1));
        // Too little for anything: still the lowest layer.
        s.update(&l, Some(50_000));
        assert_eq!(s.target(), Some(0));
    }

    #[test]
    fn upgrade_needs_headroom_but_staying_does_not() {
        let l = layers([150_000, 500_000, 1_500_000]);
        let mut s = LayerSelector::new(High);
        s.update(&l, Some(520_000));
        assert_eq!(s.target(), Some(0), "520k is not 15% above 500k");
        s.update(&l, Some(600_000));
        assert_eq!(s.target(), Some(1));
        assert_eq!(s.on_packet(1, true), Decision::SwitchAndForward);
        s.update(&l, Some(510_000));
        assert_eq!(s.target(), Some(1), "current layer stays while it fits");
    }

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let l = layers([0, 0, 0]);
        let mut s = LayerSelector::new(Low);
        s.update(&l, None);
        assert_eq!(s.on_packet(0, false), Decision::Drop, "no keyframe yet");
        assert_eq!(s.on_packet(0, true), Decision::SwitchAndForward);
        assert_eq!(s.on_packet(0, false), Decision::Forward);
        assert_eq!(s.on_packet(2, true), Decision::Drop);

        s.set_max_quality(High);
        assert!(s.update(&l, None));
        assert!(s.needs_keyframe());
        // Keep forwarding the low layer until the high keyframe arrives.
        assert_eq!(s.on_packet(2, false), Decision::Drop);
        assert_eq!(s.on_packet(0, false), Decision::Forward);
        assert_eq!(s.on_packet(2, true), Decision::SwitchAndForward);
        assert_eq!(s.on_packet(0, true), Decision::Drop);
        assert!(!s.needs_keyframe());
    }

    #[test]
    fn inactive_layers_are_skipped() {
        let mut l = layers([0, 0, 0]);
        l[2].active = false;
        let mut s = LayerSelector::new(High);
        s.update(&l, None);
        assert_eq!(s.target(), Some(1));
        l[0].active = false;
        l[1].active = false;
        s.update(&l, None);
        assert_eq!(s.target(), None);
    }

    #[test]
    fn single_encoding_is_sent_whatever_the_requested_quality() {
        let l = vec![LayerInfo {
            quality: High,
            active: true,
            bitrate_bps: 0,
        }];
        let mut s = LayerSelector::new(Low);
        s.update(&l, Some(10_000));
        assert_eq!(s.target(), Some(0));
    }
}
