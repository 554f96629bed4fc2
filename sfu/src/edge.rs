//! The UDP edge: one thread reading the shared media port and handing each
//! datagram to the worker that owns its participant.
//!
//! The edge keeps its own address cache (a plain `HashMap`, touched by this
//! thread only), so SRTP packets cost one hash lookup and no lock. Only STUN
//! consults the shared ufrag table. Receive buffers circulate: workers send
//! them back after use, so steady state allocates none.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::{debug, warn};

use crate::core::ParticipantKey;
use crate::demux::{classify, stun_local_ufrag, PacketClass};
use crate::metrics::Metrics;
use crate::shard::ShardMsg;

/// Large enough for any datagram WebRTC peers send (MTU-sized).
pub const RECV_BUF_SIZE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub shard: usize,
    pub peer: ParticipantKey,
}

/// Server ufrag -> owner. Written by workers on join/leave/ICE restart.
#[derive(Debug, Default)]
pub struct Routes {
    pub by_ufrag: DashMap<String, Route>,
}

/// One received datagram on its way to a worker.
#[derive(Debug)]
pub struct Datagram {
    pub peer: ParticipantKey,
    pub source: SocketAddr,
    pub buf: Vec<u8>,
    pub len: usize,
    pub received_at: Instant,
}

pub struct Edge {
    pub socket: UdpSocket,
    pub routes: Arc<Routes>,
    pub shards: Vec<SyncSender<ShardMsg>>,
    pub buffers: Receiver<Vec<u8>>,
    pub metrics: Metrics,
    pub stop: Arc<AtomicBool>,
}

struct Cached {
    route: Route,
    ufrag: String,
}

impl Edge {
    pub fn run(self) {
        let Edge {
            socket,
            routes,
            shards,
            buffers,
            metrics,
            stop,
        } = self;
        if let Err(e) = socket.set_read_timeout(Some(Duration::from_millis(100))) {
            warn!("edge: cannot set read timeout: {e}");
        }
        let mut by_addr: HashMap<SocketAddr, Cached> = HashMap::new();
        let mut last_prune = Instant::now();
        let mut spare: Option<Vec<u8>> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut buf = spare
                .take()
                .or_else(|| buffers.try_recv().ok())
                .unwrap_or_else(|| vec![0; RECV_BUF_SIZE]);
            if buf.len() < RECV_BUF_SIZE {
                buf.resize(RECV_BUF_SIZE, 0);
            }
            let (len, source) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    spare = Some(buf);
                    if last_prune.elapsed() > Duration::from_secs(1) {
                        // Forget addresses of participants that left (their
                        // ufrag is gone or now routes elsewhere).
                        by_addr.retain(|_, c| {
                            routes.by_ufrag.get(&c.ufrag).is_some_and(|r| *r == c.route)
                        });
                        last_prune = Instant::now();
                    }
                    continue;
                }
                Err(e) => {
                    // ICMP errors from a gone peer surface here on some
                    // platforms; they must not stop the media plane.
                    debug!("edge: recv error: {e}");
                    spare = Some(buf);
                    continue;
                }
            };
            let received_at = Instant::now();
            metrics.packets_received.inc();
            metrics.bytes_received.inc_by(len as u64);
            let data = &buf[..len];
            let route = match classify(data) {
                PacketClass::Unknown => {
                    metrics.dropped.malformed.inc();
                    spare = Some(buf);
                    continue;
                }
                PacketClass::Stun => {
                    let found = stun_local_ufrag(data)
                        .and_then(|u| routes.by_ufrag.get(u).map(|r| (*r, u)));
                    match found {
                        Some((route, ufrag)) => {
                            let stale = by_addr
                                .get(&source)
                                .is_none_or(|c| c.route != route || c.ufrag != ufrag);
                            if stale {
                                by_addr.insert(
                                    source,
                                    Cached {
                                        route,
                                        ufrag: ufrag.to_string(),
                                    },
                                );
                            }
                            Some(route)
                        }
                        // Binding responses/indications carry no USERNAME.
                        None => by_addr.get(&source).map(|c| c.route),
                    }
                }
                PacketClass::Dtls | PacketClass::Rtp => by_addr.get(&source).map(|c| c.route),
            };
            let Some(route) = route else {
                metrics.dropped.unknown_peer.inc();
                spare = Some(buf);
                continue;
            };
            let Some(tx) = shards.get(route.shard) else {
                spare = Some(buf);
                continue;
            };
            let msg = ShardMsg::Datagram(Datagram {
                peer: route.peer,
                source,
                buf,
                len,
                received_at,
            });
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(ShardMsg::Datagram(d))) => {
                    metrics.dropped.queue_full.inc();
                    spare = Some(d.buf);
                }
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) => {}
            }
        }
    }
}
