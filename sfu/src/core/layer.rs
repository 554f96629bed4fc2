//! Simulcast layer selection for one subscription.
//!
//! The bandwidth allocator (`allocator.rs`) picks a *target* layer from what
//! the subscriber asked for and what its downlink can carry; the selector
//! keeps the *current* layer until a keyframe of the target: switching mid-GOP would hand the decoder delta
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

    /// Set the target layer (None: send nothing), as the bandwidth
    /// allocator chose it. Returns true when it changed.
    pub fn set_target(&mut self, target: Option<usize>) -> bool {
        let changed = target != self.target;
        self.target = target;
        if target.is_none() {
            // Off: stop immediately, no keyframe needed to stop.
            self.current = None;
        }
        changed
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

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::new(Low);
        s.set_target(Some(0));
        assert_eq!(s.on_packet(0, false), Decision::Drop, "no keyframe yet");
        assert_eq!(s.on_packet(0, true), Decision::SwitchAndForward);
        assert_eq!(s.on_packet(0, false), Decision::Forward);
        assert_eq!(s.on_packet(2, true), Decision::Drop);

        s.set_max_quality(High);
        assert!(s.set_target(Some(2)));
        assert!(s.needs_keyframe());
        // Keep forwarding the low layer until the high keyframe arrives.
        assert_eq!(s.on_packet(2, false), Decision::Drop);
        assert_eq!(s.on_packet(0, false), Decision::Forward);
        assert_eq!(s.on_packet(2, true), Decision::SwitchAndForward);
        assert_eq!(s.on_packet(0, true), Decision::Drop);
        assert!(!s.needs_keyframe());
    }
}
