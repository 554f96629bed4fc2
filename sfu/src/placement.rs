//! Which worker hosts each participant.
//!
//! A room starts on its home worker (a stable hash of its id) and stays
//! there while it is small: forwarding inside one worker needs no hop. Once
//! `spread_after` of its participants are on a worker, the room's next
//! participants go to the least loaded worker that still has room for
//! them, and the room spans several workers; each packet then crosses to
//! each of them once (`worker/relay.rs`), however many subscribers it has
//! there. A participant who joins again lands where it was.
//!
//! The handle places joins and routes commands with it; the worker thread
//! that removes a participant removes its entry before anyone hears of the
//! departure, so a rejoin never finds a stale one.

use std::collections::HashMap;

use crate::error::SfuError;

#[derive(Debug)]
pub struct Placement {
    spread_after: usize,
    max_per_room: usize,
    /// Participants per worker, all rooms together.
    load: Vec<usize>,
    /// Room -> participant -> worker.
    rooms: HashMap<String, HashMap<String, usize>>,
}

/// Where a join goes, and the other workers already hosting its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub worker: usize,
    pub peers: Vec<usize>,
    /// False when the participant was already placed (a second join of the
    /// same id goes where the first did, and is refused there).
    pub new: bool,
}

impl Placement {
    pub fn new(workers: usize, spread_after: usize, max_per_room: usize) -> Self {
        Self {
            spread_after,
            max_per_room,
            load: vec![0; workers.max(1)],
            rooms: HashMap::new(),
        }
    }

    pub fn workers(&self) -> usize {
        self.load.len()
    }

    /// Choose the worker for `participant` joining `room`, whose home
    /// worker is `home`, and record it.
    pub fn place(
        &mut self,
        room: &str,
        participant: &str,
        home: usize,
    ) -> Result<Placed, SfuError> {
        let members = self.rooms.get(room);
        if let Some(&w) = members.and_then(|m| m.get(participant)) {
            return Ok(Placed {
                worker: w,
                peers: self.peers_of(room, w),
                new: false,
            });
        }
        let mut per_worker = vec![0usize; self.load.len()];
        for &w in members.into_iter().flat_map(|m| m.values()) {
            per_worker[w] += 1;
        }
        if per_worker.iter().sum::<usize>() >= self.max_per_room {
            return Err(SfuError::RoomFull(room.to_string()));
        }
        let worker = self.choose(&per_worker, home);
        self.rooms
            .entry(room.to_string())
            .or_default()
            .insert(participant.to_string(), worker);
        self.load[worker] += 1;
        Ok(Placed {
            worker,
            peers: self.peers_of(room, worker),
            new: true,
        })
    }

    fn choose(&self, per_worker: &[usize], home: usize) -> usize {
        let hosting: Vec<usize> = (0..per_worker.len())
            .filter(|&w| per_worker[w] > 0)
            .collect();
        if hosting.is_empty() {
            return home % self.load.len();
        }
        let fits = |w: &usize| self.spread_after == 0 || per_worker[*w] < self.spread_after;
        // Fill the workers the room is on before adding another.
        if let Some(w) = hosting
            .iter()
            .copied()
            .filter(fits)
            .min_by_key(|&w| (self.load[w], w))
        {
            return w;
        }
        // Every worker of the room is full: the least loaded of the others,
        // or, when the room is on all of them, the least loaded overall.
        (0..self.load.len())
            .filter(|w| per_worker[*w] == 0)
            .min_by_key(|&w| (self.load[w], w))
            .unwrap_or_else(|| {
                (0..self.load.len())
                    .min_by_key(|&w| (per_worker[w], self.load[w], w))
                    .expect("at least one worker")
            })
    }

    /// The worker hosting `participant` of `room`, if placed.
    pub fn worker_of(&self, room: &str, participant: &str) -> Option<usize> {
        self.rooms.get(room)?.get(participant).copied()
    }

    /// Every worker hosting someone of `room`, ascending.
    pub fn workers_of(&self, room: &str) -> Vec<usize> {
        let mut ws: Vec<usize> = self
            .rooms
            .get(room)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        ws.sort_unstable();
        ws.dedup();
        ws
    }

    fn peers_of(&self, room: &str, worker: usize) -> Vec<usize> {
        let mut ws = self.workers_of(room);
        ws.retain(|w| *w != worker);
        ws
    }

    /// `participant` left `room` on `worker` (an entry that has since moved
    /// to another worker stays).
    pub fn remove(&mut self, room: &str, participant: &str, worker: usize) {
        let Some(members) = self.rooms.get_mut(room) else {
            return;
        };
        if members.get(participant) == Some(&worker) {
            members.remove(participant);
            self.load[worker] = self.load[worker].saturating_sub(1);
        }
        if members.is_empty() {
            self.rooms.remove(room);
        }
    }

    /// Participants placed in `room`.
    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(p: &mut Placement, room: &str, n: usize, home: usize) -> Vec<usize> {
        (0..n)
            .map(|i| p.place(room, &format!("p{i}"), home).unwrap().worker)
            .collect()
    }

    #[test]
    fn a_small_room_stays_on_its_home_worker() {
        let mut p = Placement::new(4, 3, 100);
        assert_eq!(fill(&mut p, "r", 3, 2), vec![2, 2, 2]);
        assert_eq!(p.workers_of("r"), vec![2]);
    }

    #[test]
    fn a_full_worker_spills_to_the_least_loaded_and_the_room_spans_both() {
        let mut p = Placement::new(3, 2, 100);
        // Another room loads worker 1.
        fill(&mut p, "other", 2, 1);
        let ws = fill(&mut p, "r", 5, 0);
        assert_eq!(ws, vec![0, 0, 2, 2, 1]);
        // Worker 1 has a seat left for "r".
        let late = p.place("r", "late", 0).unwrap();
        assert_eq!((late.worker, late.peers), (1, vec![0, 2]));
        // Every worker holds 2 of "r": the least loaded overall.
        let later = p.place("r", "later", 0).unwrap();
        assert_eq!((later.worker, later.peers), (0, vec![1, 2]));
        assert!(later.new);
    }

    #[test]
    fn a_second_join_goes_where_the_first_did() {
        let mut p = Placement::new(2, 1, 100);
        let first = p.place("r", "a", 0).unwrap();
        p.place("r", "b", 0).unwrap();
        let again = p.place("r", "a", 0).unwrap();
        assert_eq!(again.worker, first.worker);
        assert!(!again.new);
        assert_eq!(again.peers, vec![1]);
    }

    #[test]
    fn removal_follows_the_worker_and_frees_the_seat() {
        let mut p = Placement::new(2, 1, 2);
        p.place("r", "a", 0).unwrap();
        p.place("r", "b", 0).unwrap();
        assert!(matches!(p.place("r", "c", 0), Err(SfuError::RoomFull(_))));
        // A stale removal from the wrong worker changes nothing.
        p.remove("r", "a", 1);
        assert_eq!(p.worker_of("r", "a"), Some(0));
        p.remove("r", "a", 0);
        assert_eq!(p.worker_of("r", "a"), None);
        assert_eq!(p.room_size("r"), 1);
        assert_eq!(p.place("r", "c", 0).unwrap().worker, 0);
        p.remove("r", "b", 1);
        p.remove("r", "c", 0);
        assert_eq!(p.workers_of("r"), Vec::<usize>::new());
    }

    #[test]
    fn spreading_off_keeps_every_room_on_one_worker() {
        let mut p = Placement::new(4, 0, 1000);
        assert!(fill(&mut p, "r", 200, 3).iter().all(|w| *w == 3));
    }
}
