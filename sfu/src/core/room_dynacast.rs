//! Dynacast: which layers of a simulcast track anyone wants, announced to
//! the publisher's side when the set changes (so unwanted layers can be
//! paused at the sender). A room across workers merges the wants of the
//! far instances into the publisher's; a relayed track reports its own
//! subscribers' wants back instead of announcing them.

use std::collections::HashMap;

use convene_proto::sfu::{SfuEvent, VideoQuality};

use super::{Action, Room};
use crate::core::{Participant, ParticipantKey, PublishedTrack};

impl Room {
    /// Subscribers elsewhere (`from`: another worker of the room) want
    /// these layers of a local track; announced with the next tick.
    /// Empty `layers` withdraws `from`'s wants.
    pub fn set_far_wanted(&mut self, track_id: &str, from: usize, layers: Vec<VideoQuality>) {
        let Some(t) = self
            .by_id
            .get(track_id)
            .and_then(|k| self.tracks.get_mut(k))
        else {
            return;
        };
        t.far_wanted.retain(|(f, _)| *f != from);
        if !layers.is_empty() {
            t.far_wanted.push((from, layers));
        }
    }

    /// `from` no longer hosts any of this room: forget what it wanted.
    pub fn forget_far(&mut self, from: usize) {
        for t in self.tracks.values_mut() {
            t.far_wanted.retain(|(f, _)| *f != from);
        }
    }
}

/// `wanted[q]`: some local subscriber's target is at quality `q`.
pub(super) fn announce(
    t: &mut PublishedTrack,
    mut wanted: [bool; 4],
    participants: &HashMap<ParticipantKey, Participant>,
    room_id: &str,
    out: &mut Vec<Action>,
) {
    let remote = participants.get(&t.publisher).is_none_or(|p| p.remote);
    if !remote {
        for (_, far) in &t.far_wanted {
            for q in far {
                wanted[*q as usize] = true;
            }
        }
    }
    let same = t.wanted.len() == wanted.iter().filter(|w| **w).count()
        && t.wanted.iter().all(|q| wanted[*q as usize]);
    if same {
        return;
    }
    t.wanted.clear();
    for (q, on) in [
        VideoQuality::Off,
        VideoQuality::Low,
        VideoQuality::Medium,
        VideoQuality::High,
    ]
    .into_iter()
    .zip(wanted)
    {
        if on {
            t.wanted.push(q);
        }
    }
    if remote {
        out.push(Action::FarWanted {
            publisher: t.publisher,
            track_id: t.id.clone(),
            layers: t.wanted.clone(),
        });
    } else if let Some(p) = participants.get(&t.publisher) {
        out.push(Action::Event(SfuEvent::WantedLayers {
            room_id: room_id.to_string(),
            participant_id: p.id.clone(),
            track_id: t.id.clone(),
            layers: t.wanted.clone(),
        }));
    }
}
