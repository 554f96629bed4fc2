//! The SFU's recent events, numbered, behind the HTTP event stream.
//!
//! Each event gets an SSE id `<instance>-<seq>`: the instance names this
//! SFU process, the sequence number counts its events. A client whose
//! stream broke reopens it with `Last-Event-ID` and is first sent what it
//! missed, from a bounded log (`--sfu-event-replay`), so a reconnect loses
//! nothing. When the id names another process (the SFU restarted) or
//! events the log no longer holds, the stream opens with `event: reset`
//! instead: the client's picture of the sessions is no longer true, and
//! it must treat every media session it knew as gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use convene_proto::sfu::SfuEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::handle::SfuHandle;

/// Live events buffered per stream before a slow one is cut off (it then
/// reconnects and catches up from the log).
const LIVE_CAPACITY: usize = 4096;

/// One event with its number.
#[derive(Debug, Clone)]
pub struct Numbered {
    pub seq: u64,
    pub event: Arc<SfuEvent>,
}

pub struct EventLog {
    instance: String,
    capacity: usize,
    state: Mutex<State>,
    live: broadcast::Sender<Numbered>,
    /// True once the SFU shuts down: open streams end.
    closed: watch::Sender<bool>,
}

struct State {
    next: u64,
    ring: VecDeque<Numbered>,
}

/// Where a (re)opened stream starts.
pub struct Resume {
    /// Send `event: reset` first: the client missed what cannot be replayed.
    pub reset: bool,
    /// The last event before `live` (0: none yet): a stream that replays
    /// nothing opens with it as its id, so the client always holds one.
    pub position: u64,
    /// Missed events, oldest first.
    pub replay: Vec<Numbered>,
    /// Everything after them.
    pub live: broadcast::Receiver<Numbered>,
}

impl EventLog {
    /// A log of the last `capacity` events of `handle`, recorded from now
    /// on by a task (needs a Tokio runtime).
    pub fn start(handle: &SfuHandle, capacity: usize) -> Arc<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let log = Arc::new(Self {
            instance: format!("{nanos:x}{:x}", std::process::id()),
            capacity: capacity.max(1),
            state: Mutex::new(State {
                next: 1,
                ring: VecDeque::new(),
            }),
            live: broadcast::channel(LIVE_CAPACITY).0,
            closed: watch::channel(false).0,
        });
        let mut rx = handle.events();
        let weak = Arc::downgrade(&log);
        tokio::spawn(async move {
            loop {
                let e = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "SFU event log fell behind the workers");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Some(log) = weak.upgrade() else { return };
                log.push(e);
            }
        });
        log
    }

    /// End every open stream (the SFU is shutting down).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`EventLog::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The SSE id of event `seq`.
    pub fn id_of(&self, seq: u64) -> String {
        format!("{}-{seq}", self.instance)
    }

    fn push(&self, event: SfuEvent) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = Numbered {
            seq: st.next,
            event: Arc::new(event),
        };
        st.next += 1;
        if st.ring.len() == self.capacity {
            st.ring.pop_front();
        }
        st.ring.push_back(n.clone());
        // Under the lock: a stream resuming now sees it either in the
        // replay or live, never in both or neither.
        let _ = self.live.send(n);
    }

    /// Open a stream for a client whose last event was `last_event_id`
    /// (none: a new client, which starts with what happens next).
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.subscribe();
        let position = st.next - 1;
        let Some(last) = last_event_id else {
            return Resume {
                reset: false,
                position,
                replay: Vec::new(),
                live,
            };
        };
        let seq = last
            .rsplit_once('-')
            .filter(|(instance, _)| *instance == self.instance)
            .and_then(|(_, seq)| seq.parse::<u64>().ok());
        let Some(seq) = seq else {
            // Another process's id (or none we could read).
            return Resume {
                reset: true,
                position,
                replay: Vec::new(),
                live,
            };
        };
        let oldest = st.ring.front().map_or(st.next, |n| n.seq);
        if seq + 1 < oldest {
            return Resume {
                reset: true,
                position,
                replay: Vec::new(),
                live,
            };
        }
        let replay = st.ring.iter().filter(|n| n.seq > seq).cloned().collect();
        Resume {
            reset: false,
            position,
            replay,
            live,
        }
    }
}
