//! Event buses carrying [`ConferenceEvent`]s and [`ChatEvent`]s from the
//! control plane to whoever serves the conference's participants or the
//! chat's members (the signaling service), and the signaling nodes' own room
//! frames between each other.
//!
//! The control plane publishes, the signaling service subscribes, and
//! neither needs the other's crate for it: this crate depends only on
//! `convene-proto` (the event types) and Redis.
//!
//! In-process by default: one `tokio::sync::broadcast` channel per
//! conference (or chat) with subscribers. With Redis, events are published on
//! `convene:conference:{id}` (or `convene:chat:{id}`) and every process keeps
//! one pattern subscription per bus that feeds its local channels, so a
//! subscriber in any process sees events published by any other.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use convene_proto::collab::{chat_channel, ChatEvent};
use convene_proto::events::{conference_channel, ConferenceEvent};
use dashmap::DashMap;
use futures::{Stream, StreamExt};
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Why an event could not be published, or a bus not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("event encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("redis listener stopped before subscribing")]
    ListenerStopped,
}

/// Events buffered per conference (or chat) before a slow subscriber starts
/// losing them.
const CHANNEL_CAPACITY: usize = 256;

/// An event kind with its own bus: routed by one id, on its own Redis
/// channel family.
pub trait BusEvent: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Redis `PSUBSCRIBE` pattern matching every [`BusEvent::channel`].
    const PATTERN: &'static str;
    /// Used in log messages.
    const KIND: &'static str;
    /// The conference or chat the event belongs to.
    fn key(&self) -> Uuid;
    /// Redis channel of the given key.
    fn channel(key: Uuid) -> String;
}

impl BusEvent for ConferenceEvent {
    const PATTERN: &'static str = "convene:conference:*";
    const KIND: &'static str = "conference";
    fn key(&self) -> Uuid {
        self.conference_id()
    }
    fn channel(key: Uuid) -> String {
        conference_channel(key)
    }
}

impl BusEvent for ChatEvent {
    const PATTERN: &'static str = "convene:chat:*";
    const KIND: &'static str = "chat";
    fn key(&self) -> Uuid {
        self.route()
    }
    fn channel(key: Uuid) -> String {
        chat_channel(key)
    }
}

type LocalChannels<E> = Arc<DashMap<Uuid, broadcast::Sender<E>>>;

/// The conference event bus.
pub type EventBus = Bus<ConferenceEvent>;
/// The chat event bus.
pub type ChatBus = Bus<ChatEvent>;
/// A chat's event stream.
pub type ChatSubscription = Subscription<ChatEvent>;

#[derive(Debug)]
pub struct Bus<E: BusEvent> {
    inner: Arc<BusInner<E>>,
}

impl<E: BusEvent> Clone for Bus<E> {
    fn clone(&self) -> Self {
        Bus {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct BusInner<E: BusEvent> {
    local: LocalChannels<E>,
    redis: Option<RedisBackend>,
}

struct RedisBackend {
    publisher: ConnectionManager,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisBackend")
    }
}

impl<E: BusEvent> Drop for BusInner<E> {
    fn drop(&mut self) {
        if let Some(r) = &self.redis {
            r.listener.abort();
        }
    }
}

impl<E: BusEvent> Bus<E> {
    /// Bus delivering only within this process.
    pub fn in_process() -> Self {
        Bus {
            inner: Arc::new(BusInner {
                local: Arc::new(DashMap::new()),
                redis: None,
            }),
        }
    }

    /// Bus over Redis pub/sub. Returns once the pattern subscription is
    /// active, so nothing published after this call is missed.
    pub async fn redis(client: redis::Client) -> Result<Self, BusError> {
        let publisher = ConnectionManager::new(client.clone()).await?;
        let local: LocalChannels<E> = Arc::new(DashMap::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = tokio::spawn(listen(client, local.clone(), ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                listener.abort();
                return Err(e.into());
            }
            Err(_) => return Err(BusError::ListenerStopped),
        }
        Ok(Bus {
            inner: Arc::new(BusInner {
                local,
                redis: Some(RedisBackend {
                    publisher,
                    listener,
                }),
            }),
        })
    }

    /// Publishes an event to the conference's (chat's) subscribers in every
    /// process.
    pub async fn publish(&self, event: &E) -> Result<(), BusError> {
        match &self.inner.redis {
            None => {
                self.deliver_local(event.clone());
                Ok(())
            }
            Some(r) => {
                let payload = serde_json::to_string(event)?;
                let mut conn = r.publisher.clone();
                redis::cmd("PUBLISH")
                    .arg(E::channel(event.key()))
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }

    /// Subscribes to one conference's (chat's) events.
    pub fn subscribe(&self, key: Uuid) -> Subscription<E> {
        let rx = self
            .inner
            .local
            .entry(key)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            key,
            bus: self.inner.clone(),
        }
    }

    pub fn is_redis(&self) -> bool {
        self.inner.redis.is_some()
    }

    fn deliver_local(&self, event: E) {
        deliver(&self.inner.local, event);
    }
}

fn deliver<E: BusEvent>(local: &DashMap<Uuid, broadcast::Sender<E>>, event: E) {
    let id = event.key();
    if let Some(tx) = local.get(&id) {
        let _ = tx.send(event);
    }
}

/// Forwards Redis messages to local subscribers, reconnecting with backoff.
/// The first subscription's outcome is reported through `ready`.
async fn listen<E: BusEvent>(
    client: redis::Client,
    local: LocalChannels<E>,
    ready: oneshot::Sender<Result<(), redis::RedisError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(E::PATTERN).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let payload: String = match msg.get_payload() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "non-text message on event channel");
                            continue;
                        }
                    };
                    match serde_json::from_str::<E>(&payload) {
                        Ok(event) => deliver(&local, event),
                        Err(e) => {
                            tracing::warn!(error = %e, kind = E::KIND, "undecodable event")
                        }
                    }
                }
                tracing::warn!("redis event subscription closed; reconnecting");
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, "redis event subscription failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A conference's (chat's) event stream. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription<E: BusEvent = ConferenceEvent> {
    rx: Option<broadcast::Receiver<E>>,
    key: Uuid,
    bus: Arc<BusInner<E>>,
}

impl<E: BusEvent> Subscription<E> {
    /// Next event; `None` once the bus is gone. A subscriber that fell more
    /// than the channel capacity behind skips the lost events (logged).
    pub async fn recv(&mut self) -> Option<E> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, kind = E::KIND, key = %self.key, "event subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = E> + Send {
        futures::stream::unfold(self, |mut sub| async move {
            sub.recv().await.map(|ev| (ev, sub))
        })
    }
}

impl<E: BusEvent> Drop for Subscription<E> {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.bus
            .local
            .remove_if(&self.key, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_delivers_per_conference() {
        let bus = EventBus::in_process();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sub = bus.subscribe(a);
        bus.publish(&ConferenceEvent::ConferenceEnded { conference_id: b })
            .await
            .unwrap();
        bus.publish(&ConferenceEvent::ConferenceEnded { conference_id: a })
            .await
            .unwrap();
        assert_eq!(
            sub.recv().await,
            Some(ConferenceEvent::ConferenceEnded { conference_id: a })
        );
        drop(sub);
        assert!(bus.inner.local.is_empty());
    }
}
