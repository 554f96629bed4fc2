//! Port calls in flight, one at a time per lane.
//!
//! The room never waits for a port, but some calls must not overtake each
//! other: a participant's SDP exchange (join, then answers, subscriptions,
//! removal), one moderator's decisions, one waiter's touch and leave, and
//! the waiting-list reads whose answers are diffed against the last one
//! shown. Each of those is a lane; lanes run side by side, so one slow SDP
//! answer only delays its own participant.

use std::collections::{HashMap, HashSet, VecDeque};

use uuid::Uuid;

use super::effects::CallId;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// A participant's media session, by participant id.
    Media(String),
    /// One moderator's decisions, by participant id.
    Moderator(String),
    /// One waiter's entry: touch, leave, its room token.
    Waiter(Uuid),
    /// Waiting-list reads for the diff shown to waiters and moderators.
    Hall,
    /// Room-wide calls (closing the SFU room).
    Room,
}

/// Queued jobs (`J`) per lane, and what each call in flight was for (`T`).
pub(crate) struct Lanes<J, T> {
    queued: HashMap<Lane, VecDeque<J>>,
    running: HashSet<Lane>,
    in_flight: HashMap<CallId, (Lane, T)>,
    next_call: CallId,
}

impl<J, T> Default for Lanes<J, T> {
    fn default() -> Self {
        Self {
            queued: HashMap::new(),
            running: HashSet::new(),
            in_flight: HashMap::new(),
            next_call: 1,
        }
    }
}

impl<J, T> Lanes<J, T> {
    pub fn push(&mut self, lane: Lane, job: J) {
        self.queued.entry(lane).or_default().push_back(job);
    }

    /// Runs before anything already queued on the lane.
    pub fn push_front(&mut self, lane: Lane, job: J) {
        self.queued.entry(lane).or_default().push_front(job);
    }

    /// What waits on a lane (not yet started).
    pub fn queued_mut(&mut self, lane: &Lane) -> Option<&mut VecDeque<J>> {
        self.queued.get_mut(lane)
    }

    /// The next job of an idle lane, if any.
    pub fn take_next(&mut self, lane: &Lane) -> Option<J> {
        if self.running.contains(lane) {
            return None;
        }
        let q = self.queued.get_mut(lane)?;
        let job = q.pop_front();
        if q.is_empty() {
            self.queued.remove(lane);
        }
        job
    }

    /// Marks the lane busy with a new call; returns its id.
    pub fn start(&mut self, lane: Lane, then: T) -> CallId {
        let id = self.next_call;
        self.next_call += 1;
        self.running.insert(lane.clone());
        self.in_flight.insert(id, (lane, then));
        id
    }

    /// The call's lane is free again; `None` for an unknown call.
    pub fn finish(&mut self, call: CallId) -> Option<(Lane, T)> {
        let (lane, then) = self.in_flight.remove(&call)?;
        self.running.remove(&lane);
        Some((lane, then))
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.queued.is_empty()
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
