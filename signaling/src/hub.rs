//! The rooms on this node, one actor per conference, created on first use
//! and dropped when the last member leaves.

use std::collections::HashMap;
use std::sync::Arc;

use convene_proto::sfu::SfuEvent;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use crate::room::{RoomActor, RoomCmd, RoomHandle};
use crate::Inner;

#[derive(Default)]
pub(crate) struct Hub {
    // Touched on join and leave only, never per message: a mutex is enough.
    rooms: Mutex<HashMap<Uuid, RoomHandle>>,
}

impl Hub {
    pub(crate) fn room(&self, conference: Uuid, inner: &Arc<Inner>) -> RoomHandle {
        let mut rooms = self.rooms.lock();
        if let Some(r) = rooms.get(&conference) {
            if !r.tx.is_closed() {
                return r.clone();
            }
        }
        let weak = Arc::downgrade(inner);
        let handle = RoomActor::spawn(
            conference,
            inner.control.clone(),
            inner.media.clone(),
            inner.config.clone(),
            inner.metrics.clone(),
            inner.room_bus.clone(),
            move || {
                if let Some(inner) = weak.upgrade() {
                    let mut rooms = inner.hub.rooms.lock();
                    if rooms.get(&conference).is_some_and(|r| r.tx.is_closed()) {
                        rooms.remove(&conference);
                    }
                }
            },
        );
        rooms.insert(conference, handle.clone());
        handle
    }

    pub(crate) fn forget(&self, conference: Uuid) {
        let mut rooms = self.rooms.lock();
        if rooms.get(&conference).is_some_and(|r| r.tx.is_closed()) {
            rooms.remove(&conference);
        }
    }

    fn get(&self, conference: &Uuid) -> Option<RoomHandle> {
        self.rooms.lock().get(conference).cloned()
    }

    /// Routes SFU events to the room they belong to. Rooms are named by the
    /// conference id, so an event for an unknown room is simply dropped.
    ///
    /// One stream carries every room's events, so waiting for one room's
    /// full queue would stall all the others: a full room loses the event
    /// instead (`try_send`), counted and logged. Its queue holds a thousand
    /// inputs and the room no longer waits for ports while it works through
    /// them, so a full queue means that room is already beyond keeping up,
    /// and an unbounded queue per room would only turn that into memory.
    pub(crate) async fn route_sfu_events(inner: Arc<Inner>) {
        let mut events = inner.media.events();
        while let Some(ev) = events.next().await {
            if matches!(ev, SfuEvent::SessionsLost) {
                // Every room's media is gone at once.
                let rooms: Vec<RoomHandle> = inner.hub.rooms.lock().values().cloned().collect();
                for room in rooms {
                    if let Err(TrySendError::Full(_)) = room.tx.try_send(RoomCmd::Sfu(ev.clone())) {
                        inner.metrics.sfu_events_dropped.inc();
                    }
                }
                continue;
            }
            let Ok(conference) = Uuid::parse_str(ev.room_id()) else {
                continue;
            };
            let Some(room) = inner.hub.get(&conference) else {
                continue;
            };
            match room.tx.try_send(RoomCmd::Sfu(ev)) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    inner.metrics.sfu_events_dropped.inc();
                    tracing::warn!(%conference, "room queue full; SFU event dropped");
                }
            }
        }
    }
}
