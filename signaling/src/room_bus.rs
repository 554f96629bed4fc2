//! How the room actors of one conference on different signaling nodes talk.
//!
//! Each node runs an actor for a conference only while it has members of
//! that conference connected. Actors share what the others need on one
//! channel per conference: the control plane's event bus carries
//! [`RoomEnvelope`]s on `convene:room:{id}` (in-process without Redis).
//! Room chat gets its `seq` from Redis in the same atomic step as the
//! publish, so every node delivers chat in one order. Who is in the room is
//! also kept in a Redis hash whose entries expire unless their node
//! refreshes them, so a dead node's participants disappear.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use convene_bus::{Bus, BusEvent};
use convene_proto::sfu::{DisconnectReason, TrackInfo};
use convene_proto::signaling::{ParticipantInfo, ServerMessage};
use futures::stream::BoxStream;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who a lobby message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LobbyTo {
    Moderators,
    Waiter { user_id: Uuid },
    AllWaiters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RoomFrame {
    Joined {
        participant: ParticipantInfo,
    },
    Left {
        participant_id: String,
    },
    /// Room chat; the envelope's `seq` orders it.
    Chat {
        from: ParticipantInfo,
        text: String,
        at_ms: i64,
    },
    Lobby {
        to: LobbyTo,
        from_user_id: Uuid,
        from_name: String,
        text: String,
        at_ms: i64,
    },
    /// A participant's media session ended; its node tells the others.
    MediaEnded {
        participant_id: String,
        reason: DisconnectReason,
    },
    /// For one participant, on whichever node it is connected.
    Direct {
        participant_id: String,
        message: ServerMessage,
    },
    /// A node started serving the conference and asks for the tracks.
    Hello,
    /// The tracks a node knows, in answer to `hello`.
    Tracks {
        tracks: Vec<TrackInfo>,
    },
}

/// A frame as it travels: which conference, which node sent it, and the
/// chat sequence number (0 for anything but chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoomEnvelope {
    pub conference: Uuid,
    pub node: String,
    pub frame: RoomFrame,
    // Last, so Redis can append the number it assigns (see `CHAT_SCRIPT`).
    pub seq: u64,
}

fn room_channel(conference: Uuid) -> String {
    format!("convene:room:{conference}")
}

impl BusEvent for RoomEnvelope {
    const PATTERN: &'static str = "convene:room:*";
    const KIND: &'static str = "room";
    fn key(&self) -> Uuid {
        self.conference
    }
    fn channel(key: Uuid) -> String {
        room_channel(key)
    }
}

/// Assigns the next chat number and publishes in one step, so the channel
/// carries chat in number order. ARGV[1] is the envelope's JSON up to the
/// value of `seq`.
const CHAT_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. seq .. '}')
return seq
"#;

/// A remote participant as stored in the room's member hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemberClaim {
    pub node: String,
    pub participant: ParticipantInfo,
    pub expires_ms: i64,
}

fn members_key(conference: Uuid) -> String {
    format!("convene:room:{conference}:members")
}

fn chat_seq_key(conference: Uuid) -> String {
    format!("convene:room:{conference}:chat_seq")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RoomBusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("bus: {0}")]
    Bus(String),
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
}

pub(crate) struct RoomBus {
    node: String,
    /// How long a member claim lasts without renewal.
    ttl: Duration,
    bus: Bus<RoomEnvelope>,
    redis: Option<ConnectionManager>,
    /// In-process chat numbers (Redis keeps them otherwise). Held across
    /// the publish so numbering and delivery happen in one order.
    local_seq: tokio::sync::Mutex<HashMap<Uuid, u64>>,
}

impl RoomBus {
    pub(crate) fn in_process(node: String) -> Arc<Self> {
        Arc::new(RoomBus {
            node,
            ttl: Duration::from_secs(30),
            bus: Bus::in_process(),
            redis: None,
            local_seq: Default::default(),
        })
    }

