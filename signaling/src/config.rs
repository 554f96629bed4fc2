//! Signaling limits and timeouts. Each one is named, has a default and a flag,
//! because operators tune them per deployment (bigger rooms, slower networks).

use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct SignalingConfig {
    /// Largest WebSocket frame accepted; a larger one closes the connection
    /// (an SDP with many simulcast m-lines stays well under 64 KiB).
    #[arg(long = "ws-max-frame-bytes", env = "CONVENE_WS_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// A socket that sends no frame at all (text, WebSocket Ping or Pong)
    /// this long is closed with 4001; its participant keeps its place for
    /// the resume grace. The server pings every third of the shorter of
    /// this and the waiting timeout; standard WebSocket stacks answer.
    #[arg(long = "ws-heartbeat-timeout-secs", default_value_t = 15)]
    pub heartbeat_timeout_secs: u64,
    /// The same for a waiter's socket; a waiter whose socket is gone this
    /// long leaves the waiting hall (no ghost waiters).
    #[arg(long = "ws-waiting-heartbeat-timeout-secs", default_value_t = 30)]
    pub waiting_heartbeat_timeout_secs: u64,
    /// How long a participant whose socket broke or went silent keeps its
    /// place for a resume.
    #[arg(long = "ws-resume-grace-secs", default_value_t = 30)]
    pub resume_grace_secs: u64,
    /// Sustained client messages per second per connection.
    #[arg(long = "ws-messages-per-sec", default_value_t = 20)]
    pub messages_per_sec: u32,
    /// Burst of client messages allowed above the sustained rate.
    #[arg(long = "ws-message-burst", default_value_t = 40)]
    pub message_burst: u32,
    /// Lobby chat messages per minute per connection.
    #[arg(long = "ws-lobby-messages-per-min", default_value_t = 10)]
    pub lobby_messages_per_min: u32,
    /// Knocks (waiting-hall entries) per second per conference, as Jitsi limits joins.
    #[arg(long = "ws-knocks-per-sec", default_value_t = 3)]
    pub knocks_per_sec: u32,
    /// Longest chat or lobby message, in characters.
    #[arg(long = "ws-max-chat-chars", default_value_t = 2000)]
    pub max_chat_chars: usize,
    /// Messages queued to one slow client before it is disconnected, so one
    /// stuck browser cannot grow the server's memory.
    #[arg(long = "ws-outbound-queue", default_value_t = 512)]
    pub outbound_queue: usize,
    /// Most chat messages sent for one `sync` (or one gap); a client further
    /// behind sends `sync` again from the last `seq` it got.
    #[arg(long = "ws-max-catchup-messages", default_value_t = 500)]
    pub max_catchup_messages: usize,
    /// With several nodes (Redis): how long a node's claim that a user is
    /// online, or that a participant is in a room, lasts without renewal.
    /// Nodes renew every third of it, so a dead node's users and
    /// participants disappear within this time.
    #[arg(
        long = "presence-ttl-secs",
        env = "CONVENE_PRESENCE_TTL_SECS",
        default_value_t = 30
    )]
    pub presence_ttl_secs: u64,
    /// This node's name in Redis presence and room frames; random when unset.
    #[arg(long = "node-id", env = "CONVENE_NODE_ID")]
    pub node_id: Option<String>,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            heartbeat_timeout_secs: 15,
            waiting_heartbeat_timeout_secs: 30,
            resume_grace_secs: 30,
            messages_per_sec: 20,
            message_burst: 40,
            lobby_messages_per_min: 10,
            knocks_per_sec: 3,
            max_chat_chars: 2000,
            outbound_queue: 512,
            max_catchup_messages: 500,
            presence_ttl_secs: 30,
            node_id: None,
        }
    }
}

impl SignalingConfig {
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs)
    }
    pub fn waiting_heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.waiting_heartbeat_timeout_secs)
    }
    pub fn resume_grace(&self) -> Duration {
        Duration::from_secs(self.resume_grace_secs)
    }
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs.max(1))
    }
}