    pub(crate) async fn redis(
        node: String,
        ttl: Duration,
        client: redis::Client,
        conn: ConnectionManager,
    ) -> Result<Arc<Self>, RoomBusError> {
        let bus = Bus::redis(client)
            .await
            .map_err(|e| RoomBusError::Bus(e.to_string()))?;
        Ok(Arc::new(RoomBus {
            node,
            ttl,
            bus,
            redis: Some(conn),
            local_seq: Default::default(),
        }))
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// How often to renew member claims.
    pub(crate) fn refresh_every(&self) -> Duration {
        self.ttl / 3
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Frames for one conference from every node, this one included.
    pub(crate) fn subscribe(&self, conference: Uuid) -> BoxStream<'static, RoomEnvelope> {
        self.bus.subscribe(conference).into_stream().boxed()
    }

    pub(crate) async fn publish(
        &self,
        conference: Uuid,
        frame: RoomFrame,
    ) -> Result<(), RoomBusError> {
        let env = RoomEnvelope {
            conference,
            node: self.node.clone(),
            frame,
            seq: 0,
        };
        self.bus
            .publish(&env)
            .await
            .map_err(|e| RoomBusError::Bus(e.to_string()))
    }

    /// Publishes room chat with the conference's next chat number.
    pub(crate) async fn publish_chat(
        &self,
        conference: Uuid,
        frame: RoomFrame,
    ) -> Result<(), RoomBusError> {
        match &self.redis {
            None => {
                let mut numbers = self.local_seq.lock().await;
                let seq = numbers.entry(conference).or_insert(0);
                *seq += 1;
                let env = RoomEnvelope {
                    conference,
                    node: self.node.clone(),
                    frame,
                    seq: *seq,
                };
                self.bus
                    .publish(&env)
                    .await
                    .map_err(|e| RoomBusError::Bus(e.to_string()))
            }
            Some(conn) => {
                let env = RoomEnvelope {
                    conference,
                    node: self.node.clone(),
                    frame,
                    seq: 0,
                };
                let json = serde_json::to_string(&env)?;
                let prefix = json
                    .strip_suffix("0}")
                    .ok_or_else(|| RoomBusError::Bus("envelope must end with seq".into()))?;
                let mut conn = conn.clone();
                redis::Script::new(CHAT_SCRIPT)
                    .key(chat_seq_key(conference))
                    .key(room_channel(conference))
                    .arg(prefix)
                    .arg(24 * 3600 * 1000)
                    .invoke_async::<u64>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }

    /// Claims (or renews) this node's participants in the room.
    pub(crate) async fn claim(
        &self,
        conference: Uuid,
        participants: &[ParticipantInfo],
    ) -> Result<(), RoomBusError> {
        let Some(conn) = &self.redis else {
            return Ok(());
        };
        if participants.is_empty() {
            return Ok(());
        }
        let expires_ms = now_ms() + self.ttl.as_millis() as i64;
        let key = members_key(conference);
        let mut pipe = redis::pipe();
        for p in participants {
            let claim = MemberClaim {
                node: self.node.clone(),
                participant: p.clone(),
                expires_ms,
            };
            pipe.hset(&key, &p.participant_id, serde_json::to_string(&claim)?)
                .ignore();
        }
        pipe.pexpire(&key, 2 * self.ttl.as_millis() as i64).ignore();
        let mut conn = conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub(crate) async fn release(
        &self,
        conference: Uuid,
        participant_id: &str,
    ) -> Result<(), RoomBusError> {
        let Some(conn) = &self.redis else {
            return Ok(());
        };
        let mut conn = conn.clone();
        redis::cmd("HDEL")
            .arg(members_key(conference))
            .arg(participant_id)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Live participants claimed by other nodes; expired claims are deleted.
    pub(crate) async fn remote_members(
        &self,
        conference: Uuid,
    ) -> Result<Vec<MemberClaim>, RoomBusError> {
        let Some(conn) = &self.redis else {
            return Ok(Vec::new());
        };
        let key = members_key(conference);
        let mut conn = conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        let now = now_ms();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (field, value) in all {
            match serde_json::from_str::<MemberClaim>(&value) {
                Ok(c) if c.expires_ms > now => {
                    if c.node != self.node {
                        live.push(c);
                    }
                }
                _ => dead.push(field),
            }
        }
        if !dead.is_empty() {
            let _ = redis::cmd("HDEL")
                .arg(&key)
                .arg(&dead)
                .query_async::<i64>(&mut conn)
                .await;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_json_ends_with_seq_so_redis_can_number_it() {
        let env = RoomEnvelope {
            conference: Uuid::nil(),
            node: "n1".into(),
            frame: RoomFrame::Chat {
                from: ParticipantInfo {
                    participant_id: "p-1".into(),
                    user_id: Uuid::nil(),
                    name: "ada \"0}".into(),
                    moderator: false,
                },
                text: "0}".into(),
                at_ms: 1,
            },
            seq: 0,
        };
        let json = serde_json::to_string(&env).unwrap();
        let prefix = json.strip_suffix("0}").expect("seq is last");
        let numbered: RoomEnvelope = serde_json::from_str(&format!("{prefix}42}}")).unwrap();
        assert_eq!(numbered.seq, 42);
        assert_eq!(numbered.frame, env.frame);
    }

    #[tokio::test]
    async fn in_process_chat_is_numbered_in_publish_order() {
        let bus = RoomBus::in_process("n1".into());
        let conf = Uuid::new_v4();
        let mut frames = bus.subscribe(conf);
        for i in 0..3 {
            bus.publish_chat(
                conf,
                RoomFrame::Chat {
                    from: ParticipantInfo {
                        participant_id: "p".into(),
                        user_id: Uuid::nil(),
                        name: "ada".into(),
                        moderator: false,
                    },
                    text: format!("m{i}"),
                    at_ms: 0,
                },
            )
            .await
            .unwrap();
        }
        bus.publish(conf, RoomFrame::Hello).await.unwrap();
        let mut seqs = Vec::new();
        for _ in 0..4 {
            seqs.push(frames.next().await.unwrap().seq);
        }
        assert_eq!(seqs, vec![1, 2, 3, 0]);
    }
}
